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

# typing.TYPE_CHECKING without importing typing (see __init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

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
