"""What the layers above tell the context layer, which imports none of them.

Governance (``govern_torch_compile()``) sits two layers up, yet the stack must know whether
it is on (a scope that sets a ``stance`` needs it; ``explain()`` says so), and governance
must hear when the process default is reread (it remembers which stack tops follow torch's
default). So governance links itself here when it is imported, and the stack asks through
these functions; before that import, governance cannot be on.

    >>> from compile_policy._context import links
    >>> links.is_governed()   # until compile_policy._governance is imported: never
    False
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["default_reread", "is_governed", "link_governance"]


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


_is_governed: Callable[[], bool] = _never
_forget_on_reread: Callable[[], None] = _nothing


def link_governance(is_governed: Callable[[], bool], forget_on_reread: Callable[[], None]) -> None:
    """Called once by governance, at its import: how to ask whether it is on, and what to
    call when the process default is reread."""
    global _is_governed, _forget_on_reread
    _is_governed, _forget_on_reread = is_governed, forget_on_reread


def is_governed() -> bool:
    """Whether ``govern_torch_compile()`` is on in this process."""
    return _is_governed()


def default_reread() -> None:
    """Tell the layers above that the process default was reread."""
    _forget_on_reread()
