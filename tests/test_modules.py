"""policy_compiled(module): a module that is the wrapped module to everything but its calls;
the in-place form; compile_stats(); unwrap(); every torch.compile argument."""

from __future__ import annotations

import copy
import inspect
import io
import threading
from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

import compile_policy
from compile_policy import (
    PolicyCompiledModule,
    PolicyError,
    compile_disabled,
    compile_enabled,
    compile_stats,
    policy_compiled,
    unwrap,
)
from compile_policy._base import torch_releases
from compile_policy._compiled.arguments import TORCH_ONLY_ARGS
from conftest import CountingBackend


def x() -> torch.Tensor:
    return torch.ones(2, 4)


class MLP(nn.Module):
    """A user module with a submodule, a buffer, a plain attribute and its own method."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.scale = 2.0

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(t)).relu() * self.scale

    def double_scale(self) -> float:
        return self.scale * 2


class Parent(nn.Module):
    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.body = policy_compiled(nn.Linear(4, 4), backend=backend)
        self.head = nn.Linear(4, 1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(t))


def calls(model: Any) -> tuple[int, int]:
    stats = compile_stats(model)
    return stats.compiled_calls, stats.eager_calls


# -- the module form -----------------------------------------------------------------------
def test_the_module_form_is_an_nn_module_whose_calls_obey_the_policy(counting: CountingBackend) -> None:
    net = MLP()
    model = policy_compiled(net, backend=counting)
    assert isinstance(model, nn.Module) and isinstance(model, PolicyCompiledModule)
    assert compile_policy.PolicyCompiledModule is PolicyCompiledModule
    expected = net(x())
    assert torch.allclose(model(x()), expected)
    with compile_disabled():
        assert torch.allclose(model(x()), expected)
    assert calls(model) == (1, 1) and compile_stats(model).graphs_compiled == counting.compiles == 1


def test_forward_obeys_the_policy_too(counting: CountingBackend) -> None:
    model = policy_compiled(MLP(), backend=counting)
    model.forward(x())
    model.forward(t=x())
    with compile_disabled():
        model.forward(x())
    assert calls(model) == (2, 1)


def test_as_a_child_it_registers_the_wrapped_modules_tensors_under_their_names() -> None:
    parent = Parent("eager")
    assert [name for name, _ in parent.named_parameters()] == [
        "body.weight", "body.bias", "head.weight", "head.bias"]
    assert list(parent.state_dict()) == ["body.weight", "body.bias", "head.weight", "head.bias"]
    assert parent.body.weight is unwrap(parent.body).weight
    # The wrapper too, as torch.compile(module)'s wrapper: the parent's tables name it.
    assert [type(m) for m in parent.modules()] == [Parent, PolicyCompiledModule, nn.Linear, nn.Linear]


def test_a_parents_optimizer_trains_the_wrapped_child(counting: CountingBackend) -> None:
    parent = Parent(counting)
    before = parent.body.weight.detach().clone()
    optimizer = torch.optim.SGD(parent.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        parent(x()).sum().backward()
        optimizer.step()
    assert not torch.equal(parent.body.weight, before)
    assert calls(parent.body) == (2, 0)


def test_state_dict_keys_are_the_wrapped_modules_in_order() -> None:
    net = MLP()
    model = policy_compiled(net, backend="eager")
    assert list(model.state_dict()) == list(net.state_dict())
    assert "num_batches_tracked" in "".join(model.state_dict())  # buffers too
    assert all(a is b for a, b in zip(model.parameters(), net.parameters(), strict=True))
    assert [n for n, _ in model.named_buffers()] == [n for n, _ in net.named_buffers()]


def test_checkpoints_load_strictly_in_both_directions_and_from_torch_compile() -> None:
    source, eager = MLP(), MLP()
    model = policy_compiled(MLP(), backend="eager")
    model.load_state_dict(source.state_dict())  # eager -> wrapper
    eager.load_state_dict(model.state_dict())  # wrapper -> eager
    assert torch.equal(eager.fc.weight, source.fc.weight)
    compiled_checkpoint = torch.compile(source, backend="eager").state_dict()
    assert next(iter(compiled_checkpoint)).startswith("_orig_mod.")
    fresh = policy_compiled(MLP(), backend="eager")
    assert fresh.load_state_dict(compiled_checkpoint) is not None  # strict
    assert torch.equal(fresh.fc.weight, source.fc.weight)
    # A parent's checkpoint whose child was torch.compile'd loads into a wrapped child.
    old = nn.Module()
    old.body = torch.compile(nn.Linear(4, 4), backend="eager")
    new = Parent("eager")
    del new.head
    new.load_state_dict(old.state_dict())
    assert torch.equal(new.body.weight, old.body.weight)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        policy_compiled(MLP(), backend="eager").load_state_dict({**source.state_dict(), "junk": 1})


def test_weights_loaded_after_the_first_call_are_used_without_a_recompile(
    counting: CountingBackend,
) -> None:
    model = policy_compiled(nn.Linear(4, 4), backend=counting)
    model(x())
    other = nn.Linear(4, 4)
    model.load_state_dict(other.state_dict())
    assert torch.allclose(model(x()), other(x()))
    assert counting.compiles == 1 and calls(model) == (2, 0)


def test_module_methods_act_on_the_wrapped_module() -> None:
    net = MLP()
    model = policy_compiled(net, backend="eager")
    assert model.eval() is model and not net.training and not model.training
    model.training = True  # the attribute, as on the module itself
    assert net.training and not net.fc.training
    assert model.train() is model and all(m.training for m in net.modules())
    assert model.to(torch.float64) is model and net.fc.weight.dtype == torch.float64
    model.double().float()
    assert net.fc.weight.dtype == torch.float32
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    seen: list[type] = []
    assert model.apply(lambda m: seen.append(type(m))) is model
    assert seen == [nn.Linear, nn.BatchNorm1d, MLP]  # never the wrapper
    assert [type(m) for m in model.modules()] == [PolicyCompiledModule, MLP, nn.Linear, nn.BatchNorm1d]
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    model.zero_grad()
    assert net.fc.weight.grad is None


def test_attribute_reads_and_writes_go_to_the_wrapped_module() -> None:
    net = MLP()
    model = policy_compiled(net, backend="eager")
    assert model.fc is net.fc and model.norm.running_mean is net.norm.running_mean
    assert model.double_scale() == 4.0 and model.scale == 2.0
    model.scale = 3.0
    assert net.scale == 3.0 and "scale" not in vars(model)
    model.extra = nn.Linear(4, 4)
    assert net.extra is model.extra and "extra.weight" in model.state_dict()
    del model.extra
    assert not hasattr(net, "extra")
    assert repr(net) in repr(model) and "double_scale" in dir(model)
    assert model.__wrapped__ is net and model._orig_mod is net
    assert getattr(model, "_orig_mod", model) is net and hasattr(model, "_orig_mod")


def test_containers_have_len_indexing_and_iteration() -> None:
    layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model = policy_compiled(layers, backend="eager")
    assert len(model) == 2 and model[0] is layers[0] and list(model) == list(layers)
    assert bool(policy_compiled(nn.Linear(4, 4), backend="eager"))
    with pytest.raises(TypeError):
        len(policy_compiled(nn.Linear(4, 4), backend="eager"))


def test_hooks_fire_once_per_call_on_both_paths(counting: CountingBackend) -> None:
    net = nn.Linear(4, 4)
    fired: list[str] = []
    net.register_forward_pre_hook(lambda m, a: fired.append("pre"))
    model = policy_compiled(net, backend=counting)
    model.register_forward_hook(lambda m, a, out: fired.append("post"))  # the module's own
    model(x())
    with compile_disabled():
        model(x())
    assert fired == ["pre", "post", "pre", "post"] and calls(model) == (1, 1)


class Checkpointed(nn.Module):
    """Overrides the state-dict methods, and registers state-dict hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.loaded: list[str] = []
        self._register_state_dict_hook(lambda m, sd, prefix, meta: sd.update({prefix + "v": 1}))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        self.loaded.append(prefix)
        state_dict.pop(prefix + "v", None)
        state_dict.pop(prefix + "extra_override", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        out = super().state_dict(*args, **kwargs)
        out[kwargs.get("prefix", "") + "extra_override"] = 1
        return out


def test_state_dict_overrides_and_hooks_of_the_wrapped_module_are_honoured() -> None:
    net = Checkpointed()
    model = policy_compiled(net, backend="eager")
    assert list(model.state_dict()) == list(net.state_dict())
    assert {"extra_override", "v"} <= set(model.state_dict())
    model.load_state_dict(net.state_dict())
    parent = nn.Module()
    parent.child = model
    assert {"child.v", "child.extra_override"} <= set(parent.state_dict())
    parent.load_state_dict(parent.state_dict())
    assert net.loaded == ["", "child."]


def test_a_deep_copy_is_independent_with_its_own_compiled_state(counting: CountingBackend) -> None:
    model = policy_compiled(nn.Linear(4, 4), backend=counting)
    model(x())
    twin = copy.deepcopy(model)
    assert twin._orig_mod is not model._orig_mod and twin.weight is not model.weight
    with torch.no_grad():
        twin.weight.zero_()
        twin.bias.zero_()
    assert torch.equal(twin(x()), torch.zeros(2, 4)) and not torch.equal(model(x()), twin(x()))
    assert calls(twin) == (2, 0) and calls(model) == (2, 0)
    assert twin._policy_config[0].backend is counting  # configuration is shared


def test_a_deep_copy_honours_the_memo() -> None:
    class Bundle:
        def __init__(self) -> None:
            self.net = nn.Linear(4, 4)
            self.fast = policy_compiled(self.net, backend="eager")

    bundle = Bundle()
    clone = copy.deepcopy(bundle)
    assert clone.fast._orig_mod is clone.net and clone.net is not bundle.net


def test_the_whole_module_saves_and_loads_without_compiled_state() -> None:
    model = policy_compiled(MLP(), backend="eager")
    model.eval()
    model(x())
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert isinstance(loaded, PolicyCompiledModule) and calls(loaded) == (0, 0)
    assert torch.allclose(loaded(x()), model(x())) and calls(loaded) == (1, 0)


def test_inside_an_outer_torch_compile_the_module_is_traced_not_asked(counting: CountingBackend) -> None:
    inner = CountingBackend()
    model = policy_compiled(nn.Linear(4, 4), backend=inner)
    outer = torch.compile(lambda t: model(t) * 2, backend=counting, fullgraph=True)
    assert torch.allclose(outer(x()), model._orig_mod(x()) * 2)
    assert counting.compiles == 1 and inner.compiles == 0 and calls(model) == (0, 0)


def test_threads_under_different_scopes_take_their_own_paths(counting: CountingBackend) -> None:
    model = policy_compiled(nn.Linear(4, 4), backend=counting)
    barrier = threading.Barrier(2)

    def run(disabled: bool) -> None:
        barrier.wait()
        scope = compile_disabled() if disabled else compile_enabled()
        with scope:
            for _ in range(50):
                model(x())

    threads = [threading.Thread(target=run, args=(flag,)) for flag in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls(model) == (50, 50) and counting.runs == 50


# -- the in-place form ---------------------------------------------------------------------
def test_in_place_returns_the_same_module_whose_calls_obey_the_policy(counting: CountingBackend) -> None:
    net = MLP()
    keys = list(net.state_dict())
    assert policy_compiled(net, inplace=True, backend=counting) is net
    assert type(net) is MLP and list(net.state_dict()) == keys
    parent = nn.Sequential(net)  # called as a child in the parent's forward
    parent(x())
    with compile_disabled():
        net(x())
    assert calls(net) == (1, 1) and unwrap(net) is net


def test_in_place_compiles_a_bare_torch_layer(counting: CountingBackend) -> None:
    layer = policy_compiled(nn.Linear(4, 4), inplace=True, backend=counting)
    layer(x())
    assert counting.compiles == 1 and calls(layer) == (1, 0)


def test_in_place_copies_and_pickles_are_plain_modules_as_for_module_compile() -> None:
    net = policy_compiled(nn.Linear(4, 4), inplace=True, backend="eager")
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(net), torch.load(buffer, weights_only=False)):
        assert clone._compiled_call_impl is None
        with pytest.raises(TypeError, match="compile_stats"):
            compile_stats(clone)


def test_in_place_needs_a_module() -> None:
    with pytest.raises(TypeError, match="inplace=True"):
        policy_compiled(lambda t: t, inplace=True)
    with pytest.raises(TypeError, match="needs the module"):
        policy_compiled(inplace=True)  # type: ignore[call-overload]


# -- compile_stats and unwrap --------------------------------------------------------------
class Agent:
    def act(self, t: torch.Tensor) -> torch.Tensor:
        return t + 1

    @policy_compiled(backend="eager")
    def step(self, t: torch.Tensor) -> torch.Tensor:
        return t * 2


def test_compile_stats_reads_every_policy_compiled_thing() -> None:
    agent = Agent()
    function = policy_compiled(lambda t: t - 1, backend="eager")
    bound = policy_compiled(agent.act, backend="eager")
    module = policy_compiled(nn.Linear(4, 4), backend="eager")
    in_place = policy_compiled(nn.Linear(4, 4), inplace=True, backend="eager")
    for thing in (function, bound, agent.step, module, in_place):
        thing(x())
        assert compile_stats(thing).compiled_calls == 1
    assert compile_stats(Agent.step).compiled_calls == 0
    for other in (nn.Linear(4, 4), agent.act, torch.compile(nn.Linear(4, 4)), 3):
        with pytest.raises(TypeError, match=r"compile_stats\(\) takes .*got"):
            compile_stats(other)


def test_unwrap_gives_the_plain_callable_or_module() -> None:
    agent, net = Agent(), nn.Linear(4, 4)

    def fn(t: torch.Tensor) -> torch.Tensor:
        return t

    assert unwrap(policy_compiled(fn)) is fn
    assert unwrap(policy_compiled(agent.act)) == agent.act
    assert unwrap(agent.step) == Agent.step.__wrapped__.__get__(agent)
    assert unwrap(policy_compiled(net)) is net
    assert unwrap(torch.compile(net)) is net
    assert unwrap(policy_compiled(torch.compile(net))) is net
    assert unwrap(policy_compiled(net, inplace=True)) is net
    for other in (fn, 3, "text"):
        assert unwrap(other) is other


# -- torch.compile's arguments -------------------------------------------------------------
def test_every_torch_compile_argument_is_accepted() -> None:
    ours = set(inspect.signature(policy_compiled).parameters)
    torch_args = set(inspect.signature(torch.compile).parameters) - {"model"}
    assert torch_args <= ours, f"torch.compile arguments not taken: {torch_args - ours}"
    assert set(compile_policy._compiled.arguments.TORCH_ONLY_ARGS) == torch_args - {
        "backend", "mode", "fullgraph", "dynamic", "options"}


def test_unknown_arguments_are_a_type_error_naming_them() -> None:
    with pytest.raises(TypeError, match="bakend"):
        policy_compiled(lambda t: t, bakend="eager")  # type: ignore[call-overload]


@pytest.mark.parametrize(("argument", "value"), [
    ("disable", "yes"),
    pytest.param("isolate_recompiles", 1, marks=pytest.mark.needs_torch("isolate_recompiles")),
    pytest.param("recompile_limit", 0, marks=pytest.mark.needs_torch("recompile_limit")),
    pytest.param("recompile_limit", True, marks=pytest.mark.needs_torch("recompile_limit")),
    pytest.param("name", 3, marks=pytest.mark.needs_torch("name")),
    ("inplace", None)])
def test_bad_argument_values_are_refused_naming_them(argument: str, value: object) -> None:
    with pytest.raises(PolicyError, match=f"{argument}={value!r}.*allowed"):
        policy_compiled(lambda t: t, **{argument: value})


def _on_torch(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """policy_compiled checks its arguments against torch ``version``'s facts."""
    monkeypatch.setattr(torch_releases, "running", lambda: torch_releases.facts_of(version))


@pytest.mark.parametrize(("argument", "value"), [
    ("recompile_limit", 2), ("isolate_recompiles", False), ("isolate_recompiles", True),
    ("name", "step"), ("shapes_spec", OrderedDict()), ("dynamic_shapes", OrderedDict())])
def test_an_argument_torch_lacks_is_refused_at_wrap_time_naming_it_and_the_torch(
    monkeypatch: pytest.MonkeyPatch, argument: str, value: object,
) -> None:
    _on_torch(monkeypatch, "2.9.1")
    with pytest.raises(TypeError, match=rf"{argument}=.*torch 2\.9\.1 does not have.*allowed here: disable"):
        policy_compiled(lambda t: t, **{argument: value})


@pytest.mark.parametrize("version", ["2.13.0", "2.14.1", "2.15.0"])
@pytest.mark.parametrize("given", ["shapes_spec", "dynamic_shapes"])
def test_a_renamed_argument_is_taken_under_both_names_and_passed_under_torchs(
    monkeypatch: pytest.MonkeyPatch, version: str, given: str,
) -> None:
    _on_torch(monkeypatch, version)
    step = policy_compiled(lambda t: t, backend="eager", **{given: OrderedDict()})
    torchs = next(a for a in ("shapes_spec", "dynamic_shapes") if a in torch_releases.facts_of(
        version).compile_arguments)
    assert step._policy_state.compile_args == {torchs: OrderedDict(), "isolate_recompiles": True}


def test_a_renamed_argument_given_under_both_names_is_refused_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _on_torch(monkeypatch, "2.14.1")
    with pytest.raises(TypeError, match="give only dynamic_shapes="):
        policy_compiled(lambda t: t, shapes_spec=OrderedDict(), dynamic_shapes=OrderedDict())


def test_disable_runs_the_plain_callable_counted_as_eager(counting: CountingBackend) -> None:
    model = policy_compiled(nn.Linear(4, 4), backend=counting, disable=True)
    step = policy_compiled(lambda t: t * 2, backend=counting, disable=True)
    with compile_enabled():
        model(x())
        assert torch.equal(step(x()), x() * 2)
    assert calls(model) == (0, 1) and calls(step) == (0, 1) and counting.compiles == 0


@pytest.mark.needs_torch("recompile_limit")
def test_recompile_limit_is_passed_to_torch(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t * 2, backend=counting, dynamic=False, recompile_limit=1)
    step(torch.ones(2))
    with pytest.warns(compile_policy.CompileSkippedWarning, match="recompile limit"):
        for size in (3, 4):
            step(torch.ones(size))
    assert counting.compiles == 1 and compile_stats(step).skipped_calls == 2


def _shared_code(t: torch.Tensor) -> torch.Tensor:
    return t * 5


@pytest.mark.needs_torch("isolate_recompiles")
@pytest.mark.parametrize(("isolate", "second_compiles"), [(True, 1), (False, 0)])
def test_isolate_recompiles_false_shares_dynamos_cache(isolate: bool, second_compiles: int) -> None:
    torch._dynamo.reset()  # the shared cache is per code object: start from none
    first = policy_compiled(_shared_code, backend="eager", isolate_recompiles=isolate)
    second = policy_compiled(_shared_code, backend="eager", isolate_recompiles=isolate)
    first(x())
    second(x())
    assert compile_stats(second).graphs_compiled == second_compiles
    assert compile_stats(second).compiled_calls == 1


def test_objects_of_one_code_share_dynamos_cache_by_default_only_without_isolation() -> None:
    torch._dynamo.reset()
    first = policy_compiled(_shared_code, backend="eager")
    second = policy_compiled(_shared_code, backend="eager")
    first(x())
    second(x())
    assert compile_stats(second).graphs_compiled == (1 if torch_releases.running().isolation else 0)
    assert compile_stats(second).compiled_calls == 1


@pytest.mark.needs_torch("name")
@pytest.mark.needs_torch("isolate_recompiles")
def test_name_and_shapes_spec_reach_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = torch.compile
    shapes = next(a for a in ("shapes_spec", "dynamic_shapes") if a in TORCH_ONLY_ARGS)

    def spy(model: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(model, **{k: v for k, v in kwargs.items() if k != shapes})

    monkeypatch.setattr(torch, "compile", spy)
    step = policy_compiled(lambda t: t, backend="eager", shapes_spec=OrderedDict(), name="step")
    step(x())
    assert seen[shapes] == OrderedDict() and seen["isolate_recompiles"] is True
    assert "name" not in seen  # torch.compile hands it to the inductor backend only
