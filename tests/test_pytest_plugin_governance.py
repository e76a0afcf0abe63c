"""The pytest plugin on a suite whose own code calls ``torch.compile`` (not policy_compiled):
``--compile-policy=both`` governs it by default, so its ``[eager]`` items compile nothing and
run no compiled frame; the opt-out leaves it alone and the run report lists those items."""

from __future__ import annotations

import json
import sys

import pytest

# Imported before any in-process inner run: see test_pytest_plugin_modes.py.
import torch
import torch._dynamo

from compile_policy._governance import install as governance
from conftest import run_fresh

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="module")
def _compiled_once() -> None:
    """A compile in this process before any inner run: pytester's sys.modules snapshot would
    drop the modules a first compile imports (inductor's among them), and they cannot be
    imported twice."""
    torch.compile(lambda t: t + 1, backend="eager")(torch.ones(1))

# A counting backend, and per test the graphs it compiled and ran, written to a file.
CONFTEST = """
import json, pytest

SEEN = {"compiles": 0, "runs": 0}

def counting(gm, example_inputs):
    SEEN["compiles"] += 1
    def run(*args):
        SEEN["runs"] += 1
        return gm.forward(*args)
    return run

@pytest.fixture(autouse=True)
def _record(request):
    before = dict(SEEN)
    yield
    with open("record.jsonl", "a") as out:
        out.write(json.dumps([request.node.name, SEEN["compiles"] - before["compiles"],
                              SEEN["runs"] - before["runs"]]) + "\\n")
"""

# The suite's own code: a function and a module compiled where they are defined.
SUITE = """
import torch
from conftest import counting

@torch.compile(backend=counting)
def double(t):
    return t * 2

class AddOne(torch.nn.Module):
    def forward(self, t):
        return t + 1

add_one = torch.compile(AddOne(), backend=counting)

def test_function():
    assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))

def test_module():
    assert torch.equal(add_one(torch.ones(2)), torch.full((2,), 2.0))
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def _recorded(pytester: pytest.Pytester) -> dict[str, tuple[int, int]]:
    lines = (pytester.path / "record.jsonl").read_text().splitlines()
    return {name: (compiles, runs) for name, compiles, runs in map(json.loads, lines)}


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    was_governed = governance.is_governed()
    result = pytester.runpytest("-p", "no:xdist", "--compile-policy=both", *args)
    # The plugin puts back the governance it installed: the inner run leaves this process as it was.
    assert governance.is_governed() is was_governed
    return result


@pytest.mark.parametrize("spelled_out", [(), ("--compile-policy-govern-torch",)], ids=["default", "flag"])
def test_both_mode_eager_items_compile_nothing_and_run_no_compiled_frame(
    suite: pytest.Pytester, spelled_out: tuple[str, ...]
) -> None:
    result = _run(suite, "--compile-policy-reset=test", *spelled_out)
    result.assert_outcomes(passed=4)
    recorded = _recorded(suite)
    assert recorded["test_function[eager]"] == recorded["test_module[eager]"] == (0, 0)
    assert recorded["test_function[compiled]"] == recorded["test_module[compiled]"] == (1, 1)
    result.stdout.fnmatch_lines([
        "compile-policy: baseline both (*); plain torch.compile code follows it (governed); *",
        "calls per mode (policy-compiled objects and governed plain torch.compile code):",
        "  [[]compiled]: 2 tests, 2 compiled calls, 0 eager calls",
        "  [[]eager]: 2 tests, 0 compiled calls, 2 eager calls",
    ])
    result.stdout.no_fnmatch_line("compiled inside *")


def test_with_the_opt_out_the_report_lists_eager_items_that_compiled(suite: pytest.Pytester) -> None:
    result = _run(suite, "--compile-policy-reset=test", "--compile-policy-govern-torch=no")
    result.assert_outcomes(passed=4)
    assert _recorded(suite)["test_function[eager]"] == (1, 1)  # not governed: compiled
    result.stdout.fnmatch_lines([
        "compile-policy: baseline both (*); plain torch.compile code does not follow it "
        "(pytest option --compile-policy-govern-torch=no); *",
        "compiled inside 2 tests meant to run eagerly *",
        "  test_suite.py::test_function[[]eager]: 1 graph compiled, 0 compiled calls",
        "  test_suite.py::test_module[[]eager]: 1 graph compiled, 0 compiled calls",
        "  what to do: *",
    ])


def test_a_compile_disabled_marker_governs_from_its_test_on(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_marked="""
import pytest, torch
from test_suite import double

@pytest.mark.compile_disabled
def test_marked():
    double(torch.ones(3))
""")
    was_governed = governance.is_governed()
    result = suite.runpytest("-p", "no:xdist", "test_marked.py")
    assert governance.is_governed() is was_governed
    result.assert_outcomes(passed=1)
    assert _recorded(suite)["test_marked"] == (0, 0)


def test_the_ini_opts_out(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\ncompile_policy_govern_torch = false\n")
    result = _run(suite, "--compile-policy-reset=test")
    result.assert_outcomes(passed=4)
    assert _recorded(suite)["test_module[eager]"] == (1, 1)


@pytest.mark.parametrize(
    ("args", "ini"),
    [(("--compile-policy=on,stance=fail_on_recompile",), ""),
     ((), "compile_policy = on,stance=eager_on_recompile\n")],
    ids=["option", "ini"],
)
def test_a_stance_without_governance_is_a_one_line_usage_error(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str
) -> None:
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if "compile-policy" in line]
    assert "stance=" in line and "--compile-policy-govern-torch=yes" in line
    assert "INTERNALERROR" not in result.stderr.str()


def test_a_flag_followed_by_a_path_says_to_write_yes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("--compile-policy-govern-torch", "test_x.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--compile-policy-govern-torch=yes when a path follows it*"])


def test_compile_policy_with_a_stance_and_the_flag_works(pytester: pytest.Pytester) -> None:
    test_file = pytester.makepyfile(test_x="""
import torch._dynamo.eval_frame as eval_frame

def test_x():
    assert eval_frame._stance.stance == "fail_on_recompile"
""")
    done = run_fresh(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
         "--compile-policy-govern-torch", "-q", str(test_file)],
        env={"COMPILE_POLICY": "on,stance=fail_on_recompile"}, cwd=pytester.path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_where_torch_lacks_governance_the_header_says_why_and_the_run_goes_on(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compile_policy.pytest_plugin import _govern as pytest_governance

    monkeypatch.setattr(pytest_governance, "governance_unsupported", lambda: "torch 9.9 lacks it")
    result = _run(suite)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "compile-policy: baseline both (*); plain torch.compile code does not follow it: "
        "torch 9.9 lacks it; *",
    ])
