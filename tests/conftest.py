"""Shared helpers: a counting backend that really compiles (with Dynamo) and counts."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import compile_policy.policy_stack


class CountingBackend:
    """A ``torch.compile`` backend that records each compiled graph and each graph run.

    It returns the FX graph's own ``forward``, so compiles take milliseconds.
    """

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.compiles = 0
        self.runs = 0
        self._lock = threading.Lock()
        self.__name__ = "counting"

    def __call__(self, gm: Any, example_inputs: Any) -> Any:
        with self._lock:
            self.compiles += 1
        if self.fail:
            raise RuntimeError("counting backend told to fail")

        def run(*args: Any) -> Any:
            with self._lock:
                self.runs += 1
            return gm.forward(*args)

        return run


def run_fresh(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 240,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a fresh process whose environment is this one's without the
    policy's variables (COMPILE_POLICY*, TORCH_COMPILE_DISABLE) and pytest's (PYTEST_*),
    plus ``env``."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("COMPILE_POLICY", "TORCH_COMPILE_DISABLE", "PYTEST_"))}
    environment.update(env or {})
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=environment)


@pytest.fixture
def counting() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
def failing() -> CountingBackend:
    return CountingBackend(fail=True)


@pytest.fixture
def process_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``set(text)``: COMPILE_POLICY=text, and the process default read again; after the
    test, the environment as it was, read again."""

    def set_default(text: str) -> None:
        monkeypatch.setenv("COMPILE_POLICY", text)
        compile_policy.policy_stack.reread_default()

    yield set_default
    monkeypatch.undo()
    compile_policy.policy_stack.reread_default()


pytest_plugins = ["pytester"]

# The framework integrations (HF transformers, Lightning) run in their own venv: `make
# test-integrations` names the folder, which collects it; `pytest` and `make test` do not.
collect_ignore = ["integrations"]
