"""The examples, run in a reduced size, so they cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_fresh

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_fresh([sys.executable, *args], env=env, timeout=timeout, cwd=ROOT)


def test_back_to_back_demo_quick_mode_ends_with_a_measured_summary() -> None:
    result = run("examples/back_to_back.py", env={"DEMO_QUICK": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(
        r"demo: ppo_return=\d+\.\d heuristic=eager ppo=compiled failing=fallback leaked=no", lines[-1]
    ), lines[-1]
    assert any("phase 3/3" in line for line in lines)
    assert "CompileFallbackWarning" in result.stderr


def test_threads_and_tasks_example() -> None:
    result = run("examples/threads_and_tasks.py", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 on the wrong path" in result.stdout


def test_notebook_code_cells_run_in_order_in_one_namespace() -> None:
    notebook = json.loads((EXAMPLES / "notebook.ipynb").read_text())
    namespace: dict[str, object] = {"__name__": "__notebook__"}
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert len(cells) >= 3
    for number, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"notebook cell {number}", "exec"), namespace)


def test_config_and_checkpoint_example_restores_the_policy_from_the_checkpoint() -> None:
    result = run("examples/config_and_checkpoint.py", "--quick",
                 "--compile", "on, backend=eager,fallback=raise")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert "with compile policy on,backend=eager,fallback=raise: loss" in lines[0]
    assert "'compile': {'enabled': True, 'backend': 'eager', 'fallback': 'raise'}" in lines[1]
    assert re.fullmatch(
        r"resumed at step 5 with compile policy on,backend=eager,fallback=raise \(same as saved: "
        r"True\); final loss \d+\.\d+; compiled calls 10, eager 0", lines[-1]
    ), lines[-1]
    assert result.stderr.strip() == "", result.stderr[-3000:]


def test_pytest_example_project_passes_on_two_workers() -> None:
    result = run("-m", "pytest", "-n", "2", "-q", "examples/pytest_project", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b9 passed\b", result.stdout)  # one test runs [compiled] and [eager]
    section = result.stdout.split(" compile policy ", 1)[1]  # the run report names the fallback
    assert "fell back: BackendCompilerFailed" in section
    assert "in test_model.py::test_a_fallback_is_listed_in_the_run_report" in section


def test_module_cli_prints_policy_torch_backends_and_checks() -> None:
    result = run("-m", "compile_policy", "--check", "--backend", "eager", env={"COMPILE_POLICY": "off"})
    assert result.returncode == 0, result.stderr
    assert "compile policy: disabled" in result.stdout
    assert "COMPILE_POLICY='off'" in result.stdout and "inductor" in result.stdout
    assert "checking the compiler anyway" in result.stdout
    assert re.search(r"check: OK: compiled in [\d.]+s; .*eager/compiled = [\d.]+x", result.stdout)


@pytest.mark.parametrize(
    ("backend", "code", "text"),
    [
        ("relu_compile_error_TESTING_ONLY", 1, "check: FAILED"),
        ("no-such-backend", 2, "check: FAILED (configuration)"),
    ],
)
def test_module_cli_check(backend: str, code: int, text: str) -> None:
    result = run("-m", "compile_policy", "--check", "--backend", backend)
    assert result.returncode == code, result.stdout + result.stderr
    assert text in result.stdout


def test_module_cli_help() -> None:
    result = run("-m", "compile_policy", "--help")
    assert result.returncode == 0 and "--check" in result.stdout


def test_ddp_example_under_torchrun_checks_consistency_on_both_ranks() -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    result = run_fresh(
        [str(torchrun), "--nproc-per-node", "2", "examples/ddp_train.py", "--steps", "5",
         "--backend", "aot_eager"],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}/2: step 0 loss" in result.stdout and "policy consistent" in result.stdout
        assert re.search(rf"rank {rank}/2: final loss .*compiled calls 5, eager 0, fallback 0", result.stdout)
