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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, cast, overload

from .._base.errors import PolicyError
from .._policy.value import CompilePolicy
from .arguments import check_as_torch_compile_does, checked_compile_args
from .function import PolicyCompiled, make_compiled
from .methods import PerInstance, in_class_body, stacked_descriptor
from .stats import CompileFailure, CompileStats
from .wrappable import check_wrappable, is_module

if TYPE_CHECKING:
    from torch import nn

    from .._policy.fields import Fallback
    from .modules import PolicyCompiledModule

__all__ = ["CompileFailure", "CompileStats", "PolicyCompiled", "make_compiled", "policy_compiled"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound="nn.Module")


class _Decorator(Protocol):
    """``policy_compiled(**arguments)``: apply it to a function, method or module."""

    @overload
    def __call__(self, fn: M, /) -> PolicyCompiledModule[M]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R], /) -> PolicyCompiled[P, R]: ...


@overload
def policy_compiled(
    fn: M, /, *, inplace: Literal[True], backend: str | Callable[..., Any] = ...,
    mode: str | None = ..., fullgraph: bool = ..., dynamic: bool | None = ...,
    options: Mapping[str, object] | None = ..., fallback: Fallback = ..., name: str | None = ...,
    disable: bool = ..., recompile_limit: int | None = ..., isolate_recompiles: bool | None = ...,
    dynamic_shapes: Any = ..., shapes_spec: Any = ...,
) -> M: ...
@overload
def policy_compiled(  # type: ignore[overload-overlap]
    fn: M, /, *, inplace: Literal[False] = ..., backend: str | Callable[..., Any] = ...,
    mode: str | None = ..., fullgraph: bool = ..., dynamic: bool | None = ...,
    options: Mapping[str, object] | None = ..., fallback: Fallback = ..., name: str | None = ...,
    disable: bool = ..., recompile_limit: int | None = ..., isolate_recompiles: bool | None = ...,
    dynamic_shapes: Any = ..., shapes_spec: Any = ...,
) -> PolicyCompiledModule[M]: ...
@overload
def policy_compiled(
    fn: Callable[P, R], /, *, inplace: Literal[False] = ..., backend: str | Callable[..., Any] = ...,
    mode: str | None = ..., fullgraph: bool = ..., dynamic: bool | None = ...,
    options: Mapping[str, object] | None = ..., fallback: Fallback = ..., name: str | None = ...,
    disable: bool = ..., recompile_limit: int | None = ..., isolate_recompiles: bool | None = ...,
    dynamic_shapes: Any = ..., shapes_spec: Any = ...,
) -> PolicyCompiled[P, R]: ...
@overload
def policy_compiled(
    fn: None = None, /, *, inplace: Literal[False] = ..., backend: str | Callable[..., Any] = ...,
    mode: str | None = ..., fullgraph: bool = ..., dynamic: bool | None = ...,
    options: Mapping[str, object] | None = ..., fallback: Fallback = ..., name: str | None = ...,
    disable: bool = ..., recompile_limit: int | None = ..., isolate_recompiles: bool | None = ...,
    dynamic_shapes: Any = ..., shapes_spec: Any = ...,
) -> _Decorator: ...
def policy_compiled(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    inplace: bool = False,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    fullgraph: bool = False,
    dynamic: bool | None = None,
    options: Mapping[str, object] | None = None,
    fallback: Fallback = "eager",
    name: str | None = None,
    disable: bool = False,
    recompile_limit: int | None = None,
    isolate_recompiles: bool | None = None,
    dynamic_shapes: Any = None,
    shapes_spec: Any = None,
) -> Any:
    """Wrap a function, bound method or ``nn.Module`` so each call obeys the current policy.

    Takes the ``torch.compile`` arguments of the running torch, with torch's meaning (one
    that this torch lacks is a ``TypeError`` here, naming it and the torch version;
    ``shapes_spec``, renamed ``dynamic_shapes`` in torch 2.14, under either name); fields set by the active
    (thread/task-local) scopes override ``backend``, ``mode``, ``fullgraph``, ``dynamic`` and
    ``options``. When the policy is disabled the plain callable runs; when enabled, a
    variant compiled for the merged options (built lazily, once per options key, kept on
    this object). ``fallback="eager"`` runs this object eagerly for a key whose compile
    failed (warning once with :class:`CompileFallbackWarning`); ``"raise"`` re-raises.
    ``disable=True``: always the plain callable (counted as eager calls).
    ``isolate_recompiles=True`` (the default where torch has it, 2.13+, unlike torch's) gives
    each object its own Dynamo cache and recompile budget; ``False`` shares them among objects
    of the same code, as every object does on torch 2.9-2.12.

    A module gives a :class:`PolicyCompiledModule` (an ``nn.Module`` with the module's
    parameters, names and ``state_dict()`` keys); ``inplace=True`` instead makes the
    module's own calls obey the policy and returns the module itself. As a decorator, with
    or without arguments, on functions and methods (one compiled object per instance).

        >>> @policy_compiled(backend="inductor")
        ... def train_step(batch): ...
        >>> agent_step = policy_compiled(agent.act)       # one object per agent
        >>> model = policy_compiled(net, mode="max-autotune")
        >>> policy_compiled(net, inplace=True) is net
        True
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
    compile_args = checked_compile_args(
        name=name, disable=disable, recompile_limit=recompile_limit,
        isolate_recompiles=isolate_recompiles, dynamic_shapes=dynamic_shapes,
        shapes_spec=shapes_spec,
    )
    if not isinstance(inplace, bool):
        raise PolicyError(f"inplace={inplace!r} is not allowed; allowed: True, False")
    check_as_torch_compile_does(defaults)
    if fn is None:
        if inplace:
            raise TypeError("policy_compiled(inplace=True) needs the module: "
                            "policy_compiled(module, inplace=True)")
        return functools.partial(_dispatch, defaults=defaults, compile_args=compile_args)
    return _dispatch(fn, defaults=defaults, compile_args=compile_args, inplace=inplace)


def _dispatch(
    fn: Callable[..., Any], *, defaults: CompilePolicy, compile_args: Mapping[str, Any],
    inplace: bool = False,
) -> Any:
    if (stacked := stacked_descriptor(fn, lambda f: make_compiled(f, defaults, compile_args))) is not None:
        return stacked  # over @staticmethod / @classmethod
    check_wrappable(fn)  # classes, coroutine and generator functions: a TypeError
    if not callable(fn):
        raise TypeError(f"policy_compiled() wraps a callable or nn.Module; got {fn!r}")
    if is_module(fn):
        from . import modules  # imports torch: only once a module is wrapped
        from .module_calls import compile_in_place
        from .module_guards import rewrapped

        config = (defaults, compile_args)
        if (same := rewrapped(cast("nn.Module", fn), config, policy_compiled.__kwdefaults__)) is not None:
            return same  # policy-compiled already, with these arguments
        if inplace:
            return compile_in_place(cast("nn.Module", fn), config)
        return modules.PolicyCompiledModule(fn, config)
    if inplace:
        raise TypeError(
            f"policy_compiled(..., inplace=True) compiles an nn.Module in place; got {fn!r}; "
            "allowed: an nn.Module, or inplace=False for functions and methods"
        )
    if in_class_body(fn):
        return PerInstance(fn, lambda f: make_compiled(f, defaults, compile_args))
    return make_compiled(fn, defaults, compile_args)
