"""What :func:`~compile_policy.policy_compiled` refuses at wrap time, and why.

A call of a policy-compiled object must be one synchronous call the policy can decide
and ``torch.compile`` can compile. Some callables are not, and accepting them failed
later, and far from the cause (torch 2.13):

- a class: ``torch.compile(cls)`` rewrites the class's ``__call__`` for every instance
  in the process on the first compiled call, whatever the policy says afterwards;
- a coroutine function: its call only creates a coroutine, and ``torch.compile`` of an
  ``async def`` under asyncio crashes the interpreter (a segfault) on a later call;
- a generator or async generator function: its call only creates the generator, so
  nothing is ever compiled, and every call counted as skipped, silently.

    >>> policy_compiled(Agent)
    Traceback (most recent call last):
    TypeError: policy_compiled() cannot govern a class (Agent): ...
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

__all__ = ["check_wrappable", "is_module"]

_WHY = {
    "a coroutine function": (
        "its call only creates a coroutine, and torch.compile of an async function crashes "
        "torch under asyncio; allowed: wrap the synchronous tensor code it awaits around"
    ),
    "an async generator function": (
        "its call only creates an async generator, whose steps torch.compile never compiles; "
        "allowed: wrap the synchronous tensor code of one step"
    ),
    "a generator function": (
        "its call only creates a generator, so nothing would ever be compiled and every call "
        "would count as skipped; allowed: wrap the synchronous tensor code of one step"
    ),
}


def check_wrappable(fn: object) -> None:
    """Raise ``TypeError`` naming ``fn`` and why, where ``policy_compiled`` cannot govern it."""
    if isinstance(fn, type):
        raise TypeError(
            f"policy_compiled() cannot govern a class ({fn.__qualname__}): torch.compile of a "
            "class rewrites its __call__ for every instance in the process on the first "
            "compiled call, whatever the policy says later; allowed: an instance "
            f"(policy_compiled({fn.__name__}(...))), a function, or a method decorated in the "
            "class body"
        )
    kind = _kind(fn)
    if kind is not None:
        raise TypeError(
            f"policy_compiled() cannot govern {kind} ({_name(fn)}): {_WHY[kind]}"
        )


def _kind(fn: object) -> str | None:
    """What of :data:`_WHY` ``fn`` (or the code a call of it runs) is, if any."""
    for candidate in _what_a_call_runs(fn):
        if inspect.iscoroutinefunction(candidate):
            return "a coroutine function"
        if inspect.isasyncgenfunction(candidate):
            return "an async generator function"
        if inspect.isgeneratorfunction(candidate):
            return "a generator function"
    return None


def _what_a_call_runs(fn: object) -> list[Any]:
    """``fn`` itself, and for other callables the method a call of them runs."""
    inner: Any = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    if inspect.isfunction(inner) or inspect.ismethod(inner) or inspect.isbuiltin(inner):
        return [inner]
    if is_module(inner):
        return [getattr(inner, "forward", None)]
    return [inspect.getattr_static(type(inner), "__call__", None)]


def is_module(obj: object) -> bool:
    """Whether ``obj`` is an ``nn.Module``, without importing torch (none loaded: none is)."""
    nn = getattr(sys.modules.get("torch"), "nn", None)
    return nn is not None and isinstance(obj, nn.Module)


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)
