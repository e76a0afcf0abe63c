"""The run report: which compiled objects fell back or were skipped, in which tests.

It listens to :mod:`compile_policy.compile_events`, not to the warnings, so the user's
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

from .compile_events import CompileEvent, listen

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
        if not self.seen and not self.notes:
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
