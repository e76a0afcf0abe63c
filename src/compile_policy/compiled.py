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
import sys
from collections.abc import Callable, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
    runtime_checkable,
)

from . import torch_releases
from .compile_state import CompileState
from .errors import PolicyError
from .hot_path import make_hot_path
from .methods import PerInstance, in_class_body, stacked_descriptor
from .policy import CompilePolicy
from .stats import CompileFailure, CompileStats
from .wrappable import check_wrappable

if TYPE_CHECKING:
    from torch import nn

    from .modules import PolicyCompiledModule
    from .policy import Fallback

__all__ = ["CompileFailure", "CompileStats", "PolicyCompiled", "make_compiled", "policy_compiled"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R2 = TypeVar("R2")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
M = TypeVar("M", bound="nn.Module")


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


class _Decorator(Protocol):
    """``policy_compiled(**arguments)``: apply it to a function, method or module."""

    @overload
    def __call__(self, fn: M, /) -> PolicyCompiledModule[M]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R], /) -> PolicyCompiled[P, R]: ...


#: Every ``torch.compile`` argument that is not a policy field (no scope overrides them), in
#: any supported torch, with the value that means "not given". Which of them the running
#: torch has: :data:`TORCH_ONLY_ARGS`.
_NOT_GIVEN: dict[str, Any] = {
    "name": None, "disable": False, "recompile_limit": None, "isolate_recompiles": None,
    "dynamic_shapes": None, "shapes_spec": None,
}


def __getattr__(name: str) -> Any:
    # TORCH_ONLY_ARGS: the running torch's torch.compile arguments that are not policy
    # fields (no scope overrides them), with their defaults. Worked out on first use, so
    # that importing this module reads no torch version.
    if name == "TORCH_ONLY_ARGS":
        return dict(torch_releases.running().compile_arguments)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    compile_args = _checked_compile_args(
        name=name, disable=disable, recompile_limit=recompile_limit,
        isolate_recompiles=isolate_recompiles, dynamic_shapes=dynamic_shapes,
        shapes_spec=shapes_spec,
    )
    if not isinstance(inplace, bool):
        raise PolicyError(f"inplace={inplace!r} is not allowed; allowed: True, False")
    _check_as_torch_compile_does(defaults)
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
    if _is_module(fn):
        from . import modules  # imports torch: only once a module is wrapped
        from .module_guards import rewrapped

        if (same := rewrapped(cast("nn.Module", fn), (defaults, compile_args))) is not None:
            return same  # policy-compiled already, with these arguments
        if inplace:
            return modules.compile_in_place(cast("nn.Module", fn), (defaults, compile_args))
        return modules.PolicyCompiledModule(fn, (defaults, compile_args))
    if inplace:
        raise TypeError(
            f"policy_compiled(..., inplace=True) compiles an nn.Module in place; got {fn!r}; "
            "allowed: an nn.Module, or inplace=False for functions and methods"
        )
    if in_class_body(fn):
        return PerInstance(fn, lambda f: make_compiled(f, defaults, compile_args))
    return make_compiled(fn, defaults, compile_args)


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


def _checked_compile_args(**args: Any) -> dict[str, Any]:
    """The given ``torch.compile``-only arguments, each checked, under the running torch's
    names; ``isolate_recompiles`` always, where torch has it (True unless given)."""
    facts = torch_releases.running()
    known = facts.compile_arguments
    given = {k: v for k, v in args.items() if v is not _NOT_GIVEN[k]}
    for old, new in facts.renamed_arguments.items():
        if old in given and new in given:
            raise TypeError(
                f"policy_compiled() got both {old}= and {new}=, one torch.compile argument "
                f"under its old and new name; give only {new}="
            )
        if old in given or new in given:  # either name, passed on under torch's own
            value = given.pop(old if old in given else new)
            given[new if new in known else old] = value
    for argument in given:
        if argument not in known:
            raise TypeError(
                f"policy_compiled() got {argument}=, a torch.compile argument: "
                f"{torch_releases.lacking('compile_arguments', argument)}; "
                f"allowed here: {', '.join(sorted(known))}"
            )
    for flag in ("disable", "isolate_recompiles"):
        if flag in given and not isinstance(given[flag], bool):
            raise PolicyError(f"{flag}={given[flag]!r} is not allowed; allowed: True, False")
    if "name" in given and not isinstance(given["name"], str):
        raise PolicyError(f"name={given['name']!r} is not allowed; allowed: None or a string")
    limit = given.get("recompile_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise PolicyError(
            f"recompile_limit={limit!r} is not allowed; allowed: None or an int >= 1"
        )
    if given.get("disable") is False:
        del given["disable"]
    if facts.isolation:
        given.setdefault("isolate_recompiles", True)
    return given


def _check_as_torch_compile_does(defaults: CompilePolicy) -> None:
    """Refuse now what ``torch.compile`` refuses when it wraps (PolicyError): ``mode`` with
    ``options``, an unregistered backend name, an option inductor does not have.

    The backend and the options are checked against torch's registries, so only once torch
    is loaded: wrapping never imports torch (a program that wraps before importing torch
    gets them checked at its first compiled call). Scopes' values are checked when a variant
    is built (variants.py).
    """
    mode, options, backend = defaults.mode, defaults.options, defaults.backend
    if mode is not None and options is not None:
        raise PolicyError(
            f"mode={mode!r} and options={dict(options)!r} are both given, and torch.compile "
            "takes one or the other; allowed: only one of them"
        )
    if "torch" not in sys.modules:
        return
    if isinstance(backend, str) and backend != "inductor":
        from .variants import _check_backend

        _check_backend(backend)
    elif backend == "inductor" and options is not None:
        import torch

        try:
            torch._TorchCompileInductorWrapper(None, dict(options), defaults.dynamic)  # type: ignore[no-untyped-call]
        except RuntimeError as error:  # torch's "Unexpected optimization option ..."
            raise PolicyError(
                f"options={dict(options)!r} is not allowed: {str(error).split(', known options')[0]}; "
                "allowed: inductor's options (torch._inductor.list_options())"
            ) from None


def _is_module(obj: object) -> bool:
    nn = getattr(sys.modules.get("torch"), "nn", None)  # no torch loaded: no module
    return nn is not None and isinstance(obj, nn.Module)
