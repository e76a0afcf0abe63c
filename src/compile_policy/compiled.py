"""``policy_compiled``: a function or module that asks the policy on every call.

Each object compiles lazily, once per distinct set of merged compile options, and falls
back to eager on its own (per options key) when a compile fails; nothing global changes.

    >>> import torch
    >>> from compile_policy import compile_disabled, policy_compiled
    >>> @policy_compiled(backend="eager")
    ... def step(x):
    ...     return torch.sin(x) * 2
    >>> _ = step(torch.ones(3))           # compiled
    >>> with compile_disabled():
    ...     _ = step(torch.ones(3))       # the plain function
    >>> step.stats().compiled_calls, step.stats().eager_calls
    (1, 1)
"""

from __future__ import annotations

import functools
import itertools
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from .errors import CompileFallbackWarning, CompileSkippedWarning, PartialCompileError
from .policy import CompilePolicy, Fallback, _Frame, default_frame, freeze, pushed_top
from .variants import (
    CompileOptions,
    build_variant,
    compiler_errors,
    graphs_run,
    user_error_at_trace,
)

__all__ = ["CompileFailure", "CompileStats", "PolicyCompiled", "policy_compiled"]

logger = logging.getLogger("compile_policy")

R = TypeVar("R")


@dataclass(frozen=True)
class CompileFailure:
    """One compile failure of one object: the options key it happened for, and why."""

    key: CompileOptions
    exception: BaseException
    fell_back: bool  # False under fallback="raise": the error was re-raised


@dataclass(frozen=True)
class CompileStats:
    """A snapshot of a :class:`PolicyCompiled` object's counters (each read once; calls
    running in other threads meanwhile may land in some counters and not yet in others).

    - ``compiled_calls``: calls in which compiled graphs actually ran.
    - ``eager_calls``: calls the policy ran as the plain function (compile disabled).
    - ``fallback_calls``: calls run eagerly because this object's compile failed for the key.
    - ``skipped_calls``: calls the policy compiled but Dynamo ran without any compiled
      graph (recompile limit hit, a frame Dynamo skipped, or no tensor work at all).
    - ``graphs_compiled``: graphs the backend compiled (a graph break makes two).
    - ``variants``: the options keys built so far; ``failures``: what failed, per key.
    """

    compiled_calls: int
    eager_calls: int
    fallback_calls: int
    skipped_calls: int
    graphs_compiled: int
    variants: tuple[CompileOptions, ...]
    failures: tuple[CompileFailure, ...]


class _Variant:
    """The compiled form of one object for one options key, and its state."""

    __slots__ = ("compiled", "failure", "fallen_back", "key", "ran_graphs", "warm")

    def __init__(self, key: CompileOptions, compiled: Callable[..., Any]) -> None:
        self.key = key
        self.compiled = compiled
        self.failure: CompileFailure | None = None
        self.fallen_back = False
        self.ran_graphs = False
        self.warm = False  # a call has completed (or it fell back): its compile is done


