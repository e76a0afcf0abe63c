"""Keeping torch's process-wide compile state out of test outcomes.

- Dynamo's caches: ``--compile-policy-reset=test|module`` calls ``torch._dynamo.reset()``
  (through its public name, ``torch.compiler.reset``) before each test or each module, so
  compile counts and recompile budgets do not depend on which tests ran before. Torch is
  imported only when one of these is set.
- Inductor's cache directory: ``--compile-policy-cache=per-worker`` gives each xdist
  worker (and a serial run) its own ``TORCHINDUCTOR_CACHE_DIR`` under one run directory,
  which the controller chooses and sends to the workers (``workerinput``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["DynamoReset", "InductorCache", "load_reset"]

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
RUN_DIR_KEY = "compile_policy_cache_run_dir"


def load_reset() -> Callable[[], None]:
    """``torch.compiler.reset`` (it calls ``torch._dynamo.reset()``), checked; imports torch."""
    import torch

    reset = getattr(getattr(torch, "compiler", None), "reset", None)
    if not callable(reset):
        raise pytest.UsageError(
            f"compile-policy: --compile-policy-reset needs torch.compiler.reset(), which "
            f"torch {torch.__version__} does not have; use --compile-policy-reset=off"
        )
    return reset  # type: ignore[no-any-return]


class DynamoReset:
    """Resets Dynamo before each test (``test``) or when a test of a new module starts."""

    def __init__(self, when: str) -> None:
        self.when = when
        self._reset = load_reset()
        self._module: object = None

    def before(self, item: pytest.Item) -> None:
        if self.when == "module":
            module = item.getparent(pytest.Module)
            if module is self._module:
                return
            self._module = module
        self._reset()


class InductorCache:
    """One ``TORCHINDUCTOR_CACHE_DIR`` per process that runs tests, under one run directory.

    The run directory is the user's ``TORCHINDUCTOR_CACHE_DIR`` when set (so that caches
    persist between runs as the user asked), else a new temporary directory, removed when
    the run ends.
    """

    def __init__(self, config: pytest.Config, runs_tests: bool) -> None:
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self._saved = os.environ.get(CACHE_ENV)
        self._created: str | None = None
        self.dir: str | None = None
        if workerinput is not None and RUN_DIR_KEY in workerinput:
            self.run_dir = str(workerinput[RUN_DIR_KEY])
            name = str(workerinput.get("workerid", "worker"))
        else:
            if self._saved:
                self.run_dir = self._saved
            else:
                self.run_dir = self._created = tempfile.mkdtemp(prefix="compile-policy-inductor-")
            name = "main"
        if runs_tests:  # not on an xdist controller: its workers get their own
            self.dir = os.path.join(self.run_dir, name)
            os.makedirs(self.dir, exist_ok=True)
            # Before any test, and before torch reads it (inductor reads it on every use).
            os.environ[CACHE_ENV] = self.dir

    def describe(self) -> str:
        parent = " (TORCHINDUCTOR_CACHE_DIR)" if self._created is None else ""
        return f"per-worker under {self.run_dir}{parent}"

    def configure_node(self, node: Any) -> None:
        """xdist controller: tell a worker the run directory."""
        node.workerinput[RUN_DIR_KEY] = self.run_dir

    def close(self) -> None:
        if self.dir is None:
            pass
        elif self._saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = self._saved
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
