"""The hot path of a policy-compiled callable: a generated function over its state.

A plain function, as ``torch.compile`` returns for a function, so that a call costs one
Python function call and a few C calls (a callable object's ``__call__`` alone costs more
than the whole policy check).
"""

from __future__ import annotations

import builtins
import functools
import types
from collections.abc import Callable, Mapping
from typing import Any

from .._context.stack import pushed_top
from .._policy.value import CompilePolicy
from .compile_state import CompileState
from .dynamo_frames import keep_dynamo_out
from .generated_code import compile_source, names_used, plain_parameters
from .wrappable import is_module

__all__ = ["HOT_PATH", "HOT_PATH_FILE", "make_hot_path"]


# The hot path, as source text. It is compiled once per object with the wrapped function's
# own parameter list where it has a plain one (`def step(x, y)`), so that a call passes its
# arguments on as they came: no *args tuple and **kwargs dict per call, and CPython makes
# the calls in and out without entering a nested interpreter loop. Measured with callgrind
# on the tiny benchmark function: 4,200 -> 1,260 instructions over the plain call on the
# eager path, 4,100 -> 2,500 over the direct compiled call. Other callables get
# `*args, **kwargs`. One template serves both, so there is one hot path to read.
HOT_PATH = """\
def call({params}):
    top = pushed_top()
    if top is not None and not top.enabled:  # a scope disabled compiling
        next(eager_calls)
        return target({args})
    compiled = ready.get(top)  # the warm variant this stack top resolves to
    if compiled is None:
        # A scope made anew (one per loop iteration) pushes a new top each time: it resolves
        # as an equal scope over the same stack did (`route`), off the slow path.
        route = None if top is None else top.route
        compiled = ready.get(route)
        if compiled is None:
            # The default disables compiling, or the variant fell back.
            counter = plain.get(top) or plain.get(route)
            if counter is None:
                return state.slow_call(top, {packed})
            next(counter)
            return target({args})
    runs = graph_runs.cell
    before = runs[0]
    try:
        out = compiled({args})
    except state.compiler_errors as exc:
        error = exc
    else:
        if runs[0] == before:
            state.skipped_in_call(top)
        else:
            next(compiled_calls)
        return out
    # Outside the except block, so that an eager error is not chained to the compile one.
    return state.compile_error_in_call(top, error, runs[0] != before, {packed})
"""
HOT_PATH_FILE = "<policy_compiled hot path{}>"  # its frames in tracebacks; see linecache
_GENERIC = ("*args, **kwargs", "*args, **kwargs", "args, kwargs")


def _hot_path_signature(target: object) -> tuple[str, str, str]:
    """``(params, args, packed)`` to fill :data:`HOT_PATH` for ``target``: its own
    parameters (see :func:`~compile_policy._compiled.generated_code.plain_parameters`), else
    ``*args, **kwargs``."""
    plain = plain_parameters(target, _names_in_hot_path())
    if plain is None:
        return _GENERIC
    params, args = plain
    return params, args, f"({args}{',' if args else ''}), {{}}"


@functools.lru_cache(maxsize=256)
def _hot_path_code(params: str, args: str, packed: str) -> types.CodeType:
    """The hot path compiled for one parameter list (each list once: compiling takes 0.2 ms)."""
    source = HOT_PATH.format(params=params, args=args, packed=packed)
    code = compile_source(source, HOT_PATH_FILE.format(f" ({params})"))
    keep_dynamo_out(code)
    return code


@functools.cache
def _names_in_hot_path() -> frozenset[str]:
    """Names the hot path uses itself: a parameter named like one would shadow it."""
    return names_used(_hot_path_code("", "", ""))


def make_hot_path(
    target: Callable[..., Any], defaults: CompilePolicy, compile_args: Mapping[str, Any] | None = None
) -> Any:
    """The function users call, over a new :class:`CompileState` for ``target``."""
    state = CompileState(target, defaults, compile_args)
    # The hot path's globals: each name it reads is one dict lookup, cached by CPython.
    namespace: dict[str, Any] = {
        # Dynamo reads a frame's builtins from its globals: without them, a hot path it
        # treats as a frame of its own (a graph break around the call) is a KeyError.
        "__builtins__": builtins,
        "target": target,
        "state": state,
        "ready": state.ready,
        "plain": state.plain,
        "pushed_top": pushed_top,
        "graph_runs": state.graph_runs,
        "eager_calls": state.eager_calls,
        "compiled_calls": state.compiled_calls,
    }
    call: Any = types.FunctionType(_hot_path_code(*_hot_path_signature(target)), namespace)

    def traced_call(*args: Any, **kwargs: Any) -> Any:
        return target(*args, **kwargs)

    if is_module(target):
        call.__name__ = call.__qualname__ = type(target).__name__
        call.__doc__ = type(target).__doc__
        call.__wrapped__ = target
    else:
        functools.update_wrapper(call, target)
    call.stats = state.stats
    # Inside an outer torch.compile, Dynamo inlines `traced_call` instead of `call` (it
    # follows `_torchdynamo_inline`, as for torch.compile's own wrappers): the plain callable
    # is traced into the outer graph, and the ContextVar read (a graph break, an error under
    # fullgraph=True) is never traced. At run time this costs nothing, and unlike
    # torch.compiler.is_compiling() it is not fooled by another thread compiling.
    call._torchdynamo_inline = traced_call
    call._policy_state = state
    return call
