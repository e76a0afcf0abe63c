"""The stance objects of governance: what stands in for torch's process-wide stance, and
torch's own stance function run against one fixed stance.

    >>> proxy = _GovernedStance(eval_frame._stance)   # doctest: +SKIP
    >>> with compile_disabled():                      # doctest: +SKIP
    ...     proxy.stance
    'force_eager'
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from .._context.frames import default_frame
from .._context.stack import pushed_top

__all__ = ["FORCE_EAGER", "PinnedStances"]

FORCE_EAGER = "force_eager"


class _GovernedStance:
    """Stands in for torch's process-wide ``DynamoStance`` (``eval_frame._stance``).

    Each field resolves from the calling context's policy: disabled -> ``force_eager``; a
    ``stance`` field set by a scope -> that stance, whole (no forced backend, no unsafe
    guard skipping); otherwise torch's real process-wide value, kept in ``real`` (what
    ``torch.compiler.set_stance`` sets from now on). Each field is one short function, no
    merge, no allocation; the per-call readers answer the common cases before reading it.
    """

    __slots__ = ("real",)

    def __init__(self, real: Any) -> None:
        self.real = real

    # `pushed_top() or default_frame()`: the context's innermost frame; with no scope, the
    # process default (COMPILE_POLICY may set `enabled` and `stance` too).
    @property
    def stance(self) -> str:
        frame = pushed_top() or default_frame()
        if not frame.enabled:
            return FORCE_EAGER
        return frame.effective.stance or self.real.stance

    @property
    def backend(self) -> Any:
        frame = pushed_top() or default_frame()
        if not frame.enabled or frame.effective.stance is not None:
            return None
        return self.real.backend

    @property
    def skip_guard_eval_unsafe(self) -> bool:
        frame = pushed_top() or default_frame()
        if not frame.enabled or frame.effective.stance is not None:
            return False
        return bool(self.real.skip_guard_eval_unsafe)

    def __repr__(self) -> str:
        return f"governed stance {self.stance!r} (process-wide: {self.real!r})"


class PinnedStances:
    """torch's ``_callback_from_stance``, each copy run against one fixed stance.

    torch's function reads the module global ``_stance`` once per branch it tests, so a
    stance that changes between two reads (a ``set_stance`` in another thread, a stand-in
    resolved afresh per read) matches no branch: "invalid torch.compile stance". A copy of
    the function whose globals are ``eval_frame``'s with ``_stance`` pinned to one
    ``DynamoStance`` reads the same value every time, and keeps torch's logic as it is (the
    install checks that the function only reads globals: see torch_internals). One copy per
    scope stance, and one for torch's current process-wide value (made again when it
    changes: ``set_stance`` is rare, a call is not).
    """

    def __init__(self, torch_function: types.FunctionType, stance_type: type) -> None:
        self._function = torch_function
        self._stance_type = stance_type
        self._scopes: dict[str, Callable[[Any], Any]] = {}
        self._torch: tuple[object, Callable[[Any], Any]] = (None, torch_function)

    def _pin(self, stance: object) -> Callable[[Any], Any]:
        function = self._function
        namespace = dict(function.__globals__)
        namespace["_stance"] = stance
        return types.FunctionType(function.__code__, namespace, function.__name__)

    def of_scope(self, stance: str) -> Callable[[Any], Any]:
        pinned = self._scopes.get(stance)
        if pinned is None:  # benign race: two threads may make equal copies
            # A scope sets the stance whole: no forced backend, no unsafe guard skipping.
            pinned = self._scopes[stance] = self._pin(self._stance_type(stance=stance))
        return pinned

    def of_torch(self, real: object) -> Callable[[Any], Any]:
        seen, pinned = self._torch  # one read of the pair: never a copy of another stance
        if seen is not real:
            pinned = self._pin(real)
            self._torch = (real, pinned)
        return pinned
