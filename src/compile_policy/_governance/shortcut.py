"""The eager shortcut of a function ``torch.compile``'d under governance: in a disabled
context, the plain function with Dynamo's frame callback off, instead of torch's whole
``compile_wrapper``; in any other, ``compile_wrapper`` itself.

The shortcut is generated Python (see :mod:`compile_policy._compiled.generated_code`) whose
globals are the install's module namespace, so that it reads governance's state
(``_FOLLOWS_TORCH``, ``_INSTALLED``) as it changes, with one global read each.

    >>> shortcuts = Shortcuts(install_namespace)                         # doctest: +SKIP
    >>> governed = shortcuts.around(compile_wrapper, set_eval_frame)     # doctest: +SKIP
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from .._base import call_tally
from .._base.call_tally import GovernedCalls
from .._compiled.dynamo_frames import keep_dynamo_out
from .._compiled.generated_code import compile_source, names_used, plain_parameters

__all__ = ["SHORTCUT_FILE", "Shortcuts"]

# The shortcut, as source text: compiled once per parameter list (see Shortcuts._factory).
# With the compiled function's own parameters (`def tiny(t)`) a governed call passes its
# arguments on as they came, as the hot path of policy_compiled does, instead of making an
# *args tuple and a **kwargs dict twice per call: the governed warm tiny call went from
# 1.036x to 1.019-1.022x the same compiled function ungoverned. The list is read when the
# function is compiled: a later change of its parameters (a new __code__) needs a new compile.
_SHORTCUT = """\
def make(compile_wrapper, fn, set_eval_frame, compiled_calls, eager_calls):
    def governed({params}):
        top = pushed_top()
        if top is _FOLLOWS_TORCH or _INSTALLED is None or (top or default_frame()).enabled:
            next(compiled_calls)
            return compile_wrapper({args})
        next(eager_calls)
        prior = set_eval_frame(None)
        try:
            return fn({args})
        finally:
            set_eval_frame(prior)
    return governed
"""
_GENERIC = ("*args, **kwargs", "*args, **kwargs")
#: Its frames' file name in tracebacks (see linecache); compile_failures skips these frames.
SHORTCUT_FILE = "<governed torch.compile ({})>"


class Shortcuts:
    """Makes the shortcuts of governed functions, their code run in ``namespace`` (the
    install module's globals: ``pushed_top``, ``default_frame`` and governance's state)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self._namespace = namespace
        self._factory = functools.lru_cache(maxsize=256)(self._make_factory)
        self._reserved: frozenset[str] | None = None

    def _make_factory(self, params: str, args: str) -> Callable[..., Callable[..., Any]]:
        """``make(compile_wrapper, fn, set_eval_frame, compiled_calls, eager_calls)`` for one
        parameter list."""
        code = compile_source(_SHORTCUT.format(params=params, args=args), SHORTCUT_FILE.format(params))
        # As policy_compiled's hot path: where Dynamo meets the shortcut as a frame of its own
        # (a graph break around the call in a compiled caller, a `with compile_disabled():`
        # block there), it runs as plain Python instead of being traced (set_eval_frame is
        # untraceable).
        [governed] = (c for c in code.co_consts if isinstance(c, types.CodeType))
        keep_dynamo_out(governed)
        return types.FunctionType(code, self._namespace)

    def _names_in_shortcut(self) -> frozenset[str]:
        """Names the shortcut uses itself: a parameter named like one would shadow it."""
        if self._reserved is None:
            self._reserved = names_used(self._factory("", "").__code__)
        return self._reserved

    def around(self, compile_wrapper: Callable[..., Any], set_eval_frame: Any) -> Callable[..., Any]:
        """``compile_wrapper`` with a way around it for disabled contexts.

        Under ``force_eager`` torch's compile_wrapper still runs its whole prologue and
        epilogue (hooks, dispatch-key guards, tracing checks): the tiny benchmark function ran
        at 1.7x its plain cost. This runs the plain function as torch would then, with
        Dynamo's frame callback off (so that an enclosing compiled region never compiles its
        frames), and nothing else. Dynamo, tracing a caller, sees the same attributes as on
        compile_wrapper (it inlines ``_torchdynamo_inline``); ``innermost_fn`` follows
        ``_torchdynamo_orig_callable``.
        """
        fn = compile_wrapper._torchdynamo_orig_callable  # type: ignore[attr-defined]
        signature = plain_parameters(fn, self._names_in_shortcut()) or _GENERIC
        # Its calls, for compile_stats() and the pytest run report: one `next()` per call.
        calls = GovernedCalls()
        governed: Any = self._factory(*signature)(
            compile_wrapper, fn, set_eval_frame, calls.compiled, calls.eager
        )
        functools.update_wrapper(governed, compile_wrapper)  # its name, doc, __dict__, __wrapped__
        governed.__wrapped__ = fn  # as compile_wrapper's
        governed._torchdynamo_wrapper_id = id(governed)
        governed._compile_policy_compiled = compile_wrapper  # variants.py
        governed._compile_policy_calls = calls  # inspection.compile_stats
        call_tally.register(governed, calls.compiled, calls.eager)
        return governed  # type: ignore[no-any-return]
