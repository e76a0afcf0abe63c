"""What happens when a variant's compile fails or runs no graph: the failure paths of
:class:`~.compile_state.CompileState`, which inherits them, and :class:`Variant`, the
compiled form of one object for one options key.

A failure falls back for its key alone (``fallback="eager"``, warned once), raises
(``"raise"``), or, where part of the call already ran compiled, raises a
:class:`~compile_policy.PartialCompileError`; an error of the user's own code propagates
as it is.
"""

from __future__ import annotations

import threading
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._base.errors import CompileFallbackWarning
from .._context.frames import _Frame, default_frame
from .._policy.value import CompilePolicy
from .compile_failures import partial_compile_error, report_failure, report_skipped
from .ignored_regions import ignored_region
from .stats import CompileFailure
from .variants import SHARED_GRAPH_RUNS, CompileOptions, GraphRuns, user_error_at_trace

if TYPE_CHECKING:
    import itertools

    from .._policy.fields import Fallback

__all__ = ["RAN_GRAPHS", "FailurePaths", "Variant"]

#: Code objects whose compiled forms have run graphs (for any object), held weakly.
RAN_GRAPHS: weakref.WeakSet[object] = weakref.WeakSet()


class Variant:
    """The compiled form of one object for one options key, and its state."""

    __slots__ = (
        "compiled", "failure", "failure_traceback", "fallen_back", "key", "ran_graphs", "warm"
    )

    def __init__(self, key: CompileOptions, compiled: Callable[..., Any]) -> None:
        self.key = key
        self.compiled = compiled
        self.failure: CompileFailure | None = None
        self.failure_traceback: types.TracebackType | None = None
        self.fallen_back = False
        self.ran_graphs = False
        self.warm = False  # a call has completed (or it fell back): its compile is done


class FailurePaths:
    """The failure paths of :class:`~.compile_state.CompileState` (a base class of it)."""

    # What they use of the state, set by CompileState.__init__.
    target: Callable[..., Any]
    defaults: CompilePolicy
    lock: threading.Lock
    ready: dict[object, Callable[..., Any]]
    fallback_calls: itertools.count[int]
    graph_runs: GraphRuns
    warned_skipped: bool
    eager_calls: itertools.count[int]
    skipped_calls: itertools.count[int]
    all_warm: bool
    code: object

    def mark_warm(self, variant: Variant) -> None:
        raise NotImplementedError  # CompileState's

    def name(self) -> str:
        raise NotImplementedError  # CompileState's

    def built_variant(self, frame: _Frame) -> Variant:
        raise NotImplementedError  # CompileState's

    def compile_error_in_call(
        self,
        top: _Frame | None,
        error: BaseException,
        ran_before: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A warm variant's call raised a compiler error (a recompile failed)."""
        frame = top or default_frame()
        return self.on_compile_error(self.built_variant(frame), error, ran_before, frame, args, kwargs)

    def skipped_in_call(self, top: _Frame | None) -> None:
        """A warm variant's call ran no compiled graph."""
        frame = top or default_frame()
        self.skipped_call(self.built_variant(frame), frame)

    def skipped_call(self, variant: Variant, frame: _Frame) -> None:
        """Dynamo ran a call the policy compiled without running any compiled graph."""
        if ignored_region() is not None:
            # A warm variant called where torch.compile runs eagerly: as the slow path does
            # there, an eager call, told nothing, and no reason to call the variant warm.
            next(self.eager_calls)
            return
        next(self.skipped_calls)
        if not self.all_warm:
            self.mark_warm(variant)  # nothing is being compiled: no race to guard
        # A policy stance such as eager_on_recompile asks for eager runs: nothing to warn of.
        if self.warned_skipped or frame.effective.stance is not None:
            return
        if variant.ran_graphs:
            self.warn_skipped(variant, "after it had run compiled before")
        elif self.code in RAN_GRAPHS:
            # Graphs were expected: the same code ran graphs for another object. Dynamo's
            # budget (accumulated_recompile_limit) is per code object and counts the entries
            # of dropped objects too, so a new object may never get a compile of its own.
            self.warn_skipped(variant, "although the same code ran compiled for another object")

    def on_compile_error(
        self,
        variant: Variant,
        error: BaseException,
        ran_before: bool,
        frame: _Frame,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        fallback = self.fallback_of(frame)
        # Dynamo reports an error raised by the user's own ops while tracing as this type.
        user_error = isinstance(error, user_error_at_trace())
        if fallback == "raise":
            if not user_error:
                self.record(variant, error, fell_back=False)
            raise error
        if ran_before:
            if user_error:
                raise error
            self.record_fallback(variant, error)
            raise partial_compile_error(self.name(), variant.key, error) from error
        if user_error:
            # Nothing of this call ran compiled, so the eager run is the judge: if it fails
            # too, the error is the user's own and propagates, with no fallback recorded. So
            # here the warning can only come after the eager run.
            out = self.target(*args, **kwargs)
            self.record_fallback(variant, error)
        else:
            # Told before the eager run: where the warning is an error (CI), the call raises
            # before the step has run at all, rather than after its side effects.
            self.record_fallback(variant, error)
            out = self.target(*args, **kwargs)
        next(self.fallback_calls)
        return out

    def record_fallback(self, variant: Variant, error: BaseException) -> None:
        """Record that ``variant`` falls back for ``error``, and tell it. Where the warning
        is an error, it raises with the compile error as its cause; the fallback stays
        recorded, so later calls run eagerly without telling it again."""
        try:
            self.record(variant, error, fell_back=True)
        except CompileFallbackWarning as warning:
            raise warning from error

    def fallback_of(self, frame: _Frame) -> Fallback:
        return frame.effective.fallback or self.defaults.fallback or "eager"

    def failure_again(self, variant: Variant) -> BaseException:
        """The compile error of a fallen-back key, to raise again under fallback="raise"
        (with the traceback it was recorded with: raising it again must not grow it)."""
        assert variant.failure is not None
        error = variant.failure.exception
        return error.with_traceback(variant.failure_traceback)

    def record(self, variant: Variant, error: BaseException, *, fell_back: bool) -> None:
        with self.lock:
            first = variant.failure is None
            newly_fallen_back = fell_back and not variant.fallen_back
            variant.fallen_back = variant.fallen_back or fell_back
            # The latest failure and state: a raise-mode failure then an eager fallback
            # reads fell_back=True, as fallback_calls does.
            variant.failure = CompileFailure(variant.key, error, variant.fallen_back)
            variant.failure_traceback = error.__traceback__
            if newly_fallen_back:
                self.ready.clear()  # refilled lazily, never with this variant
        if fell_back:
            self.mark_warm(variant)  # it will not compile again
        if newly_fallen_back or first:
            report_failure(self.name(), variant.key, error, fell_back=newly_fallen_back)

    def warn_skipped(self, variant: Variant, why: str) -> None:
        self.warned_skipped = True
        report_skipped(self.name(), variant.key, why,
                       isolated=self.graph_runs is not SHARED_GRAPH_RUNS)
