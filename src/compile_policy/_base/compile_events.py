"""Compile fallbacks and skips as events, for observers that must see every one of them.

The :class:`~compile_policy.CompileFallbackWarning` and
:class:`~compile_policy.CompileSkippedWarning` an object emits go through the warnings
filters: ignored, shown once, or raised as errors. An observer such as the pytest plugin's
run report needs every occurrence whatever the filters say, so the same facts are also
handed to the listeners registered here, just before the warning is issued.

    >>> from compile_policy._base.compile_events import listen
    >>> seen = []
    >>> stop = listen(seen.append)
    >>> stop()  # no longer called
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

__all__ = ["CompileEvent", "listen"]

EventKind = Literal["fell back", "skipped"]


# NamedTuple, not a frozen dataclass, for the records of modules the pytest plugin loads:
# making a frozen dataclass costs about 0.7 ms at import, in every pytest run.
class CompileEvent(NamedTuple):
    """One fallback or skip of one policy-compiled object.

    ``target``: the object's name (``policy_compiled(train_step)``); ``key``: the options
    key it happened for; ``summary``: the compiler error's one-line summary (a fallback),
    or what Dynamo did (a skip).
    """

    kind: EventKind
    target: str
    key: str
    summary: str


_LISTENERS: list[Callable[[CompileEvent], None]] = []


def listen(listener: Callable[[CompileEvent], None]) -> Callable[[], None]:
    """Call ``listener`` with every :class:`CompileEvent` from now on, in the thread where
    it happens; returns the function that stops it."""
    _LISTENERS.append(listener)

    def stop() -> None:
        if listener in _LISTENERS:
            _LISTENERS.remove(listener)

    return stop


def emit(kind: EventKind, target: str, key: str, summary: str) -> None:
    """Tell every listener (called by the package where it warns)."""
    if _LISTENERS:
        event = CompileEvent(kind, target, key, summary)
        for listener in tuple(_LISTENERS):  # a listener may stop itself
            listener(event)
