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

These are torch internals (see :mod:`compile_policy._governance.torch_internals`): the install checks
every name it relies on and refuses, changing nothing, when they differ. Nothing here runs
on import.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

from .._compiled.dynamo_frames import trace_scopes_as_graph_breaks
from .._context.frames import default_frame, link_governance
from .._context.stack import pushed_top
from .shortcut import Shortcuts
from .stances import PinnedStances, _GovernedStance

if TYPE_CHECKING:
    from .torch_internals import Internals

__all__ = ["govern_torch_compile", "governance_support", "is_governed"]

_LOCK = threading.Lock()
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
    # torch's own function, run against the one stance this call read (see stances.PinnedStances).
    pinned = PinnedStances(torch_callback_from_stance, internals.eval_frame.DynamoStance)

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
        return _SHORTCUTS.around(compiled, set_eval_frame)

    return {
        "_stance": proxy,
        "_set_stance": _set_stance,
        "_callback_from_stance": _callback_from_stance,
        "_is_skip_guard_eval_unsafe_stance": _is_skip_guard_eval_unsafe_stance,
        "__call__": functools.wraps(torch_context_call)(__call__),
    }


# The shortcuts' code reads this module's globals (_FOLLOWS_TORCH, _INSTALLED) as they change.
_SHORTCUTS = Shortcuts(globals())


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
link_governance(is_governed, forget_stack_tops)
