"""The pytest plugin and plain ``torch.compile`` code: whether the run governs it, what the
header says about it, and what each test compiled and ran.

With ``--compile-policy=both`` or ``off`` the plugin calls :func:`govern_torch_compile` at
start-up wherever the running torch supports it, so that an ``[eager]`` item or an ``off``
run runs the suite's own ``torch.compile``'d code eagerly too; otherwise it does so before
the first test marked ``compile_disabled`` (or the ``[eager]`` run of one marked
``compile_both``). ``--compile-policy-govern-torch=no`` (ini: ``= false``) opts out;
``--compile-policy-govern-torch`` (``= true``) asks for it in every run, a usage error
where torch does not support it. Governance the plugin installed is put back when the run
ends (an in-process inner run, pytester, leaves its process as it found it).

When the plugin runs with options, each test's compiled and eager calls (of policy-compiled
objects and of governed ``torch.compile`` code: their own counters, read between tests) and
the graphs Dynamo compiled during it travel on its teardown report to the run report.

    pytest --compile-policy=both                                  # [eager] items: all eager
    pytest --compile-policy=both --compile-policy-govern-torch=no  # only policy_compiled code
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from .._base.errors import PolicyError, TorchInternalsError
from .._context import frames as _frames
from ._modes import mode_of

if TYPE_CHECKING:
    from ._options import PluginSettings

__all__ = ["CALLS_ATTR", "PluginGovernance", "governance_unsupported"]

#: The attribute of a teardown report that carries its test's counts:
#: ``[mode label, compiled calls, eager calls, graphs compiled, ran eagerly?]``.
CALLS_ATTR = "compile_policy_calls"
_SNAPSHOT = pytest.StashKey["tuple[str, bool, tuple[int, int], int]"]()


def governance_unsupported() -> str | None:
    """None where the running torch supports governance, else why not, in one line.

    The one place the plugin asks; imports torch.
    """
    from .._governance.install import governance_support

    supported, why = governance_support()
    return None if supported else why


class PluginGovernance:
    """What this pytest process does about plain ``torch.compile`` code."""

    def __init__(self, settings: PluginSettings) -> None:
        self.choice = settings.govern
        self.installed_here = False
        self.unavailable: str | None = None
        # Governed before the first disabled test (no mode that disables at start-up).
        self.lazy = False
        # Per-test counts: only when the plugin runs with options (else nothing at all).
        self.counting = any(not choice.is_default for choice in settings)
        self.watching = False  # per-test snapshots are taken (counting, or lazily governed)
        from .._governance.install import is_governed

        stance = settings.policy.layer.stance if settings.policy.layer is not None else None
        if self.choice.value == "yes":
            self._install(strict=True)
        elif self.choice.value is None and settings.policy.value in ("both", "off"):
            self._install(strict=False)
        elif self.choice.value is None:
            self.lazy = True
        if stance is not None and not is_governed():
            why = f" ({self.unavailable})" if self.unavailable else ""
            raise pytest.UsageError(
                f"compile-policy: {settings.policy.source} sets stance={stance!r}, which needs "
                f"plain torch.compile code governed: add {_flag()}=yes{why}"
            )
        if self.counting:
            self._watch()

    def _install(self, strict: bool) -> None:
        from .._governance.install import govern_torch_compile, is_governed

        if is_governed():
            return
        if not strict:
            self.unavailable = governance_unsupported()
            if self.unavailable is not None:
                return
        try:
            govern_torch_compile()  # first: the default and the baseline may set a stance
        except (PolicyError, TorchInternalsError) as error:
            raise pytest.UsageError(f"compile-policy: governing torch.compile: {error}") from None
        self.installed_here = True

    def _watch(self) -> None:
        from .._base import call_tally

        call_tally.start()
        self.watching = True

    def describe(self) -> str:
        """The header's words on plain ``torch.compile`` code."""
        if self.choice.value == "no":
            return f"plain torch.compile code does not follow it ({self.choice.source})"
        if self.unavailable is not None:
            return f"plain torch.compile code does not follow it: {self.unavailable}"
        if self.lazy:
            return ("plain torch.compile code follows compile_disabled and compile_both markers "
                    "(governed from the first such test)")
        return "plain torch.compile code follows it (governed)"

    def before_test(
        self, item: pytest.Item, frame: _frames._Frame | None, baseline: object,
        note: Callable[[str], None],
    ) -> None:
        """At setup, the test's stack in place: govern if due (``note``: a finding for the
        run report, the header being printed); note the counts so far."""
        if not (self.lazy or self.watching):
            return
        enabled = (frame or _frames.default_frame()).effective.enabled is not False
        # Not before the suite imported torch itself: a suite that never does has no
        # torch.compile code, and the plugin never imports torch on its own for a marker.
        if self.lazy and not enabled and frame is not baseline and "torch" in sys.modules:
            self.lazy = False
            self._install(strict=False)
            if self.unavailable is not None:
                note(f"compile_disabled tests run plain torch.compile code compiled: {self.unavailable}")
            self._watch()
        if self.watching and (self.counting or not enabled):
            from .._base import call_tally

            mode = mode_of(item)
            label = f"[{mode}]" if mode else f"compile {'enabled' if enabled else 'disabled'}"
            item.stash[_SNAPSHOT] = (label, enabled, call_tally.totals(), _graphs_compiled())

    def after_test(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """At the teardown report: what the test ran, on the report (travels to xdist's
        controller)."""
        snapshot = item.stash.get(_SNAPSHOT, None)
        if snapshot is None:
            return
        from .._base import call_tally

        label, enabled, (compiled, eager), graphs = snapshot
        now_compiled, now_eager = call_tally.totals()
        setattr(report, CALLS_ATTR, [
            label if self.counting else "", now_compiled - compiled, now_eager - eager,
            _graphs_compiled() - graphs, not enabled,
        ])

    def close(self) -> None:
        """Put back the governance this run installed."""
        if self.installed_here:
            from .._governance.install import _uninstall

            _uninstall()
            self.installed_here = False


def _flag() -> str:
    from ._options import GOVERN

    return GOVERN.flag


def _graphs_compiled() -> int:
    """Graphs Dynamo compiled in this process so far (its own counter; 0 before it loads)."""
    utils = sys.modules.get("torch._dynamo.utils")
    counters = getattr(utils, "counters", None)
    if counters is None:
        return 0
    return int(counters.get("stats", {}).get("unique_graphs", 0))
