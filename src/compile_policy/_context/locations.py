"""Where a scope was entered, as ``explain()`` and error messages show it: ``path:line``.

A scope records its caller's code object and bytecode offset (cheap); the line number and
the short path are worked out only when a message needs them.

    >>> describe_location(caller_location(0))  # doctest: +SKIP
    'train.py:12'
"""

from __future__ import annotations

import os
import sys
import types

__all__ = ["caller_location", "describe_location"]


def describe_location(where: tuple[types.CodeType, int]) -> str:
    """``path:line`` for a :func:`caller_location`."""
    code, offset = where
    return f"{_short_path(code.co_filename)}:{_line_at(code, offset)}"


def _line_at(code: types.CodeType, offset: int) -> int | None:
    """The source line of the bytecode at ``offset`` (a frame's ``f_lasti``)."""
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line
    return code.co_firstlineno


def _short_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if relative.startswith("..") else relative


def caller_location(depth: int) -> tuple[types.CodeType, int]:
    """Where the frame ``depth`` levels above the caller is: its code and bytecode offset.

    The line number is only worked out when explain() needs it (f_lineno costs more).
    """
    frame = sys._getframe(depth + 1)
    return frame.f_code, frame.f_lasti
