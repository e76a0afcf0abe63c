"""The state behind one policy-compiled callable: its variants, counters and failures.

The hot path (:mod:`compile_policy.hot_path`) serves warm calls from two tables kept here;
every rarer path (first calls, new scopes, cold variants, failures) is a method of
:class:`CompileState`.
"""

from __future__ import annotations

import itertools
import threading
import types
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._base import call_tally
from .._base.call_tally import counter_value
from .._base.errors import CompileFallbackWarning
from .._context.frames import _Frame, default_frame
from .._policy.option_values import freeze
from .._policy.value import CompilePolicy
from .compile_failures import partial_compile_error, report_failure, report_skipped
from .ignored_regions import ignored_region
from .stats import CompileFailure, CompileStats
from .variants import (
    SHARED_GRAPH_RUNS,
    CompileOptions,
    GraphRuns,
    build_variant,
    compiler_errors,
    user_error_at_trace,
)

if TYPE_CHECKING:
    from .._policy.fields import Fallback

__all__ = ["CompileState"]

class _Variant:
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


#: The most stack tops the hot path remembers per object (a scope made anew in a loop
#: would otherwise keep adding new ones).
_READY_LIMIT = 64


class CompileState:
    """Everything one policy-compiled callable keeps: variants, counters and failures.

    The hot path is the function made by :func:`compile_policy.hot_path.make_hot_path`;
    every rarer path (first calls, new scopes, cold variants, failures) is a method here.
    """

    def __init__(
        self,
        target: Callable[..., Any],
        defaults: CompilePolicy,
        compile_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.target = target
        self.defaults = defaults
        self.compile_args = compile_args or {}  # torch.compile arguments no scope overrides
        self.lock = threading.Lock()  # the variant tables and `ready` change under it
        self.warming = threading.RLock()  # compiled calls take turns while a variant is cold
        self.all_warm = True
        # Stack top (a frame, or None: no scope, the process default) -> the warm compiled
        # variant it resolves to, for the hot path. The hot path reads it without the lock;
        # it changes in place under the lock (each dict operation is atomic). Empty while
        # any variant is cold; never holds a fallen-back variant.
        self.ready: dict[object, Callable[..., Any]] = {}
        # Stack top -> the counter of a call that runs the plain function for good: the
        # process default disables compiling (top None), or the top's variant fell back.
        # The hot path serves these too; a scope that disables is seen before either table.
        self.plain: dict[object, itertools.count[int]] = {}
        self.by_overrides: dict[tuple[object, ...], _Variant] = {}
        self.by_key: dict[CompileOptions, _Variant] = {}
        self.compiler_errors: tuple[type[BaseException], ...] = ()
        # Counters: `next()` on an itertools.count is one C call, so concurrent increments
        # are never lost, with no lock on the hot path.
        self.compiled_calls, self.eager_calls = itertools.count(), itertools.count()
        self.fallback_calls, self.skipped_calls = itertools.count(), itertools.count()
        self.graphs_compiled = itertools.count()
        call_tally.register(self, self.compiled_calls, self.eager_calls)  # pytest run report
        # Recompiles of a warm variant may run in several threads at once: a lock of its
        # own, since the backend runs inside the user's call, where any lock may be held.
        self.compile_seconds = 0.0
        self.seconds_by_key: dict[CompileOptions, float] = {}
        self.seconds_lock = threading.Lock()
        # This object's graphs only (see GraphRuns), unless it shares Dynamo's cache: by
        # isolate_recompiles=False, or on a torch without the argument (absent here).
        shared = self.compile_args.get("isolate_recompiles") is not True
        self.graph_runs = SHARED_GRAPH_RUNS if shared else GraphRuns()
        self.warned_skipped = False
        self.code = _code_of(target)  # what Dynamo keeps this object's cache entries on

    def slow_call(self, top: _Frame | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Calls the hot path has no table entry for: first calls, new scopes, cold variants,
        and the first call that finds the process default disabled or a variant fallen back."""
        frame = top or default_frame()
        if not frame.enabled:
            self.remember_plain(top, self.eager_calls)
            next(self.eager_calls)
            return self.target(*args, **kwargs)
        # Checked after a disabling scope (that is the policy's own eager call) and before
        # a variant is built or run: see ignored_regions.
        if ignored_region() is not None:
            next(self.eager_calls)
            return self.target(*args, **kwargs)
        variant = self.variant_for(frame)
        if variant is None:  # torch.compile returned the plain function: a no-op here
            next(self.eager_calls)
            return self.target(*args, **kwargs)
        if variant.fallen_back:
            if self.fallback_of(frame) == "raise":
                # This key fell back under another scope's fallback="eager"; "raise" means
                # this call must not run eagerly either (never remembered in `plain`).
                raise self.failure_again(variant)
            self.remember_plain(top, self.fallback_calls)
            next(self.fallback_calls)
            return self.target(*args, **kwargs)
        if not self.all_warm:
            # While a variant is cold, this object's compiled calls take turns. Dynamo does
            # not deduplicate compiles racing in several threads (8 racing first calls
            # compiled 8 times), and with isolate_recompiles a compile that overlaps a call
            # of another wrapper of the same code recompiles again and again (13-17 times
            # seen, torch 2.13).
            with self.warming:
                return self.call_compiled(variant, top, frame, args, kwargs)
        return self.call_compiled(variant, top, frame, args, kwargs)

    def call_compiled(
        self,
        variant: _Variant,
        top: _Frame | None,
        frame: _Frame,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        runs = self.graph_runs.cell
        before = runs[0]
        try:
            out = variant.compiled(*args, **kwargs)
        except self.compiler_errors as exc:
            error = exc
        else:
            if runs[0] != before:
                next(self.compiled_calls)
                if not variant.ran_graphs:
                    variant.ran_graphs = True
                    _RAN_GRAPHS.add(self.code)
                if not self.all_warm:
                    # Not `if not variant.warm`: an interrupt (KeyboardInterrupt) between
                    # two of these steps must be repaired by the next call, not leave the
                    # object on the slow path for good.
                    self.mark_warm(variant)
            else:
                self.skipped_call(variant, frame)
            self.remember(top, variant)
            return out
        # Outside the except block, so that an eager error is not chained to the compile one.
        return self.on_compile_error(variant, error, runs[0] != before, frame, args, kwargs)

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

    def skipped_call(self, variant: _Variant, frame: _Frame) -> None:
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
        elif self.code in _RAN_GRAPHS:
            # Graphs were expected: the same code ran graphs for another object. Dynamo's
            # budget (accumulated_recompile_limit) is per code object and counts the entries
            # of dropped objects too, so a new object may never get a compile of its own.
            self.warn_skipped(variant, "although the same code ran compiled for another object")

    def remember(self, top: _Frame | None, variant: _Variant) -> None:
        """Let the hot path call ``variant`` for this stack top from now on."""
        if top in self.ready or not (self.all_warm and variant.warm):
            return
        with self.lock:
            if self.all_warm and variant.warm and not variant.fallen_back:
                if len(self.ready) >= _READY_LIMIT:
                    self.ready.clear()
                self.ready[top] = variant.compiled
                if top is not None:
                    self.ready[top.route] = variant.compiled

    def remember_plain(self, top: _Frame | None, counter: itertools.count[int]) -> None:
        """Let the hot path run the plain function for this stack top from now on."""
        with self.lock:
            if len(self.plain) >= _READY_LIMIT:
                self.plain.clear()
            self.plain[top] = counter
            if top is not None:
                self.plain[top.route] = counter

    # -- building variants ------------------------------------------------------------------
    def built_variant(self, frame: _Frame) -> _Variant:
        """The variant ``frame`` resolves to, which a call has already run."""
        variant = self.variant_for(frame)
        assert variant is not None
        return variant

    def variant_for(self, frame: _Frame) -> _Variant | None:
        """The variant ``frame`` resolves to, built if new; None where ``torch.compile``
        returned the plain function (it is a no-op here; kept, it would never compile)."""
        variant = self.by_overrides.get(frame.overrides)  # known arguments: no lock
        if variant is not None:
            return variant
        key, options = self.merged(frame.effective)
        with self.lock:
            variant = self.by_key.get(key)
            if variant is None:
                compiled = build_variant(
                    self.target,
                    key,
                    options,
                    _weak_graph_compiled(self, key),
                    self.graph_runs,
                    self.compile_args,
                )
                if compiled is self.target:
                    return None
                self.compiler_errors = compiler_errors()
                self.all_warm = False
                self.ready.clear()  # every compiled call takes the slow path while it is cold
                variant = self.by_key[key] = _Variant(key, compiled)
            self.by_overrides[frame.overrides] = variant
        return variant

    def merged(self, policy: CompilePolicy) -> tuple[CompileOptions, Mapping[str, object] | None]:
        """Policy fields over this object's own arguments."""
        own = self.defaults

        def pick(name: str) -> Any:
            value = getattr(policy, name)
            return value if value is not None else getattr(own, name)

        options = pick("options")
        key = CompileOptions(
            pick("backend") or "inductor",
            pick("mode"),
            bool(pick("fullgraph")),
            pick("dynamic"),
            freeze(options),
        )
        return key, options

    def graph_compiled(self, key: CompileOptions, seconds: float, ok: bool) -> None:
        """The backend compiled a graph of ``key``'s variant (or failed to), in ``seconds``."""
        if ok:
            next(self.graphs_compiled)
        with self.seconds_lock:
            self.compile_seconds += seconds
            self.seconds_by_key[key] = self.seconds_by_key.get(key, 0.0) + seconds

    def mark_warm(self, variant: _Variant) -> None:
        with self.lock:
            variant.warm = True
            self.all_warm = all(v.warm for v in self.by_key.values())

    # -- failures ---------------------------------------------------------------------------
    def on_compile_error(
        self,
        variant: _Variant,
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

    def record_fallback(self, variant: _Variant, error: BaseException) -> None:
        """Record that ``variant`` falls back for ``error``, and tell it. Where the warning
        is an error, it raises with the compile error as its cause; the fallback stays
        recorded, so later calls run eagerly without telling it again."""
        try:
            self.record(variant, error, fell_back=True)
        except CompileFallbackWarning as warning:
            raise warning from error

    def fallback_of(self, frame: _Frame) -> Fallback:
        return frame.effective.fallback or self.defaults.fallback or "eager"

    def failure_again(self, variant: _Variant) -> BaseException:
        """The compile error of a fallen-back key, to raise again under fallback="raise"
        (with the traceback it was recorded with: raising it again must not grow it)."""
        assert variant.failure is not None
        error = variant.failure.exception
        return error.with_traceback(variant.failure_traceback)

    def record(self, variant: _Variant, error: BaseException, *, fell_back: bool) -> None:
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

    def warn_skipped(self, variant: _Variant, why: str) -> None:
        self.warned_skipped = True
        report_skipped(self.name(), variant.key, why,
                       isolated=self.graph_runs is not SHARED_GRAPH_RUNS)

    # -- introspection ----------------------------------------------------------------------
    def stats(self) -> CompileStats:
        """A snapshot of this object's counters."""
        with self.lock:
            variants = tuple(self.by_key.values())
            return CompileStats(
                compiled_calls=counter_value(self.compiled_calls),
                eager_calls=counter_value(self.eager_calls),
                fallback_calls=counter_value(self.fallback_calls),
                skipped_calls=counter_value(self.skipped_calls),
                graphs_compiled=counter_value(self.graphs_compiled),
                variants=tuple(v.key for v in variants),
                failures=tuple(v.failure for v in variants if v.failure is not None),
                compile_seconds=self.compile_seconds,
                variant_compile_seconds=types.MappingProxyType(
                    {v.key: self.seconds_by_key.get(v.key, 0.0) for v in variants}
                ),
            )

    def name(self) -> str:
        return f"policy_compiled({_name_of(self.target)})"


def _weak_graph_compiled(state: CompileState, key: CompileOptions) -> Callable[[float, bool], None]:
    """``state.graph_compiled`` for ``key``, holding ``state`` weakly: Dynamo keeps a
    backend (and so this callback) alive in its caches after the object is dropped, and
    a strong reference would keep the state and the wrapped function or module with it."""
    ref = weakref.ref(state)

    def graph_compiled(seconds: float, ok: bool) -> None:
        alive = ref()
        if alive is not None:
            alive.graph_compiled(key, seconds, ok)

    return graph_compiled


#: Code objects whose compiled forms have run graphs (for any object), held weakly.
_RAN_GRAPHS: weakref.WeakSet[object] = weakref.WeakSet()


def _code_of(target: object) -> object:
    function = getattr(target, "__func__", target)
    return getattr(function, "__code__", None) or type(target)


def _name_of(target: object) -> str:
    return getattr(target, "__qualname__", None) or type(target).__name__
