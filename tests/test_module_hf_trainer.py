"""Hugging Face's Trainer with the module wrapper, for real where transformers is installed
(make test-integrations installs it): refused up front, naming inplace=True; the in-place
form trains, checkpoints, resumes and saves the plain model's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from compile_policy import PolicyError, compile_stats, policy_compiled

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


def _model() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=16,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


class _Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(8) + i % 5
        return {"input_ids": ids, "labels": ids}


def _trainer(model: Any, out: Path) -> Any:
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=2, save_steps=1, per_device_train_batch_size=2, use_cpu=True,
        report_to=[], disable_tqdm=True)
    return transformers.Trainer(model=model, args=args, train_dataset=_Data())


def test_trainer_refuses_the_wrapper_up_front_naming_inplace(tmp_path: Path) -> None:
    refused = r"Trainer\(model=policy_compiled\(GPT2LMHeadModel\)\).*inplace=True"
    with pytest.raises(PolicyError, match=refused):
        _trainer(policy_compiled(_model(), backend="eager"), tmp_path)


def test_trainer_trains_checkpoints_resumes_and_saves_the_in_place_form(tmp_path: Path) -> None:
    plain = _trainer(_model(), tmp_path / "plain")
    plain_loss = plain.train().training_loss
    model = policy_compiled(_model(), inplace=True, backend="eager")
    trainer = _trainer(model, tmp_path / "compiled")
    assert trainer.train().training_loss == pytest.approx(plain_loss)
    trainer.train(resume_from_checkpoint=True)
    trainer.save_model(str(tmp_path / "compiled" / "final"))
    plain.save_model(str(tmp_path / "plain" / "final"))
    files = {p.name for p in (tmp_path / "plain" / "final").iterdir()}
    assert {p.name for p in (tmp_path / "compiled" / "final").iterdir()} == files
    assert {p.name for p in (tmp_path / "compiled").iterdir()} >= {"checkpoint-1", "checkpoint-2"}
    assert compile_stats(model).compiled_calls >= 2
