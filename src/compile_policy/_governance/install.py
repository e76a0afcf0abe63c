"""Governing plain ``torch.compile`` code: the policy decides for code you did not write.

``torch.compiler.set_stance`` is one process-wide value, read by torch's ``compile_wrapper``
on every call of every ``torch.compile``'d function (``eval_frame._stance``, torch 2.13).
:func:`govern_torch_compile` replaces that value with a stand-in whose fields resolve from
the calling thread or task's policy stack, and the two functions that read it on every call
with ones that answer the common cases first, so the stance becomes context-local: a
disabled context runs every compiled function and module eagerly, an enabled one with a
``stance`` field gets that stance, and every other context reads torch's own process-wide
value. Functions compiled after the install also get a shortcut around ``compile_wrapper``
in disabled contexts (torch's own eager path costs about 0.7x the plain call again).

    >>> import torch
    >>> from compile_policy import compile_disabled, govern_torch_compile
    >>> govern_torch_compile()             # once, process-wide; checks torch first
    >>> fn = torch.compile(torch.sin)
    >>> with compile_disabled():           # this thread/task only
    ...     _ = fn(torch.ones(3))          # the plain code: no cache lookup, no compile

These are torch internals (see :mod:`compile_policy.torch_internals`): the install checks
every name it relies on and refuses, changing nothing, when they differ. Nothing here runs
on import.
"""

from __future__ import annotations

import functools
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._base import call_tally
from .._base.call_tally import GovernedCalls
from .._compiled.dynamo_frames import keep_dynamo_out, trace_scopes_as_graph_breaks
from .._compiled.generated_code import compile_source, names_used, plain_parameters
from .._context import links
from .._context.frames import default_frame
from .._context.stack import pushed_top

if TYPE_CHECKING:
    from .torch_internals import Internals

__all__ = ["govern_torch_compile", "governance_support", "is_governed"]

_LOCK = threading.Lock()
_FORCE_EAGER = "force_eager"
#: What the install replaced, for the tests' private uninstall: the internals and torch's
#: own objects by name; None while not installed.
_INSTALLED: tuple[Internals, dict[str, Any]] | None = None

_UNKNOWN = object()
#: The last stack top (None: no scope, the process default) found to leave calls to torch's
#: default stance: enabled, no stance of its own, and torch's process-wide stance "default"
#: with no forced backend. A call from a context with that top takes one identity test.
#: What decides it never changes for a frame; torch.compiler.set_stance, a reread of the
#: process default, and install/uninstall forget it (under _REMEMBERING, so that a call that
#: read the old stance cannot remember its top after set_stance forgot it).
_FOLLOWS_TORCH: Any = _UNKNOWN
_REMEMBERING = threading.Lock()


def forget_stack_tops() -> None:
    """Forget which stack top follows torch's default (the process default was reread)."""
    global _FOLLOWS_TORCH
    with _REMEMBERING:
        _FOLLOWS_TORCH = _UNKNOWN


class _GovernedStance:
    """Stands in for torch's process-wide ``DynamoStance`` (``eval_frame._stance``).

    Each field resolves from the calling context's policy: disabled -> ``force_eager``; a
    ``stance`` field set by a scope -> that stance, whole (no forced backend, no unsafe
    guard skipping); otherwise torch's real process-wide value, kept in ``real`` (what
    ``torch.compiler.set_stance`` sets from now on). Each field is one short function, no
    merge, no allocation; the per-call readers answer the common cases before reading it.
    """

    __slots__ = ("real",)

    def __init__(self, real: Any) -> None:
        self.real = real

    # `pushed_top() or default_frame()`: the context's innermost frame; with no scope, the
    # process default (COMPILE_POLICY may set `enabled` and `stance` too).
    @property
    def stance(self) -> str:
        frame = pushed_top() or default_frame()
        if not frame.enabled:
            return _FORCE_EAGER
        return frame.effective.stance or self.real.stance

    @property
    def backend(self) -> Any:
        frame = pushed_top() or default_frame()
        if not frame.enabled or frame.effective.stance is not None:
            return None
        return self.real.backend

    @property
    def skip_guard_eval_unsafe(self) -> bool:
        frame = pushed_top() or default_frame()
        if not frame.enabled or frame.effective.stance is not None:
            return False
        return bool(self.real.skip_guard_eval_unsafe)

    def __repr__(self) -> str:
        return f"governed stance {self.stance!r} (process-wide: {self.real!r})"


def is_governed() -> bool:
    """Whether :func:`govern_torch_compile` has been called in this process."""
    return _INSTALLED is not None


