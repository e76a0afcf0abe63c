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
import inspect
import itertools
import linecache
import logging
import sys
import threading
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast, overload, runtime_checkable

from .errors import CompileFallbackWarning, CompileSkippedWarning, PartialCompileError
from .methods import PerInstance, in_class_body
from .policy import CompilePolicy, Fallback, _Frame, default_frame, freeze, pushed_top
from .variants import (
    GRAPH_RUNS,
    CompileOptions,
    build_variant,
    compiler_errors,
    user_error_at_trace,
)

__all__ = ["CompileFailure", "CompileStats", "PolicyCompiled", "policy_compiled"]

logger = logging.getLogger("compile_policy")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


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


@runtime_checkable
class PolicyCompiled(Protocol[R_co]):
    """What :func:`policy_compiled` returns: call it as the wrapped callable is called.

    It is a plain function, as ``torch.compile`` returns for a function, so that a call
    costs one Python function call and a few C calls (a callable object's ``__call__``
    alone costs more than the whole policy check). Its state lives behind it:
    ``stats()`` snapshots its counters; ``__wrapped__`` is the plain callable or module.

        >>> step = policy_compiled(train_step)
        >>> step(batch); step.stats().compiled_calls
        1
    """

    __wrapped__: Any

    def __call__(self, *args: Any, **kwargs: Any) -> R_co: ...

    def stats(self) -> CompileStats:
        """A snapshot of this object's counters."""
        ...


#: The most stack tops the hot path remembers per object (a scope made anew in a loop
#: would otherwise keep adding new ones).
_READY_LIMIT = 64


