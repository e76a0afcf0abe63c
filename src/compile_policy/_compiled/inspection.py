"""``compile_stats(obj)`` and ``unwrap(obj)``: one way to ask any policy-compiled thing.

    >>> model = policy_compiled(net)
    >>> compile_stats(model).compiled_calls
    0
    >>> unwrap(model) is net and unwrap(torch.compile(net)) is net
    True
"""

from __future__ import annotations

import sys
import types
from typing import Any, TypeVar, overload

from .._base.call_tally import GovernedCalls, counter_value
from .methods import PerInstance
from .stats import CompileStats

__all__ = ["compile_stats", "unwrap"]

T = TypeVar("T")


def compile_stats(obj: object) -> CompileStats:
    """A snapshot of the counters of any policy-compiled thing: a function, a bound or
    per-instance method, a :class:`PolicyCompiledModule`, a module compiled in place; and,
    once :func:`govern_torch_compile` is on, of a function or module ``torch.compile``'d
    from then on (its compiled and eager calls only; other counters read 0). Anything else
    is a :class:`TypeError` naming it.

        >>> step = policy_compiled(train_step)
        >>> compile_stats(step).eager_calls
        0
    """
    if isinstance(obj, PerInstance):  # read through the class: its class-level calls
        return obj.stats()
    state = _policy_state(obj)
    if state is None:
        calls = _governed_calls(obj)
        if calls is not None:
            return CompileStats(
                compiled_calls=counter_value(calls.compiled), eager_calls=counter_value(calls.eager),
                fallback_calls=0, skipped_calls=0, graphs_compiled=0, variants=(), failures=(),
            )
        raise TypeError(
            f"compile_stats() takes a policy-compiled function, method or module; got {obj!r}; "
            "allowed: what policy_compiled() returned, a module after "
            "policy_compiled(module, inplace=True), or, once govern_torch_compile() is on, "
            "what torch.compile() or module.compile() made from then on"
        )
    stats: CompileStats = state.stats()
    return stats


@overload
def unwrap(obj: T) -> T: ...
@overload
def unwrap(obj: Any) -> Any: ...
def unwrap(obj: Any) -> Any:
    """The plain callable or module behind a policy-compiled thing or a ``torch.compile``'d
    module (``OptimizedModule``), through any nesting; anything else, unchanged (a module
    compiled in place is its own plain module). It replaces ``getattr(net, "_orig_mod", net)``.

        >>> unwrap(policy_compiled(net)) is net
        True
    """
    while True:
        if isinstance(obj, PerInstance) or (_policy_state(obj) is not None and not _compiled_in_place(obj)):
            obj = obj.__wrapped__
        elif _is_optimized_module(obj):
            obj = obj._orig_mod
        else:
            return obj


def _policy_state(obj: object) -> Any:
    """The CompileState behind ``obj``, or None: kept in the instance's own ``__dict__`` (a
    hot-path function, a PolicyCompiledModule) or on an in-place module's call slot."""
    if isinstance(obj, types.MethodType):  # a policy-compiled function bound as a method
        obj = obj.__func__
    own = getattr(obj, "__dict__", None)
    if not isinstance(own, dict):
        return None
    state = own.get("_policy_state")
    if state is None:
        state = getattr(own.get("_compiled_call_impl"), "_policy_state", None)
    return state


def _governed_calls(obj: object) -> GovernedCalls | None:
    """The call counters of a function or module ``torch.compile``'d under governance (the
    shortcut governance puts around torch's wrapper counts them; see _governance/shortcut.py)."""
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    own = getattr(obj, "__dict__", None)
    if not isinstance(own, dict):
        return None
    if _is_optimized_module(obj):  # torch.compile(module): its forward is the shortcut
        own = getattr(own.get("_forward") or own.get("forward"), "__dict__", {})
    elif "_compiled_call_impl" in own:  # module.compile()
        own = getattr(own["_compiled_call_impl"], "__dict__", {})
    calls = own.get("_compile_policy_calls")
    return calls if isinstance(calls, GovernedCalls) else None


def _compiled_in_place(obj: object) -> bool:
    own = getattr(obj, "__dict__", {})
    return "_policy_state" not in own and "_compiled_call_impl" in own


def _is_optimized_module(obj: object) -> bool:
    # No torch._dynamo loaded: nothing was torch.compile'd, and importing it costs a second.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    optimized = getattr(eval_frame, "OptimizedModule", None)
    return isinstance(optimized, type) and isinstance(obj, optimized)