def governance_support() -> tuple[bool, str]:
    """Whether :func:`govern_torch_compile` works with the running torch, and why not: the
    install's own check, changing nothing (imports torch). True once installed.

        >>> governance_support()  # doctest: +SKIP
        (True, 'the torch internals it relies on are as checked')
    """
    if is_governed():
        return True, "installed (govern_torch_compile() is on)"
    from .._base.errors import TorchInternalsError
    from .torch_internals import check_torch_internals

    try:
        check_torch_internals()
    except TorchInternalsError as error:
        return False, str(error)
    return True, "the torch internals it relies on are as checked"


def govern_torch_compile() -> None:
    """Let the policy govern every ``torch.compile``'d function and module, process-wide.

    From then on, in every thread and asyncio task, a context whose effective policy is
    disabled (a :func:`compile_disabled` scope, or ``COMPILE_POLICY=off`` with no scope)
    runs all ``torch.compile``'d code eagerly, however it was compiled (``torch.compile(fn)``,
    ``torch.compile(module)``, ``module.compile()``, inside other libraries), while other
    threads and tasks keep running compiled; a scope's ``stance`` field applies in its
    context only. Contexts without either follow ``torch.compiler.set_stance`` as before.
    Idempotent; there is no uninstall. Imports torch, checks the internals it relies on and
    raises :class:`TorchInternalsError` (changing nothing) when they differ.

        >>> govern_torch_compile()
        >>> with compile_disabled():
        ...     model(x)  # a torch.compile'd model, run eagerly in this thread/task only
    """
    with _LOCK:
        if _INSTALLED is None:
            # Imported here: the checks need `dis`, a large import nothing else needs.
            from .torch_internals import check_torch_internals

            internals = check_torch_internals()
            _install(internals)
            trace_scopes_as_graph_breaks()  # a scope in a compiled caller: a graph break
            # A bad COMPILE_POLICY raises here, changing nothing, rather than in every
            # torch.compile'd call from now on. Read after the install: its `stance` field
            # (COMPILE_POLICY=on,stance=fail_on_recompile) needs governance in place.
            try:
                default_frame()
            except BaseException:
                _put_back()
                raise


def _install(internals: Internals) -> None:
    global _INSTALLED
    eval_frame, decorators = internals.eval_frame, internals.decorators
    from .torch_internals import REPLACED

    originals = {name: getattr(eval_frame, name) for name in REPLACED}
    originals["__call__"] = internals.context_call
    replacements = _replacements(internals, originals)
    # A handful of stores, no torch call between them. A torch.compiler.set_stance() racing
    # in another thread during these could be lost; installing happens once, at start-up.
    for name, value in replacements.items():
        if name == "__call__":
            eval_frame._TorchDynamoContext.__call__ = value
        else:
            setattr(eval_frame, name, value)
    decorators._set_stance = replacements["_set_stance"]  # type: ignore[attr-defined]
    _INSTALLED = (internals, originals)
    forget_stack_tops()


