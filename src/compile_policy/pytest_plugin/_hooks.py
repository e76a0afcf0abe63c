"""The plugin's hooks (re-exported by :mod:`compile_policy.pytest_plugin`, the ``pytest11``
entry point); each idea lives in its own module: :mod:`._options` (options, ini, the
resolver), :mod:`._modes` (markers, ``[compiled]``/``[eager]``), :mod:`._report`,
:mod:`._leaks`, :mod:`._isolation` (Dynamo reset, inductor caches), :mod:`._fixture`,
:mod:`._govern` (plain ``torch.compile`` governed per test).

It never imports torch, except for ``--compile-policy-reset=test|module``.

    @pytest.mark.compile_disabled        # this test, its fixtures' setup and teardown
    def test_debug_step(): ...

    def test_reports(compile_policy):    # the effective policy, explain(), scoped changes
        compile_policy.disable()         # undone after the test
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from .._base.errors import PolicyError, PolicyLeakWarning
from .._context import frames as _frames
from .._context import stack as _stack
from .._context.stack import current_policy
from ._fixture import PolicyFixture, compile_policy
from ._govern import PluginGovernance
from ._leaks import PluginLabel, check_after_test, import_leak, import_leak_message
from ._modes import MARKERS, MODE_PARAM, marker_frame, parametrize_modes
from ._options import LEAKS, RESET, PluginSettings, add_options, resolve
from ._report import RunReport

if TYPE_CHECKING:
    from ._isolation import DynamoReset, InductorCache

__all__ = ["PolicyFixture", "compile_policy"]


class _RunState:
    """What pytest_configure resolved for this process (controller or xdist worker)."""

    def __init__(
        self, config: pytest.Config, settings: PluginSettings, governance: PluginGovernance
    ) -> None:
        self.settings = settings
        self.governance = governance
        self.is_worker = hasattr(config, "workerinput")
        self.leaks = str(settings.leaks.value)
        self.saved = _stack.pushed_top()  # restored when the run ends
        self.baseline = self.saved  # the stack every test starts from (None: the default)
        self.leaked = import_leak(self.saved)  # a conftest's or plugin's scope, never exited
        self.report = RunReport()
        # An xdist controller runs no test: it neither imports torch nor takes a cache dir.
        runs_tests = self.is_worker or config.getoption("dist", "no") == "no"
        self.reset: DynamoReset | None = None
        self.cache: InductorCache | None = None
        if settings.reset.value != "off" or settings.cache.value == "per-worker":
            # Loaded only for these settings: the plugin loads in every pytest run.
            from ._isolation import DynamoReset, InductorCache

            if settings.reset.value != "off" and runs_tests:
                self.reset = DynamoReset(str(settings.reset.value))
            if settings.cache.value == "per-worker":
                self.cache = InductorCache(config, runs_tests)


_STATE = pytest.StashKey[_RunState]()
_ITEM_FRAME = pytest.StashKey["_frames._Frame | None"]()
_ITEM_ERROR = pytest.StashKey[Exception]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    settings = resolve(config)
    # First: the default and the baseline may set a stance, which needs governance.
    governance = PluginGovernance(settings)
    try:
        _frames.default_frame()
    except PolicyError as error:  # else every test would fail on it, one by one
        governance.close()
        raise pytest.UsageError(f"compile-policy: {error}") from None
    state = _RunState(config, settings, governance)
    config.stash[_STATE] = state
    # Its pytest_runtest_logreport takes this process's reports, or the workers' on the
    # xdist controller (that hook gets no config: a plugin object of this run holds it).
    config.pluginmanager.register(state.report, "compile_policy_report")
    if state.leaked is not None and not state.is_worker:
        # A conftest or plugin entered a scope at import and never left it.
        message = import_leak_message(state.leaked, "conftest files and plugins", kept=True)
        if state.leaks == "warn":
            config.issue_config_time_warning(PolicyLeakWarning(message), stacklevel=2)
        elif state.leaks == "error":
            state.report.note(message)
    if settings.policy.layer is not None:  # on/off/a policy text, or both's fields
        state.baseline = _stack.chain(
            state.saved, settings.policy.layer, PluginLabel("pytest baseline"),
            settings.policy.source,
        )
    # Tests run in the main thread, in this context: they all start from here.
    _stack.set_top(state.baseline)
    if state.cache is not None and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state.cache), "compile_policy_xdist")


class _XdistHooks:
    """Registered only when xdist is loaded: its hook names are unknown otherwise."""

    def __init__(self, cache: InductorCache) -> None:
        self.cache = cache

    def pytest_configure_node(self, node: Any) -> None:
        self.cache.configure_node(node)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        _stack.set_top(state.saved)
        state.governance.close()
        state.report.close()
        config.pluginmanager.unregister(state.report)
        if state.cache is not None:
            state.cache.close()


def pytest_report_header(config: pytest.Config) -> str:
    state = config.stash[_STATE]
    settings = state.settings
    enabled = current_policy().enabled
    if settings.policy.value == "both":
        baseline = (f"both ([compiled] and [eager]; marked tests, unittest.TestCase tests and "
                    f"doctests once; from {settings.policy.source})")
    else:
        if not settings.policy.is_default:
            source = settings.policy.source
        elif state.leaked is not None:
            source = f"a scope left active at import: {state.leaked.describe()}"
        elif state.saved is not None:  # an in-process inner session (pytester)
            source = f"the enclosing session's {state.saved.describe()}"
        else:
            source = str(_frames.default_frame().where)
        baseline = f"{'on' if enabled else 'off'} (from {source})"
    parts = [f"compile-policy: baseline {baseline}", state.governance.describe()]
    if settings.leaks.value != LEAKS.default:
        parts.append(f"leaks: {settings.leaks.value}")
    if settings.reset.value != RESET.default:
        parts.append(f"dynamo reset: before each {settings.reset.value}")
    parts.append(
        f"inductor cache: {state.cache.describe() if state.cache is not None else 'shared'}"
    )
    return "; ".join(parts)


@pytest.hookimpl(trylast=True)  # after the test's own parametrize: test_x[1-compiled]
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_modes(metafunc, metafunc.config.stash[_STATE].settings.policy.value)


@pytest.fixture(name=MODE_PARAM)
def _mode_param(request: pytest.FixtureRequest) -> str:
    """The ``[compiled]``/``[eager]`` parameter (read by the setup hook, not by tests)."""
    return str(getattr(request, "param", ""))  # none where a parameter set runs once


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash[_STATE]
    top = _stack.pushed_top()
    if top is state.baseline:
        return
    # A test module or a conftest below the root entered a scope at import.
    _stack.set_top(state.baseline)
    message = import_leak_message(top, "test modules and conftest files", kept=False)
    if state.leaks == "warn":
        import warnings

        warnings.warn(PolicyLeakWarning(message), stacklevel=1)
    elif state.leaks == "error":
        state.report.note(message)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    state = item.config.stash[_STATE]
    state.report.between_tests()
    try:
        frame = marker_frame(item, state.baseline)
    except (PolicyError, TypeError) as error:
        item.stash[_ITEM_ERROR] = error  # fails the test in its call phase, with this text
        frame = state.baseline
    item.stash[_ITEM_FRAME] = frame
    if state.reset is not None:
        state.reset.before(item)
    # From setup to the end of teardown, so that the markers cover every fixture.
    _stack.set_top(frame)
    state.governance.before_test(item, frame, state.baseline, state.report.note)
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
        state = item.config.stash[_STATE]
        expected = item.stash.get(_ITEM_FRAME, state.baseline)
        check_after_test(item, expected, state.baseline, state.leaks)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = item.config.stash[_STATE]
    if call.when == "teardown":
        state.governance.after_test(item, report)
    state.report.attach(report)  # travels to the xdist controller
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash[_STATE]
    state.report.finish_local()
    if (
        not state.is_worker
        and state.report.notes
        and state.leaks == "error"
        and session.exitstatus == pytest.ExitCode.OK
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a scope leaked at import


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and not state.is_worker:
        state.report.render(terminalreporter, verbose=config.getoption("verbose") > 0)
