"""The pytest plugin's second round, with real inner pytest sessions (pytester): both modes,
the run report, Dynamo resets, per-worker inductor caches, the header and usage errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Imported here, before any in-process inner run: pytester's sys.modules snapshot would drop
# a torch first imported by an inner run, and torch cannot be imported twice in a process.
import torch._dynamo  # noqa: F401

pytest_plugins = ["pytester"]

CHECK_MODE = """
import pytest
from compile_policy import current_policy

@pytest.fixture(autouse=True)
def _mode_matches_id(request):
    # The [compiled] / [eager] item runs with compile enabled / disabled, fixtures included.
    name, enabled = request.node.name, current_policy().enabled
    assert enabled if name.endswith("compiled]") else not name.endswith("eager]") or not enabled
"""

BOTH = """
import pytest
from compile_policy import current_policy

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    pass

def test_plain():
    print("BACKEND", current_policy().backend)

@pytest.mark.compile_disabled
def test_marked_off():
    assert not current_policy().enabled

@pytest.mark.compile_enabled(backend="eager")
def test_marked_on():
    assert current_policy().enabled and current_policy().backend == "eager"

class TestGroup:
    def test_method(self):
        pass
"""

BOTH_IDS = sorted(
    f"test_both.py::{name}"
    for name in [
        "test_param[1-compiled]", "test_param[1-eager]", "test_param[2-compiled]",
        "test_param[2-eager]", "test_plain[compiled]", "test_plain[eager]", "test_marked_off",
        "test_marked_on", "TestGroup::test_method[compiled]", "TestGroup::test_method[eager]",
    ]
)


def passed_ids(result: pytest.RunResult) -> list[str]:
    return sorted(line.split()[1] for line in result.outlines if line.startswith("PASSED "))


def test_both_modes_run_each_variant_once_serially_and_under_xdist_marked_tests_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CHECK_MODE)
    pytester.makepyfile(test_both=BOTH)
    serial = pytester.runpytest(
        "-s", "-rA", "--strict-markers", "-p", "no:xdist", "--compile-policy=Both,backend=eager"
    )
    serial.assert_outcomes(passed=10)
    assert passed_ids(serial) == BOTH_IDS
    serial.stdout.fnmatch_lines(
        ["compile-policy: baseline both ([compiled] and [eager]; marked tests, unittest.TestCase "
         "tests and doctests once; from pytest option --compile-policy=Both,backend=eager); "
         "plain torch.compile code follows it (governed); inductor cache: shared"]
    )
    # both's fields hold in both runs
    assert [line.split()[-1] for line in serial.outlines if "BACKEND " in line] == ["eager"] * 2
    pytester.makeini("[pytest]\ncompile_policy = BOTH\n")  # the ini twin, any case
    xdist = pytester.runpytest_subprocess("-rA", "--strict-markers", "-n", "2")
    xdist.assert_outcomes(passed=10)
    assert passed_ids(xdist) == BOTH_IDS  # each variant exactly once in the whole run


PARAMS = '''
"""A doctest runs once, under the baseline.