class PolicyCompiled(Generic[R]):
    """A callable that runs compiled or eager as the current policy says, on every call.

    Made by :func:`policy_compiled`. Counters: :meth:`stats`. The plain callable or module
    is ``__wrapped__`` (e.g. ``step.__wrapped__.parameters()``); other attributes are not
    forwarded to it (a ``__getattr__`` hook would sit on every attribute read).
    """

    def __init__(self, target: Callable[..., R], defaults: CompilePolicy) -> None:
        self.__wrapped__ = target
        self._target = target
        self._defaults = defaults
        self._lock = threading.Lock()  # counters and the variant tables
        self._warming = threading.RLock()  # compiled calls while a variant is cold
        self._all_warm = True
        # overrides key -> compiled fn, for the inline fast path: only while every variant is
        # warm, and never a fallen-back one. Replaced whole (one atomic store), never mutated.
        self._ready: dict[tuple[object, ...], Callable[..., Any]] = {}
        self._by_overrides: dict[tuple[object, ...], _Variant] = {}
        self._by_key: dict[CompileOptions, _Variant] = {}
        self._compiler_errors: tuple[type[BaseException], ...] = ()
        self._compiled_calls, self._eager_calls = _tally(), _tally()
        self._fallback_calls, self._skipped_calls = _tally(), _tally()
        self._graphs_compiled = _tally()
        self._warned_skipped = False
        self._attr_name: str | None = None
        if not _is_module(target):
            functools.update_wrapper(self, target)

    # -- the hot path: keep it short ------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> R:
        frame = pushed_top() or default_frame()
        if not frame.enabled:
            self._eager_calls()
            return self._target(*args, **kwargs)
        # The common case, kept inline: a warm variant for these arguments (see _ready).
        compiled = self._ready.get(frame._overrides)  # type: ignore[arg-type]
        if compiled is None:
            return self._slow_call(frame, args, kwargs)
        before = graphs_run()
        try:
            out = compiled(*args, **kwargs)
        except self._compiler_errors as exc:
            error = exc
        else:
            if graphs_run() != before:
                self._compiled_calls()
            else:
                self._skipped_call(self._by_overrides[frame.overrides])
            return out  # type: ignore[no-any-return]
        # Outside the except block, so that an eager error is not chained to the compile one.
        return self._on_compile_error(
            self._by_overrides[frame.overrides], error, graphs_run() != before, frame, args, kwargs
        )

    def _slow_call(self, frame: _Frame, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """First calls, new scopes, fallen-back and cold variants."""
        variant = self._variant_for(frame)
        if variant.fallen_back:
            self._fallback_calls()
            return self._target(*args, **kwargs)
        if not self._all_warm:
            # While a variant is cold, this object's compiled calls take turns. Dynamo does
            # not deduplicate compiles racing in several threads (8 racing first calls
            # compiled 8 times), and with isolate_recompiles a compile that overlaps a call
            # of another wrapper of the same code recompiles again and again (13-17 times
            # seen, torch 2.13).
            with self._warming:
                return self._call_compiled(variant, frame, args, kwargs)
        return self._call_compiled(variant, frame, args, kwargs)

    def _traced_call(self, *args: Any, **kwargs: Any) -> R:
        return self._target(*args, **kwargs)

    # Inside an outer torch.compile, Dynamo inlines `_traced_call` instead of `__call__` (it
    # follows `_torchdynamo_inline`, as for torch.compile's own wrappers): the plain callable
    # is traced into the outer graph, and the ContextVar read (a graph break, an error under
    # fullgraph=True) is never traced. At run time this costs nothing, and unlike
    # torch.compiler.is_compiling() it is not fooled by another thread compiling.
    __call__._torchdynamo_inline = _traced_call  # type: ignore[attr-defined]

    def _call_compiled(
        self, variant: _Variant, frame: _Frame, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        before = graphs_run()
        try:
            out = variant.compiled(*args, **kwargs)
        except self._compiler_errors as exc:
            error = exc
        else:
            if graphs_run() != before:
                self._compiled_calls()
                if not variant.ran_graphs:
                    variant.ran_graphs = True
                    self._mark_warm(variant)
            else:
                self._skipped_call(variant)
            return out  # type: ignore[no-any-return]
        # Outside the except block, so that an eager error is not chained to the compile one.
        return self._on_compile_error(variant, error, graphs_run() != before, frame, args, kwargs)

    def _skipped_call(self, variant: _Variant) -> None:
        """Dynamo ran a call the policy compiled without running any compiled graph."""
        self._skipped_calls()
        if not variant.warm:
            self._mark_warm(variant)  # nothing is being compiled: no race to guard
        if variant.ran_graphs and not self._warned_skipped:
            self._warn_skipped(variant)

    # -- building variants ------------------------------------------------------------------
    def _variant_for(self, frame: _Frame) -> _Variant:
        variant = self._by_overrides.get(frame.overrides)  # known arguments: no lock
        if variant is not None:
            return variant
        key, options = self._merged(frame.effective)
        with self._lock:
            variant = self._by_key.get(key)
            if variant is None:
                compiled = build_variant(self._target, key, options, self._count_graph)
                self._compiler_errors = compiler_errors()
                variant = self._by_key[key] = _Variant(key, compiled)
                self._all_warm = False
            self._by_overrides[frame.overrides] = variant
            self._refresh_ready()
        return variant

    def _merged(self, policy: CompilePolicy) -> tuple[CompileOptions, Mapping[str, object] | None]:
        """Policy fields over this object's own arguments."""
        own = self._defaults

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

    def _mark_warm(self, variant: _Variant) -> None:
        with self._lock:
            variant.warm = True
            self._all_warm = all(v.warm for v in self._by_key.values())
            self._refresh_ready()

    def _refresh_ready(self) -> None:
        """Rebuild the fast-path table (caller holds ``_lock``)."""
        self._ready = {
            overrides: v.compiled
            for overrides, v in self._by_overrides.items()
            if v.warm and not v.fallen_back
        } if self._all_warm else {}

    def _count_graph(self) -> None:
        self._graphs_compiled()

    # -- failures ---------------------------------------------------------------------------
    def _on_compile_error(
        self,
        variant: _Variant,
        error: BaseException,
        ran_before: bool,
        frame: _Frame,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        fallback: Fallback = frame.effective.fallback or self._defaults.fallback or "eager"
        # Dynamo reports an error raised by the user's own ops while tracing as this type.
        user_error = isinstance(error, user_error_at_trace())
        if fallback == "raise":
            if not user_error:
                self._record(variant, error, fell_back=False)
            raise error
        if ran_before:
            if user_error:
                raise error
            self._record(variant, error, fell_back=True)
            raise PartialCompileError(
                f"{self._name()}: compiling a later graph failed after compiled graphs of "
                "this call had already run (a graph break splits the call); re-running it "
                "eagerly would repeat their side effects, so this call raises. Later calls "
                f"run eagerly for {variant.key.describe()}. Compile the whole step "
                "(forward, backward, optimizer step) as one graph, or fix the graph break "
                f"(TORCH_LOGS=graph_breaks). Compiler error: {type(error).__name__}"
            ) from error
        # Nothing of this call ran compiled, so the eager run is the judge: if it fails too,
        # the error is the user's own and propagates, with no fallback recorded.
        out = self._target(*args, **kwargs)
        self._record(variant, error, fell_back=True)
        self._fallback_calls()
        return out

    def _record(self, variant: _Variant, error: BaseException, *, fell_back: bool) -> None:
        with self._lock:
            first = variant.failure is None
            if first:
                variant.failure = CompileFailure(variant.key, error, fell_back)
            newly_fallen_back = fell_back and not variant.fallen_back
            variant.fallen_back = variant.fallen_back or fell_back
        if fell_back:
            self._mark_warm(variant)  # it will not compile again; leaves the fast table
        if not newly_fallen_back:
            if first:
                logger.info("%s: compile failed for %s (%s); fallback='raise' re-raises",
                            self._name(), variant.key.describe(), _summary(error))
            return
        logger.warning(
            "%s: compile failed for %s (%s); this object runs eagerly for these options",
            self._name(), variant.key.describe(), _summary(error),
        )
        logger.debug("%s: the compile error", self._name(), exc_info=error)
        warnings.warn(
            f"{self._name()}: compile failed ({_summary(error)}); running eagerly for "
            f"{variant.key.describe()} on this object only",
            CompileFallbackWarning,
            stacklevel=_outside_this_module(),
        )

    def _warn_skipped(self, variant: _Variant) -> None:
        self._warned_skipped = True
        message = (
            f"{self._name()}: the policy says compile ({variant.key.describe()}), but Dynamo "
            "ran this call without compiled code after it had run compiled before "
            "(recompile limit hit? see TORCH_LOGS=recompiles)"
        )
        logger.warning(message)
        warnings.warn(message, CompileSkippedWarning, stacklevel=_outside_this_module())

    # -- introspection ----------------------------------------------------------------------
    def stats(self) -> CompileStats:
        """A snapshot of this object's counters."""
        with self._lock:
            variants = tuple(self._by_key.values())
            return CompileStats(
                compiled_calls=_value(self._compiled_calls),
                eager_calls=_value(self._eager_calls),
                fallback_calls=_value(self._fallback_calls),
                skipped_calls=_value(self._skipped_calls),
                graphs_compiled=_value(self._graphs_compiled),
                variants=tuple(v.key for v in variants),
                failures=tuple(v.failure for v in variants if v.failure is not None),
            )

    @property
    def compiled_calls(self) -> int:
        """Calls in which compiled graphs actually ran."""
        return _value(self._compiled_calls)

    @property
    def eager_calls(self) -> int:
        """Calls run as the plain callable because the policy disabled compiling."""
        return _value(self._eager_calls)

    @property
    def fallback_calls(self) -> int:
        """Calls run eagerly because this object's compile failed for the options key."""
        return _value(self._fallback_calls)

    @property
    def skipped_calls(self) -> int:
        """Calls the policy compiled but Dynamo ran without any compiled graph."""
        return _value(self._skipped_calls)

    @property
    def failures(self) -> tuple[CompileFailure, ...]:
        """The recorded compile failures, one per options key."""
        return self.stats().failures

    def _name(self) -> str:
        target = self._target
        name = getattr(target, "__qualname__", None) or type(target).__name__
        return f"policy_compiled({name})"

    def __repr__(self) -> str:
        return f"<{self._name()} defaults={self._defaults!r}>"

    # -- use as a method decorator in a class body ------------------------------------------
    def __set_name__(self, owner: type, name: str) -> None:
        self._attr_name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        # One object per instance (per agent), made on first access and kept in the
        # instance's __dict__, so each has its own variants, counters and fallbacks.
        bound = PolicyCompiled(self._target.__get__(instance, owner), self._defaults)
        if self._attr_name is not None and hasattr(instance, "__dict__"):
            instance.__dict__[self._attr_name] = bound
        return bound


def _tally() -> Callable[[], int]:
    """A counter: each call adds one. ``next`` on ``itertools.count`` is a single C call,
    so concurrent increments are never lost, with no lock on the hot path."""
    return itertools.count().__next__


def _value(tally: Callable[[], int]) -> int:
    # itertools.count exposes its next value only through its repr: "count(N)".
    return int(repr(tally.__self__)[len("count("):-1])  # type: ignore[attr-defined]


def _outside_this_module() -> int:
    """``stacklevel`` for a warning raised in the caller: the first frame outside this module
    (the user's call), whichever path (fast, slow, failure) led here."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _summary(error: BaseException) -> str:
    """One line naming the compiler error and, for a backend failure, its cause."""
    inner = getattr(error, "inner_exception", None) or error.__cause__
    text = f"{type(error).__name__}"
    if inner is not None:
        text += f" from {type(inner).__name__}: {inner}"
    else:
        first_line = (str(error).strip().splitlines() or [""])[0]
        text += f": {first_line}"
    return text


def _is_module(obj: object) -> bool:
    nn = getattr(sys.modules.get("torch"), "nn", None)  # no torch loaded: no module
    return nn is not None and isinstance(obj, nn.Module)


@overload
def policy_compiled(
    fn: Callable[..., R],
    /,
    *,
    backend: str | Callable[..., Any] = ...,
    mode: str | None = ...,
    fullgraph: bool = ...,
    dynamic: bool | None = ...,
    options: Mapping[str, object] | None = ...,
    fallback: Fallback = ...,
) -> PolicyCompiled[R]: ...
@overload
def policy_compiled(
    fn: None = None,
    /,
    *,
    backend: str | Callable[..., Any] = ...,
    mode: str | None = ...,
    fullgraph: bool = ...,
    dynamic: bool | None = ...,
    options: Mapping[str, object] | None = ...,
    fallback: Fallback = ...,
) -> Callable[[Callable[..., R]], PolicyCompiled[R]]: ...
def policy_compiled(
    fn: Callable[..., R] | None = None,
    /,
    *,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    fullgraph: bool = False,
    dynamic: bool | None = None,
    options: Mapping[str, object] | None = None,
    fallback: Fallback = "eager",
) -> PolicyCompiled[R] | Callable[[Callable[..., R]], PolicyCompiled[R]]:
    """Wrap a function, bound method or ``nn.Module`` so each call obeys the current policy.

    Takes ``torch.compile``'s arguments; fields set by the active scopes override them.
    When the policy is disabled the plain callable runs; when enabled, a variant compiled
    for the merged options (built lazily, once per options key, kept on this object).
    ``fallback="eager"`` runs this object eagerly for a key whose compile failed (warning
    once with :class:`CompileFallbackWarning`); ``"raise"`` re-raises the compiler error.

        >>> @policy_compiled(backend="inductor")
        ... def train_step(batch): ...
        >>> agent_step = policy_compiled(agent.act)       # one object per agent
        >>> model = policy_compiled(net, mode="max-autotune")
    """
    defaults = CompilePolicy(
        enabled=True,
        backend=backend,
        mode=mode,
        fullgraph=fullgraph,
        dynamic=dynamic,
        options=options,
        fallback=fallback,
    )
    if fn is None:
        return lambda f: PolicyCompiled(f, defaults)
    if not callable(fn):
        raise TypeError(f"policy_compiled() wraps a callable or nn.Module; got {fn!r}")
    return PolicyCompiled(fn, defaults)
