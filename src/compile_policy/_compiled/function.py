"""The policy-obeying function over one callable: :func:`make_compiled`, which the front
door (:mod:`.front_door`) and the method and module wrappers share, and
:class:`PolicyCompiled`, the type it has for users and type checkers.

    >>> call = make_compiled(train_step, CompilePolicy(), {})   # doctest: +SKIP
    >>> call(batch); call.stats().compiled_calls
    1
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload, runtime_checkable

from .._policy.value import CompilePolicy
from .compile_state import CompileState
from .hot_path import make_hot_path
from .stats import CompileStats

__all__ = ["PolicyCompiled", "make_compiled"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R2 = TypeVar("R2")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")


@runtime_checkable
class PolicyCompiled(Protocol[P, R_co]):
    """What :func:`policy_compiled` returns for a function or method: call it as the wrapped
    callable is called (same parameters and return type, for type checkers too).

    It is a plain function, as ``torch.compile`` returns for a function, so that a call
    costs one Python function call and a few C calls (a callable object's ``__call__``
    alone costs more than the whole policy check). Its state lives behind it:
    ``stats()`` snapshots its counters; ``__wrapped__`` is the plain callable.

        >>> step = policy_compiled(train_step)
        >>> step(batch); step.stats().compiled_calls
        1
    """

    __wrapped__: Any

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def stats(self) -> CompileStats:
        """A snapshot of this object's counters (:class:`CompileStats`).

            >>> step.stats().compiled_calls, step.stats().eager_calls
            (1, 0)
        """
        ...

    # A method compiled in a class body, read from an instance, is bound to it.
    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> PolicyCompiled[P, R_co]: ...
    @overload
    def __get__(
        self: PolicyCompiled[Concatenate[S, P2], R2], instance: S, owner: type[Any] | None = None, /
    ) -> PolicyCompiled[P2, R2]: ...



def make_compiled(
    target: Callable[..., Any], defaults: CompilePolicy, compile_args: Mapping[str, Any]
) -> Any:
    """The policy-obeying function over ``target`` (the hot path, or the plain callable
    counted as eager calls under ``disable=True``)."""
    if not compile_args.get("disable"):
        return make_hot_path(target, defaults, compile_args)
    state = CompileState(target, defaults, compile_args)
    eager_calls = state.eager_calls

    def call(*args: Any, **kwargs: Any) -> Any:
        next(eager_calls)
        return target(*args, **kwargs)

    def traced_call(*args: Any, **kwargs: Any) -> Any:
        return target(*args, **kwargs)

    functools.update_wrapper(call, target)
    # As make_hot_path's: inlined into an outer torch.compile; stats; unwrap/compile_stats.
    call.stats = state.stats  # type: ignore[attr-defined]
    call._torchdynamo_inline = traced_call  # type: ignore[attr-defined]
    call._policy_state = state  # type: ignore[attr-defined]
    return call
