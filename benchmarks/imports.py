"""What importing the package costs: ``import compile_policy`` in a fresh interpreter, and the
import time the pytest plugin adds to a real pytest run (it loads in every pytest run of every
project that has the package installed).

Both are measured with the package's bytecode cached, as in any installed package (pip writes
the ``.pyc`` files at install), in a cache directory of their own (``PYTHONPYCACHEPREFIX``), so
the checkout is left as it was. Without a cache, each import compiles the sources anew (about
1 ms per 100 lines here): that is what an editable install sees when the environment sets
``PYTHONDONTWRITEBYTECODE=1``, and the rows marked "no bytecode cache" measure it (for scale,
no claim).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import claims
from .table import Row
from .timing import median

__all__ = ["import_cost"]

IMPORT = (
    "import sys, time; t = time.perf_counter(); import compile_policy; "
    "t = time.perf_counter() - t; "
    "print(t * 1e3, sum(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
)
#: A real pytest run (collecting nothing) that times each plugin's entry-point load, as pytest
#: does it (pluggy calls EntryPoint.load): the modules that first load with it count, the
#: package included; what pytest itself loaded before (logging, inspect, ...) does not.
PLUGIN = """
import importlib.metadata, sys, time
import pytest
loads = {}
load = importlib.metadata.EntryPoint.load
def timed(self):
    started = time.perf_counter()
    try:
        return load(self)
    finally:
        loads[self.value] = (time.perf_counter() - started) * 1e3
importlib.metadata.EntryPoint.load = timed
pytest.main(["-q", "--collect-only", "-p", "no:cacheprovider", "--rootdir", ".", "-c", "pytest.ini"])
print(loads.get("compile_policy.pytest_plugin"), file=sys.stderr)
"""


@contextmanager
def _environments() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """``(cached, uncached)``: environments for fresh interpreters, with bytecode caches of
    their own; the second has the standard library's cached, not this package's."""
    import compile_policy

    package = Path(compile_policy.__file__).resolve().parent
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("COMPILE_POLICY", "TORCH_COMPILE_DISABLE", "PYTEST_"))}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        cached = dict(base, PYTHONPYCACHEPREFIX=f"{tmp}/cached")
        uncached = dict(base, PYTHONPYCACHEPREFIX=f"{tmp}/uncached")
        for env in (cached, uncached):  # fill each cache, the plugin's imports included
            subprocess.run([sys.executable, "-c", "import compile_policy.pytest_plugin"],
                           env=env, check=True)
        shutil.rmtree(Path(uncached["PYTHONPYCACHEPREFIX"]) / package.relative_to(package.anchor))
        uncached["PYTHONDONTWRITEBYTECODE"] = "1"
        yield cached, uncached


def _import(env: dict[str, str]) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", IMPORT], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def _plugin(env: dict[str, str], empty: str) -> float:
    """Milliseconds of the plugin's import in a real pytest run (collecting nothing)."""
    done = subprocess.run([sys.executable, "-c", PLUGIN], env=env, cwd=empty,
                          capture_output=True, text=True)
    last = done.stderr.strip().splitlines()[-1:]
    if last in ([], ["None"]):
        raise RuntimeError(f"pytest did not load compile_policy.pytest_plugin:\n{done.stdout}"
                           f"{done.stderr[-2000:]}")
    return float(last[0])


def import_cost(quick: bool) -> list[Row]:
    """5. ``import compile_policy`` and the pytest plugin, in fresh interpreters, interleaved."""
    runs = 3 if quick else 15
    times: dict[str, list[float]] = {"import": [], "import, uncached": [], "plugin": [],
                                     "plugin, uncached": []}
    torch_modules = 0
    with _environments() as (cached, uncached), tempfile.TemporaryDirectory() as empty:
        Path(empty, "pytest.ini").write_text("[pytest]\n")
        for _ in range(runs):
            for suffix, env in (("", cached), (", uncached", uncached)):
                took, loaded = _import(env)
                times["import" + suffix].append(took)
                torch_modules = max(torch_modules, loaded)
                times["plugin" + suffix].append(_plugin(env, empty))
    return [
        Row("import compile_policy: torch modules loaded", torch_modules, "",
            claim=claims.IMPORT_TORCH),
        Row("import compile_policy", median(times["import"]), "ms", claim=claims.IMPORT_TIME),
        Row("import compile_policy, no bytecode cache", median(times["import, uncached"]), "ms"),
        Row("pytest plugin: import time added to a pytest run", median(times["plugin"]), "ms",
            claim=claims.PLUGIN_LOAD),
        Row("pytest plugin: the same, no bytecode cache", median(times["plugin, uncached"]), "ms"),
    ]
