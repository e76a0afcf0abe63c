"""The pytest plugin, exercised with real inner pytest sessions (pytester)."""

from __future__ import annotations

import pytest

# Imported here, before any in-process inner run: --compile-policy=off governs plain
# torch.compile code, which imports torch and Dynamo, and pytester's sys.modules snapshot
# would drop them (neither can be imported twice in a process).
import torch._dynamo  # noqa: F401

from compile_policy import current_policy

pytest_plugins = ["pytester"]

PROBE = """
import pytest
from compile_policy import current_policy

def test_probe():
    print("POLICY", current_policy().enabled)
"""


def enabled_seen(result: pytest.RunResult) -> list[str]:
    return [line.split()[-1] for line in result.outlines if "POLICY " in line]


@pytest.fixture
def probe(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_probe=PROBE)
    return pytester


def test_baseline_from_option(probe: pytest.Pytester) -> None:
    result = probe.runpytest("-s", "--compile-policy=off", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert enabled_seen(result) == ["False"]
    result.stdout.fnmatch_lines(["compile-policy: baseline off (from pytest option --compile-policy=off)*"])


def test_baseline_from_ini(probe: pytest.Pytester) -> None:
    probe.makeini("[pytest]\ncompile_policy = off\n")
    result = probe.runpytest("-s", "-p", "no:xdist")
    assert enabled_seen(result) == ["False"]
    result.stdout.fnmatch_lines(["compile-policy: baseline off (from pytest ini compile_policy = off)*"])


def test_option_wins_over_ini(probe: pytest.Pytester) -> None:
    probe.makeini("[pytest]\ncompile_policy = off\n")
    result = probe.runpytest("-s", "--compile-policy=on", "-p", "no:xdist")
    assert enabled_seen(result) == ["True"]


def test_without_option_or_ini_the_environment_default_applies(
    probe: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPILE_POLICY", "off")
    result = probe.runpytest_subprocess("-s", "-p", "no:xdist")
    assert enabled_seen(result) == ["False"]
    result.stdout.fnmatch_lines(["compile-policy: baseline off (from environment COMPILE_POLICY='off')*"])


def test_bad_option_value_is_a_usage_error(probe: pytest.Pytester) -> None:
    result = probe.runpytest("--compile-policy=maybe", "-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--compile-policy='maybe' is not a compile policy*allowed:*on, 1, true, off, 0, false*"]
    )


def test_bad_ini_value_is_a_usage_error(probe: pytest.Pytester) -> None:
    probe.makeini("[pytest]\ncompile_policy = sometimes\n")
    result = probe.runpytest("-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*compile_policy = 'sometimes' is not a compile policy*allowed:*on, 1, true, off, 0, false*"]
    )


MARKERS = """
import pytest
from compile_policy import current_policy

pytestmark = pytest.mark.compile_disabled

@pytest.fixture
def seen_in_fixture():
    print("SETUP", current_policy().enabled)
    yield
    print("TEARDOWN", current_policy().enabled)

def test_module_marker(seen_in_fixture):
    print("POLICY", current_policy().enabled)

@pytest.mark.compile_enabled(backend="eager")
def test_function_marker_over_module(seen_in_fixture):
    print("POLICY", current_policy().enabled, current_policy().backend)

@pytest.mark.compile_enabled
class TestClass:
    def test_class_marker(self):
        print("POLICY", current_policy().enabled)

    @pytest.mark.compile_disabled
    def test_method_marker_over_class(self):
        print("POLICY", current_policy().enabled)
"""


def test_markers_on_module_class_and_function_cover_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_markers=MARKERS)
    result = pytester.runpytest("-s", "-v", "--strict-markers", "-p", "no:xdist")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*test_module_marker SETUP False",
            "POLICY False",
            "*PASSED*TEARDOWN False",
            "*test_function_marker_over_module SETUP True",
            "POLICY True eager",
            "*PASSED*TEARDOWN True",
            "*test_class_marker POLICY True",
            "*test_method_marker_over_class POLICY False",
        ]
    )


def test_bad_marker_field_fails_that_test_with_the_policy_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.compile_enabled(mode="warp-speed")
        def test_bad():
            pass

        @pytest.mark.compile_enabled(bakend="eager")
        def test_unknown():
            pass

        def test_fine():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*PolicyError: mode='warp-speed' is not a torch.compile mode*"])
    result.stdout.fnmatch_lines(["*bakend*allowed keyword fields: backend*"])


def test_fixture_gives_policy_and_explain_and_undoes_changes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from compile_policy import current_policy

        @pytest.mark.compile_disabled
        def test_reads(compile_policy):
            assert compile_policy.enabled is False
            assert "@pytest.mark.compile_disabled" in compile_policy.explain()

        def test_changes(compile_policy):
            compile_policy.enable(backend="eager", fallback="raise")
            assert compile_policy.policy.fallback == "raise"
            assert "compile_policy fixture" in compile_policy.explain()

        def test_after():
            assert current_policy().fallback is None
        """
    )
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(passed=3)


LEAKY = """
from compile_policy import compile_disabled, current_policy