>>> 1 + 1
2
"""
import unittest

import pytest
from compile_policy import current_policy

@pytest.mark.parametrize("n", [
    1,
    pytest.param(2, marks=pytest.mark.compile_disabled),
    pytest.param(3, marks=pytest.mark.compile_enabled(backend="eager")),
])
def test_param(n):
    if n == 2:
        assert not current_policy().enabled
    if n == 3:
        assert current_policy().enabled and current_policy().backend == "eager"

@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.compile_both)])
def test_param_both(n):
    pass

@pytest.mark.compile_disabled
@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.compile_both)])
def test_param_mark_is_closer(n):
    if n == 1:
        assert not current_policy().enabled

class TestUnit(unittest.TestCase):
    def test_unit(self):
        pass
'''


def test_a_parameter_sets_own_marker_decides_its_modes_serially_and_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CHECK_MODE)
    pytester.makepyfile(test_params=PARAMS)
    args = ("-rA", "--strict-markers", "--doctest-modules", "-p", "no:randomly")
    once = ["test_param[1]", "test_param[2]", "test_param[3]", "test_param_both[1]",
            "test_param_mark_is_closer[1]"]
    twice = [f"{name}[2-{mode}]" for name in ("test_param_both", "test_param_mark_is_closer")
             for mode in ("compiled", "eager")]
    unparametrized = ["TestUnit::test_unit", "test_params"]  # a unittest test, the doctest
    plain = pytester.runpytest(*args, "-p", "no:xdist")
    assert passed_ids(plain) == sorted(f"test_params.py::{n}" for n in [*once, *twice, *unparametrized])
    both_ids = sorted(
        f"test_params.py::{name}"
        for name in ["test_param[1-compiled]", "test_param[1-eager]", "test_param[2]", "test_param[3]",
                     "test_param_both[1-compiled]", "test_param_both[1-eager]",
                     "test_param_mark_is_closer[1]", *twice, *unparametrized]
    )
    serial = pytester.runpytest(*args, "-p", "no:xdist", "--compile-policy=both")
    assert passed_ids(serial) == both_ids
    serial.stdout.fnmatch_lines(["*unittest.TestCase tests and doctests once*"])
    xdist = pytester.runpytest_subprocess(*args, "-n", "2", "--compile-policy=both")
    assert passed_ids(xdist) == both_ids  # each item exactly once in the whole run


MARKER = """
import pytest
from compile_policy import compile_enabled, current_policy

@pytest.mark.compile_both
def test_fn():
    pass

@pytest.mark.compile_both
class TestBoth:
    def test_a(self):
        pass

    @pytest.mark.compile_disabled
    def test_closer_marker_runs_once(self):
        assert not current_policy().enabled

def test_plain():
    assert current_policy().enabled

@pytest.mark.compile_disabled("eager")
def test_disabled_with_arguments():
    pass

def test_fixture_disable_inside_a_with_block(compile_policy):
    with compile_enabled(backend="eager"):
        compile_policy.disable()
        assert not current_policy().enabled
    assert not current_policy().enabled  # for the rest of the test, not a ScopeError
    compile_policy.enable(fallback="raise")
    assert current_policy().fallback == "raise"

def test_after_the_fixture():
    assert current_policy().enabled and current_policy().fallback is None
"""


def test_the_marker_alone_a_marker_with_arguments_and_the_fixture_in_a_with_block(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CHECK_MODE)
    pytester.makepyfile(test_marker=MARKER)
    result = pytester.runpytest(
        "-rA", "-v", "--strict-markers", "-p", "no:xdist", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=8, failed=1)
    assert passed_ids(result) == sorted(
        f"test_marker.py::{name}"
        for name in [
            "test_fn[compiled]", "test_fn[eager]", "TestBoth::test_a[compiled]",
            "TestBoth::test_a[eager]", "TestBoth::test_closer_marker_runs_once", "test_plain",
            "test_fixture_disable_inside_a_with_block", "test_after_the_fixture",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*TypeError: @pytest.mark.compile_disabled takes no arguments; got ('eager')*"]
    )
    # -v and nothing fell back: one line says so, and no section.
    result.stdout.fnmatch_lines(["compile policy: no compile fallbacks or skips"])
    assert not any(re.match(r"=+ compile policy =+", line) for line in result.outlines)


REPORT = """
import pytest
import torch
from compile_policy import policy_compiled

def broken(gm, example_inputs):
    raise RuntimeError("simulated compiler bug")

def add_one(t):
    return t + 1

class Agent:
    def __init__(self, scale):
        self.scale = scale

    def act(self, t):
        return t * self.scale

def test_falls_back():
    policy_compiled(add_one, backend=broken)(torch.ones(2))

@torch._dynamo.config.patch(recompile_limit=1)
def test_skips():
    torch._dynamo.reset()
    agent = Agent(1.0)
    step = policy_compiled(agent.act, backend="eager")
    step(torch.ones(2))
    agent.scale = 2.0  # a guard fails, over the limit: Dynamo runs it without compiled code
    step(torch.ones(2))

def test_quiet():
    pass
"""

CACHE_PROBE = """
import os
import pytest

