"""What a test runs under: its markers, and the two modes of ``--compile-policy=both``.

A test runs in both modes, once ``[compiled]`` (compile enabled) and once ``[eager]``
(compile disabled), when its closest policy marker is ``compile_both``, or when the run's
policy is ``both`` and it carries no ``compile_enabled`` / ``compile_disabled`` marker.
The closest marker is a parameter set's own (``pytest.param(2, marks=...)``), then the
function's, its class's, its module's. The two runs are two parametrized items, so ``-n 2``
runs each exactly once, and the ids combine with the test's own parameters as pytest
combines them (``test_x[1-compiled]``). Items pytest does not parametrize
(``unittest.TestCase`` tests, doctests) run once, under the run's baseline.

    @pytest.mark.compile_both
    def test_step_agrees(): ...        # test_step_agrees[compiled], test_step_agrees[eager]

    @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.compile_disabled)])
    def test_n(n): ...                 # with both: test_n[1-compiled], test_n[1-eager], test_n[2]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from .._context import frames as _frames
from .._context import stack as _stack
from .._context.scopes import _SETTABLE
from ._leaks import PluginLabel

__all__ = ["MARKERS", "MODE_PARAM", "marker_frame", "parametrize_modes"]

#: The parameter that makes the two items; its values are the id suffixes.
MODE_PARAM = "_compile_policy_mode"
MODES = ("compiled", "eager")
POLICY_MARKERS = ("compile_enabled", "compile_disabled", "compile_both")

MARKERS = (
    "compile_disabled: run this test (and its fixtures) with compile disabled",
    "compile_enabled(**fields): run this test (and its fixtures) with compile enabled; "
    f"fields: {', '.join(_SETTABLE)}",
    "compile_both: run this test twice, [compiled] (compile enabled) and [eager] "
    "(compile disabled), as --compile-policy=both does for every test",
)


def runs_both(markers: Iterable[pytest.Mark], run_policy: str | None) -> bool:
    """Whether a test with ``markers`` (closest first) runs in both modes."""
    for marker in markers:
        if marker.name == "compile_both":
            return True
        if marker.name in ("compile_enabled", "compile_disabled"):
            return False  # marked tests run once, as marked
    return run_policy == "both"


def parametrize_modes(metafunc: pytest.Metafunc, run_policy: str | None) -> None:
    """Make the ``[compiled]`` and ``[eager]`` items of each parameter set that runs in both
    modes; a parameter set marked to run once stays one item, with its own id."""
    if MODE_PARAM in metafunc.fixturenames:
        return
    # The parameter sets made so far, with their marks (pytest.param(..., marks=...)): pytest
    # keeps them in `_calls` only (pytest 7-9), no public API shows them to this hook. With
    # no such list, the function's own markers decide for all its parameter sets.
    made = getattr(metafunc, "_calls", None)
    calls: list[Any] = list(made) if isinstance(made, list) and made else [None]
    own = list(metafunc.definition.iter_markers())
    both = [runs_both([*getattr(call, "marks", ()), *own], run_policy) for call in calls]
    if not any(both):
        return
    # The way pytest-repeat adds a parameter the test function does not name: request the
    # plugin's fixture, then parametrize it indirectly.
    metafunc.fixturenames.append(MODE_PARAM)
    metafunc.parametrize(MODE_PARAM, MODES, indirect=True, ids=MODES)
    if not all(both):
        # parametrize() made each parameter set two, in order: keep one where it runs once.
        split = metafunc._calls
        metafunc._calls = [
            kept
            for index, (call, twice) in enumerate(zip(calls, both, strict=True))
            for kept in (split[2 * index: 2 * index + 2] if twice else [call])
        ]


def mode_of(item: pytest.Item) -> str | None:
    """``"compiled"``, ``"eager"``, or None for a test that runs once."""
    callspec = getattr(item, "callspec", None)
    mode = callspec.params.get(MODE_PARAM) if callspec is not None else None
    return mode if isinstance(mode, str) else None


def policy_markers(item: pytest.Item) -> list[pytest.Mark]:
    """The test's policy markers, closest first: its parameter set's own marks, then the
    function's, its class's, its module's (``item.iter_markers()`` yields the parameter
    set's after the function's)."""
    callspec = getattr(item, "callspec", None)
    own = [m for m in getattr(callspec, "marks", ()) if m.name in POLICY_MARKERS]
    rest = [m for m in item.iter_markers() if m.name in POLICY_MARKERS and all(m is not o for o in own)]
    return [*own, *rest]


def marker_frame(item: pytest.Item, below: _frames._Frame | None) -> _frames._Frame | None:
    """The test's stack: its mode and its markers, module first, over the run's baseline.

    Raises TypeError or PolicyError for a marker used wrongly; the plugin fails that test.
    """
    mode = mode_of(item)
    markers = policy_markers(item)
    if mode is None and not markers:
        return below
    # Loaded for the first test that sets anything: a run without markers or modes never
    # needs the policy value (nor `dataclasses` behind it).
    from .._policy.value import CompilePolicy

    frame = below
    if mode is not None and not any(m.name == "compile_both" for m in markers):
        # --compile-policy=both: the mode is the run's, right above the baseline.
        frame = _stack.chain(
            frame, CompilePolicy(enabled=mode == "compiled"),
            PluginLabel(f"[{mode}] (--compile-policy=both)"),
            f"the {mode} run of {item.nodeid}",
        )
    for marker in reversed(markers):
        if marker.name == "compile_enabled":
            unknown = sorted(set(marker.kwargs) - set(_SETTABLE))
            if unknown or marker.args:
                raise TypeError(
                    f"@pytest.mark.compile_enabled got unexpected {unknown or marker.args}; "
                    f"allowed keyword fields: {', '.join(_SETTABLE)}"
                )
            layer = CompilePolicy(enabled=True, **marker.kwargs)
            label = f"@pytest.mark.compile_enabled({_shown(marker.kwargs)})"
        else:
            if marker.args or marker.kwargs:
                got = ", ".join([*map(repr, marker.args), _shown(marker.kwargs)]).strip(", ")
                raise TypeError(
                    f"@pytest.mark.{marker.name} takes no arguments; got ({got}). "
                    "Use @pytest.mark.compile_enabled(**fields) to set compile arguments"
                )
            if marker.name == "compile_disabled":
                layer, label = CompilePolicy(enabled=False), "@pytest.mark.compile_disabled"
            elif mode is not None:
                layer = CompilePolicy(enabled=mode == "compiled")
                label = f"@pytest.mark.compile_both [{mode}]"
            else:
                continue  # a closer compile_enabled/compile_disabled decides: runs once
        frame = _stack.chain(frame, layer, PluginLabel(label), f"marker on {item.nodeid}")
    return frame


def _shown(kwargs: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
