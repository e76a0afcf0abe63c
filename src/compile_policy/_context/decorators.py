"""How a scope decorates a function: ``enter``/``leave`` around each piece of its execution,
so that a generator's or coroutine's every step runs under the scope and its caller, between
steps, does not.

    >>> from compile_policy import compile_disabled, compile_enabled, current_policy
    >>> @compile_disabled
    ... def steps():
    ...     yield current_policy().enabled
    >>> with compile_enabled():
    ...     [enabled for enabled in steps()], current_policy().enabled
    ([False], True)

Loaded by the first decoration (or :func:`~compile_policy.bind_policy`), not with the
package: ``inspect`` is about 8 ms of a fresh interpreter's import on a 2-core VM.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from .stack import pushed_top, set_top

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from .frames import _Frame

    F = TypeVar("F", bound=Callable[..., Any])
    H = TypeVar("H")

__all__ = ["wrap_in_scope"]


def wrap_in_scope(
    fn: F,
    enter: Callable[[], H],
    leave: Callable[[H], None],
    leave_raising: Callable[[H, BaseException], None] | None = None,
) -> F:
    """Wrap ``fn`` so that ``enter``/``leave`` surround each piece of its execution.

    Dispatches once, on the kind of ``fn``: generators and async generators run every step
    under the body's own stack, made by ``enter`` at the first step and kept from one step
    to the next, and the caller never runs under it between ``yield``s
    (``contextlib.ContextDecorator`` would only cover creating the generator); ``leave``
    runs after the last step, under the body's stack, and the caller's is then restored. When a piece
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
            body = _NOT_STARTED
            while True:
                caller = pushed_top()
                if body is _NOT_STARTED:
                    handle = enter()
                else:
                    set_top(body)
                try:
                    item = await step(value)
                except StopAsyncIteration:
                    _finish(leave, leave_raising, handle, None, caller)
                    return
                except BaseException as error:
                    _finish(leave, leave_raising, handle, error, caller)
                    raise
                body = _suspend(caller)
                try:
                    value = yield item
                    step = gen.asend
                except GeneratorExit:
                    caller = _resume(body)
                    try:
                        await gen.aclose()
                    except BaseException as error:
                        _finish(leave, leave_raising, handle, error, caller)
                        raise
                    _finish(leave, leave_raising, handle, None, caller)
                    raise
                except BaseException as exc:
                    step, value = gen.athrow, exc

        return async_gen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            gen = fn(*args, **kwargs)
            step, value = gen.send, None
            body = _NOT_STARTED
            while True:
                caller = pushed_top()
                if body is _NOT_STARTED:
                    handle = enter()
                else:
                    set_top(body)
                try:
                    item = step(value)
                except StopIteration as stop:
                    _finish(leave, leave_raising, handle, None, caller)
                    return stop.value
                except BaseException as error:
                    _finish(leave, leave_raising, handle, error, caller)
                    raise
                body = _suspend(caller)
                try:
                    value = yield item
                    step = gen.send
                except GeneratorExit:
                    caller = _resume(body)
                    try:
                        gen.close()
                    except BaseException as error:
                        _finish(leave, leave_raising, handle, error, caller)
                        raise
                    _finish(leave, leave_raising, handle, None, caller)
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


# A generator's body keeps its own stack from one step to the next: the scopes it entered
# before a `yield` (the decorator's own layer, or the very scope object its caller uses) are
# its own when it resumes, and its caller runs under the caller's stack between steps. The
# body's `with` blocks exit with the tokens their enters got, in the caller's context, so
# the stacks are swapped with plain sets: a token-based reset would restore the stack of
# the step that entered, not this one's caller.
_NOT_STARTED: Any = object()


def _suspend(caller: _Frame | None) -> _Frame | None:
    """After a step: the body's stack as it left it; the caller's stack again."""
    body = pushed_top()
    set_top(caller)
    return body


def _resume(body: _Frame | None) -> _Frame | None:
    """Before a step: the caller's stack as it is; the body's stack again."""
    caller = pushed_top()
    set_top(body)
    return caller


def _finish(
    leave: Callable[[H], None],
    leave_raising: Callable[[H, BaseException], None],
    handle: H,
    error: BaseException | None,
    caller: _Frame | None,
) -> None:
    """After the last step: the scope's exit checks the body's stack, then the caller's
    stack again, exactly."""
    try:
        if error is None:
            leave(handle)
        else:
            leave_raising(handle, error)
    finally:
        set_top(caller)
