"""The state behind one policy-compiled callable: its variants, counters and failures.

The hot path (:mod:`.hot_path`) serves warm calls from two tables kept here; every rarer
path (first calls, new scopes, cold variants, failures) is a method of
:class:`CompileState`, those of failures in :mod:`.failure_paths`.
"""

from __future__ import annotations

import itertools
import threading
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from .._base import call_tally
from .._base.call_tally import counter_value
from .._context.frames import _Frame, default_frame
from .._policy.option_values import freeze
from .._policy.value import CompilePolicy
from .failure_paths import RAN_GRAPHS, FailurePaths, Variant
from .ignored_regions import ignored_region
from .stats import CompileStats
from .variants import (
    SHARED_GRAPH_RUNS,
    CompileOptions,
    GraphRuns,
    build_variant,
    compiler_errors,
)

__all__ = ["CompileState"]

#: The most stack tops the hot path remembers per object (a scope made anew in a loop
#: would otherwise keep adding new ones).
_READY_LIMIT = 64


class CompileState(FailurePaths):
    """Everything one policy-compiled callable keeps: variants, counters and failures.

    The hot path is the function made by :func:`.hot_path.make_hot_path`; every rarer path
    (first calls, new scopes, cold variants) is a method here, and the failure paths are
    those of :class:`.failure_paths.FailurePaths`.
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
        self.by_overrides: dict[tuple[object, ...], Variant] = {}
        self.by_key: dict[CompileOptions, Variant] = {}
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
        variant: Variant,
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
                    RAN_GRAPHS.add(self.code)
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

    def remember(self, top: _Frame | None, variant: Variant) -> None:
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
    def built_variant(self, frame: _Frame) -> Variant:
        """The variant ``frame`` resolves to, which a call has already run."""
        variant = self.variant_for(frame)
        assert variant is not None
        return variant

    def variant_for(self, frame: _Frame) -> Variant | None:
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
                variant = self.by_key[key] = Variant(key, compiled)
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

    def mark_warm(self, variant: Variant) -> None:
        with self.lock:
            variant.warm = True
            self.all_warm = all(v.warm for v in self.by_key.values())

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


def _code_of(target: object) -> object:
    function = getattr(target, "__func__", target)
    return getattr(function, "__code__", None) or type(target)


def _name_of(target: object) -> str:
    return getattr(target, "__qualname__", None) or type(target).__name__
