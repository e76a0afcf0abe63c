"""Scopes that set the compile policy of the current thread or asyncio task.

Every scope is a context manager and a decorator, like ``torch.no_grad``. As a decorator it
holds for the whole execution of the function: every step of a generator or async
generator, and the whole of a coroutine, without leaking to the caller between steps.

    >>> from compile_policy import compile_disabled, current_policy
    >>> @compile_disabled
    ... def debug_step():
    ...     return current_policy().enabled
    >>> debug_step()
    False
"""

from __future__ import annotations

import _thread
from collections import deque
from collections.abc import Callable
from sys import _getframe

from .._base.errors import PolicyError
from . import stack as _stack
from .frames import _Frame, caller_location, describe_location
from .sites import enter_site, is_with_exit_of, paired_frame
from .stack import pushed_top, reset_to, set_top

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    from .._policy.value import CompilePolicy

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["PolicyScope", "bind_policy", "compile_disabled", "compile_enabled", "use_policy"]

_FREE_FRAMES = 16


class PolicyScope:
    """A reusable scope that applies one policy layer to the current thread or task.

    It keeps no per-use state: each ``__enter__`` pushes a frame on the context-local stack
    and each ``__exit__`` pops it, so one object may be reused, nested in itself and entered
    by several threads at once. An exit in a thread, task or context copy that did not enter
    is a :class:`ScopeError` and changes nothing; so is, after restoring what its enter
    replaced, the exit of a block inside which an enter was left open (even of this same
    object, see :mod:`~compile_policy._context.sites`). An exception leaving the scope is never
    replaced by one of ours. Made by :func:`compile_enabled`, :func:`compile_disabled` and
    :func:`use_policy`.

        >>> scope = compile_enabled(backend="eager")
        >>> with scope, scope:  # nested in itself
        ...     current_policy().backend
        'eager'
    """

    __slots__ = ("_free", "_label", "_layer")

    def __init__(self, layer: CompilePolicy, label: str) -> None:
        self._layer = layer
        self._label = label
        # Frames exited in their own context, free to be pushed again. The next enter from
        # the same place onto the same stack pushes the same frame: a training loop's `with`
        # allocates nothing, and the compiled hot path's table (keyed by the stack top) hits.
        # A frame is taken out while pushed, so it is pushed in one context at a time and
        # its token is its own push's; deque.pop/append are atomic, so threads sharing this
        # scope never share a frame. Last in, first out: a scope nested in itself gets each
        # level's frame back. A deque, not a list: a list frees its storage when popped
        # empty and allocates it again on append (~430 of ~6,900 instructions per `with`,
        # callgrind); maxlen bounds what threads exiting together leave behind.
        self._free: deque[_Frame] = deque(maxlen=_FREE_FRAMES)

    @property
    def policy(self) -> CompilePolicy:
        """The fields this scope sets (``None`` fields are inherited).

            >>> compile_enabled(backend="eager").policy
            CompilePolicy(enabled=True, backend='eager')
        """
        return self._layer

    # Enter and exit are the hot path of every `with`: kept inline, no frame allocated.
    def __enter__(self) -> None:
        caller = _getframe(1)
        top = pushed_top()
        try:
            frame = self._free.pop()
        except IndexError:  # first use, nested in itself, or in use by other threads
            frame = self._new_frame(top, caller)
        else:  # the same stack below, from the same place (the `with` that pushed it)?
            if frame.below is not top or frame.offset != caller.f_lasti or frame.code is not caller.f_code:
                frame = self._new_frame(top, caller)
        frame.token = set_top(frame)

    def _new_frame(self, top: _Frame | None, caller: Any) -> _Frame:
        code, offset = caller.f_code, caller.f_lasti
        frame = _Frame(top, self._layer, self, (code, offset))
        frame.code, frame.offset = code, offset
        frame.by_with, frame.exits = enter_site(code, offset)
        return frame

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        top = pushed_top()
        # A plain function's `with` statement exits the frame it pushed before any other
        # exit of this scope can come (see sites.py): anything else is looked into.
        if top is None or top.owner is not self or not top.by_with:
            top = self._exit_of(top, _getframe(1), exc)
            if top is None:
                return
        try:
            reset_to(top.token)  # type: ignore[arg-type]
        except (ValueError, RuntimeError, TypeError):
            _stack.pop(self, exc, top)  # not this context's push: _stack.pop says so
        else:
            self._free.append(top)

    def _exit_of(self, top: _Frame | None, caller: Any, exc: BaseException | None) -> _Frame | None:
        """The innermost frame, where an exit called by ``ExitStack`` or by hand (from
        ``caller``) takes it, last in, first out. Else None, once this exit is done: a
        ``with`` statement's exit of the frame it pushed popped, or ``_stack.pop`` has
        popped the frame this exit belongs to and said what went wrong (an enter left
        open inside it), unless ``exc`` is on its way."""
        if not is_with_exit_of(self, top, caller):
            mine = paired_frame(self, top, caller)
            if mine is None or mine is not top:
                _stack.pop(self, exc, mine)
                return None
            if not is_with_exit_of(self, top, caller):
                return top
        assert top is not None
        try:
            reset_to(top.token)  # type: ignore[arg-type]
        except (ValueError, RuntimeError, TypeError):
            # The token is another context's: a generator that entered in one task or
            # thread and resumed in another. Its `with` still exits what it entered.
            set_top(top.below)
        self._free.append(top)
        return None

    def __call__(self, fn: F) -> F:
        return self._decorate(fn, caller_location(1))

    def _decorate(self, fn: F, where: tuple[Any, int]) -> F:
        layer = self._layer
        name = getattr(fn, "__qualname__", fn)
        location = f"{describe_location(where)} (@{self._label} on {name!s})"
        from .decorators import wrap_in_scope

        return wrap_in_scope(
            fn,
            lambda: _stack.push(layer, self, location),
            self._leave_decorated,
            self._leave_decorated,
        )

    def _leave_decorated(self, frame: _Frame, error: BaseException | None = None) -> None:
        """Pop the decorator's own frame (not the innermost of this scope's: the body may
        have left an enter of this very, shared, scope open, a ScopeError). By value, not by
        its token: a generator's last step, which pops it, may run in another context than
        its first, which pushed it (an async generator closed by the event loop's finalizer)."""
        if pushed_top() is frame:
            set_top(frame.below)
        else:
            _stack.pop(self, error, frame)

    def __repr__(self) -> str:
        return self._label


