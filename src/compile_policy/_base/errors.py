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

#: How much of a bad value a message quotes: a 5 MB environment variable is named by its
#: start and its length, so that the error stays one short line.
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """``repr(value)`` for an error message, cut after :data:`SHOWN_CHARS` characters.

        >>> shown("x" * 100)
        "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'…(100 chars)"
    """
    if isinstance(value, str):  # cut before repr: a repr of 5 MB is not made for 60 chars
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}…({len(value)} chars)"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}…({len(text)} chars of repr)"


class PolicyError(ValueError):
    """Invalid compile-policy input: a field value, an environment variable, a backend name.

    The message always names the bad value and the allowed ones. A ``ValueError``, so
    code that validates its config with ``except ValueError`` catches it too.

        >>> CompilePolicy.parse("max-autotun")
        Traceback (most recent call last):
        PolicyError: text 'max-autotun' is not a compile policy: 'max-autotun' is neither a switch
        word nor a mode name; allowed: ...
    """


class ScopeError(RuntimeError):
    """A policy scope was exited somewhere other than where it was entered.

    Raised when a ``with compile_disabled():`` block is exited in a different thread or
    asyncio task than the one that entered it, or out of order.

        >>> outer, inner = compile_disabled(), compile_enabled()
        >>> outer.__enter__(); inner.__enter__()
        >>> outer.__exit__(None, None, None)   # inner is still active
        Traceback (most recent call last):
        ScopeError: compile_disabled() exited out of order: compile_enabled() at ... was entered
        inside it and never exited ...
    """


class PartialCompileError(RuntimeError):
    """A compile failed after compiled code of the same call had already run.

    With graph breaks, Dynamo runs the first graphs of a call before it compiles the
    later ones. Re-running the whole call eagerly would apply the side effects of those
    graphs (an optimizer step, a BatchNorm statistics update) twice, so that one call
    raises this error instead; later calls of the object fall back to eager as usual.
    The compiler's exception is the ``__cause__``.

        >>> try:
        ...     step(batch)          # graph 1 ran (an optimizer step), graph 2 failed
        ... except PartialCompileError as error:
        ...     print(error.__cause__)  # the compiler's exception
    """


class CompileFallbackWarning(UserWarning):
    """A compile failed and the object now runs eagerly for that set of compile options.

    Emitted once per object and options key; the failure is also in ``stats().failures``.
    Make any silent fallback fail a run:

        >>> import warnings
        >>> warnings.simplefilter("error", CompileFallbackWarning)
    """


class CompileSkippedWarning(CompileFallbackWarning):
    """The policy says compile, but Dynamo stopped running compiled code for the object.

    Typically the recompile limit was hit, or Dynamo skipped a frame it could not handle.
    A subclass of :class:`CompileFallbackWarning`, so one filter covers both. The calls
    still run (eagerly, as Dynamo ran them) and are counted in ``stats().skipped_calls``.

        >>> with warnings.catch_warnings(record=True) as caught:
        ...     step(x)
        >>> [w.category.__name__ for w in caught]  # doctest: +SKIP
        ['CompileSkippedWarning']
    """


class PolicyLeakWarning(UserWarning):
    """A test left a policy scope active (``--compile-policy-leaks=warn``).

    With the default ``--compile-policy-leaks=error`` the leak is a teardown error instead;
    either way the next test starts from the run's baseline.

        $ pytest --compile-policy-leaks=warn -W error::compile_policy.PolicyLeakWarning
    """


class TorchInternalsError(RuntimeError):
    """The installed torch lacks an internal that :func:`compile_policy.govern_torch_compile`
    relies on. The message names the torch version and what differs; nothing was changed.

        >>> try:
        ...     govern_torch_compile()
        ... except TorchInternalsError as error:  # a torch this version was not checked on
        ...     print(error)                        # e.g. "torch 2.14.0: ... is missing"
    """
