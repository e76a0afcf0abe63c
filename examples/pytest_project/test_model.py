"""A model's test suite that states, per test, whether its train step may compile.

The ini sets ``compile_policy = both``: each unmarked test runs twice, ``[compiled]`` and
``[eager]``. At the end of the run, the ``compile policy`` section lists the objects that
fell back to eager (here, the one in ``test_a_fallback_is_listed_in_the_run_report``).
"""

from __future__ import annotations

import pytest
import torch
from model import TinyRegressor, make_train_step, toy_batch

from compile_policy import CompileFallbackWarning, compile_disabled, compile_enabled, policy_compiled


@pytest.fixture
def model() -> TinyRegressor:
    torch.manual_seed(0)
    return TinyRegressor()


def broken_backend(gm, example_inputs):
    raise RuntimeError("simulated compiler bug")


def test_training_reduces_the_loss(model: TinyRegressor, compile_policy) -> None:
    """One test, two runs: test_training_reduces_the_loss[compiled] and [eager]."""
    step = make_train_step(model)
    x, y = toy_batch()
    losses = [step(x, y).item() for _ in range(20)]
    assert losses[-1] < losses[0]
    stats = step.stats()
    assert (stats.compiled_calls if compile_policy.enabled else stats.eager_calls) == 20


@pytest.mark.compile_disabled
def test_debugging_the_step_eagerly(model: TinyRegressor) -> None:
    """Marked: runs once, eagerly (the fixture setup too)."""
    step = make_train_step(model)
    step(*toy_batch())
    assert step.stats().eager_calls == 1


@pytest.mark.compile_enabled
def test_compiled_and_eager_agree(model: TinyRegressor) -> None:
    x, _ = toy_batch()
    forward = policy_compiled(model, backend="aot_eager")
    compiled = forward(x)
    with compile_disabled():  # only this block runs eagerly
        eager = forward(x)
    torch.testing.assert_close(compiled, eager)


@pytest.mark.compile_enabled
def test_a_silent_fallback_fails_the_test(model: TinyRegressor) -> None:
    """In CI, a train step that stopped compiling is a performance regression: raise."""
    step = make_train_step(model, backend=broken_backend)
    x, y = toy_batch()
    with compile_enabled(fallback="raise"):
        with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="simulated"):
            step(x, y)
    assert step.stats().fallback_calls == 0


@pytest.mark.compile_enabled
def test_a_fallback_is_listed_in_the_run_report(model: TinyRegressor) -> None:
    """The step falls back to eager and the test passes, but the run report names it."""
    step = make_train_step(model, backend=broken_backend)
    with pytest.warns(CompileFallbackWarning, match="simulated compiler bug"):
        step(*toy_batch())
    assert step.stats().fallback_calls == 1


@pytest.mark.compile_enabled(fallback="raise")
def test_the_real_step_compiles_without_fallback(model: TinyRegressor) -> None:
    step = make_train_step(model)
    step(*toy_batch())
    assert step.stats().failures == ()


@pytest.mark.compile_disabled
class TestEagerOnly:
    """A whole class marked: data checks that never need a compiler."""

    def test_batch_shapes(self) -> None:
        x, y = toy_batch(n=5)
        assert x.shape == (5, 8) and y.shape == (5, 1)

    def test_policy_is_off(self, compile_policy) -> None:
        assert compile_policy.enabled is False
        assert "@pytest.mark.compile_disabled" in compile_policy.explain()
