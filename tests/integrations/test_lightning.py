"""Lightning: :class:`~compile_policy.lightning.CompilePolicyCallback` and a module compiled
with ``policy_compiled`` in ``configure_model``, on a tiny MLP."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compile_policy import (
    CompilePolicy,
    PolicyError,
    compile_enabled,
    compile_stats,
    current_policy,
    policy_compiled,
)
from compile_policy._context.stack import pushed_top

pl = pytest.importorskip("lightning.pytorch")
from compile_policy.lightning import CompilePolicyCallback  # noqa: E402

pytestmark = [
    # Lightning 2.6.6 on torch 2.13: its pytree helper uses torch's deprecated LeafSpec
    pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated:FutureWarning"),
    # Lightning's advice for real runs: more dataloader workers, a logger
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*(log_every_n_steps|LightningModule.log):UserWarning"),
]


class Recorder(pl.LightningModule):
    """A two-layer MLP that records, at every step, which loop ran it and under which policy."""

    def __init__(self, fail_in_validation: BaseException | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.seen: list[tuple[str, CompilePolicy]] = []
        self.fail_in_validation = fail_in_validation

    def configure_model(self) -> None:
        # Lightning calls this at every fit, validate, test and predict: the wrapping must
        # be idempotent (compile_policy returns the wrapper itself when wrapped again).
        self.net = policy_compiled(self.net, backend="aot_eager")

    def _step(self, loop: str, batch: Any) -> torch.Tensor:
        self.seen.append((loop, current_policy()))
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        return self._step("train", batch)

    def validation_step(self, batch: Any, index: int) -> torch.Tensor:
        loss = self._step("sanity" if self.trainer.sanity_checking else "validate", batch)
        if self.fail_in_validation is not None and not self.trainer.sanity_checking:
            raise self.fail_in_validation
        return loss

    def test_step(self, batch: Any, index: int) -> torch.Tensor:
        return self._step("test", batch)

    def predict_step(self, batch: Any, index: int) -> torch.Tensor:
        self._step("predict", batch)
        return self.net(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data() -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(8, 4, generator=generator),
                                    torch.randn(8, 1, generator=generator)), batch_size=4)


def trainer(*callbacks: Any, **overrides: Any) -> Any:
    """One epoch of two training batches, one validation batch, a one-batch sanity check."""
    settings: dict[str, Any] = dict(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
        limit_test_batches=1, limit_predict_batches=1, num_sanity_val_steps=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    settings.update(overrides)
    return pl.Trainer(callbacks=list(callbacks), **settings)


def enabled_by_loop(module: Recorder) -> list[tuple[str, bool]]:
    return [(loop, policy.enabled) for loop, policy in module.seen]


@pytest.fixture
def outer_scope() -> Iterator[Any]:
    """A scope around the whole test, so that "restored" means "back to this", not "empty"."""
    with compile_enabled(backend="eager"):
        yield pushed_top()


# -- what runs under the policy --------------------------------------------------------------
def test_validation_inside_fit_the_sanity_check_included_runs_under_the_callbacks_policy() -> None:
    module = Recorder()
    trainer(CompilePolicyCallback(validate="off")).fit(module, data(), data())
    assert enabled_by_loop(module) == [("sanity", False), ("train", True), ("train", True),
                                       ("validate", False)]
    stats = compile_stats(module.net)
    assert (stats.compiled_calls, stats.eager_calls) == (2, 2)


def test_validate_test_and_predict_after_fit_each_run_under_their_own_policy() -> None:
    module = Recorder()
    callback = CompilePolicyCallback(validate="off", test="on,backend=eager",
                                     predict=CompilePolicy(enabled=False))
    run = trainer(callback, num_sanity_val_steps=0)
    run.fit(module, data(), data())
    run.validate(module, data())
    run.test(module, data())
    run.predict(module, data())
    seen = {(loop, str(policy)) for loop, policy in module.seen}
    assert seen == {("train", "on"), ("validate", "off"), ("test", "on,backend=eager"),
                    ("predict", "off")}


def test_a_policy_compiled_net_is_wrapped_once_across_fit_and_validate() -> None:
    module = Recorder()
    run = trainer(CompilePolicyCallback(validate="off"), num_sanity_val_steps=0)
    run.fit(module, data(), data())
    run.validate(module, data())
    assert isinstance(module.net.__wrapped__, nn.Sequential)  # not a wrapper of a wrapper
    stats = compile_stats(module.net)  # counted since the first wrap: fit's calls kept
    assert (stats.compiled_calls, stats.eager_calls) == (2, 2)


# -- restoring, whatever happens -------------------------------------------------------------
def test_the_threads_policy_after_fit_is_exactly_what_it_was_before(outer_scope: Any) -> None:
    trainer(CompilePolicyCallback(validate="off")).fit(Recorder(), data(), data())
    assert pushed_top() is outer_scope


def test_a_validation_step_that_raises_leaves_the_threads_policy_as_it_was(outer_scope: Any) -> None:
    module = Recorder(fail_in_validation=ValueError("the user's own error"))
    with pytest.raises(ValueError, match="the user's own error"):
        trainer(CompilePolicyCallback(validate="off")).fit(module, data(), data())
    assert ("validate", False) in enabled_by_loop(module)  # it failed inside the scope
    assert pushed_top() is outer_scope


def test_an_interrupt_in_validation_leaves_the_threads_policy_as_it_was(outer_scope: Any) -> None:
    # Lightning's answer to Ctrl+C: on_exception, then sys.exit(1), SIGINT ignored from then on.
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            trainer(CompilePolicyCallback(validate="off")).fit(
                Recorder(fail_in_validation=KeyboardInterrupt()), data(), data())
    finally:
        signal.signal(signal.SIGINT, handler)
    assert pushed_top() is outer_scope


def test_a_scope_left_open_in_a_validation_step_ends_with_the_validation(outer_scope: Any) -> None:
    class Leaky(Recorder):
        def validation_step(self, batch: Any, index: int) -> torch.Tensor:
            compile_enabled().__enter__()  # never exited
            return super().validation_step(batch, index)

    trainer(CompilePolicyCallback(validate="off")).fit(Leaky(), data(), data())
    assert pushed_top() is outer_scope


def test_explain_names_the_callback_during_validation() -> None:
    from compile_policy import explain

    explained = []

    class Explaining(Recorder):
        def validation_step(self, batch: Any, index: int) -> torch.Tensor:
            explained.append(explain())
            return super().validation_step(batch, index)

    trainer(CompilePolicyCallback(validate="off"), num_sanity_val_steps=0).fit(Explaining(), data(), data())
    assert "CompilePolicyCallback(validate='off') during validation" in explained[0]


# -- checkpoints -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty:UserWarning")
def test_checkpoint_save_and_resume_keep_the_plain_modules_keys_and_the_callbacks_policy(
    tmp_path: Path,
) -> None:
    def checkpoints() -> Any:
        return pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)


    trainer(CompilePolicyCallback(validate="off"), checkpoints(), enable_checkpointing=True).fit(
        Recorder(), data(), data())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert sorted(saved["state_dict"]) == sorted(f"net.{key}" for key in Recorder().net.state_dict())

    resumed = Recorder()
    trainer(CompilePolicyCallback(validate="off"), checkpoints(), enable_checkpointing=True,
            max_epochs=2, num_sanity_val_steps=0).fit(resumed, data(), data(),
                                                      ckpt_path=tmp_path / "last.ckpt")
    # Epoch 2 only: it went on from the checkpoint's epoch 1, and validated under the policy.
    assert enabled_by_loop(resumed) == [("train", True), ("train", True), ("validate", False)]


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "message"), [
    (3, r"validate=3 is not allowed; allowed: None, a policy text .*, or a CompilePolicy"),
    ("of", r"validate='of' is not a compile policy"),
])
def test_a_bad_policy_is_refused_naming_the_value_and_the_allowed_forms(given: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        CompilePolicyCallback(validate=given)


def test_a_callback_without_any_policy_is_refused() -> None:
    with pytest.raises(TypeError, match="at least one of validate=, test=, predict="):
        CompilePolicyCallback()


# -- imports -----------------------------------------------------------------------------------
def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_compile_policy_loads_neither_the_frameworks_nor_their_integrations() -> None:
    loaded = run_python(
        "import sys, compile_policy\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'transformers', 'accelerate') "
        "or m in ('compile_policy.lightning', 'compile_policy.transformers')))"
    )
    assert loaded == "[]"


def test_the_callback_is_a_lightning_callback_of_the_package_installed() -> None:
    assert run_python(
        "import lightning.pytorch, compile_policy.lightning as cl\n"
        "print(issubclass(cl.CompilePolicyCallback, lightning.pytorch.Callback))"
    ) == "True"
    assert run_python(
        "import sys; sys.modules['lightning'] = None  # only pytorch_lightning installed\n"
        "import pytorch_lightning, compile_policy.lightning as cl\n"
        "print(issubclass(cl.CompilePolicyCallback, pytorch_lightning.Callback))"
    ) == "True"


def test_without_lightning_the_import_error_says_what_to_install() -> None:
    message = run_python(
        "import sys; sys.modules['lightning'] = sys.modules['pytorch_lightning'] = None\n"
        "try:\n    import compile_policy.lightning\nexcept ImportError as error:\n    print(error)"
    )
    assert message.startswith("compile_policy.lightning needs Lightning: pip install lightning")