def _replacements(internals: Internals, originals: dict[str, Any]) -> dict[str, Any]:
    proxy = _GovernedStance(originals["_stance"])
    get_callback, set_eval_frame = internals.get_eval_frame_callback, internals.set_eval_frame
    torch_callback_from_stance = originals["_callback_from_stance"]
    torch_context_call, wrapper_code = internals.context_call, internals.wrapper_code

    def _set_stance(stance: Any) -> Any:
        global _FOLLOWS_TORCH
        # torch's own rule, kept: no stance change inside a compiled region.
        callback = get_callback()
        if callback is not False and callback is not None:
            raise RuntimeError("attempted to set_stance in a torch.compile region")
        with _REMEMBERING:
            prior, proxy.real = proxy.real, stance
            _FOLLOWS_TORCH = _UNKNOWN
        return prior

    _set_stance._dynamo_forbidden = True  # type: ignore[attr-defined]

    # compile_wrapper calls this on every call, where its code runs cold (Dynamo's call path
    # evicts the caches between two calls): each step here costs many times what it costs in
    # a loop (measured: a `functools.cache` call, 1.5-2% of the tiny compiled call). So the
    # common case, a stack top that follows torch's default, is one ContextVar read and one
    # identity test; then a disabled context (None, as torch returns for force_eager). Only
    # a policy's stance, or a process-wide stance other than the default, goes through
    # torch's own function, run against the one stance this call read (see _pinned).
    pinned = _PinnedStances(torch_callback_from_stance, internals.eval_frame.DynamoStance)

    def _callback_from_stance(callback: Any) -> Any:
        global _FOLLOWS_TORCH
        top = pushed_top()
        if top is _FOLLOWS_TORCH:
            return callback
        frame = top or default_frame()
        if not frame.enabled:
            return None
        # Read once per call: a set_stance in another thread replaces torch's stance object
        # (never changes it), so this call sees one consistent stance, old or new.
        real = proxy.real
        scope_stance = frame.effective.stance
        if scope_stance is not None:
            return pinned.of_scope(scope_stance)(callback)
        if real.stance == "default" and real.backend is None:
            with _REMEMBERING:
                # Neither torch's stance nor the process default changed since they were read
                # (a set_stance or reread_default in another thread forgets under this lock,
                # or after the default was made anew).
                if proxy.real is real and (top is not None or default_frame() is frame):
                    _FOLLOWS_TORCH = top
            return callback
        return pinned.of_torch(real)(callback)

    def _is_skip_guard_eval_unsafe_stance() -> bool:
        # A scope's stance and a disabled context both mean False: only torch's True varies.
        real = proxy.real
        if real.skip_guard_eval_unsafe is False:
            return False
        frame = pushed_top() or default_frame()
        return frame.enabled and frame.effective.stance is None and bool(real.skip_guard_eval_unsafe)

    def __call__(self: Any, fn: Any) -> Any:
        compiled = torch_context_call(self, fn)
        if getattr(compiled, "__code__", None) is not wrapper_code:
            return compiled  # an OptimizedModule (its forward came through here), a class
        return _eager_shortcut(compiled, set_eval_frame)

    return {
        "_stance": proxy,
        "_set_stance": _set_stance,
        "_callback_from_stance": _callback_from_stance,
        "_is_skip_guard_eval_unsafe_stance": _is_skip_guard_eval_unsafe_stance,
        "__call__": functools.wraps(torch_context_call)(__call__),
    }


class _PinnedStances:
    """torch's ``_callback_from_stance``, each copy run against one fixed stance.

    torch's function reads the module global ``_stance`` once per branch it tests, so a
    stance that changes between two reads (a ``set_stance`` in another thread, a stand-in
    resolved afresh per read) matches no branch: "invalid torch.compile stance". A copy of
    the function whose globals are ``eval_frame``'s with ``_stance`` pinned to one
    ``DynamoStance`` reads the same value every time, and keeps torch's logic as it is (the
    install checks that the function only reads globals: see torch_internals). One copy per
    scope stance, and one for torch's current process-wide value (made again when it
    changes: ``set_stance`` is rare, a call is not).
    """

    def __init__(self, torch_function: types.FunctionType, stance_type: type) -> None:
        self._function = torch_function
        self._stance_type = stance_type
        self._scopes: dict[str, Callable[[Any], Any]] = {}
        self._torch: tuple[object, Callable[[Any], Any]] = (None, torch_function)

    def _pin(self, stance: object) -> Callable[[Any], Any]:
        function = self._function
        namespace = dict(function.__globals__)
        namespace["_stance"] = stance
        return types.FunctionType(function.__code__, namespace, function.__name__)

    def of_scope(self, stance: str) -> Callable[[Any], Any]:
        pinned = self._scopes.get(stance)
        if pinned is None:  # benign race: two threads may make equal copies
            # A scope sets the stance whole: no forced backend, no unsafe guard skipping.
            pinned = self._scopes[stance] = self._pin(self._stance_type(stance=stance))
        return pinned

    def of_torch(self, real: object) -> Callable[[Any], Any]:
        seen, pinned = self._torch  # one read of the pair: never a copy of another stance
        if seen is not real:
            pinned = self._pin(real)
            self._torch = (real, pinned)
        return pinned


# The shortcut, as source text: compiled once per parameter list (see _shortcut_factory).
# With the compiled function's own parameters (`def tiny(t)`) a governed call passes its
# arguments on as they came, as the hot path of policy_compiled does, instead of making an
# *args tuple and a **kwargs dict twice per call: the governed warm tiny call went from
# 1.036x to 1.019-1.022x the same compiled function ungoverned. The list is read when the
# function is compiled: a later change of its parameters (a new __code__) needs a new compile.
_SHORTCUT = """\
def make(compile_wrapper, fn, set_eval_frame, compiled_calls, eager_calls):
    def governed({params}):
        top = pushed_top()
        if top is _FOLLOWS_TORCH or _INSTALLED is None or (top or default_frame()).enabled:
            next(compiled_calls)
            return compile_wrapper({args})
        next(eager_calls)
        prior = set_eval_frame(None)
        try:
            return fn({args})
        finally:
            set_eval_frame(prior)
    return governed
"""
_GENERIC = ("*args, **kwargs", "*args, **kwargs")
#: Its frames' file name in tracebacks (see linecache); compile_failures skips these frames.
SHORTCUT_FILE = "<governed torch.compile ({})>"


