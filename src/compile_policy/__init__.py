"""compile-policy: a context-local "should this call be torch.compile'd?" decision.

    >>> from compile_policy import compile_disabled, policy_compiled
    >>> step = policy_compiled(train_step)
    >>> with compile_disabled():  # this thread/task only; restored on exit
    ...     step(batch)           # runs the plain function

Importing this package does not import torch.
"""

from __future__ import annotations

from ._base.errors import (
    CompileFallbackWarning,
    CompileSkippedWarning,
    PartialCompileError,
    PolicyError,
    PolicyLeakWarning,
    ScopeError,
    TorchInternalsError,
)
from ._context.scopes import PolicyScope, bind_policy, compile_disabled, compile_enabled, use_policy
from ._context.stack import current_policy, explain

# typing.TYPE_CHECKING without importing typing: `import compile_policy` never needs it
# at run time, and it is 3-5 ms of the import. Type checkers take this name as True.
TYPE_CHECKING = False

# The compile machinery loads on first use of one of its names (PEP 562 ``__getattr__``):
# it is half of the import, and a process that only enters scopes (every pytest run, through
# the plugin) never needs it. CompilePolicy too: it is a dataclass, and `dataclasses` (with
# `inspect`, `re` and `enum` behind it) costs three times the rest of the import; the first
# scope loads it. To export a name of it, add it to both lists below.
if TYPE_CHECKING:
    from ._compiled.front_door import PolicyCompiled, policy_compiled
    from ._compiled.inspection import compile_stats, unwrap
    from ._compiled.modules import PolicyCompiledModule
    from ._compiled.stats import CompileFailure, CompileStats
    from ._compiled.variants import CompileOptions
    from ._governance.install import govern_torch_compile
    from ._policy.value import CompilePolicy

_LAZY = {
    "CompileFailure": "._compiled.stats",
    "CompileOptions": "._compiled.variants",
    "CompilePolicy": "._policy.value",  # a dataclass: `dataclasses` and `inspect` load with it
    "CompileStats": "._compiled.stats",
    "PolicyCompiled": "._compiled.front_door",
    "PolicyCompiledModule": "._compiled.modules",  # an nn.Module: importing it imports torch
    "compile_stats": "._compiled.inspection",
    "govern_torch_compile": "._governance.install",
    "unwrap": "._compiled.inspection",
    "policy_compiled": "._compiled.front_door",
}

__all__ = [
    "CompileFailure",
    "CompileFallbackWarning",
    "CompileOptions",
    "CompilePolicy",
    "CompileSkippedWarning",
    "CompileStats",
    "PartialCompileError",
    "PolicyCompiled",
    "PolicyCompiledModule",
    "PolicyError",
    "PolicyLeakWarning",
    "PolicyScope",
    "ScopeError",
    "TorchInternalsError",
    "bind_policy",
    "compile_disabled",
    "compile_enabled",
    "compile_stats",
    "current_policy",
    "explain",
    "govern_torch_compile",
    "policy_compiled",
    "unwrap",
    "use_policy",
]

__version__ = "0.4.0"

if not TYPE_CHECKING:  # hidden from type checkers, which would then accept any name

    def __getattr__(name: str) -> object:
        """Load ``CompilePolicy`` on first use (PEP 562): ``import compile_policy`` stays light.

            >>> import compile_policy
            >>> compile_policy.CompilePolicy(enabled=False).enabled
            False
        """
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later reads are plain module attributes
        return value

    def __dir__() -> list[str]:
        """The module's names, those loaded on first use included (for ``dir()``, pydoc)."""
        return sorted(set(globals()) | set(__all__))
