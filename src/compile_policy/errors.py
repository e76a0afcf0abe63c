"""Exceptions and warnings raised by compile_policy.

Each has its own class so users can catch or filter exactly ours::

    import warnings
    from compile_policy import CompileFallbackWarning
    warnings.simplefilter("error", CompileFallbackWarning)  # fail on any silent fallback
"""

from __future__ import annotations

__all__ = [
    "CompileFallbackWarning",
    "CompileSkippedWarning",
    "PartialCompileError",
    "PolicyError",
    "PolicyLeakWarning",
    "ScopeError",
    "TorchInternalsError",
]


class PolicyError(ValueError):
    """Invalid compile-policy input: a field value, an environment variable, a backend name.

    The message always names the bad value and the allowed ones.
    """


class ScopeError(RuntimeError):
    """A policy scope was exited somewhere other than where it was entered.

    Raised when a ``with compile_disabled():`` block is exited in a different thread or
    asyncio task than the one that entered it, or out of order.
    """


class PartialCompileError(RuntimeError):
    """A compile failed after compiled code of the same call had already run.

    With graph breaks, Dynamo runs the first graphs of a call before it compiles the
    later ones. Re-running the whole call eagerly would apply the side effects of those
    graphs (an optimizer step, a BatchNorm statistics update) twice, so that one call
    raises this error instead; later calls of the object fall back to eager as usual.
    The compiler's exception is the ``__cause__``.
    """


class CompileFallbackWarning(UserWarning):
    """A compile failed and the object now runs eagerly for that set of compile options."""


class CompileSkippedWarning(CompileFallbackWarning):
    """The policy says compile, but Dynamo stopped running compiled code for the object.

    Typically the recompile limit was hit, or Dynamo skipped a frame it could not handle.
    A subclass of :class:`CompileFallbackWarning`, so one filter covers both.
    """


class PolicyLeakWarning(UserWarning):
    """A test left a policy scope active (``--compile-policy-leaks=warn``)."""


class TorchInternalsError(RuntimeError):
    """The installed torch lacks an internal that :func:`compile_policy.govern_torch_compile`
    relies on. The message names the torch version and what differs; nothing was changed."""
