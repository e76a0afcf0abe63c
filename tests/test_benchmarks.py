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


def test_own_code_is_the_same_function_with_a_code_object_of_its_own() -> None:
    # What a compiled reference is made from, so that Dynamo's cache entry is its own.
    from benchmarks.process_state import own_code

    offset = 3

    def shifted(x: int, *, by: int = 1) -> int:
        return x + by + offset

    copy = own_code(shifted, "shifted_copy")
    assert copy.__code__ is not shifted.__code__
    assert copy.__name__ == copy.__code__.co_name == "shifted_copy"
    assert copy(1) == shifted(1) == 5 and copy(1, by=2) == 6


def test_overhead_ratio_compares_what_each_adds_to_the_base_round_by_round() -> None:
    from benchmarks.timing import overhead_ratio

    samples = {"ours": [110.0, 220.0, 105.0], "theirs": [200.0, 400.0, 150.0], "plain": [100.0, 200.0, 100.0]}
    # Per round it adds 10, 20, 5 where theirs adds 100, 200, 50: the medians, 10 / 100.
    assert overhead_ratio(samples, "ours", "theirs", "plain") == 0.10