class _State:
    """Everything one policy-compiled callable keeps: variants, counters and failures.

    The hot path is the function made by :func:`_compiled_callable`; every rarer path (first
    calls, new scopes, cold variants, failures) is a method here.
    """

    def __init__(self, target: Callable[..., Any], defaults: CompilePolicy) -> None:
        self.target = target
        self.defaults = defaults
        self.lock = threading.Lock()  # the variant tables and `ready` change under it
        self.warming = threading.RLock()  # compiled calls take turns while a variant is cold
        self.all_warm = True
        # Stack top (a frame, or None: no scope, the process default) -> the warm compiled
        # variant it resolves to, for the hot path. The hot path reads it without the lock;
        # it changes in place under the lock (each dict operation is atomic). Empty while
        # any variant is cold; never holds a fallen-back variant.
        self.ready: dict[_Frame | None, Callable[..., Any]] = {}
        # Stack top -> the counter of a call that runs the plain function for good: the
        # process default disables compiling (top None), or the top's variant fell back.
        # The hot path serves these too; a scope that disables is seen before either table.
        self.plain: dict[_Frame | None, itertools.count[int]] = {}
        self.by_overrides: dict[tuple[object, ...], _Variant] = {}
        self.by_key: dict[CompileOptions, _Variant] = {}
        self.compiler_errors: tuple[type[BaseException], ...] = ()
        # Counters: `next()` on an itertools.count is one C call, so concurrent increments
        # are never lost, with no lock on the hot path.
        self.compiled_calls, self.eager_calls = itertools.count(), itertools.count()
        self.fallback_calls, self.skipped_calls = itertools.count(), itertools.count()
        self.graphs_compiled = itertools.count()
        self.warned_skipped = False

    def slow_call(self, top: _Frame | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Calls the hot path has no table entry for: first calls, new scopes, cold variants,
        and the first call that finds the process default disabled or a variant fallen back."""
        frame = top or default_frame()
        if not frame.enabled:
            self.remember_plain(top, self.eager_calls)
            next(self.eager_calls)
            return self.target(*args, **kwargs)
        variant = self.variant_for(frame)
        if variant.fallen_back:
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
        runs = GRAPH_RUNS.cell
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
                    self.mark_warm(variant)
            else:
                self.skipped_call(variant)
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
        return self.on_compile_error(self.variant_for(frame), error, ran_before, frame, args, kwargs)

    def skipped_in_call(self, top: _Frame | None) -> None:
        """A warm variant's call ran no compiled graph."""
        self.skipped_call(self.variant_for(top or default_frame()))

    def skipped_call(self, variant: _Variant) -> None:
        """Dynamo ran a call the policy compiled without running any compiled graph."""
        next(self.skipped_calls)
        if not variant.warm:
            self.mark_warm(variant)  # nothing is being compiled: no race to guard
        if variant.ran_graphs and not self.warned_skipped:
            self.warn_skipped(variant)

    def remember(self, top: _Frame | None, variant: _Variant) -> None:
        """Let the hot path call ``variant`` for this stack top from now on."""
        if top in self.ready or not (self.all_warm and variant.warm):
            return
        with self.lock:
            if self.all_warm and variant.warm and not variant.fallen_back:
                if len(self.ready) >= _READY_LIMIT:
                    self.ready.clear()
                self.ready[top] = variant.compiled

    def remember_plain(self, top: _Frame | None, counter: itertools.count[int]) -> None:
        """Let the hot path run the plain function for this stack top from now on."""
        with self.lock:
            if len(self.plain) >= _READY_LIMIT:
                self.plain.clear()
            self.plain[top] = counter

    # -- building variants ------------------------------------------------------------------
    def variant_for(self, frame: _Frame) -> _Variant:
        variant = self.by_overrides.get(frame.overrides)  # known arguments: no lock
        if variant is not None:
            return variant
        key, options = self.merged(frame.effective)
        with self.lock:
            variant = self.by_key.get(key)
            if variant is None:
                compiled = build_variant(
                    self.target, key, options, self.graphs_compiled.__next__
                )
                self.compiler_errors = compiler_errors()
                variant = self.by_key[key] = _Variant(key, compiled)
                self.all_warm = False
                self.ready.clear()  # every compiled call takes the slow path while it is cold
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
        fallback: Fallback = frame.effective.fallback or self.defaults.fallback or "eager"
        # Dynamo reports an error raised by the user's own ops while tracing as this type.
        user_error = isinstance(error, user_error_at_trace())
        if fallback == "raise":
            if not user_error:
                self.record(variant, error, fell_back=False)
            raise error
        if ran_before:
            if user_error:
                raise error
            self.record(variant, error, fell_back=True)
            raise PartialCompileError(
                f"{self.name()}: compiling a later graph failed after compiled graphs of "
                "this call had already run (a graph break splits the call); re-running it "
                "eagerly would repeat their side effects, so this call raises. Later calls "
                f"run eagerly for {variant.key.describe()}. Compile the whole step "
                "(forward, backward, optimizer step) as one graph, or fix the graph break "
                f"(TORCH_LOGS=graph_breaks). Compiler error: {type(error).__name__}"
            ) from error
        # Nothing of this call ran compiled, so the eager run is the judge: if it fails too,
        # the error is the user's own and propagates, with no fallback recorded.
        out = self.target(*args, **kwargs)
        self.record(variant, error, fell_back=True)
        next(self.fallback_calls)
        return out

    def record(self, variant: _Variant, error: BaseException, *, fell_back: bool) -> None:
        with self.lock:
            first = variant.failure is None
            if first:
                variant.failure = CompileFailure(variant.key, error, fell_back)
            newly_fallen_back = fell_back and not variant.fallen_back
            variant.fallen_back = variant.fallen_back or fell_back
            if newly_fallen_back:
                self.ready.clear()  # refilled lazily, never with this variant
        if fell_back:
            self.mark_warm(variant)  # it will not compile again
        if not newly_fallen_back:
            if first:
                logger.info("%s: compile failed for %s (%s); fallback='raise' re-raises",
                            self.name(), variant.key.describe(), _summary(error))
            return
        logger.warning(
            "%s: compile failed for %s (%s); this object runs eagerly for these options",
            self.name(), variant.key.describe(), _summary(error),
        )
        logger.debug("%s: the compile error", self.name(), exc_info=error)
        warnings.warn(
            f"{self.name()}: compile failed ({_summary(error)}); running eagerly for "
            f"{variant.key.describe()} on this object only",
            CompileFallbackWarning,
            stacklevel=_outside_this_module(),
        )

    def warn_skipped(self, variant: _Variant) -> None:
        self.warned_skipped = True
        message = (
            f"{self.name()}: the policy says compile ({variant.key.describe()}), but Dynamo "
            "ran this call without compiled code after it had run compiled before "
            "(recompile limit hit? see TORCH_LOGS=recompiles)"
        )
        logger.warning(message)
        warnings.warn(message, CompileSkippedWarning, stacklevel=_outside_this_module())

    # -- introspection ----------------------------------------------------------------------
    def stats(self) -> CompileStats:
        """A snapshot of this object's counters."""
        with self.lock:
            variants = tuple(self.by_key.values())
            return CompileStats(
                compiled_calls=_value(self.compiled_calls),
                eager_calls=_value(self.eager_calls),
                fallback_calls=_value(self.fallback_calls),
                skipped_calls=_value(self.skipped_calls),
                graphs_compiled=_value(self.graphs_compiled),
                variants=tuple(v.key for v in variants),
                failures=tuple(v.failure for v in variants if v.failure is not None),
            )

    def name(self) -> str:
        return f"policy_compiled({_name_of(self.target)})"


# The hot path, as source text. It is compiled once per object with the wrapped function's
# own parameter list where it has a plain one (`def step(x, y)`), so that a call passes its
# arguments on as they came: no *args tuple and **kwargs dict per call, and CPython makes
# the calls in and out without entering a nested interpreter loop. Measured with callgrind
# on the tiny benchmark function: 4,200 -> 1,260 instructions over the plain call on the
# eager path, 4,100 -> 2,500 over the direct compiled call. Other callables get
# `*args, **kwargs`. One template serves both, so there is one hot path to read.
_HOT_PATH = """\
def call({params}):
    top = pushed_top()
    if top is not None and not top.enabled:  # a scope disabled compiling
        next(eager_calls)
        return target({args})
    compiled = ready.get(top)  # the warm variant this stack top resolves to
    if compiled is None:
        counter = plain.get(top)  # the default disables compiling, or the variant fell back
        if counter is None:
            return state.slow_call(top, {packed})
        next(counter)
        return target({args})
    runs = graph_runs.cell
    before = runs[0]
    try:
        out = compiled({args})
    except state.compiler_errors as exc:
        error = exc
    else:
        if runs[0] == before:
            state.skipped_in_call(top)
        else:
            next(compiled_calls)
        return out
    # Outside the except block, so that an eager error is not chained to the compile one.
    return state.compile_error_in_call(top, error, runs[0] != before, {packed})
"""
_HOT_PATH_FILE = "<policy_compiled hot path{}>"  # its frames in tracebacks; see linecache
_GENERIC = ("*args, **kwargs", "*args, **kwargs", "args, kwargs")


def _hot_path_signature(target: object) -> tuple[str, str, str]:
    """``(params, args, packed)`` to fill :data:`_HOT_PATH` for ``target``.

    Its own parameters where it is a plain function or bound method whose parameters are
    all positional without defaults; keyword calls stay valid (binding is the same) and a
    wrong call gets Python's own TypeError. Anything else (defaults, ``*args``, keyword-only
    parameters, modules, whose hooks see how arguments were passed) is generic.
    """
    function = target.__func__ if isinstance(target, types.MethodType) else target
    bound = function is not target
    if not isinstance(function, types.FunctionType) or function.__defaults__:
        return _GENERIC
    code = function.__code__
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or code.co_kwonlyargcount:
        return _GENERIC
    names = code.co_varnames[: code.co_argcount]
    if bound:
        names = names[1:]  # `self` is already in the method
    if not _names_in_hot_path().isdisjoint(names):
        return _GENERIC
    positional_only = code.co_posonlyargcount - bound
    params = list(names)
    if positional_only > 0:
        params.insert(positional_only, "/")
    args = ", ".join(names)
    return ", ".join(params), args, f"({args}{',' if names else ''}), {{}}"


@functools.lru_cache(maxsize=256)
def _hot_path_code(params: str, args: str, packed: str) -> types.CodeType:
    """The hot path compiled for one parameter list (each list once: compiling takes 0.2 ms)."""
    source = _HOT_PATH.format(params=params, args=args, packed=packed)
    filename = _HOT_PATH_FILE.format(f" ({params})")
    # So that tracebacks through the hot path show its lines (one entry per parameter list).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = compile(source, filename, "exec")
    [code] = (c for c in module.co_consts if isinstance(c, types.CodeType))
    return code


@functools.cache
def _names_in_hot_path() -> frozenset[str]:
    """Names the hot path uses itself: a parameter named like one would shadow it."""
    code = _hot_path_code("", "", "")
    return frozenset(code.co_names + code.co_varnames)


def _compiled_callable(target: Callable[..., Any], defaults: CompilePolicy) -> PolicyCompiled[Any]:
    """The function users call, over a new :class:`_State` for ``target``."""
    state = _State(target, defaults)
    # The hot path's globals: each name it reads is one dict lookup, cached by CPython.
    namespace: dict[str, Any] = {
        "target": target,
        "state": state,
        "ready": state.ready,
        "plain": state.plain,
        "pushed_top": pushed_top,
        "graph_runs": GRAPH_RUNS,
        "eager_calls": state.eager_calls,
        "compiled_calls": state.compiled_calls,
    }
    call: Any = types.FunctionType(_hot_path_code(*_hot_path_signature(target)), namespace)

    def traced_call(*args: Any, **kwargs: Any) -> Any:
        return target(*args, **kwargs)

    if _is_module(target):
        call.__name__ = call.__qualname__ = type(target).__name__
        call.__doc__ = type(target).__doc__
        call.__wrapped__ = target
    else:
        functools.update_wrapper(call, target)
    call.stats = state.stats
    # Inside an outer torch.compile, Dynamo inlines `traced_call` instead of `call` (it
    # follows `_torchdynamo_inline`, as for torch.compile's own wrappers): the plain callable
    # is traced into the outer graph, and the ContextVar read (a graph break, an error under
    # fullgraph=True) is never traced. At run time this costs nothing, and unlike
    # torch.compiler.is_compiling() it is not fooled by another thread compiling.
    call._torchdynamo_inline = traced_call
    call._policy_state = state
    return cast(PolicyCompiled[Any], call)


def _value(counter: itertools.count[int]) -> int:
    # itertools.count exposes its next value only through its repr: "count(N)".
    return int(repr(counter)[len("count("):-1])


def _name_of(target: object) -> str:
    return getattr(target, "__qualname__", None) or type(target).__name__


def _outside_this_module() -> int:
    """``stacklevel`` for a warning raised in the caller: the first frame outside this module
    (the user's call), whichever path (fast, slow, failure) led here."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _in_this_module(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _in_this_module(filename: str) -> bool:
    return filename == __file__ or filename.startswith(_HOT_PATH_FILE.partition("{")[0])


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
        return lambda f: _policy_compiled(f, defaults)
    return _policy_compiled(fn, defaults)


def _policy_compiled(fn: Callable[..., R], defaults: CompilePolicy) -> PolicyCompiled[R]:
    if not callable(fn):
        raise TypeError(f"policy_compiled() wraps a callable or nn.Module; got {fn!r}")
    if in_class_body(fn):
        return cast(PolicyCompiled[R], PerInstance(fn, lambda f: _compiled_callable(f, defaults)))
    return _compiled_callable(fn, defaults)
