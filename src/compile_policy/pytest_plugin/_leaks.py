"""The leak guard: a test (or an import) that leaves a policy scope active.

pytest never isolates context variables between tests, so a ``__enter__()`` without its
``__exit__()`` in one test would silently change every later test in the same process.
After each test's teardown the guard compares the stack with what the test started from,
restores the baseline, and reports a difference per ``--compile-policy-leaks``. A scope
left active while conftest files, plugins or test modules were imported is reported too.
"""

from __future__ import annotations

import warnings

import pytest

from .._base.errors import PolicyError, PolicyLeakWarning
from .._context import frames as _frames
from .._context import stack as _stack
from .._context.stack import current_policy

__all__ = ["PluginLabel", "check_after_test", "describe_stack", "import_leak", "import_leak_message"]


class PluginLabel(str):
    """The owner of a frame the plugin pushed (baseline, markers, modes): such frames are
    never a leak, also when an in-process inner pytest session (pytester) finds them."""


def import_leak(top: _frames._Frame | None) -> _frames._Frame | None:
    """``top`` if a scope of the user's is on top of the stack found at start, else None."""
    if top is None or isinstance(top.owner, PluginLabel) or getattr(
        top.owner, "outlives_scopes", False  # the fixture's frames (an outer test's)
    ):
        return None
    return top


def describe_stack(top: _frames._Frame | None) -> str:
    """The innermost frame and the effective policy, as one line."""
    try:
        shown = top.describe() if top is not None else "an empty stack"
        return f"{shown} (effective: {top.effective if top is not None else current_policy()!r})"
    except PolicyError as error:
        return str(error)


def check_after_test(
    item: pytest.Item,
    expected: _frames._Frame | None,
    baseline: _frames._Frame | None,
    mode: str,
) -> None:
    """Restore ``baseline``; report a stack that is not ``expected`` per ``mode``."""
    top = _stack.pushed_top()
    _stack.set_top(baseline)  # whatever happened, the next test starts clean
    if top is expected or mode == "off":
        return
    message = (
        f"{item.nodeid} leaked a compile policy: {describe_stack(top)} was still active "
        "after its teardown (a scope entered and never exited?). The baseline is restored "
        "for the next test. Use `with`, a decorator, a marker or the compile_policy fixture."
    )
    if mode == "warn":
        warnings.warn(PolicyLeakWarning(message), stacklevel=1)
    else:
        pytest.fail(message, pytrace=False)


def import_leak_message(top: _frames._Frame | None, when: str, kept: bool) -> str:
    """What to say about a scope left active while ``when`` (e.g. conftest files) ran."""
    fate = (
        "every test starts from it"
        if kept
        else "it is dropped: every test starts from the run's baseline"
    )
    return (
        f"compile-policy: a scope was left active while {when} were imported: "
        f"{describe_stack(top)}; {fate}. Enter scopes in a fixture, a marker or the test, "
        "and set a run-wide baseline with --compile-policy or ini compile_policy."
    )

