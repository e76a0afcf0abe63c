"""Issue 25, items 6-8: calls in regions where torch.compile is ignored, a fallback whose
warning is an error, and a backward graph that fails to compile."""

from __future__ import annotations

import warnings

import pytest
import torch

from compile_policy import CompileFallbackWarning, compile_stats, policy_compiled
from conftest import CountingBackend

X = torch.ones(4)


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
