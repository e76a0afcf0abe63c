"""Tiny models and data for the framework integration tests: built from configs, on CPU, no
hub downloads (no tokenizer either: token ids are made by hand), and a backend that compiles
for real and counts what ran compiled."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch


class CountingBackend:
    """A ``torch.compile`` backend that compiles with a named one (``aot_eager``) and counts
    the compiled graphs and their runs: what ran compiled, seen from the backend's side."""

    def __init__(self, backend: str = "aot_eager") -> None:
        self.backend = backend
        self.compiles = 0
        self.runs = 0
        self._lock = threading.Lock()
        self.__name__ = f"counting_{backend}"

    def __deepcopy__(self, memo: dict[int, Any]) -> CountingBackend:
        # Shared, not copied, as torch.compile shares its backend: importing Lightning
        # replaces torch.compile with a wrapper that deep-copies the arguments of every
        # torch.compile(module, ...) (lightning/fabric/wrappers.py), and a lock has no copy.
        return self

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        from torch._dynamo import lookup_backend

        compiled = lookup_backend(self.backend)(gm, example_inputs)
        with self._lock:
            self.compiles += 1

        def run(*args: Any) -> Any:
            with self._lock:
                self.runs += 1
            return compiled(*args)

        return run


VOCAB, LENGTH = 64, 16


def token_batches(count: int, *, seed: int = 0) -> torch.Tensor:
    """``count`` rows of token ids, made by hand: no tokenizer, no download."""
    return torch.randint(0, VOCAB, (count, LENGTH), generator=torch.Generator().manual_seed(seed))


class TokenDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Causal-LM examples as HF Trainer takes them: ``input_ids`` and ``labels``."""

    def __init__(self, count: int, *, seed: int = 0) -> None:
        self.ids = token_batches(count, seed=seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def tiny_gpt2(seed: int = 0) -> Any:
    """A one-layer GPT-2 LM built from its config (about 40k parameters)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()