def test_1_leaks():
    compile_disabled().__enter__()

def test_2_after():
    print("POLICY", current_policy().enabled)
    assert current_policy().enabled
"""


@pytest.mark.filterwarnings("default::compile_policy.PolicyLeakWarning")  # in-process run
@pytest.mark.parametrize(
    ("mode", "outcomes"),
    [
        ("error", {"passed": 2, "errors": 1}),
        ("warn", {"passed": 2, "warnings": 1}),
        ("off", {"passed": 2}),
    ],
)
def test_leak_guard_modes_and_the_next_test_sees_the_baseline(
    pytester: pytest.Pytester, mode: str, outcomes: dict[str, int]
) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest("-s", "-p", "no:xdist", f"--compile-policy-leaks={mode}")
    result.assert_outcomes(**outcomes)
    assert enabled_seen(result) == ["True"]
    leak_lines = [line for line in result.outlines if "leaked a compile policy" in line]
    if mode == "off":
        assert leak_lines == []
    else:
        assert "test_leaky.py::test_1_leaks" in leak_lines[0]
        assert "compile_disabled()" in leak_lines[0] and "enabled=False" in leak_lines[0]


def test_leak_guard_is_error_by_default_and_ini_can_change_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=2, errors=1)
    pytester.makeini("[pytest]\ncompile_policy_leaks = off\n")
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=2)


def test_a_yield_fixture_holding_a_scope_is_not_a_leak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from compile_policy import compile_disabled, current_policy

        @pytest.fixture
        def eager():
            with compile_disabled():
                yield

        def test_uses_it(eager):
            assert not current_policy().enabled
        """
    )
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


SUITE = """
import pytest
from compile_policy import compile_disabled, current_policy

pytestmark = pytest.mark.compile_enabled(backend="eager")

@pytest.mark.parametrize("n", range(6))
def test_scoped(n):
    with compile_disabled():
        assert not current_policy().enabled
    assert current_policy().enabled and current_policy().backend == "eager"

@pytest.mark.compile_disabled
@pytest.mark.parametrize("n", range(6))
def test_marked(n):
    assert not current_policy().enabled

def test_leaks():
    compile_disabled().__enter__()

@pytest.mark.parametrize("n", range(6))
def test_after_leak(n):
    assert current_policy().enabled
"""


def outcome_lines(result: pytest.RunResult) -> list[str]:
    return sorted(
        line.split(" ", 1)[0] + " " + line.split(" ", 1)[1].split("::")[-1].split(" ")[0]
        for line in result.outlines
        if line.startswith(("PASSED", "FAILED", "ERROR"))
    )


def test_same_outcomes_without_xdist_with_two_workers_and_reversed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(
        """
        def pytest_collection_modifyitems(config, items):
            if config.getoption("--reverse-order", False):
                items.reverse()

        def pytest_addoption(parser):
            parser.addoption("--reverse-order", action="store_true")
        """
    )
    runs = {
        "serial": pytester.runpytest_subprocess("-rA", "-p", "no:xdist", "--compile-policy=off"),
        "xdist": pytester.runpytest_subprocess("-rA", "-n", "2", "--compile-policy=off"),
        "reversed": pytester.runpytest_subprocess(
            "-rA", "-p", "no:xdist", "--compile-policy=off", "--reverse-order"
        ),
    }
    outcomes = {name: outcome_lines(result) for name, result in runs.items()}
    assert outcomes["serial"] == outcomes["xdist"] == outcomes["reversed"]
    for result in runs.values():
        result.assert_outcomes(passed=19, errors=1)


def test_option_and_ini_reach_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from compile_policy import current_policy

        @pytest.mark.parametrize("n", range(8))
        def test_on_worker(n):
            assert current_policy().enabled is False
        """
    )
    pytester.runpytest_subprocess("-n", "2", "--compile-policy=off").assert_outcomes(passed=8)
    pytester.makeini("[pytest]\ncompile_policy = off\n")
    pytester.runpytest_subprocess("-n", "auto").assert_outcomes(passed=8)


def test_a_plugin_only_session_never_imports_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys
        import pytest

        @pytest.mark.compile_disabled
        def test_no_torch(compile_policy):
            assert compile_policy.enabled is False

        def test_zz_last():
            assert "torch" not in sys.modules
        """
    )
    pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:randomly").assert_outcomes(passed=2)


def test_outer_session_baseline_is_untouched_by_inner_sessions() -> None:
    assert current_policy().enabled
