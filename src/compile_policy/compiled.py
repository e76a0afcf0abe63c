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

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast, overload, runtime_checkable

from .hot_path import make_hot_path
from .methods import PerInstance, in_class_body
from .policy import CompilePolicy, Fallback
from .stats import CompileFailure, CompileStats

__all__ = ["CompileFailure", "CompileStats", "PolicyCompiled", "policy_compiled"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


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
        return cast(PolicyCompiled[R], PerInstance(fn, lambda f: make_hot_path(f, defaults)))
    return cast(PolicyCompiled[R], make_hot_path(fn, defaults))
