"""The benchmarks' own candidates stay what they claim to measure."""

from __future__ import annotations

from benchmarks.cachesim import PIECES, candidates


def test_cachesim_variants_are_the_hot_path_less_one_piece_on_the_compiled_path() -> None:
    # cachesim rewrites the hot path's source text: this fails (RuntimeError) when a piece it
    # takes out is no longer there, and here when a variant leaves the compiled path.
    calls, wrapped = candidates(backend="eager")
    assert len(calls) == 3 + len(PIECES)
    for call in calls.values():
        call()
    stats = wrapped.stats()
    assert (stats.skipped_calls, stats.fallback_calls, stats.eager_calls) == (0, 0, 0)
    # The first call, then two rounds in which the object and the variants count their calls
    # (all but the one without the counter).
    assert stats.compiled_calls == 1 + 2 * len(PIECES)
