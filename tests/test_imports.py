"""What importing the package loads: the import stays cheap (its cost is a claim of
``make bench``; these tests keep its structure: what loads lazily stays lazy)."""

from __future__ import annotations

import json
import sys

import pytest

import compile_policy
from conftest import run_fresh

#: The compile machinery, loaded on first use of policy_compiled (see __init__.py).
MACHINERY = {
    "compile_policy._compiled.front_door", "compile_policy._compiled.compile_state",
    "compile_policy._compiled.hot_path",
}


def test_import_and_the_plugin_load_neither_torch_nor_logging_nor_the_compile_machinery() -> None:
    code = (
        "import json, sys; import compile_policy; first = sorted(sys.modules); "
        "import compile_policy.pytest_plugin; second = sorted(sys.modules); "
        "from compile_policy import policy_compiled; "
        "print(json.dumps([first, second, sorted(sys.modules)]))"
    )
    result = run_fresh([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    after_import, after_plugin, after_use = map(set, json.loads(result.stdout))
    # typing: 3-5 ms of the import, needed only by type checkers (TYPE_CHECKING = False);
    # threading: about 1 ms, needed only by the messages of scope errors.
    assert not {"torch", "logging", "typing", "threading"} & after_import
    # dataclasses (with inspect, re, enum behind it): about 20 ms, three times the rest of the
    # import; CompilePolicy and the scope decorators load it on first use.
    assert not {"dataclasses", "inspect", "compile_policy._policy.value"} & after_import
    assert "torch" not in after_plugin  # pytest itself imports logging
    assert not MACHINERY & after_plugin
    assert "compile_policy.pytest_plugin._isolation" not in after_plugin  # only for its settings
    assert after_use >= MACHINERY and "torch" not in after_use


def test_every_public_name_resolves_and_is_listed_by_dir() -> None:
    for name in compile_policy.__all__:
        assert getattr(compile_policy, name) is not None, name
    assert set(compile_policy.__all__) <= set(dir(compile_policy))


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'policy_compile'"):
        compile_policy.policy_compile  # type: ignore[attr-defined]  # noqa: B018


def test_the_policy_grammar_loads_only_when_there_is_text_to_parse() -> None:
    # Every pytest run reads the process default; without COMPILE_POLICY it parses nothing.
    code = (
        "import sys; import compile_policy; compile_policy.current_policy(); "
        "compile_policy.explain(); print('compile_policy._policy.text' in sys.modules)"
    )
    result = run_fresh([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    result = run_fresh([sys.executable, "-c", code], env={"COMPILE_POLICY": "max-autotune"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


FIRST_SCOPE = """
import sys, threading
import compile_policy
from compile_policy import compile_disabled, compile_enabled, current_policy

barrier, got = threading.Barrier(8), []

def first():
    barrier.wait()
    got.append((compile_disabled(), compile_enabled()))

threads = [threading.Thread(target=first) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert len(set(got)) == 1 and got[0] == (compile_disabled(), compile_enabled()), got
with compile_disabled():
    assert current_policy().enabled is False
print("compile_policy._policy.value" in sys.modules, "compile_policy._context.decorators" in sys.modules)
"""


def test_the_first_scope_loads_compile_policy_and_every_thread_gets_the_same_scope() -> None:
    result = run_fresh([sys.executable, "-c", FIRST_SCOPE])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]  # nothing decorated yet


def test_the_fields_a_scope_may_set_are_compile_policys_but_enabled() -> None:
    from dataclasses import fields

    from compile_policy import CompilePolicy
    from compile_policy._context import scopes

    assert ("enabled", *scopes._SETTABLE) == tuple(f.name for f in fields(CompilePolicy))
