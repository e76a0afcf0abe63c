"""Hugging Face transformers (+ accelerate): the Trainer and a model's own methods with each form
of compiling (``Trainer(torch_compile=True)`` governed, ``policy_compiled(model)``,
``policy_compiled(model, inplace=True)``), on a one-layer GPT-2 built from its config."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
import torch

from compile_policy import compile_disabled, compile_enabled, compile_stats, policy_compiled

from .tiny_models import CountingBackend, TokenDataset, tiny_gpt2, token_batches

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from safetensors.torch import load_file  # noqa: E402  (a dependency of transformers)
from transformers import GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

transformers.logging.set_verbosity_error()  # the tiny config's advice on GPU speedups

pytestmark = [
    # transformers on torch 2.13: a deprecation inside the Trainer's optimizer set-up
    pytest.mark.filterwarnings("ignore::FutureWarning:transformers"),
]


def training_args(output_dir: Path, **overrides: Any) -> TrainingArguments:
    """Two steps of batch 4, on CPU, no reports, no progress bars, no checkpoints unless asked."""
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4,
        per_device_eval_batch_size=4, use_cpu=True, report_to=[], disable_tqdm=True,
        save_strategy="no", logging_strategy="no", seed=0,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def train_checkpoint_resume_save(model: Any, folder: Path) -> dict[str, Any]:
    """Train two steps with a checkpoint after each, resume for a third, ``save_model()``:
    what a run leaves behind, to compare with the plain model's."""
    checkpoints = folder / "run"
    Trainer(model=model, args=training_args(checkpoints, save_strategy="steps", save_steps=1),
            train_dataset=TokenDataset(8)).train()
    resumed = Trainer(model=model, args=training_args(checkpoints, max_steps=3, save_strategy="steps",
                                                      save_steps=1),
                      train_dataset=TokenDataset(8))
    resumed.train(resume_from_checkpoint=True)
    resumed.save_model(str(folder / "saved"))
    state = json.loads((checkpoints / "checkpoint-3" / "trainer_state.json").read_text())
    return {
        "checkpoint files": files_under(checkpoints / "checkpoint-2"),
        "saved files": files_under(folder / "saved"),
        "saved keys": sorted(load_file(folder / "saved" / "model.safetensors")),
        "resumed to step": state["global_step"],
    }


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return train_checkpoint_resume_save(tiny_gpt2(), tmp_path_factory.mktemp("plain"))


# -- Trainer(torch_compile=True), governed ---------------------------------------------------
def plain_eval_loss(tmp_path: Path) -> float:
    trainer = Trainer(model=tiny_gpt2(), args=training_args(tmp_path / "plain"),
                      eval_dataset=TokenDataset(4))
    return float(trainer.evaluate()["eval_loss"])


def test_trainer_torch_compile_governed_evaluates_eagerly_under_a_scope_around_evaluate(
    governed: None, counting_aot_eager: CountingBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    counting = counting_aot_eager
    # The Trainer compiles through accelerate's own torch.compile call, whose backend must be
    # one of accelerate's names: the counting backend takes aot_eager's place in that call.
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda model, **kw: real_compile(model, **{**kw, "backend": counting}))
    trainer = Trainer(model=tiny_gpt2(), train_dataset=TokenDataset(8), eval_dataset=TokenDataset(4),
                      args=training_args(tmp_path, torch_compile=True, torch_compile_backend="aot_eager"))
    trainer.evaluate = compile_disabled(trainer.evaluate)  # type: ignore[method-assign]

    # Before any training the Trainer compiles the model for the evaluation itself.
    metrics = trainer.evaluate()
    assert counting.runs == 0
    assert metrics["eval_loss"] == pytest.approx(plain_eval_loss(tmp_path))

    trainer.train()
    assert counting.runs > 0  # the training steps outside the scope ran compiled


# -- policy_compiled(model) and policy_compiled(model, inplace=True) in a Trainer ------------
def test_trainer_trains_checkpoints_resumes_and_saves_a_wrapped_model_as_the_plain_one_or_refuses_it(
    plain_run: dict[str, Any], tmp_path: Path
) -> None:
    # The contract: the same files as for the plain model, or a refusal up front that says to
    # use inplace=True.
    model = policy_compiled(tiny_gpt2(), backend="aot_eager")
    try:
        run = train_checkpoint_resume_save(model, tmp_path)
    except (TypeError, ValueError, RuntimeError) as refusal:
        assert "inplace=True" in str(refusal), f"not a refusal that names inplace=True: {refusal!r}"
        assert not list(tmp_path.rglob("checkpoint-*")), "refused only after a checkpoint"
        return
    assert run == plain_run
    assert compile_stats(model).compiled_calls > 0


def test_trainer_trains_checkpoints_resumes_and_saves_an_in_place_compiled_model_as_the_plain_one(
    plain_run: dict[str, Any], tmp_path: Path
) -> None:
    model = policy_compiled(tiny_gpt2(), inplace=True, backend="aot_eager")
    assert train_checkpoint_resume_save(model, tmp_path) == plain_run
    assert compile_stats(model).compiled_calls == 3  # one per training step
    assert compile_stats(model).eager_calls == 0


