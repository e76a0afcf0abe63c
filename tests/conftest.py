"""Shared helpers: a counting backend that really compiles (with Dynamo) and counts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import compile_policy._context.frames
from compile_policy._base import torch_releases


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
        compile_policy._context.frames.reread_default()

    yield set_default
    monkeypatch.undo()
    compile_policy._context.frames.reread_default()


@pytest.fixture(autouse=True)
def _fresh_dynamo_cache_without_isolation() -> None:
    """Without per-object isolation (torch < 2.13) every object of one code (the forward of
    every nn.Linear of the run) shares torch's per-code cache and recompile budget across
    the whole worker: each test starts from an empty cache, as its own objects do on 2.13+."""
    if not torch_releases.running().isolation and "torch" in sys.modules:
        import torch

        torch._dynamo.reset()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_torch(what): the test needs a torch release with `what`, a fact of "
        "compile_policy._base.torch_releases (isolation, traces_function_get, ...) or a torch.compile "
        "argument (recompile_limit, ...); elsewhere it skips, naming the release it needs",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs_torch"):
        reason = missing_from_torch(marker.args[0])
        if reason is not None:
            pytest.skip(reason)


def missing_from_torch(what: str) -> str | None:
    """Why the running torch lacks ``what`` (a fact or a torch.compile argument), naming the
    release that has it; None when it has it."""
    facts = torch_releases.running()
    if what in torch_releases.HISTORY:
        if getattr(facts, what):
            return None
        since = torch_releases.first_release_with(what)
    else:
        if what in facts.compile_arguments:
            return None
        found = torch_releases.first_release_having("compile_arguments", what)
        assert found is not None, f"needs_torch({what!r}): no torch release has it"
        since = found
    return f"needs torch {torch_releases.release_text(since)}+ ({what}); this is torch {facts.version}"


pytest_plugins = ["pytester"]

# The framework integrations (HF transformers, Lightning) run in their own venv: `make
# test-integrations` names the folder, which collects it; `pytest` and `make test` do not.
collect_ignore = ["integrations"]