@functools.lru_cache(maxsize=256)
def _shortcut_factory(params: str, args: str) -> Callable[..., Callable[..., Any]]:
    """``make(compile_wrapper, fn, set_eval_frame, compiled_calls, eager_calls)`` for one
    parameter list, in this module's
    globals (it reads ``_FOLLOWS_TORCH`` and ``_INSTALLED`` as they change)."""
    source = _SHORTCUT.format(params=params, args=args)
    code = compile_source(source, SHORTCUT_FILE.format(params))
    # As policy_compiled's hot path: where Dynamo meets the shortcut as a frame of its own (a
    # graph break around the call in a compiled caller, a `with compile_disabled():` block
    # there), it runs as plain Python instead of being traced (set_eval_frame is untraceable).
    [governed] = (c for c in code.co_consts if isinstance(c, types.CodeType))
    keep_dynamo_out(governed)
    return types.FunctionType(code, globals())


@functools.cache
def _names_in_shortcut() -> frozenset[str]:
    """Names the shortcut uses itself: a parameter named like one would shadow it."""
    return names_used(_shortcut_factory("", "").__code__)


def _eager_shortcut(compile_wrapper: Callable[..., Any], set_eval_frame: Any) -> Callable[..., Any]:
    """``compile_wrapper`` with a way around it for disabled contexts.

    Under ``force_eager`` torch's compile_wrapper still runs its whole prologue and epilogue
    (hooks, dispatch-key guards, tracing checks): the tiny benchmark function ran at 1.7x its
    plain cost. This runs the plain function as torch would then, with Dynamo's frame
    callback off (so that an enclosing compiled region never compiles its frames), and
    nothing else. Dynamo, tracing a caller, sees the same attributes as on compile_wrapper
    (it inlines ``_torchdynamo_inline``); ``innermost_fn`` follows ``_torchdynamo_orig_callable``.
    """
    fn = compile_wrapper._torchdynamo_orig_callable  # type: ignore[attr-defined]
    signature = plain_parameters(fn, _names_in_shortcut()) or _GENERIC
    # Its calls, for compile_stats() and the pytest run report: one `next()` per call.
    calls = GovernedCalls()
    governed: Any = _shortcut_factory(*signature)(
        compile_wrapper, fn, set_eval_frame, calls.compiled, calls.eager
    )
    functools.update_wrapper(governed, compile_wrapper)  # its name, doc, __dict__, __wrapped__
    governed.__wrapped__ = fn  # as compile_wrapper's
    governed._torchdynamo_wrapper_id = id(governed)
    governed._compile_policy_compiled = compile_wrapper  # variants.py
    governed._compile_policy_calls = calls  # inspection.compile_stats
    call_tally.register(governed, calls.compiled, calls.eager)
    return governed  # type: ignore[no-any-return]


def _uninstall() -> Internals | None:
    """Put torch's own objects back, keeping its current process-wide stance (tests and
    benchmarks only: governance has no public uninstall; functions compiled meanwhile keep
    a shortcut that then always calls compile_wrapper). Returns what was installed, for
    :func:`_reinstall`."""
    with _LOCK:
        return _put_back()


def _put_back() -> Internals | None:
    """:func:`_uninstall`'s work, under ``_LOCK``."""
    global _INSTALLED
    if _INSTALLED is None:
        return None
    internals, originals = _INSTALLED
    eval_frame = internals.eval_frame
    real = eval_frame._stance.real
    for name, value in originals.items():
        if name == "__call__":
            eval_frame._TorchDynamoContext.__call__ = value
        else:
            setattr(eval_frame, name, value)
    eval_frame._stance = real  # type: ignore[attr-defined]
    internals.decorators._set_stance = originals["_set_stance"]  # type: ignore[attr-defined]
    _INSTALLED = None
    forget_stack_tops()
    return internals


def _reinstall(internals: Internals) -> None:
    """Install again without checking again (benchmarks toggle governance between timings;
    the check allocates enough to set off the garbage collector in the next timing)."""
    with _LOCK:
        if _INSTALLED is None:
            _install(internals)


# The context layer cannot import this one (it sits below): tell it how to ask whether
# governance is on, and what to do when the process default is reread.
links.link_governance(is_governed, forget_stack_tops)