def test_evaluations_during_training_run_under_a_scope_wrapped_around_trainer_evaluate(
    tmp_path: Path,
) -> None:
    # The Trainer's periodic evaluation calls self.evaluate(): the instance's attribute.
    model = policy_compiled(tiny_gpt2(), inplace=True, backend="aot_eager")
    trainer = Trainer(model=model, train_dataset=TokenDataset(8), eval_dataset=TokenDataset(4),
                      args=training_args(tmp_path, eval_strategy="steps", eval_steps=1))
    trainer.evaluate = compile_disabled(trainer.evaluate)  # type: ignore[method-assign]
    trainer.train()
    stats = compile_stats(model)
    assert (stats.compiled_calls, stats.eager_calls) == (2, 2)  # 2 steps; 2 evaluations of 1 batch


# -- save_pretrained / from_pretrained -------------------------------------------------------
@pytest.mark.parametrize("inplace", [False, True], ids=["wrapper", "inplace"])
def test_save_pretrained_writes_the_plain_models_files_and_from_pretrained_reads_them_back(
    inplace: bool, tmp_path: Path
) -> None:
    plain = tiny_gpt2()
    plain.save_pretrained(tmp_path / "plain")
    model = policy_compiled(tiny_gpt2(), inplace=inplace, backend="aot_eager")
    model.save_pretrained(tmp_path / "compiled")

    assert files_under(tmp_path / "compiled") == files_under(tmp_path / "plain")
    saved = load_file(tmp_path / "compiled" / "model.safetensors")
    assert sorted(saved) == sorted(load_file(tmp_path / "plain" / "model.safetensors"))
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path / "compiled")
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, model.state_dict()[name])


def test_a_checkpoint_of_the_plain_model_loads_into_a_policy_compiled_one(tmp_path: Path) -> None:
    tiny_gpt2(seed=1).save_pretrained(tmp_path)
    model = policy_compiled(GPT2LMHeadModel.from_pretrained(tmp_path), backend="aot_eager")
    ids = token_batches(2)
    with compile_disabled():
        expected = model(input_ids=ids).logits
    torch.testing.assert_close(model(input_ids=ids).logits, expected)
    assert compile_stats(model).compiled_calls == 1


# -- generate() ----------------------------------------------------------------------------
def generate_3_tokens(model: Any, prompt: torch.Tensor) -> torch.Tensor:
    """Greedy, exactly 3 new tokens (the tiny model may well pick its end-of-text token)."""
    return model.generate(prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False)


def test_generate_of_an_in_place_compiled_model_asks_the_policy_at_every_step() -> None:
    model = policy_compiled(tiny_gpt2(), inplace=True, backend="aot_eager")
    prompt = token_batches(1)[:, :4]
    expected = generate_3_tokens(tiny_gpt2(), prompt)
    torch.testing.assert_close(generate_3_tokens(model, prompt), expected)
    assert compile_stats(model).compiled_calls == 3  # one forward per new token
    with compile_disabled():
        generate_3_tokens(model, prompt)
    assert compile_stats(model).eager_calls == 3


def test_generate_through_the_wrapper_runs_the_plain_model_without_asking_the_policy() -> None:
    # As through torch.compile(model): generate() is the wrapped model's method, which calls
    # the wrapped model itself. docs/frameworks.md says to use inplace=True for generation.
    model = policy_compiled(tiny_gpt2(), backend="aot_eager")
    prompt = token_batches(1)[:, :4]
    expected = generate_3_tokens(tiny_gpt2(), prompt)
    torch.testing.assert_close(generate_3_tokens(model, prompt), expected)
    stats = compile_stats(model)
    assert (stats.compiled_calls, stats.eager_calls) == (0, 0)


# -- threads -------------------------------------------------------------------------------
def test_two_threads_on_one_governed_torch_compiled_model_each_get_their_own_policy(
    governed: None, counting_aot_eager: CountingBackend
) -> None:
    counting = counting_aot_eager
    model = torch.compile(tiny_gpt2(), backend=counting)
    ids = token_batches(2)
    expected = tiny_gpt2()(input_ids=ids).logits
    model(input_ids=ids)  # compiled once, before the threads
    runs_per_call, calls = counting.runs, 5
    start = Barrier(2)

    def forward(disabled: bool) -> list[torch.Tensor]:
        start.wait()
        with compile_disabled() if disabled else compile_enabled():
            return [model(input_ids=ids).logits for _ in range(calls)]

    with ThreadPoolExecutor(2) as pool:
        outputs = [pool.submit(forward, disabled) for disabled in (True, False)]
        for future in outputs:
            for logits in future.result():
                torch.testing.assert_close(logits, expected)
    assert counting.runs == runs_per_call * (1 + calls)  # the enabled thread's calls only
    assert counting.compiles == runs_per_call  # and the disabled one caused no recompile
