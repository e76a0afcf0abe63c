"""The ``compile_policy`` fixture: the test's effective policy, scoped changes undone when
the test ends (like ``monkeypatch``), and a Dynamo reset for one test.

    def test_fallback(compile_policy):
        compile_policy.enable(backend="eager", fallback="raise")
        assert compile_policy.policy.fallback == "raise"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .._base.errors import PolicyError
from .._context import frames as _frames
from .._context import stack as _stack
from .._context.scopes import _SETTABLE
from .._context.stack import current_policy, explain

if TYPE_CHECKING:  # the plugin loads the policy value only where a test sets fields
    from .._policy.value import CompilePolicy

__all__ = ["PolicyFixture", "compile_policy"]


class _FixtureOwner:
    """The owner of the fixture's frames: they hold for the rest of the test, so a ``with``
    block that was open when ``disable()`` was called carries them over when it exits
    (see ``policy.pop``) instead of calling its exit out of order."""

    outlives_scopes = True

    def __repr__(self) -> str:
        return "compile_policy fixture"


class PolicyFixture:
    """The ``compile_policy`` fixture: the test's effective policy, and scoped changes
    that are undone when the test ends (like ``monkeypatch``).

        def test_fallback(compile_policy):
            compile_policy.enable(backend="eager", fallback="raise")
            assert compile_policy.policy.fallback == "raise"
    """

    def __init__(self) -> None:
        self._owner = _FixtureOwner()

    @property
    def policy(self) -> CompilePolicy:
        """The effective policy now (same as :func:`compile_policy.current_policy`)."""
        return current_policy()

    @property
    def enabled(self) -> bool:
        return current_policy().enabled

    def explain(self) -> str:
        """Why the policy is what it is (:func:`compile_policy.explain`)."""
        return explain()

    def disable(self) -> None:
        """Disable compiling for the rest of this test."""
        from .._policy.value import CompilePolicy  # loaded where a test uses the fixture

        self._push(CompilePolicy(enabled=False))

    def enable(self, **fields: Any) -> None:
        """Enable compiling, with optional field overrides, for the rest of this test."""
        unknown = sorted(set(fields) - set(_SETTABLE))
        if unknown:
            raise TypeError(
                f"unexpected field(s) {', '.join(unknown)}; allowed: {', '.join(_SETTABLE)}"
            )
        from .._policy.value import CompilePolicy

        self._push(CompilePolicy(enabled=True, **fields))

    def use(self, policy: CompilePolicy) -> None:
        """Apply ``policy`` for the rest of this test."""
        from .._policy.value import CompilePolicy

        if not isinstance(policy, CompilePolicy):
            raise PolicyError(f"use() takes a CompilePolicy; got {policy!r}")
        self._push(policy)

    def reset(self) -> None:
        """Reset Dynamo's caches now (``torch._dynamo.reset()``), for this test only: what
        ``--compile-policy-reset=test`` does before every test. Imports torch."""
        from ._isolation import load_reset

        load_reset()()

    def _push(self, policy: CompilePolicy) -> None:
        where = _frames.caller_location(2)  # the test line that called disable()/enable()/use()
        _stack.push(policy, self._owner, where)

    def _undo(self) -> None:
        # Only our own frames on top: anything the test left above them is the leak
        # guard's to report (it restores the baseline anyway).
        top = _stack.pushed_top()
        frame = top
        while frame is not None and frame.owner is self._owner:
            frame = frame.below
        if frame is not top:
            _stack.set_top(frame)


@pytest.fixture
def compile_policy() -> Iterator[PolicyFixture]:
    """The test's compile policy: ``.policy``, ``.enabled``, ``.explain()``, ``.reset()``,
    and ``.disable()`` / ``.enable(**fields)`` / ``.use(policy)`` undone after the test."""
    fixture = PolicyFixture()
    yield fixture
    fixture._undo()
