"""What a policy-compiled object reports: :class:`CompileStats` and :class:`CompileFailure`.

    >>> step(x); s = step.stats()
    >>> s.compiled_calls, s.eager_calls, s.fallback_calls
    (1, 0, 0)
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from .variants import CompileOptions

__all__ = ["CompileFailure", "CompileStats"]


@dataclass(frozen=True)
class CompileFailure:
    """One compile failure of one object: the options key it happened for, and why.

        >>> [failure] = step.stats().failures
        >>> failure.key.describe(), type(failure.exception).__name__, failure.fell_back
        ("backend='inductor', mode=None, ...", 'BackendCompilerFailed', True)
    """

    key: CompileOptions
    exception: BaseException
    fell_back: bool  # False under fallback="raise": the error was re-raised


@dataclass(frozen=True)
class CompileStats:
    """A snapshot of a :class:`PolicyCompiled` object's counters (each read once; calls
    running in other threads meanwhile may land in some counters and not yet in others).

    - ``compiled_calls``: calls in which compiled graphs actually ran.
    - ``eager_calls``: calls the policy ran as the plain function (compile disabled, or a
      region where torch.compile is ignored, such as torch.export).
    - ``fallback_calls``: calls run eagerly because this object's compile failed for the key.
    - ``skipped_calls``: calls the policy compiled but Dynamo ran without any compiled
      graph (recompile limit hit, a frame Dynamo skipped, or no tensor work at all).
    - ``graphs_compiled``: graphs the backend compiled (a graph break makes two).
    - ``compile_seconds``: wall time the backend spent compiling graphs (failed ones too),
      summed over the variants; 0.0 before the first compile, unchanged by warm calls.
      Dynamo's tracing before the backend runs is not included.
    - ``variant_compile_seconds``: the same, per options key (one entry per variant).
    - ``variants``: the options keys built so far; ``failures``: what failed, per key.

        >>> step(x)
        >>> with compile_disabled():
        ...     step(x)
        >>> s = step.stats(); s.compiled_calls, s.eager_calls, s.graphs_compiled
        (1, 1, 1)
    """

    compiled_calls: int
    eager_calls: int
    fallback_calls: int
    skipped_calls: int
    graphs_compiled: int
    variants: tuple[CompileOptions, ...]
    failures: tuple[CompileFailure, ...]
    compile_seconds: float = 0.0
    variant_compile_seconds: Mapping[CompileOptions, float] = field(
        default_factory=lambda: types.MappingProxyType({})
    )



def counter_value(counter: itertools.count[int]) -> int:
    """The next value of ``counter``, i.e. how many times it was advanced."""
    # itertools.count exposes its next value only through its repr: "count(N)".
    return int(repr(counter)[len("count("):-1])
