"""Which enter of a scope object an exit belongs to, by where in the source each was called.

One scope object is shared (``compile_disabled()`` always returns the same one) and keeps no
per-enter state, so the stack alone cannot tell ``with s: s.__enter__()`` (an enter leaked
inside the block: the block's exit is the outer enter's) from ``with s: with s:`` (the exit
is the inner one's). The source can:

- A frame pushed by a ``with`` statement of a plain function (not a generator or coroutine,
  which can be suspended inside the block) is the innermost one of its scope until that
  statement exits it: no other exit can come first. Its exit pops it at once, with no
  question asked (the hot path of ``with``).
- Any other frame (an ``__enter__()`` called by hand or by ``ExitStack``, a ``with`` in a
  generator) may be left open. A ``with`` statement calls ``__exit__`` from the source
  position it called ``__enter__`` from (the statement, or its context expression), which
  no other call has: such an exit belongs to the innermost enter made at that position in
  the same code, and the frames above it were left open inside its block (a ScopeError).
  Any other exit (``ExitStack``, by hand) belongs to the innermost enter, last in, first out.

Measured on CPython 3.10 (by line, ``co_lines``: a leak on the ``with`` statement's own line
goes unnoticed there), 3.11, 3.12 and 3.13 (by ``co_positions``). Not on 3.14, which calls
``__enter__`` with a plain CALL after LOAD_SPECIAL: every frame takes the second way there
(slower), and if its exits are called from elsewhere, last in, first out, as before.

    >>> with compile_disabled():
    ...     compile_disabled().__enter__()   # never exited
    Traceback (most recent call last):
    ScopeError: compile_disabled() exited out of order: ...
"""

from __future__ import annotations

import functools
import types

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .frames import _Frame

__all__ = ["enter_site", "is_with_exit_of", "paired_frame"]

#: The instructions that call ``__enter__`` in a ``with`` statement (3.10, 3.11-3.13), and the
#: one that loads it there on 3.14 (whose exits are found by position all the same).
_WITH_ENTERS = frozenset({"SETUP_WITH", "BEFORE_WITH", "LOAD_SPECIAL"})
#: Code that can be suspended inside a ``with`` block, leaving its frame pushed: the flags
#: inspect.CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR (not imported: inspect is ~8 ms
#: of `import compile_policy`).
_SUSPENDS = 0x20 | 0x80 | 0x200

# Keyed by the code's id, not the code (hashing a code object hashes its contents: ~1 us),
# with the code kept in the value, so that the id is not reused while it is in the table.
# Bounded: a process that makes code at run time (exec in a loop) keeps no more than this.
_KNOWN_LIMIT = 4096
_SITES: dict[tuple[int, int], tuple[types.CodeType, bool, set[int]]] = {}


def enter_site(code: types.CodeType, offset: int) -> tuple[bool, set[int]]:
    """What an exit needs to know of an enter called from ``offset`` in ``code``: whether a
    ``with`` statement of a plain function called it, and the offsets of the exits known to
    belong to it (one set per site, shared by every frame pushed there, filled in by
    :func:`paired_frame`)."""
    known = _SITES.get((id(code), offset))
    if known is None or known[0] is not code:
        if len(_SITES) >= _KNOWN_LIMIT:
            _SITES.clear()
        by_with = not code.co_flags & _SUSPENDS and _opname(code, offset) in _WITH_ENTERS
        known = _SITES[id(code), offset] = (code, by_with, set())
    return known[1], known[2]


def _opname(code: types.CodeType, offset: int) -> str:
    import dis  # once per site: ~5 ms to import

    return dis.opname[code.co_code[offset]]


def paired_frame(owner: object, top: _Frame | None, caller: types.FrameType) -> _Frame | None:
    """The innermost frame ``owner`` pushed that an exit called from ``caller`` belongs to
    (``None``: none in this stack). Not always the innermost of ``owner``'s frames: where
    that one is not the exit's, it was entered inside the exit's and never exited."""
    code, offset = caller.f_code, caller.f_lasti
    sites = _sites(code)
    innermost = None
    frame = top
    if sites[offset // 2] in _with_sites(code):
        site = sites[offset // 2]
        while frame is not None:
            if frame.owner is owner:
                if innermost is None:
                    innermost = frame
                if frame.code is code and sites[frame.offset // 2] == site:
                    if isinstance(frame.exits, set):  # a scope's frame (see enter_site)
                        frame.exits.add(offset)  # this exit's next call takes the fast path
                    return frame
            frame = frame.below
        return innermost  # no enter made at this site (a stack set by hand): last in, first out
    while frame is not None and frame.owner is not owner:
        frame = frame.below
    return frame


@functools.lru_cache(maxsize=256)
def _sites(code: types.CodeType) -> tuple[object, ...]:
    """The source position of each code unit of ``code`` (its line on 3.10)."""
    if hasattr(code, "co_positions"):
        return tuple(code.co_positions())
    lines: list[object] = [None] * (len(code.co_code) // 2)
    for start, end, line in code.co_lines():
        lines[start // 2 : end // 2] = [line] * ((end - start) // 2)
    return tuple(lines)


@functools.lru_cache(maxsize=256)
def _with_sites(code: types.CodeType) -> frozenset[object]:
    """The source positions in ``code`` from which a ``with`` statement calls ``__enter__``
    (and later ``__exit__``)."""
    import dis

    sites = _sites(code)
    return frozenset(
        sites[instruction.offset // 2]
        for instruction in dis.get_instructions(code)
        if instruction.opname in _WITH_ENTERS
    )


def is_with_exit_of(scope: object, frame: _Frame | None, caller: Any) -> bool:
    """Whether ``caller`` is at an exit known to be that of the ``with`` statement that
    pushed ``frame``, ``scope``'s (see above)."""
    return (
        frame is not None and frame.owner is scope and caller.f_lasti in frame.exits
        and frame.code is caller.f_code
    )
