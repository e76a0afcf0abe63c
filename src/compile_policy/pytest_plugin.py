"""pytest plugin: a run-wide baseline, per-test markers, a ``compile_policy`` fixture, and a
guard against tests that leak a policy scope into later tests.

Registered through the ``pytest11`` entry point; it never imports torch.

    pytest --compile-policy=off          # every test starts with compile disabled

    @pytest.mark.compile_disabled        # this test, its fixtures' setup and teardown
    def test_debug_step(): ...

    def test_reports(compile_policy):    # the effective policy, explain(), scoped changes
        compile_policy.disable()         # undone after the test
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from . import policy as _policy
from .errors import PolicyError, PolicyLeakWarning
from .policy import CompilePolicy, current_policy, explain
from .policy_text import parse_policy
from .scopes import _SETTABLE

__all__ = ["PolicyFixture"]

_LEAK_MODES = ("error", "warn", "off")


class _RunState:
    """What pytest_configure resolved for this process (controller or xdist worker)."""

    def __init__(self, baseline: _policy._Frame | None, source: str, leaks: str) -> None:
        self.baseline = baseline  # the stack every test starts from (None: process default)
        self.source = source
        self.leaks = leaks
        self.saved: _policy._Frame | None = None


_STATE = pytest.StashKey[_RunState]()
_ITEM_FRAME = pytest.StashKey["_policy._Frame | None"]()
_ITEM_ERROR = pytest.StashKey[Exception]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compile-policy", "compile policy (torch.compile on/off)")
    group.addoption(
        "--compile-policy",
        default=None,
        help="baseline compile policy for every test: on, off, or a policy text such as "
        "max-autotune or on,backend=aot_eager (default: ini compile_policy, else "
        "COMPILE_POLICY / TORCH_COMPILE_DISABLE)",
    )
    group.addoption(
        "--compile-policy-leaks",
        choices=_LEAK_MODES,
        default=None,
        help="a test that leaves a policy scope active: report it as a teardown error "
        "(error, the default), warn, or only restore the baseline silently (off)",
    )
    parser.addini("compile_policy", "baseline compile policy for every test (see --compile-policy)")
    parser.addini("compile_policy_leaks", "error, warn or off (see --compile-policy-leaks)")


def _ini_choice(config: pytest.Config, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = config.getini(name)
    if not raw:
        return None
    value = str(raw).strip().lower()
    if value not in allowed:
        raise pytest.UsageError(
            f"ini option {name} = {raw!r} is not allowed; allowed: {', '.join(allowed)}"
        )
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "compile_disabled: run this test (and its fixtures) with compile disabled"
    )
    config.addinivalue_line(
        "markers",
        "compile_enabled(**fields): run this test (and its fixtures) with compile enabled; "
        f"fields: {', '.join(_SETTABLE)}",
    )
    option = config.getoption("compile_policy")
    ini = str(config.getini("compile_policy")).strip() or None
    leaks = config.getoption("compile_policy_leaks") or _ini_choice(
        config, "compile_policy_leaks", _LEAK_MODES
    ) or "error"
    if option is not None:
        source, switch, label = f"pytest option --compile-policy={option}", option, "--compile-policy="
    elif ini is not None:
        source, switch, label = f"pytest ini compile_policy = {ini}", ini, "ini option compile_policy = "
    else:
        source, switch, label = "", None, ""
    state = _RunState(None, source, leaks)
    state.saved = _policy.pushed_top()
    if switch is not None:
        try:
            layer = parse_policy(switch, source=label)
        except PolicyError as error:
            raise pytest.UsageError(str(error)) from None
        state.baseline = _policy.chain(state.saved, layer, "pytest baseline", source)
        # Tests run in the main thread, in this context: they all start from here.
        _policy.set_top(state.baseline)
    else:
        state.baseline = state.saved
    config.stash[_STATE] = state


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        _policy.set_top(state.saved)


def pytest_report_header(config: pytest.Config) -> str:
    state = config.stash[_STATE]
    try:
        enabled = current_policy().enabled
    except PolicyError as error:  # a bad COMPILE_POLICY: say so, the tests will fail on it
        return f"compile-policy: invalid environment: {error}"
    source = state.source or _policy.default_frame().where
    return (
        f"compile-policy: baseline {'on' if enabled else 'off'} (from {source}); "
        f"leaks: {state.leaks}"
    )


def _marker_frame(item: pytest.Item, below: _policy._Frame | None) -> _policy._Frame | None:
    """The test's stack: its markers, module first, over the run's baseline."""
    frame = below
    for marker in reversed(list(item.iter_markers())):
        if marker.name == "compile_disabled":
            layer = CompilePolicy(enabled=False)
        elif marker.name == "compile_enabled":
            unknown = sorted(set(marker.kwargs) - set(_SETTABLE))
            if unknown or marker.args:
                raise TypeError(
                    f"@pytest.mark.compile_enabled got unexpected {unknown or marker.args}; "
                    f"allowed keyword fields: {', '.join(_SETTABLE)}"
                )
            layer = CompilePolicy(enabled=True, **marker.kwargs)
        else:
            continue
        shown = ", ".join(f"{k}={v!r}" for k, v in marker.kwargs.items())
        frame = _policy.chain(
            frame, layer, f"@pytest.mark.{marker.name}({shown})", f"marker on {item.nodeid}"
        )
    return frame


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_STATE]
    try:
        frame = _marker_frame(item, state.baseline)
    except (PolicyError, TypeError) as error:
        item.stash[_ITEM_ERROR] = error  # fails the test in its call phase, with this text
        frame = state.baseline
    item.stash[_ITEM_FRAME] = frame
    # From setup to the end of teardown, so that the markers cover every fixture.
    _policy.set_top(frame)
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    error = item.stash.get(_ITEM_ERROR, None)
    if error is not None:
        raise error


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        _check_for_leak(item)


def _check_for_leak(item: pytest.Item) -> None:
    state = item.config.stash[_STATE]
    expected = item.stash.get(_ITEM_FRAME, state.baseline)
    top = _policy.pushed_top()
    _policy.set_top(state.baseline)  # whatever happened, the next test starts clean
    if top is expected or state.leaks == "off":
        return
    try:
        leaked = f"{top.describe() if top is not None else 'an empty stack'} (effective: "
        leaked += f"{top.effective if top is not None else current_policy()!r})"
    except PolicyError as error:
        leaked = str(error)
    message = (
        f"{item.nodeid} leaked a compile policy: {leaked} was still active after its "
        "teardown (a scope entered and never exited?). The baseline is restored for the "
        "next test. Use `with`, a decorator, a marker or the compile_policy fixture."
    )
    if state.leaks == "warn":
        warnings.warn(PolicyLeakWarning(message), stacklevel=1)
    else:
        pytest.fail(message, pytrace=False)


class PolicyFixture:
    """The ``compile_policy`` fixture: the test's effective policy, and scoped changes
    that are undone when the test ends (like ``monkeypatch``).

        def test_fallback(compile_policy):
            compile_policy.enable(backend="eager", fallback="raise")
            assert compile_policy.policy.fallback == "raise"
    """

    def __init__(self) -> None:
        self._frames: list[_policy._Frame] = []

    @property
    def policy(self) -> CompilePolicy:
        """The effective policy now (same as :func:`compile_policy.current_policy`)."""
        return current_policy()

    @property
    def enabled(self) -> bool:
        return current_policy().enabled

    def explain(self) -> str:
        """Why the policy is what it is (:func:`compile_policy.explain`)."""
        return explain()

    def disable(self) -> None:
        """Disable compiling for the rest of this test."""
        self._push(CompilePolicy(enabled=False))

    def enable(self, **fields: Any) -> None:
        """Enable compiling, with optional field overrides, for the rest of this test."""
        unknown = sorted(set(fields) - set(_SETTABLE))
        if unknown:
            raise TypeError(f"unexpected field(s) {', '.join(unknown)}; allowed: {', '.join(_SETTABLE)}")
        self._push(CompilePolicy(enabled=True, **fields))

    def use(self, policy: CompilePolicy) -> None:
        """Apply ``policy`` for the rest of this test."""
        if not isinstance(policy, CompilePolicy):
            raise PolicyError(f"use() takes a CompilePolicy; got {policy!r}")
        self._push(policy)

    def _push(self, policy: CompilePolicy) -> None:
        where = _policy.caller_location(2)  # the test line that called disable()/enable()/use()
        self._frames.append(_policy.push(policy, "compile_policy fixture", where))

    def _undo(self) -> None:
        # Only our own frames: anything the test left above them is the leak guard's to report.
        if self._frames and _policy.pushed_top() is self._frames[-1]:
            _policy.set_top(self._frames[0].below)
        self._frames.clear()


@pytest.fixture
def compile_policy() -> Iterator[PolicyFixture]:
    """The test's compile policy: ``.policy``, ``.enabled``, ``.explain()``, and
    ``.disable()`` / ``.enable(**fields)`` / ``.use(policy)`` undone after the test."""
    fixture = PolicyFixture()
    yield fixture
    fixture._undo()