#: The fields a scope may set: CompilePolicy's but ``enabled`` (a test checks they match;
#: spelled out so that the plugin's marker help needs no CompilePolicy).
_SETTABLE = ("backend", "mode", "fullgraph", "dynamic", "options", "fallback", "stance")

# compile_disabled() and compile_enabled() return one scope each, made on first use (so the
# first `with` loads CompilePolicy, not `import compile_policy`: see _policy/value.py). A lock, so
# that threads racing on the first use still get one object.
_DISABLED: PolicyScope | None = None
_ENABLED: PolicyScope | None = None
_MAKING = _thread.allocate_lock()


def _make_fixed_scopes() -> tuple[PolicyScope, PolicyScope]:
    """``(compile_disabled(), compile_enabled())``, made once."""
    global _DISABLED, _ENABLED
    with _MAKING:
        if _DISABLED is None or _ENABLED is None:
            from .._policy.value import CompilePolicy

            _DISABLED = PolicyScope(CompilePolicy(enabled=False), "compile_disabled()")
            _ENABLED = PolicyScope(CompilePolicy(enabled=True), "compile_enabled()")
        return _DISABLED, _ENABLED


if TYPE_CHECKING:  # the two ways to call it, for type checkers

    @overload
    def compile_disabled(func: F, /) -> F: ...
    @overload
    def compile_disabled() -> PolicyScope: ...


def compile_disabled(func: F | None = None, /) -> PolicyScope | F:
    """Run without compiling in the current thread or asyncio task, until an inner
    :func:`compile_enabled`. A context manager and a decorator (with or without ``()``).

        >>> with compile_disabled():
        ...     out = step(x)  # the plain function runs
    """
    scope = _DISABLED or _make_fixed_scopes()[0]
    if func is None:
        return scope
    return scope._decorate(func, caller_location(1))


if TYPE_CHECKING:

    @overload
    def compile_enabled(func: F, /) -> F: ...
    @overload
    def compile_enabled(**fields: Any) -> PolicyScope: ...


def compile_enabled(func: F | None = None, /, **fields: Any) -> PolicyScope | F:
    """Compile in the current thread or asyncio task, optionally overriding compile arguments.

    ``fields`` are any of ``backend``, ``mode``, ``fullgraph``, ``dynamic``, ``options``,
    ``fallback``, ``stance``; the ones left out are inherited from the enclosing scope.
    ``stance`` (torch's stance names but ``"force_eager"``) applies to every
    ``torch.compile``'d call in this context and needs :func:`govern_torch_compile`. A
    context manager and a decorator (with or without ``()``).

        >>> with compile_enabled(backend="aot_eager", fallback="raise"):
        ...     out = step(x)  # compiled with aot_eager; a compile failure raises
    """
    if not fields:
        scope = _ENABLED or _make_fixed_scopes()[1]
        return scope if func is None else scope._decorate(func, caller_location(1))
    unknown = sorted(set(fields) - set(_SETTABLE))
    if unknown:
        hint = "; use compile_disabled() to disable" if "enabled" in unknown else ""
        raise TypeError(
            f"compile_enabled() got unexpected field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_SETTABLE)}{hint}"
        )
    if func is not None:
        raise TypeError("compile_enabled(func) takes no fields; use compile_enabled(**fields)(func)")
    from .._policy.value import CompilePolicy

    layer = CompilePolicy(enabled=True, **fields)
    shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    return PolicyScope(layer, f"compile_enabled({shown})")


def use_policy(policy: CompilePolicy) -> PolicyScope:
    """Apply a whole :class:`CompilePolicy` in the current thread or asyncio task.

    Its ``None`` fields are inherited. A context manager and a decorator.

        >>> ci = CompilePolicy(enabled=True, backend="eager", fallback="raise")
        >>> with use_policy(ci):
        ...     out = step(x)
    """
    from .._policy.value import CompilePolicy

    if not isinstance(policy, CompilePolicy):
        raise PolicyError(f"use_policy() takes a CompilePolicy; got {policy!r}")
    return PolicyScope(policy, f"use_policy({policy!r})")


def bind_policy(fn: F) -> F:
    """Return ``fn`` bound to the calling thread/task's current policy.

    New threads and pool workers do not inherit context variables, so a callable handed to
    ``threading.Thread``, ``ThreadPoolExecutor.submit`` or a callback runs under the process
    default. The bound callable runs under the policy active here, and restores the
    worker's own policy afterwards (pool workers keep one context across work items).

        >>> with compile_disabled():
        ...     future = pool.submit(bind_policy(step), x)  # runs eagerly in the worker
    """
    from .decorators import wrap_in_scope

    bound = pushed_top()

    def enter() -> _Frame | None:
        saved = pushed_top()
        set_top(bound)
        return saved

    def leave(saved: _Frame | None) -> None:
        set_top(saved)  # exactly the worker's own stack again, even if fn leaked

    return wrap_in_scope(fn, enter, leave)