@pytest.mark.parametrize("n", range(6))
def test_cache_dir(n):
    with open(os.path.join(os.path.dirname(__file__), "dirs.txt"), "a") as out:
        print(os.environ.get("PYTEST_XDIST_WORKER", "main"), os.environ["TORCHINDUCTOR_CACHE_DIR"],
              file=out)
"""

IGNORE_TORCH_WARNINGS = """
    ignore:Failed to initialize NumPy:UserWarning
    ignore::DeprecationWarning
"""


def report_lines(result: pytest.RunResult) -> list[str]:
    start = next(i for i, line in enumerate(result.outlines) if re.match(r"=+ compile policy =+", line))
    end = next(i for i in range(start + 1, len(result.outlines)) if result.outlines[i].startswith("="))
    return result.outlines[start + 1 : end]


def cache_dirs(path: Path) -> dict[str, str]:
    lines = (path / "dirs.txt").read_text().split("\n")
    return dict(line.split(" ", 1) for line in lines if line)


def test_report_section_serial_under_filterwarnings_error_and_per_worker_caches(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(
        test_report=REPORT, test_cache=CACHE_PROBE, test_reset_a=RESET, test_reset_b=RESET_OTHER_MODULE,
        helper=HELPER,
    )
    pytester.makeini("[pytest]\nfilterwarnings =\n    error" + IGNORE_TORCH_WARNINGS)
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:xdist", "-p", "no:randomly", "--compile-policy=ON", "--compile-policy-leaks=warn",
        "--compile-policy-reset=module", "--compile-policy-cache=Per-Worker",
    )
    # The warnings became errors: both tests fail, and the section still names them.
    result.assert_outcomes(passed=10, failed=2)
    # reset=module: the second test of a module compiles nothing new, the next module does.
    assert [line.split()[-1] for line in result.outlines if "COMPILES" in line] == ["1", "1", "2"]
    result.stdout.fnmatch_lines(
        ["compile-policy: baseline on (from pytest option --compile-policy=ON); plain torch.compile "
         "code follows compile_disabled and compile_both markers (governed from the first such "
         "test); leaks: warn; "
         "dynamo reset: before each module; inductor cache: per-worker under *compile-policy-*"]
    )
    lines = report_lines(result)
    assert lines[:3] == [
        "policy_compiled(add_one) fell back: BackendCompilerFailed from RuntimeError: "
        "simulated compiler bug",
        "  for backend='broken', mode=None, fullgraph=False, dynamic=None, options=None",
        "  in test_report.py::test_falls_back (failed)",
    ]
    assert lines[3].startswith("policy_compiled(Agent.act) skipped: ")
    assert lines[4:6] == [
        "  for backend='eager', mode=None, fullgraph=False, dynamic=None, options=None",
        "  in test_report.py::test_skips (failed)",
    ]
    assert lines[6] == "calls per mode (policy-compiled objects and governed plain torch.compile code):"
    (serial_dir,) = set(cache_dirs(pytester.path).values())
    assert re.search(r"compile-policy-inductor-[^/]+/main$", serial_dir)
    assert not Path(serial_dir).exists()  # the run's own temporary directory is removed


def test_report_section_from_xdist_workers_and_caches_under_the_users_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    users = pytester.path / "users-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(users))
    pytester.makepyfile(test_report=REPORT, test_cache=CACHE_PROBE)
    pytester.makeini("[pytest]\ncompile_policy_cache = per-worker\nfilterwarnings =" + IGNORE_TORCH_WARNINGS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=9, warnings=2)
    lines = report_lines(result)
    assert "  in test_report.py::test_falls_back" in lines
    assert "  in test_report.py::test_skips" in lines
    assert lines[0].startswith("policy_compiled(add_one) fell back: ") or lines[3].startswith(
        "policy_compiled(add_one) fell back: "
    )
    dirs = cache_dirs(pytester.path)
    assert dirs == {worker: str(users / worker) for worker in dirs}
    assert len(dirs) == 2  # one directory per worker, under the user's


RESET = """
import torch
import helper

def test_1():
    helper.compile_and_count()

def test_2():
    helper.compile_and_count()
