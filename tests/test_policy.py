"""CompilePolicy validation, the process default from the environment, explain()."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from compile_policy import (
    CompilePolicy,
    PolicyError,
    compile_disabled,
    compile_enabled,
    current_policy,
    explain,
    use_policy,
)
from conftest import run_fresh


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_fresh([sys.executable, "-c", textwrap.dedent(code)], env=env, timeout=60)


def test_policy_defaults_leave_everything_but_enabled_unset() -> None:
    policy = CompilePolicy()
    assert policy.enabled is True
    assert policy.set_fields() == {"enabled": True}


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        CompilePolicy().enabled = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("enabled", "yes", "True, False"),
        ("enabled", 1, "True, False"),
        ("mode", "fastest", "'max-autotune'"),
        ("fallback", "ignore", "'eager', 'raise'"),
        ("fullgraph", "true", "True, False or None"),
        ("dynamic", 0, "True, False or None"),
        ("backend", 3, "a backend name"),
        ("backend", "", "a backend name"),
        ("options", ["a"], "a mapping"),
    ],
)
def test_bad_field_value_is_a_policy_error_naming_value_and_allowed(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(PolicyError) as info:
        CompilePolicy(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(info.value)
    assert allowed in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_value_fails_at_the_call_that_creates_the_scope() -> None:
    with pytest.raises(PolicyError, match="'turbo'"):
        compile_enabled(mode="turbo")


def test_unknown_field_is_a_type_error_naming_allowed_fields() -> None:
    with pytest.raises(TypeError, match="bakend.*allowed: backend"):
        compile_enabled(bakend="eager")
    with pytest.raises(TypeError, match="compile_disabled"):
        compile_enabled(enabled=False)


def test_use_policy_rejects_non_policies() -> None:
    with pytest.raises(PolicyError, match="CompilePolicy"):
        use_policy({"enabled": False})  # type: ignore[arg-type]


def test_options_are_copied_and_read_only() -> None:
    options = {"max_autotune": False}
    policy = CompilePolicy(options=options)
    options["max_autotune"] = True
    assert policy.options == {"max_autotune": False}
    with pytest.raises(TypeError):
        policy.options["x"] = 1  # type: ignore[index]


def test_inner_fields_override_outer_and_unset_ones_are_inherited() -> None:
    with compile_enabled(backend="eager", fallback="raise"):
        with compile_enabled(mode="max-autotune"):
            policy = current_policy()
    assert (policy.backend, policy.mode, policy.fallback) == ("eager", "max-autotune", "raise")


def test_disabled_wins_until_an_inner_enabled() -> None:
    with compile_enabled(backend="eager"), compile_disabled():
        assert current_policy().enabled is False
        assert current_policy().backend == "eager"
        with compile_enabled():
            assert current_policy().enabled is True


def test_explain_lists_scopes_innermost_first_with_file_and_line() -> None:
    with compile_enabled(backend="eager"):
        line_outer = sys._getframe().f_lineno - 1
        with compile_disabled():
            line_inner = sys._getframe().f_lineno - 1
            text = explain()
    lines = text.splitlines()
    assert lines[0].startswith("compile policy: disabled")
    assert "compile_disabled()" in lines[1] and f"test_policy.py:{line_inner}" in lines[1]
    assert "compile_enabled(backend='eager')" in lines[2]
    assert f"test_policy.py:{line_outer}" in lines[2]
    assert "process default" in lines[3]


def test_explain_names_the_decorated_function() -> None:
    @compile_disabled
    def body() -> str:
        return explain()

    assert "@compile_disabled() on" in body() and "body" in body()


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, True),
        ({"COMPILE_POLICY": "off"}, False),
        ({"COMPILE_POLICY": "OFF"}, False),
        ({"COMPILE_POLICY": "0"}, False),
        ({"COMPILE_POLICY": "False"}, False),
        ({"COMPILE_POLICY": "on"}, True),
        ({"COMPILE_POLICY": "1"}, True),
        ({"COMPILE_POLICY": "TRUE"}, True),
        ({"TORCH_COMPILE_DISABLE": "1"}, False),
        ({"TORCH_COMPILE_DISABLE": "0"}, True),
        ({"COMPILE_POLICY": "on", "TORCH_COMPILE_DISABLE": "1"}, False),
    ],
)
def test_process_default_comes_from_the_environment(env: dict[str, str], enabled: bool) -> None:
    result = run_python(
        """
        from compile_policy import current_policy, explain
        print(current_policy().enabled)
        print(explain())
        """,
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(enabled)
    for name, value in env.items():
        assert f"{name}={value!r}" in result.stdout


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_compile_policy_is_unset_as_torch_reads_an_empty_variable(value: str) -> None:
    result = run_python(
        """
        from compile_policy import CompilePolicy, current_policy, explain
        print(current_policy() == CompilePolicy())
        print(explain())
        """,
        COMPILE_POLICY=value,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "True"
    assert f"COMPILE_POLICY={value!r} (empty: unset)" in result.stdout


def test_a_bad_compile_policy_of_5_mb_gets_one_short_message_naming_the_variable() -> None:
    # Set in the process: exec() takes at most 128 KiB per variable on Linux.
    result = run_python(
        """
        import os
        os.environ["COMPILE_POLICY"] = "on,fullgraph=" + "x" * 5_000_000
        from compile_policy import current_policy, PolicyError
        try:
            current_policy()
        except PolicyError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [message] = result.stdout.splitlines()
    assert len(message) < 500, message[:1000]
    assert message.startswith("environment variable COMPILE_POLICY='on,fullgraph=xxx")
    assert "…(5000013 chars)" in message and "allowed: fullgraph=on, 1, true, off" in message


@pytest.mark.parametrize("var", ["COMPILE_POLICY"])  # torch's variable has no bad values
def test_bad_environment_value_raises_on_first_use_naming_variable_and_value(var: str) -> None:
    result = run_python(
        """
        import compile_policy  # importing is fine: the value is read on first use
        from compile_policy import current_policy, PolicyError
        for attempt in range(2):
            try:
                current_policy()
            except PolicyError as error:
                print("PolicyError:", error)
        """,
        **{var: "maybe"},
    )
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("PolicyError")]
    assert len(errors) == 2  # never cached as a default
    assert f"{var}='maybe'" in errors[0] and "on, 1, true, off, 0, false" in errors[0]


def test_import_does_not_import_torch() -> None:
    result = run_python(
        """
        import sys
        import compile_policy
        from compile_policy import compile_disabled, policy_compiled
        step = policy_compiled(lambda x: x + 1)
        with compile_disabled():
            assert step(1) == 2
        print("torch" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_torch_is_imported_on_the_first_compiled_call() -> None:
    result = run_python(
        """
        import sys
        from compile_policy import policy_compiled
        step = policy_compiled(lambda x: x * 2, backend="eager")
        before = "torch" in sys.modules
        assert step(3) == 6  # compiled (an int: Dynamo makes no graph, but torch loads)
        print(before, "torch" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True"


def test_explain_gives_each_use_of_a_shared_scope_its_own_line() -> None:
    lines = []
    for _ in range(2):  # the second pass reuses the frames the first pass made
        with compile_disabled():
            lines.append((sys._getframe().f_lineno - 1, explain()))
        with compile_disabled():
            lines.append((sys._getframe().f_lineno - 1, explain()))
    for line, text in lines:
        assert f"test_policy.py:{line}" in text.splitlines()[1]
    assert lines[0][0] != lines[1][0]
