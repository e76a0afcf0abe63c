"""The ``compile_policy`` logger, created on first use.

Importing :mod:`logging` costs about 5 ms (with ``traceback``, ``string`` and ``weakref``),
a fifth of this package's import, and a process that never falls back never logs; so the
package imports it when it first logs, not at import. ``logging.getLogger("compile_policy")``
in user code is the same logger.

    >>> from compile_policy._base.log import logger
    >>> logger.debug("only imports logging now")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__all__ = ["logger"]

NAME = "compile_policy"


class _Logger:
    """Forwards every attribute to ``logging.getLogger(NAME)``, imported on first use."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger(NAME), name)

    def __repr__(self) -> str:
        return f"<the {NAME!r} logger, created on first use>"


#: Use as a ``logging.Logger``: ``logger.warning(...)``.
logger: logging.Logger = _Logger()  # type: ignore[assignment]
