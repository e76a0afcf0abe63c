"""A model's test suite that states, per test, whether its train step may compile."""

from __future__ import annotations

import pytest
import torch
from model import TinyRegressor, make_train_step, toy_batch

from compile_policy import compile_disabled, compile_enabled, policy_compiled


@pytest.fixture
def model() -> TinyRegressor:
    torch.manual_seed(0)
    return TinyRegressor()


def test_training_reduces_the_loss_compiled(model: TinyRegressor) -> None:
    step = make_train_step(model)
    x, y = toy_batch()
    losses = [step(x, y).item() for _ in range(20)]
    assert losses[-1] < losses[0]
    assert step.stats().compiled_calls == 20


@pytest.mark.compile_disabled
def test_training_reduces_the_loss_eagerly(model: TinyRegressor) -> None:
    """The same test, marked: the step runs eagerly, the fixture setup too."""
    step = make_train_step(model)
    x, y = toy_batch()
    losses = [step(x, y).item() for _ in range(20)]
    assert losses[-1] < losses[0]
    assert step.stats().eager_calls == 20


def test_compiled_and_eager_agree(model: TinyRegressor) -> None:
    x, _ = toy_batch()
    forward = policy_compiled(model, backend="aot_eager")
    compiled = forward(x)
    with compile_disabled():  # only this block runs eagerly
        eager = forward(x)
    torch.testing.assert_close(compiled, eager)


def test_debugging_a_step_with_prints_inside(model: TinyRegressor) -> None:
    step = make_train_step(model)
    x, y = toy_batch()
    with compile_disabled():
        loss = step(x, y)  # set a breakpoint in train_step: it runs as plain Python
    assert loss.item() > 0


def test_a_silent_fallback_fails_the_test(model: TinyRegressor) -> None:
    """In CI, a train step that stopped compiling is a performance regression: raise."""

    def broken_backend(gm, example_inputs):
        raise RuntimeError("simulated compiler bug")

    step = make_train_step(model, backend=broken_backend)
    x, y = toy_batch()
    with compile_enabled(fallback="raise"):
        with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="simulated"):
            step(x, y)
    assert step.stats().fallback_calls == 0


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
