"""The state users' processes time their calls in: after a ``torch.compile``'d call.

An inductor compile leaves about 180 context variables set in its thread's context (torch
2.13 keeps each config option's override in a ``ContextVar``: functorch's 150 options are left
set, to "no override", after a compile), and each
``ContextVar.set`` makes a new version of that context's mapping, copying the nodes on its
path (up to 32 entries each): a bare ``ContextVar`` set/reset pair then costs 2-3x what it
costs in a fresh interpreter (measured 189-206 ns fresh, 529-661 ns after one compiled call),
and with it every scope of ours, while ``torch.no_grad()`` costs the same. A call-cost figure
taken in a fresh process flatters the scope, so every worker of ``make bench`` (workers.py)
first compiles and calls a function of its own, as a user's process has done.

That compile skips inductor's on-disk caches: a compile served from them sets only about 20
variables, so the state, and the scope's figures, would depend on whether an earlier run on
the machine had compiled the same function (the first ``make bench`` after a clean checkout
against every later one). A real compile costs each worker a few seconds.

    >>> after_a_compiled_call()   # idempotent: compiles once per process
    >>> context_variables() > 0
    True
"""

from __future__ import annotations

import contextvars
import functools
import types
from collections.abc import Callable
from typing import Any

__all__ = ["after_a_compiled_call", "context_variables", "own_code"]


def own_code(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with a code object of its own (named ``name``), same globals and closure.

    Dynamo keeps its cache entries on the code object: a second ``torch.compile`` of the same
    code finds the first one's entry and passes its guards, but each call then also checks
    that the entry's backend matches its own (torch's BACKEND_MATCH guard), about 3-4% of the
    tiny call. A compiled function a claim compares against gets its own code, so that the
    ratio measures our wrapper, not that guard.

        >>> direct = torch.compile(own_code(step, "step_direct"))  # not step's cache entry
    """
    code = fn.__code__.replace(co_name=name)
    if hasattr(code, "co_qualname"):  # Python 3.11+
        code = code.replace(co_qualname=name)
    made = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    made.__kwdefaults__ = fn.__kwdefaults__
    return made


def _warm_up(t: Any) -> Any:
    return t.cos() + 1


@functools.cache
def after_a_compiled_call() -> None:
    """Compile a function of this module with torch's default backend (inductor), its caches
    off, and call it: the process is then in the state a user's process times its calls in."""
    import torch
    import torch._inductor.config

    with torch._inductor.config.patch(force_disable_caches=True):
        torch.compile(_warm_up)(torch.randn(8))


def context_variables() -> int:
    """How many context variables are set in this thread's context (what a set copies)."""
    return len(contextvars.copy_context())
