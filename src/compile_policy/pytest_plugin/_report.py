"""The run report: which compiled objects fell back or were skipped, in which tests.

It listens to :mod:`compile_policy._base.compile_events`, not to the warnings, so the user's
``filterwarnings`` (``error``, ``ignore``) change nothing in it: a test that failed because
the warning was raised as an error is listed, marked ``(failed)``. What happened during a
test phase travels on that phase's report, so an xdist worker's events reach the controller
with its reports; the controller prints the ``compile policy`` terminal summary section.

    ============================ compile policy ============================
    policy_compiled(train_step) fell back: BackendCompilerFailed from RuntimeError: boom
      for backend='inductor', mode=None, fullgraph=False, dynamic=None, options=None
      in test_model.py::test_train[compiled] (failed)
"""

from __future__ import annotations

import threading

import pytest

from .._base.compile_events import CompileEvent, listen
from ._govern import CALLS_ATTR

__all__ = ["RunReport"]

#: The attribute of a TestReport that carries its events (plain lists: xdist serializes it).
EVENTS_ATTR = "compile_policy_events"
NOTES_ATTR = "compile_policy_notes"
OUTSIDE = "outside any test (collection, import or a session fixture's teardown)"


class RunReport:
    """Events seen in this process, and the ones reports brought from xdist workers.

    Registered as a plugin of the run, for its ``pytest_runtest_logreport``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # events may come from any thread
        self._pending: list[CompileEvent] = []
        self._outside: list[CompileEvent] = []
        self._notes: list[str] = []  # run-level findings (a scope leaked at import)
        # (kind, target, summary, key) -> test ids, in the order first seen
        self.seen: dict[tuple[str, str, str, str], dict[str, None]] = {}
        self.failed: set[str] = set()
        self.notes: dict[str, None] = {}
        # Mode label -> [tests, compiled calls, eager calls] (a run with options), and the
        # tests meant to run eagerly in which something compiled: nodeid -> (graphs, calls).
        self.modes: dict[str, list[int]] = {}
        self.compiled_when_eager: dict[str, tuple[int, int]] = {}
        self._stop = listen(self._on_event)

    def close(self) -> None:
        self._stop()

    def _on_event(self, event: CompileEvent) -> None:
        with self._lock:
            self._pending.append(event)

    def note(self, text: str) -> None:
        """A run-level finding for the section (sent with the next report from a worker)."""
        with self._lock:
            self._notes.append(text)

    def between_tests(self) -> None:
        """Events pending now happened outside any test (called when a test starts)."""
        with self._lock:
            self._outside.extend(self._pending)
            self._pending.clear()

    def attach(self, report: pytest.TestReport) -> None:
        """Put the events of the phase that just ended on its report."""
        with self._lock:
            events = [[e.kind, e.target, e.summary, e.key, report.nodeid] for e in self._pending]
            events += [[e.kind, e.target, e.summary, e.key, ""] for e in self._outside]
            notes, self._notes = self._notes, []
            self._pending.clear()
            self._outside.clear()
        if events:
            setattr(report, EVENTS_ATTR, events)
        if notes:
            setattr(report, NOTES_ATTR, notes)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take in a report's events (this process's, or an xdist worker's)."""
        for kind, target, summary, key, nodeid in getattr(report, EVENTS_ATTR, None) or ():
            self.seen.setdefault((kind, target, summary, key), {})[nodeid or OUTSIDE] = None
        for text in getattr(report, NOTES_ATTR, None) or ():
            self.notes[text] = None
        calls = getattr(report, CALLS_ATTR, None)
        if calls:
            label, compiled, eager, graphs, meant_eager = calls
            if label:
                counts = self.modes.setdefault(label, [0, 0, 0])
                counts[0] += 1
                counts[1] += compiled
                counts[2] += eager
            if meant_eager and (graphs or compiled):
                self.compiled_when_eager[report.nodeid] = (graphs, compiled)
        if report.failed:
            self.failed.add(report.nodeid)

    def finish_local(self) -> None:
        """Events and notes of this process that no report carried (a serial run's last)."""
        with self._lock:
            leftover = self._pending + self._outside
            self._pending.clear()
            self._outside.clear()
            notes, self._notes = self._notes, []
        for e in leftover:
            self.seen.setdefault((e.kind, e.target, e.summary, e.key), {})[OUTSIDE] = None
        for text in notes:
            self.notes[text] = None

    def render(self, terminal: pytest.TerminalReporter, verbose: bool) -> None:
        if not self.seen and not self.notes and not self.modes and not self.compiled_when_eager:
            if verbose:
                terminal.write_line("compile policy: no compile fallbacks or skips")
            return
        terminal.write_sep("=", "compile policy")
        for text in self.notes:
            terminal.write_line(text)
        for (kind, target, summary, key), nodeids in self.seen.items():
            terminal.write_line(f"{target} {kind}: {summary}")
            terminal.write_line(f"  for {key}")
            for nodeid in nodeids:
                failed = " (failed)" if nodeid in self.failed else ""
                terminal.write_line(f"  in {nodeid}{failed}")
        self._render_calls(terminal)

    def _render_calls(self, terminal: pytest.TerminalReporter) -> None:
        if self.modes:
            terminal.write_line(
                "calls per mode (policy-compiled objects and governed plain torch.compile code):"
            )
            for label, (tests, compiled, eager) in sorted(self.modes.items(), key=_mode_order):
                terminal.write_line(
                    f"  {label}: {_count(tests, 'test')}, {_count(compiled, 'compiled call')}, "
                    f"{_count(eager, 'eager call')}"
                )
        if not self.compiled_when_eager:
            return
        terminal.write_line(
            f"compiled inside {_count(len(self.compiled_when_eager), 'test')} meant to run "
            "eagerly ([eager] items, compile_disabled tests, an off baseline):"
        )
        for nodeid, (graphs, compiled) in list(self.compiled_when_eager.items())[:LISTED]:
            terminal.write_line(
                f"  {nodeid}: {_count(graphs, 'graph')} compiled, {_count(compiled, 'compiled call')}"
            )
        if len(self.compiled_when_eager) > LISTED:
            terminal.write_line(f"  ... and {len(self.compiled_when_eager) - LISTED} more")
        terminal.write_line(
            "  what to do: for plain torch.compile code, let the plugin govern it (drop "
            "--compile-policy-govern-torch=no; needs a torch that governance supports); for a "
            "test that compiles on purpose, mark it @pytest.mark.compile_enabled"
        )


def _mode_order(item: tuple[str, list[int]]) -> int:
    order = ("[compiled]", "[eager]", "compile enabled", "compile disabled")
    return order.index(item[0]) if item[0] in order else len(order)


#: The tests listed by name; the rest are counted.
LISTED = 10


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
