"""Keeping Dynamo out of the generated hot path's frames (torch internals, checked).

When Dynamo meets the hot path as a frame of its own (``torch.compile(step)`` on a
policy-compiled object, a graph break around the call in an outer compiled function,
``policy_compiled(policy_compiled(f))``), it would trace the policy's bookkeeping: the
ContextVar read, the locks, the counters (run at trace time only, so they lie) and the
object's own ``torch.compile`` call, inlined instead of run. Instead its frame runs as
plain Python, with Dynamo off for everything it calls (the object's own compiled
function turns Dynamo back on for itself, as any ``torch.compile`` call does). Inside a
traced function the hot path is never a frame: Dynamo inlines its ``_torchdynamo_inline``.

This uses names of torch that are not public (what ``torch._dynamo.skip`` uses, but
for the frames called from it too), so :func:`require` checks each of them and refuses
clearly, naming the torch version and what is missing. It runs when a hot path is made
with torch loaded, and at the first compile otherwise; never on import.

    >>> set_strategy, skip = require()   # raises TorchInternalsError on an unknown torch
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from .._base import torch_releases

__all__ = [
    "TorchInternalsError", "keep_dynamo_out", "keep_dynamo_out_of_pending", "require",
    "trace_scopes_as_graph_breaks",
]

#: (module, name) pairs this module relies on: torch 2.13's per-code frame strategy.
REQUIRED = (
    ("torch._C._dynamo.eval_frame", "set_code_exec_strategy"),
    ("torch._C._dynamo.eval_frame", "_FrameExecStrategy"),
    ("torch._C._dynamo.eval_frame", "_FrameAction"),
    ("torch._C._dynamo.eval_frame", "_FrameAction.SKIP"),
)


class TorchInternalsError(RuntimeError):
    """This torch lacks an internal name compile_policy relies on (upgrade or report)."""


def require() -> tuple[Callable[[types.CodeType, Any], None], Any]:
    """``(set_code_exec_strategy, skip-this-frame-and-its-callees)``, or a clear refusal."""
    import importlib

    import torch

    found: dict[str, Any] = {}
    missing = []
    for module_name, name in REQUIRED:
        try:
            value: Any = importlib.import_module(module_name)
            for part in name.split("."):
                value = getattr(value, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{name}")
        else:
            found[name] = value
    if missing:
        raise TorchInternalsError(
            f"compile_policy cannot keep Dynamo out of its hot path in torch "
            f"{torch.__version__}: missing {', '.join(missing)} (known to work: torch "
            f"{torch_releases.supported_text()}). "
            "Without them an outer torch.compile would trace the policy's own bookkeeping."
        )
    skip = found["_FrameAction.SKIP"]
    return found["set_code_exec_strategy"], found["_FrameExecStrategy"](skip, skip)


_pending: list[types.CodeType] = []  # hot-path code made before torch was loaded
_lock = threading.Lock()


def keep_dynamo_out(code: types.CodeType) -> None:
    """Mark ``code`` now if torch is loaded (Dynamo can only run then), else at the first
    compile (:func:`keep_dynamo_out_of_pending`)."""
    if "torch._C._dynamo.eval_frame" not in sys.modules:
        with _lock:
            _pending.append(code)
        return
    set_strategy, skip = require()
    set_strategy(code, skip)
    trace_scopes_as_graph_breaks()


def keep_dynamo_out_of_pending() -> None:
    """Mark the hot-path code made before torch was loaded (called before each compile)."""
    trace_scopes_as_graph_breaks()
    if not _pending:
        return
    set_strategy, skip = require()
    with _lock:
        codes = _pending[:]
        del _pending[:]
    for code in codes:
        set_strategy(code, skip)


_scopes_traced_as_graph_breaks = False


def trace_scopes_as_graph_breaks() -> None:
    """Make a scope's enter and exit, met inside a function Dynamo traces (a ``with
    compile_disabled():`` block in a compiled function), a graph break run as plain Python.

    The enter reads its caller's frame (``sys._getframe``: where the scope was entered, and
    which exit is its own), which Dynamo cannot trace: torch 2.15 warns that it "does not know
    how to trace the builtin", an error under warnings-as-errors. Dynamo follows
    ``_torchdynamo_inline`` on a function it inlines (as for the hot path), and does not trace
    a ``torch.compiler.disable``'d one. Once, with torch loaded: where a policy-compiled
    object compiles or governance installs, the only places a scope changes what compiled
    code does.
    """
    global _scopes_traced_as_graph_breaks
    if _scopes_traced_as_graph_breaks:
        return
    import torch

    from .._context.scopes import PolicyScope

    with _lock:
        for method in (PolicyScope.__enter__, PolicyScope.__exit__):
            disabled: Any = torch.compiler.disable(method)  # type: ignore[no-untyped-call]
            setattr(method, "_torchdynamo_inline", disabled)  # noqa: B010 (a function's attribute)
        _scopes_traced_as_graph_breaks = True
