"""What a policy-compiled object reports: :class:`CompileStats` and :class:`CompileFailure`.

    >>> step(x); s = step.stats()
    >>> s.compiled_calls, s.eager_calls, s.fallback_calls
    (1, 0, 0)
"""

from __future__ import annotations

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

    def __repr__(self) -> str:
        """One line: the counters, and how many variants and failures (``str()`` lists them).

            >>> step.stats()
            <CompileStats compiled_calls=1 eager_calls=1 fallback_calls=0 skipped_calls=0
             graphs_compiled=1 compile_seconds=0.031 variants=1 failures=0>
        """
        return (f"<CompileStats {self._counters()} variants={len(self.variants)} "
                f"failures={len(self.failures)}>")

    def __str__(self) -> str:
        """The counters, then a line per variant and per failure (``print(step.stats())``).

            >>> print(step.stats())  # one line for the counters, wrapped here
            compiled_calls=1 eager_calls=1 fallback_calls=0 skipped_calls=0 graphs_compiled=1
            compile_seconds=0.031
              variant backend='inductor', mode=None, ...: 0.031 s compiling
        """
        from .compile_failures import summary

        lines = [self._counters()]
        for key in self.variants:
            seconds = self.variant_compile_seconds.get(key, 0.0)
            lines.append(f"  variant {key.describe()}: {seconds:.3f} s compiling")
        for failure in self.failures:
            outcome = "fell back" if failure.fell_back else "raised"
            lines.append(f"  failure {failure.key.describe()}: {summary(failure.exception)} "
                         f"({outcome})")
        return "\n".join(lines)

    def _counters(self) -> str:
        return (f"compiled_calls={self.compiled_calls} eager_calls={self.eager_calls} "
                f"fallback_calls={self.fallback_calls} skipped_calls={self.skipped_calls} "
                f"graphs_compiled={self.graphs_compiled} compile_seconds={self.compile_seconds:.3f}")
