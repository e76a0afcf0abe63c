"""policy_compiled(module) is a module under every protocol a user applies to "their model":
hooks of every kind, forward replaced, its own attributes never shadowed, compile() and
parametrizations refused clearly, replication, the forward signature, wrapping twice; and a
conformance table of nn.Module operations on the plain module, torch.compile(module) and
the wrapper."""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import pickle
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from compile_policy import (
    PolicyCompiledModule,
    PolicyError,
    compile_disabled,
    compile_stats,
    policy_compiled,
    unwrap,
)
from conftest import CountingBackend


def x() -> torch.Tensor:
    return torch.ones(2, 4)


class MLP(nn.Module):
    """A user module with a submodule, a buffer, a plain attribute and its own `stats()`."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.scale = 2.0

    def forward(self, t: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
        return self.norm(self.fc(t)).relu() * self.scale + shift

    def stats(self) -> str:
        return "the model's own"


def calls(model: Any) -> tuple[int, int]:
    stats = compile_stats(model)
    return stats.compiled_calls, stats.eager_calls


# -- hooks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("register", ["register_full_backward_hook", "register_full_backward_pre_hook"])
def test_full_backward_hooks_registered_on_the_wrapper_fire_on_both_paths(
    counting: CountingBackend, register: str
) -> None:
    model = policy_compiled(MLP(), backend=counting)
    fired: list[str] = []
    getattr(model, register)(lambda *args: fired.append("fired"))
    t = x().requires_grad_()
    model(t).sum().backward()
    with compile_disabled():
        model(t).sum().backward()
    assert fired == ["fired", "fired"] and calls(model) == (1, 1)


def test_full_and_old_style_backward_hooks_still_cannot_mix() -> None:
    model = policy_compiled(MLP(), backend="eager")
    model.register_full_backward_hook(lambda *args: None)
    with pytest.raises(RuntimeError, match="Cannot use both regular backward hooks"):
        model.register_backward_hook(lambda *args: None)


# -- forward -------------------------------------------------------------------------------
def test_assigning_forward_replaces_the_call_as_on_torch_compile(counting: CountingBackend) -> None:
    model = policy_compiled(MLP(), backend=counting)
    policy_call = model.forward
    seen: list[str] = []

    def traced(*args: Any, **kwargs: Any) -> Any:  # accelerate's autocast wrapper, say
        seen.append("traced")
        return policy_call(*args, **kwargs)

    model.forward = traced
    model(x())
    assert seen == ["traced"] and calls(model) == (1, 0)  # the policy call, through `traced`
    model.forward = lambda t: t * 0
    assert torch.equal(model(x()), torch.zeros(2, 4)) and calls(model) == (1, 0)
    del model.forward  # back to the policy-obeying call
    model(x())
    assert calls(model) == (2, 0) and seen == ["traced"]


def test_forward_has_the_wrapped_modules_signature() -> None:
    model = policy_compiled(MLP(), backend="eager")
    expected = inspect.signature(MLP().forward)
    assert inspect.signature(model.forward) == expected
    assert inspect.signature(model) == expected
    assert list(inspect.signature(model.forward).parameters) == ["t", "shift"]  # Trainer's columns
    assert inspect.signature(PolicyCompiledModule.forward) is not None  # the class is untouched


# -- the module's own attributes -----------------------------------------------------------
def test_the_wrapped_modules_own_attributes_are_never_shadowed() -> None:
    class Overrides(MLP):
        def half(self) -> Overrides:  # LightningModule overrides half(), to(), ...
            self.halved = True
            return super().half()

    net = Overrides()
    model = policy_compiled(net, backend="eager")
    assert model.stats() == "the model's own"
    assert model.half() is model and net.halved and net.fc.weight.dtype == torch.float16
    assert compile_stats(model).compiled_calls == 0  # the wrapper's counters


def test_stats_on_a_wrapper_of_a_module_without_it_points_to_compile_stats() -> None:
    model = policy_compiled(nn.Linear(4, 4), backend="eager")
    with pytest.raises(AttributeError, match=r"compile_stats\(model\)"):
        model.stats()


# -- compile(), inplace=True and wrapping twice --------------------------------------------
def test_module_compile_on_the_wrapper_is_refused_clearly() -> None:
    model = policy_compiled(MLP(), backend="eager")
    with pytest.raises(PolicyError, match=r"policy_compiled\(MLP\)\.compile\(\): .*allowed"):
        model.compile()
    model(x())
    assert calls(model) == (1, 0)


def test_wrapping_twice_with_the_same_arguments_returns_it_with_its_stats(
    counting: CountingBackend,
) -> None:
    model = policy_compiled(MLP(), backend=counting, mode=None)  # mode=None is the default
    model(x())
    assert policy_compiled(model, backend=counting) is model
    assert policy_compiled(model, backend=counting, inplace=True) is model
    in_place = policy_compiled(MLP(), inplace=True, backend="eager")
    in_place(x())
    assert policy_compiled(in_place, backend="eager") is in_place
    assert policy_compiled(in_place, inplace=True, backend="eager") is in_place
    assert calls(model) == (1, 0) and calls(in_place) == (1, 0)


def test_wrapping_again_with_other_arguments_is_an_error_naming_both_sets() -> None:
    model = policy_compiled(MLP(), backend="eager", fullgraph=True)
    for again in (lambda: policy_compiled(model), lambda: policy_compiled(model, inplace=True)):
        with pytest.raises(PolicyError, match=(
            r"policy_compiled\(MLP\) is policy-compiled already, with "
            r"\(backend='eager', fullgraph=True\); asked again with no arguments")):
            again()
    with pytest.raises(PolicyError, match=r"with no arguments .*asked again with \(disable=True\)"):
        policy_compiled(policy_compiled(MLP(), inplace=True), disable=True)
    assert isinstance(unwrap(model), MLP)  # nothing nested


# -- parametrizations ----------------------------------------------------------------------
def test_a_parametrization_on_the_wrapper_is_refused_before_anything_changes() -> None:
    layer = nn.Linear(4, 4)
    model = policy_compiled(layer, backend="eager")
    weight = layer.weight
    with pytest.raises(PolicyError, match=r"register_parametrization\(unwrap\(model\)"):
        parametrize.register_parametrization(model, "weight", _Doubled())
    assert layer.weight is weight and type(model) is PolicyCompiledModule and type(layer) is nn.Linear
    assert not parametrize.is_parametrized(model)  # other reads are the module's


def test_a_parametrization_of_the_wrapped_module_is_seen_through_the_wrapper() -> None:
    layer = nn.Linear(4, 4)
    model = policy_compiled(layer, backend="eager")
    expected = nn.functional.linear(x(), layer.weight * 2, layer.bias)
    parametrize.register_parametrization(unwrap(model), "weight", _Doubled())
    assert parametrize.is_parametrized(model, "weight")
    assert torch.allclose(model(x()), expected)
    with compile_disabled():
        assert torch.allclose(model(x()), expected)


class _Doubled(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * 2


# -- replicas ------------------------------------------------------------------------------
def test_a_parent_holding_a_wrapper_replicates_as_torch_replicate_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # torch's replicate() itself, with its CUDA broadcast replaced by copies on the CPU.
    replicate_module = importlib.import_module("torch.nn.parallel.replicate")

    monkeypatch.setattr(replicate_module, "_get_device_index", lambda device, optional=False: device)
    monkeypatch.setattr(replicate_module, "_broadcast_coalesced_reshape",
                        lambda tensors, devices, detach=False: [
                            [t.detach().clone() for t in tensors] for _ in devices])
    parent = nn.Sequential(policy_compiled(MLP(), backend="eager"), nn.Linear(4, 2))
    net = unwrap(parent[0])
    before = {name: dict(vars(net)[name]) for name in ("_parameters", "_buffers", "_modules")}
    assert any(m is parent[0] for m in parent.modules())  # its tables name it
    replicas = replicate_module.replicate(parent, [0, 1])
    for replica in replicas:
        assert isinstance(replica[0], PolicyCompiledModule) and unwrap(replica[0]) is not net
        assert torch.allclose(replica(x()), parent(x()))
    assert {name: dict(vars(net)[name]) for name in before} == before  # nothing written
    assert "_is_replica" not in vars(net) and "_former_parameters" not in vars(net)


# -- conformance: nn.Module operations on the plain module, torch.compile and the wrapper --
Form = Callable[[nn.Module], nn.Module]
FORMS: dict[str, Form] = {
    "plain": lambda net: net,
    "torch.compile": lambda net: torch.compile(net, backend="eager"),
    "policy_compiled": lambda net: policy_compiled(net, backend="eager"),
}


def _out(model: nn.Module) -> list[Any]:
    """The model's output on both paths (a tensor's values, as a list)."""
    first = model(x()).tolist()
    with compile_disabled():
        return [first, model(x()).tolist()]


def _hooks(model: nn.Module) -> Any:
    fired: list[str] = []
    model.register_forward_pre_hook(lambda m, args: fired.append("pre"))
    model.register_forward_pre_hook(lambda m, args, kwargs: fired.append("pre-kw"), with_kwargs=True)
    model.register_forward_hook(lambda m, args, out: fired.append("post"))
    model.register_forward_hook(lambda m, a, k, out: fired.append("post-kw"), with_kwargs=True,
                                always_call=True)
    model.register_full_backward_pre_hook(lambda m, grad_out: fired.append("bw-pre"))
    model.register_full_backward_hook(lambda m, grad_in, grad_out: fired.append("bw"))
    for _ in range(2):
        model(x().requires_grad_()).sum().backward()
        with compile_disabled():
            model(x().requires_grad_()).sum().backward()
    return fired


def _old_style_backward_hook(model: nn.Module) -> Any:
    fired: list[str] = []
    model.register_backward_hook(lambda m, grad_in, grad_out: fired.append("bw-old"))
    with warnings.catch_warnings():  # "non-full backward hook ... multiple autograd Nodes"
        warnings.simplefilter("ignore", FutureWarning)
        model(x().requires_grad_()).sum().backward()
        with compile_disabled():
            model(x().requires_grad_()).sum().backward()
    return fired


def _state_dict_hooks(model: nn.Module) -> Any:
    fired: list[str] = []
    model.register_state_dict_pre_hook(lambda m, prefix, keep_vars: fired.append("sd-pre"))
    model.register_state_dict_post_hook(lambda m, sd, prefix, meta: fired.append("sd-post"))
    model.register_load_state_dict_pre_hook(lambda m, *args: fired.append("load-pre"))
    model.register_load_state_dict_post_hook(lambda m, keys: fired.append("load-post"))
    model.load_state_dict(model.state_dict())
    return fired


def _apply(model: nn.Module) -> Any:
    seen: list[str] = []
    model.apply(lambda m: seen.append(type(m).__name__))
    return seen


def _named(model: nn.Module) -> Any:
    return ([name for name, _ in model.named_parameters()], [n for n, _ in model.named_buffers()],
            [name for name, _ in model.named_children()],
            [(name, type(m).__name__) for name, m in unwrap(model).named_modules()])


def _dtypes(model: nn.Module, convert: Callable[[nn.Module], Any]) -> Any:
    assert convert(model) is model
    return [p.dtype for p in model.parameters()], model(x().to(model.fc.weight.dtype)).dtype


def _register_buffer(model: nn.Module) -> Any:
    model.register_buffer("offset", torch.full((4,), 3.0))
    return sorted(unwrap(model).state_dict()), "offset" in unwrap(model)._buffers


def _parametrize_a_submodule(model: nn.Module) -> Any:
    parametrize.register_parametrization(model.fc, "weight", _Doubled())
    return _out(model), sorted(unwrap(model).state_dict())


def _deepcopy(model: nn.Module) -> Any:
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.fc.weight.zero_()
    return _out(twin), _out(model)


def _pickle(model: nn.Module) -> Any:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    return type(loaded) is type(model), _out(loaded), len(pickle.dumps(unwrap(model).state_dict())) > 0


def _state_dict_both_ways(model: nn.Module) -> Any:
    plain = MLP()
    keys = [key.removeprefix("_orig_mod.") for key in model.state_dict()]
    if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        unwrap(model).load_state_dict(plain.state_dict())  # its own keys have the prefix
    else:
        model.load_state_dict(plain.state_dict())
    plain.load_state_dict({key.removeprefix("_orig_mod."): v for key, v in model.state_dict().items()})
    return keys, torch.equal(plain.fc.weight, model.fc.weight)


def _attributes(model: nn.Module) -> Any:
    model.scale = 3.0
    model.extra = nn.Linear(4, 4)
    seen = unwrap(model).scale, "extra.weight" in unwrap(model).state_dict()
    del model.extra
    return seen, hasattr(unwrap(model), "extra"), _out(model)


def _train_eval(model: nn.Module) -> Any:
    assert model.eval() is model
    evaluated = [m.training for m in unwrap(model).modules()], model.training, _out(model)
    assert model.train() is model
    return evaluated, [m.training for m in unwrap(model).modules()], model.training


#: (operation, forms whose result differs from the plain module's, and why)
OPERATIONS: list[tuple[str, Callable[[nn.Module], Any], dict[str, str]]] = [
    # torch 2.13's OptimizedModule fires no full backward hook (pre-hooks only), and calls
    # its own hooks around the compiled call.
    ("forward and backward hooks", _hooks, {"torch.compile": "no full backward hook fires"}),
    ("old-style backward hook", _old_style_backward_hook, {"torch.compile": "it never fires"}),
    ("state-dict hooks", _state_dict_hooks, {}),
    ("apply", _apply, {"torch.compile": "fn also sees the OptimizedModule"}),
    ("named_*", _named, {"torch.compile": "_orig_mod. before every name"}),
    ("to(float64)", lambda m: _dtypes(m, lambda m: m.to(torch.float64)), {}),
    ("double()", lambda m: _dtypes(m, lambda m: m.double()), {}),
    ("half()", lambda m: _dtypes(m, lambda m: m.half())[0], {}),
    ("register_buffer", _register_buffer, {"torch.compile": "on the OptimizedModule itself"}),
    ("parametrize a submodule", _parametrize_a_submodule, {}),
    ("deepcopy", _deepcopy, {}),
    ("torch.save of the whole model", _pickle, {}),
    ("state_dict both ways", _state_dict_both_ways, {}),
    ("attribute set and delete", _attributes, {}),
    ("train and eval", _train_eval, {}),
]


@pytest.mark.parametrize(("operation", "differs"), [(op, differs) for _, op, differs in OPERATIONS],
                         ids=[name for name, _, _ in OPERATIONS])
def test_nn_module_operations_give_the_plain_modules_results(
    operation: Callable[[nn.Module], Any], differs: dict[str, str]
) -> None:
    results = {}
    for form, make in FORMS.items():
        torch.manual_seed(0)
        results[form] = operation(make(MLP()))
    assert results["policy_compiled"] == results["plain"]
    if "torch.compile" not in differs:
        assert results["torch.compile"] == results["plain"]
    else:  # the row's note says how torch.compile(module) differs
        assert results["torch.compile"] != results["plain"]


# -- Hugging Face's Trainer (the real one: tests/test_module_hf_trainer.py) -----------------
def test_hf_trainer_construction_with_the_wrapper_is_refused_naming_inplace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trainer saves what accelerate cannot unwrap as a raw state dict: refused up front."""

    class Trainer:  # what transformers' Trainer.__init__ does first with a model
        def __init__(self, model: nn.Module) -> None:
            self.tp_size = self.tp(model)

        @staticmethod
        def tp(model: nn.Module) -> Any:
            return getattr(model, "tp_size", None)

    monkeypatch.setitem(sys.modules, "transformers.trainer", types.SimpleNamespace(Trainer=Trainer))
    with pytest.raises(PolicyError, match=r"Trainer\(model=policy_compiled\(MLP\)\).*inplace=True"):
        Trainer(policy_compiled(MLP(), backend="eager"))
    assert Trainer(policy_compiled(MLP(), inplace=True, backend="eager")).tp_size is None
    assert Trainer.tp(policy_compiled(MLP(), backend="eager")) is None  # outside a Trainer