"""

RESET_OTHER_MODULE = """
import helper

def test_3(compile_policy):
    if helper.RESET_IN_TEST:
        compile_policy.reset()
    helper.compile_and_count()
"""

HELPER = """
import torch

RESET_IN_TEST = False
COMPILES = []

def backend(gm, example_inputs):
    COMPILES.append(1)
    return gm.forward

def f(t):
    return t * 3 + 1

def compile_and_count():
    torch.compile(f, backend=backend)(torch.ones(3))
    print("COMPILES", len(COMPILES))
"""


@pytest.mark.parametrize(
    ("reset", "fixture_reset", "seen"),
    [("off", True, ["1", "1", "2"]), ("test", False, ["1", "2", "3"])],  # module: see above
)
def test_dynamo_reset_makes_the_next_test_or_module_see_a_cold_cache(
    pytester: pytest.Pytester, reset: str, fixture_reset: bool, seen: list[str]
) -> None:
    pytester.makepyfile(
        test_a=RESET, test_b=RESET_OTHER_MODULE,
        helper=HELPER.replace("RESET_IN_TEST = False", f"RESET_IN_TEST = {fixture_reset}"),
    )
    # In a process of its own when it resets: a reset imports torch modules that an
    # in-process run's sys.modules snapshot would drop, and torch cannot import them twice.
    run = pytester.runpytest if reset == "off" else pytester.runpytest_subprocess
    result = run("-s", "-p", "no:xdist", "-p", "no:randomly", f"--compile-policy-reset={reset}")
    result.assert_outcomes(passed=3)
    assert [line.split()[-1] for line in result.outlines if "COMPILES" in line] == seen


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--compile-policy-reset=always"], "",
         "--compile-policy-reset='always' is not allowed; allowed (any case): test, module, off"),
        (["--compile-policy-cache=private"], "",
         "--compile-policy-cache='private' is not allowed; allowed (any case): shared, per-worker"),
        (["--compile-policy-leaks=loud"], "",
         "--compile-policy-leaks='loud' is not allowed; allowed (any case): error, warn, off"),
        ([], "compile_policy_reset = sometimes",
         "ini option compile_policy_reset = 'sometimes' is not allowed; allowed (any case): test, "
         "module, off"),
        ([], "compile_policy_cache = all",
         "ini option compile_policy_cache = 'all' is not allowed; allowed (any case): shared, "
         "per-worker"),
    ],
)
def test_bad_values_of_the_new_options_and_ini_keys_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest("-p", "no:xdist", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.errlines == [f"ERROR: compile-policy: {message}", ""] or (
        f"ERROR: compile-policy: {message}" in result.errlines
    )


def test_a_bad_compile_policy_variable_is_one_usage_error_at_start(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPILE_POLICY", "sometimes")
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "COMPILE_POLICY" in line]
    assert len(errors) == 1 and "COMPILE_POLICY='sometimes' is not a compile policy" in errors[0]
    assert "passed" not in result.stdout.str() and "failed" not in result.stdout.str()


def test_a_scope_left_active_at_import_is_the_headers_baseline_source_and_a_leak(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest("from compile_policy import compile_disabled\n\ncompile_disabled().__enter__()\n")
    pytester.makepyfile(
        test_imports="""
        from compile_policy import compile_enabled, current_policy

        compile_enabled(backend="eager").__enter__()  # dropped: tests start from the baseline

        def test_starts_from_the_reported_baseline():
            assert not current_policy().enabled and current_policy().backend is None
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    result.stdout.fnmatch_lines(
        ["compile-policy: baseline off (from a scope left active at import: compile_disabled() "
         "at conftest.py:3: enabled=False)*"]
    )
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # leaks=error: the run fails
    section = "\n".join(report_lines(result))
    assert "while conftest files and plugins were imported: compile_disabled() at conftest.py:3" in section
    assert "while test modules and conftest files were imported: compile_enabled(backend='eager')" in section


def test_a_bad_both_with_fields_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:xdist", "--compile-policy=both,fallback=never")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: compile-policy: --compile-policy='both,fallback=never'*"
                                 "fallback='never' is not allowed*or both*"])
