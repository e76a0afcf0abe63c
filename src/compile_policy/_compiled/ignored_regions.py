"""Regions where ``torch.compile`` does not compile: a call there builds and warms no variant.

Inside these regions ``torch.compile`` runs the function plainly or is a no-op (torch 2.13).
A policy-compiled call made there runs the plain callable, counted as an eager call, and
keeps nothing, so that its later calls compile as if it had never been called there:

- ``torch.export.export`` (non-strict): ``torch.compile`` returns the function itself, which
  a variant built there would keep for good;
- ``torch._dynamo.config.disable`` (``TORCH_COMPILE_DISABLE=1``), ``TORCHDYNAMO_DISABLE=1``;
- a functorch transform (``torch.func.vmap``, ``grad``, ``jvp``) and a ``TorchDispatchMode``
  that does not ignore compile internals (``FlopCounterMode``): Dynamo gives up on the frame
  and marks its code skipped for good, for every later call, had it run there;
- ``torch.compiler.set_stance("force_eager")``: every call runs eagerly.

Where Dynamo traces the call (an outer ``torch.compile``, strict ``torch.export``), the
hot path is inlined and never gets here. Where torch refuses a compiled function
(``torch.jit.trace``, ``torch.fx.symbolic_trace``, ``make_fx``), its error propagates as for
``torch.compile``, and nothing is kept either.

    >>> ignored_region() is None  # an ordinary call
    True
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any

from .._base import torch_releases

__all__ = ["PRIVATE_NAMES", "ignored_region", "missing_private_names"]

#: The torch-private names the check reads (module, attribute), as in torch 2.13. A name a
#: later torch lacks leaves its region undetected (:func:`missing_private_names` lists them;
#: a test asserts there are none on the pinned torch).
PRIVATE_NAMES = (
    ("torch._dynamo.config", "disable"),
    ("torch._dynamo.eval_frame", "_stance"),  # a DynamoStance: .stance is set_stance's
    ("torch._C._functorch", "peek_interpreter_stack"),
    ("torch._C._functorch", "TransformType"),
)
#: Where torch's own check for a TorchDispatchMode that makes Dynamo skip a frame lives; its
#: name is a version fact (torch_releases: dispatch_mode_check).
DISPATCH_MODULE = "torch.utils._python_dispatch"


@functools.cache
def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _private(module: str, name: str) -> Any:
    return getattr(_module(module), name, None)


def missing_private_names() -> list[str]:
    """The names of :data:`PRIVATE_NAMES` this torch lacks."""
    names = (*PRIVATE_NAMES, (DISPATCH_MODULE, torch_releases.running().dispatch_mode_check))
    return [f"{module}.{name}" for module, name in names if _private(module, name) is None]


def ignored_region() -> str | None:
    """Why ``torch.compile`` would not compile a call made here (in this thread), or None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None  # no torch loaded: nothing can be exporting or transforming
    # Process-wide flags in torch 2.13, not per thread: a call in another thread meanwhile
    # runs eagerly once, keeping nothing; its next call compiles.
    if torch.compiler.is_exporting():
        return "inside torch.export"
    if os.environ.get("TORCHDYNAMO_DISABLE", "") == "1" or _private("torch._dynamo.config", "disable"):
        return "torch.compile is disabled (TORCH_COMPILE_DISABLE / torch._dynamo.config.disable)"
    stance = _private("torch._dynamo.eval_frame", "_stance")
    if getattr(stance, "stance", None) == "force_eager":
        return 'under torch.compiler.set_stance("force_eager")'
    peek = _private("torch._C._functorch", "peek_interpreter_stack")
    transforms = _private("torch._C._functorch", "TransformType")
    if peek is not None and transforms is not None:
        interpreter = peek()
        # The transforms Dynamo refuses to enter from eager code (_throw_if_in_functorch).
        if interpreter is not None and interpreter.key() in (
            transforms.Vmap, transforms.Grad, transforms.Jvp
        ):
            return f"inside a functorch transform ({interpreter.key().name.lower()})"
    check = torch_releases.running().dispatch_mode_check
    in_mode = _private(DISPATCH_MODULE, check)
    # As Dynamo asks it: torch < 2.12 counts only non-infra modes.
    if in_mode is not None and (
        in_mode(include_infra_modes=False) if check == "is_in_torch_dispatch_mode" else in_mode()
    ):
        return "under a TorchDispatchMode"
    return None
