"""policy_compiled keeps the wrapped callable's types: mypy --strict over tests/typing_check.py
(its assert_type lines), and a wrong call is a type error, not Any."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

pytest.importorskip("mypy")


def _mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *map(str, paths)],
        capture_output=True, text=True, timeout=240, cwd=HERE.parent,
    )


def test_wrapped_functions_methods_and_modules_keep_their_signatures_for_mypy(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_calls.py"
    wrong.write_text(
        "import torch\n"
        "from compile_policy import policy_compiled\n"
        "def step(x: torch.Tensor) -> torch.Tensor:\n"
        "    return x\n"
        "fast = policy_compiled(step, backend='eager')\n"
        "fast('not a tensor')\n"
        "n: int = fast(torch.ones(1))\n"
    )
    # One run over both (mypy on torch takes ~15 s): errors only in the wrong calls.
    result = _mypy(HERE / "typing_check.py", wrong)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert all(line.startswith(str(wrong)) for line in errors), result.stdout + result.stderr
    assert len(errors) == 2, result.stdout
    assert 'incompatible type "str"' in errors[0]
    assert 'expression has type "Tensor"' in errors[1]
