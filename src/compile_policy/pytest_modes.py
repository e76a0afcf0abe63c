"""What a test runs under: its markers, and the two modes of ``--compile-policy=both``.

A test runs in both modes, once ``[compiled]`` (compile enabled) and once ``[eager]``
(compile disabled), when its closest policy marker is ``compile_both``, or when the run's
policy is ``both`` and it carries no ``compile_enabled`` / ``compile_disabled`` marker.
The two runs are two parametrized items, so ``-n 2`` runs each exactly once, and the ids
combine with the test's own parameters as pytest combines them (``test_x[1-compiled]``).

    @pytest.mark.compile_both
    def test_step_agrees(): ...        # test_step_agrees[compiled], test_step_agrees[eager]
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from . import policy_stack as _stack
from .policy import CompilePolicy
from .pytest_leaks import PluginLabel
from .scopes import _SETTABLE

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


def runs_both(node: pytest.Item, run_policy: str | None) -> bool:
    """Whether the test at ``node`` (an item or a function definition) runs in both modes."""
    for marker in node.iter_markers():  # closest first
        if marker.name == "compile_both":
            return True
        if marker.name in ("compile_enabled", "compile_disabled"):
            return False  # marked tests run once, as marked
    return run_policy == "both"


def parametrize_modes(metafunc: pytest.Metafunc, run_policy: str | None) -> None:
    """Make the ``[compiled]`` and ``[eager]`` items of a test that runs in both modes."""
    if MODE_PARAM in metafunc.fixturenames or not runs_both(metafunc.definition, run_policy):
        return
    # The way pytest-repeat adds a parameter the test function does not name: request the
    # plugin's fixture, then parametrize it indirectly.
    metafunc.fixturenames.append(MODE_PARAM)
    metafunc.parametrize(MODE_PARAM, MODES, indirect=True, ids=MODES)


def mode_of(item: pytest.Item) -> str | None:
    """``"compiled"``, ``"eager"``, or None for a test that runs once."""
    callspec = getattr(item, "callspec", None)
    mode = callspec.params.get(MODE_PARAM) if callspec is not None else None
    return mode if isinstance(mode, str) else None


def marker_frame(item: pytest.Item, below: _stack._Frame | None) -> _stack._Frame | None:
    """The test's stack: its mode and its markers, module first, over the run's baseline.

    Raises TypeError or PolicyError for a marker used wrongly; the plugin fails that test.
    """
    mode = mode_of(item)
    markers = [m for m in item.iter_markers() if m.name in POLICY_MARKERS]
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
