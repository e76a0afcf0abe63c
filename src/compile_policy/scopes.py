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

import functools
import inspect
from collections import deque
from collections.abc import Callable
from sys import _getframe

from . import policy as _policy
from .errors import PolicyError
from .policy import (
    FIELD_NAMES,
    CompilePolicy,
    _Frame,
    caller_location,
    pushed_top,
    reset_to,
    set_top,
)

# typing.TYPE_CHECKING without importing typing (see __init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    F = TypeVar("F", bound=Callable[..., Any])
    H = TypeVar("H")

__all__ = ["PolicyScope", "bind_policy", "compile_disabled", "compile_enabled", "use_policy"]


def _wrap(
    fn: F,
    enter: Callable[[], H],
    leave: Callable[[H], None],
    leave_raising: Callable[[H, BaseException], None] | None = None,
) -> F:
    """Wrap ``fn`` so that ``enter``/``leave`` surround each piece of its execution.

    Dispatches once, on the kind of ``fn``: generators and async generators are re-entered
    around every step, so the caller never runs under the scope between ``yield``s
    (``contextlib.ContextDecorator`` would only cover creating the generator). When a piece
    raises, ``leave_raising(handle, exception)`` runs instead of ``leave`` (if given), so
    that a scope's exit can tell the user's exception from its own problems.
    """
    if leave_raising is None:
        def leave_raising(handle: H, error: BaseException) -> None:
            leave(handle)
    if inspect.isclass(fn):
        raise TypeError(
            f"a policy scope decorates functions, not classes: got {fn!r}; "
            "decorate its methods instead"
        )
    if not callable(fn):
        raise TypeError(f"a policy scope decorates callables: got {fn!r}")

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            gen = fn(*args, **kwargs)  # creating it runs none of its code
            step, value = gen.asend, None
            while True:
                handle = enter()
                try:
                    item = await step(value)
                except StopAsyncIteration:
                    leave(handle)
                    return
                except BaseException as error:
                    leave_raising(handle, error)
                    raise
                leave(handle)
                try:
                    value = yield item
                    step = gen.asend
                except GeneratorExit:
                    handle = enter()
                    try:
                        await gen.aclose()
                    except BaseException as error:
                        leave_raising(handle, error)
                        raise
                    leave(handle)
                    raise
                except BaseException as exc:
                    step, value = gen.athrow, exc

        return async_gen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            gen = fn(*args, **kwargs)
            step, value = gen.send, None
            while True:
                handle = enter()
                try:
                    item = step(value)
                except StopIteration as stop:
                    leave(handle)
                    return stop.value
                except BaseException as error:
                    leave_raising(handle, error)
                    raise
                leave(handle)
                try:
                    value = yield item
                    step = gen.send
                except GeneratorExit:
                    handle = enter()
                    try:
                        gen.close()
                    except BaseException as error:
                        leave_raising(handle, error)
                        raise
                    leave(handle)
                    raise
                except BaseException as exc:
                    step, value = gen.throw, exc

        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            handle = enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as error:
                leave_raising(handle, error)
                raise
            leave(handle)
            return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        handle = enter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            leave_raising(handle, error)
            raise
        leave(handle)
        return result

    return wrapper  # type: ignore[return-value]


_FREE_FRAMES = 16


class PolicyScope:
    """A reusable scope that applies one policy layer to the current thread or task.

    It keeps no per-use state: each ``__enter__`` pushes a frame on the context-local stack
    and each ``__exit__`` pops it, so one object may be reused, nested in itself and entered
    by several threads at once. An exit in a thread, task or context copy that did not enter
    is a :class:`ScopeError` and changes nothing; an exception leaving the scope is never
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
        else:
            where: Any = frame.where  # (code, offset) of the `with` that pushed it
            if frame.below is not top or where[1] != caller.f_lasti or where[0] is not caller.f_code:
                frame = self._new_frame(top, caller)
        frame.token = set_top(frame)

    def _new_frame(self, top: _Frame | None, caller: Any) -> _Frame:
        return _Frame(top, self._layer, self, (caller.f_code, caller.f_lasti))

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        top = pushed_top()
        if top is not None and top.owner is self:
            try:
                reset_to(top.token)  # type: ignore[arg-type]
            except (ValueError, RuntimeError, TypeError):
                pass  # not this context's push: _policy.pop says so
            else:
                self._free.append(top)
                return
        _policy.pop(self, exc)  # a ScopeError saying what went wrong, unless exc is on its way

    def __call__(self, fn: F) -> F:
        return self._decorate(fn, caller_location(1))

    def _decorate(self, fn: F, where: tuple[Any, int]) -> F:
        layer = self._layer
        name = getattr(fn, "__qualname__", fn)
        location = f"{_policy.describe_location(where)} (@{self._label} on {name!s})"
        return _wrap(
            fn,
            lambda: _policy.push(layer, self, location),
            lambda _frame: _policy.pop(self),
            lambda _frame, error: _policy.pop(self, error),
        )

    def __repr__(self) -> str:
        return self._label


_DISABLED = PolicyScope(CompilePolicy(enabled=False), "compile_disabled()")
_ENABLED = PolicyScope(CompilePolicy(enabled=True), "compile_enabled()")
_SETTABLE = tuple(name for name in FIELD_NAMES if name != "enabled")


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
    if func is None:
        return _DISABLED
    return _DISABLED._decorate(func, caller_location(1))


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
    unknown = sorted(set(fields) - set(_SETTABLE))
    if unknown:
        hint = "; use compile_disabled() to disable" if "enabled" in unknown else ""
        raise TypeError(
            f"compile_enabled() got unexpected field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_SETTABLE)}{hint}"
        )
    if func is not None:
        if fields:
            raise TypeError("compile_enabled(func) takes no fields; use compile_enabled(**fields)(func)")
        return _ENABLED._decorate(func, caller_location(1))
    if not fields:
        return _ENABLED
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
    bound = _policy.pushed_top()

    def enter() -> _policy._Frame | None:
        saved = _policy.pushed_top()
        _policy.set_top(bound)
        return saved

    def leave(saved: _policy._Frame | None) -> None:
        _policy.set_top(saved)  # exactly the worker's own stack again, even if fn leaked

    return _wrap(fn, enter, leave)
