"""Issue 25, items 6-8: calls in regions where torch.compile is ignored, a fallback whose
warning is an error, and a backward graph that fails to compile."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from functorch.compile import make_boxed_func
from torch.utils.flop_counter import FlopCounterMode

from compile_policy import CompileFallbackWarning, CompileSkippedWarning, compile_stats, policy_compiled
from compile_policy._compiled.ignored_regions import ignored_region, missing_private_names
from conftest import CountingBackend

X = torch.ones(4)


# -- 6. a first call where torch.compile is ignored keeps nothing ---------------------------
class Body(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2 + 1


class Parent(torch.nn.Module):
    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) - 1


def _export(strict: bool) -> Callable[[Callable[..., Any]], None]:
    def run(call: Callable[..., Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # export's own notes
            torch.export.export(Parent(call), (X,), strict=strict)  # type: ignore[arg-type]

    return run


def _inside(make_region: Callable[[], contextlib.AbstractContextManager[Any]]) -> Callable[..., None]:
    def run(call: Callable[..., Any]) -> None:
        with make_region():
            assert torch.allclose(call(X), Body()(X))

    return run


@contextlib.contextmanager
def _dynamo_disabled() -> Iterator[None]:
    with torch._dynamo.config.patch(disable=True):
        yield


REGIONS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "export": _export(strict=False),
    "export-strict": _export(strict=True),
    "vmap": lambda call: torch.vmap(call)(torch.ones(2, 4)),
    "grad": lambda call: torch.func.grad(lambda x: call(x).sum())(X),
    "dynamo-config-disable": _inside(_dynamo_disabled),
    "force-eager-stance": _inside(lambda: torch.compiler.set_stance("force_eager")),
    "flop-counter-mode": _inside(lambda: FlopCounterMode(display=False)),
    "outer-torch-compile": lambda call: torch.compile(Parent(call), backend="eager")(X),
}


@pytest.mark.parametrize("region", list(REGIONS))
def test_a_first_call_where_torch_compile_is_ignored_keeps_nothing_and_later_calls_compile(
    counting: CountingBackend, region: str
) -> None:
    module = policy_compiled(Body(), backend=counting)
    REGIONS[region](module)
    stats = compile_stats(module)
    assert (counting.compiles, stats.compiled_calls, stats.skipped_calls) == (0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileSkippedWarning)
        for _ in range(2):
            assert torch.allclose(module(X), Body()(X))
    stats = compile_stats(module)
    assert counting.compiles == 1 and stats.compiled_calls == 2 and stats.failures == ()


# Not vmap nor a dispatch mode: torch 2.13 stops running a warm compiled function's graphs
# after one call there (a plain torch.compile'd function's too); later calls warn
# CompileSkippedWarning, as they should.
@pytest.mark.parametrize("region", ["dynamo-config-disable", "force-eager-stance"])
def test_a_warm_object_called_where_torch_compile_is_ignored_is_told_nothing(
    counting: CountingBackend, region: str
) -> None:
    step = policy_compiled(Body().forward, backend=counting)
    step(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileSkippedWarning)
        REGIONS[region](step)
        before = compile_stats(step).compiled_calls
        assert torch.allclose(step(X), Body()(X))
    stats = compile_stats(step)
    assert stats.skipped_calls == 0 and stats.compiled_calls == before + 1


@pytest.mark.parametrize("trace", ["jit.trace", "make_fx"])
def test_a_trace_that_refuses_compiled_code_raises_as_for_torch_compile_and_keeps_nothing(
    counting: CountingBackend, trace: str
) -> None:
    from torch.fx.experimental.proxy_tensor import make_fx

    step = policy_compiled(Body().forward, backend=counting)
    with pytest.raises(RuntimeError, match="dynamo-optimized function"):
        if trace == "jit.trace":
            torch.jit.trace(step, (X,))
        else:
            make_fx(lambda x: step(x))(X)
    step(X)
    assert counting.compiles == 1 and compile_stats(step).compiled_calls == 1


def test_an_ordinary_call_is_in_no_ignored_region_and_every_private_name_read_exists() -> None:
    assert ignored_region() is None
    assert missing_private_names() == []


# -- 7. a fallback warned as an error raises before the step runs ---------------------------
def test_a_fallback_warned_as_an_error_raises_before_the_step_runs(failing: CountingBackend) -> None:
    applied: list[int] = []

    @policy_compiled(backend=failing)
    def step(x: torch.Tensor) -> torch.Tensor:
        applied.append(1)  # a side effect: an optimizer step, a counter
        return x * 2

    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        with pytest.raises(CompileFallbackWarning, match="compile failed") as raised:
            step(X)
        assert applied == []  # the step did not run: a retry applies it once
        assert isinstance(raised.value.__cause__, torch._dynamo.exc.BackendCompilerFailed)
        stats = compile_stats(step)
        [failure] = stats.failures
        assert failure.fell_back and stats.fallback_calls == 0
        # Fallen back already: the next call runs eagerly, told nothing again.
        assert torch.equal(step(X), X * 2)
    assert applied == [1]
    assert compile_stats(step).fallback_calls == 1
    assert failing.compiles == 1


def test_a_fallback_warned_runs_the_step_eagerly_once_and_returns_its_result(
    failing: CountingBackend,
) -> None:
    applied: list[int] = []

    @policy_compiled(backend=failing)
    def step(x: torch.Tensor) -> torch.Tensor:
        applied.append(1)
        return x * 2

    with pytest.warns(CompileFallbackWarning):
        assert torch.equal(step(X), X * 2)
    assert applied == [1]
    stats = compile_stats(step)
    assert stats.fallback_calls == 1 and [f.fell_back for f in stats.failures] == [True]


# -- 8. a backward graph that fails to compile is a compile failure of its object -----------
class AotBackend:
    """``aot_autograd`` with a forward compiler that works and a backward one that may fail."""

    def __init__(self, backward_fails: bool) -> None:
        from torch._dynamo.backends.common import aot_autograd

        self.backward_compiles = 0
        self.backward_fails = backward_fails
        self.backend = aot_autograd(fw_compiler=self.forward, bw_compiler=self.backward)

    def forward(self, gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        return make_boxed_func(gm.forward)

    def backward(self, gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        self.backward_compiles += 1
        if self.backward_fails:
            raise RuntimeError("backward compiler told to fail")
        return make_boxed_func(gm.forward)


def _train_step(model: Callable[[torch.Tensor], torch.Tensor]) -> None:
    model(torch.ones(2, 4)).sum().backward()


@pytest.mark.needs_torch("backward_with_forward")
@pytest.mark.parametrize("form", ["module", "function"])
def test_a_backward_that_fails_to_compile_is_a_fallback_of_its_object(form: str) -> None:
    aot = AotBackend(backward_fails=True)
    linear = torch.nn.Linear(4, 4)
    model = policy_compiled(linear if form == "module" else linear.forward, backend=aot.backend)
    with pytest.warns(CompileFallbackWarning, match=r"policy_compiled\(Linear.*backward compiler told"):
        _train_step(model)  # the forward falls back: the backward runs eagerly, no error
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # told once
        _train_step(model)
    assert linear.weight.grad is not None
    stats = compile_stats(model)
    [failure] = stats.failures
    assert failure.fell_back
    assert isinstance(failure.exception.inner_exception, RuntimeError)  # type: ignore[attr-defined]
    assert stats.fallback_calls == 2 and aot.backward_compiles == 1


@pytest.mark.needs_torch("backward_with_forward")
def test_a_backward_that_fails_to_compile_raises_at_the_forward_under_fallback_raise() -> None:
    aot = AotBackend(backward_fails=True)
    model = policy_compiled(torch.nn.Linear(4, 4), backend=aot.backend, fallback="raise")
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="backward compiler told"):
        model(torch.ones(2, 4))
    [failure] = compile_stats(model).failures
    assert not failure.fell_back


@pytest.mark.needs_torch("backward_with_forward")
def test_the_backward_graph_compiles_with_the_forward_and_runs_compiled() -> None:
    aot = AotBackend(backward_fails=False)
    model = policy_compiled(torch.nn.Linear(4, 4), backend=aot.backend)
    out = model(torch.ones(2, 4))
    assert aot.backward_compiles == 1  # before any .backward()
    out.sum().backward()
    _train_step(model)
    assert aot.backward_compiles == 1 and compile_stats(model).compiled_calls == 2
