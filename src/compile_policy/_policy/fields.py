"""The fields of a compile policy and the words each may take: the vocabulary that the value
(:mod:`.value`) validates against and the text grammar (:mod:`.text`) reads and writes.

    >>> from compile_policy._policy.fields import FIELD_NAMES
    >>> FIELD_NAMES[:3]
    ('enabled', 'backend', 'mode')
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Fallback = Literal["eager", "raise"]  # FALLBACKS, as a type

__all__ = ["FALLBACKS", "FIELD_NAMES", "MODES", "STANCES"]

#: torch.compile's modes in any supported torch (``torch._inductor.list_mode_options()``),
#: spelled out so that validating a scope never has to import torch; those of the running
#: torch: ``torch_releases.running().modes``.
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "lite")
FALLBACKS = ("eager", "raise")
FIELD_NAMES = ("enabled", "backend", "mode", "fullgraph", "dynamic", "options", "fallback", "stance")
#: torch.compiler.set_stance's stances a scope may set (torch 2.13); "force_eager" is
#: compile_disabled(). Applied to plain torch.compile code too: see _governance/install.py.
STANCES = (
    "default", "eager_on_recompile", "fail_on_recompile", "eager_then_compile",
    "aot_eager_then_compile",
)
