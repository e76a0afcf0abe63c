"""compile-policy: a context-local "should this call be torch.compile'd?" decision.

    >>> from compile_policy import compile_disabled, policy_compiled
    >>> step = policy_compiled(train_step)
    >>> with compile_disabled():  # this thread/task only; restored on exit
    ...     step(batch)           # runs the plain function

Importing this package does not import torch.
"""

from .compiled import CompileFailure, CompileStats, PolicyCompiled, policy_compiled
from .errors import (
    CompileFallbackWarning,
    CompileSkippedWarning,
    PartialCompileError,
    PolicyError,
    PolicyLeakWarning,
    ScopeError,
    TorchInternalsError,
)
from .governance import govern_torch_compile
from .policy import CompilePolicy, current_policy, explain
from .scopes import PolicyScope, bind_policy, compile_disabled, compile_enabled, use_policy
from .variants import CompileOptions

__all__ = [
    "CompileFailure",
    "CompileFallbackWarning",
    "CompileOptions",
    "CompilePolicy",
    "CompileSkippedWarning",
    "CompileStats",
    "PartialCompileError",
    "PolicyCompiled",
    "PolicyError",
    "PolicyLeakWarning",
    "PolicyScope",
    "ScopeError",
    "TorchInternalsError",
    "bind_policy",
    "compile_disabled",
    "compile_enabled",
    "current_policy",
    "explain",
    "govern_torch_compile",
    "policy_compiled",
    "use_policy",
]

__version__ = "0.2.0"
