"""The frames of the policy stack (:mod:`.stack`): one per pushed scope, immutable, and the
process default under every stack, read from ``COMPILE_POLICY`` / ``TORCH_COMPILE_DISABLE``
on first use; where a scope was pushed (its caller's code and offset, shown as ``path:line``
only when a message needs it); and what governance, two layers up, tells them.

    >>> frame = default_frame()
    >>> frame.enabled, frame.owner
    (True, 'process default')
"""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Callable
from contextvars import Token

from .._base.errors import PolicyError

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._policy.value import CompilePolicy

__all__ = [
    "caller_location", "default_frame", "describe_location", "governs_torch_compile", "link_governance",
    "reread_default",
]

ENV_VAR = "COMPILE_POLICY"
TORCH_ENV_VAR = "TORCH_COMPILE_DISABLE"
#: torch 2.13 reads it once, at import: ``os.environ.get("TORCH_COMPILE_DISABLE", "0") ==
#: "1"`` (torch/_dynamo/config.py); any other value, "true" included, compiles.
TORCH_DISABLES = "1"


_NO_EXITS: frozenset[int] = frozenset()


class _Frame:
    """One pushed scope: immutable once made, except for two caches filled on first use and
    ``token``, the :class:`~contextvars.Token` of its current push.

    ``below`` is exactly the stack value the push replaced (``None`` for an empty stack),
    so popping restores it exactly. A scope's frame is pushed in one context at a time
    (:class:`~compile_policy.PolicyScope` hands it out from a free list), so its
    token is the one its exit must reset: ``ContextVar.reset`` refuses a token made in
    another context, which is how an exit in a child task or thread is noticed.
    """

    __slots__ = (
        "_effective", "_overrides", "below", "by_with", "code", "enabled", "exits", "layer",
        "offset", "owner", "route", "token", "where",
    )

    def __init__(
        self, below: _Frame | None, layer: CompilePolicy, owner: object, where: object
    ) -> None:
        self.below = below
        self.layer = layer
        self.owner = owner  # the scope object (or a label) that pushed this frame
        self.where = where  # (code, f_lasti) or a text such as "pytest option ..."
        # `enabled` is never None, so the innermost frame alone decides it: the hot path
        # reads this slot instead of merging.
        self.enabled = layer.enabled
        # What decides this frame's variant: equal layers over one stack resolve alike, so
        # a scope made anew per loop iteration finds its twin's warm entry in the hot path.
        self.route = (below, layer)
        if layer.stance is not None:
            _require_governance(layer)
        self._effective: CompilePolicy | None = None
        self._overrides: tuple[object, ...] | None = None
        self.token: Token[_Frame | None] | None = None
        # A scope's frames (scopes.py): the code and offset `where` says, read by every
        # enter; whether a plain function's `with` statement pushed it, and the offsets of
        # the exits known to be its enter's (see sites.py). None for other pushes.
        self.code: types.CodeType | None = None
        self.offset = -1
        self.by_with = False
        self.exits: set[int] | frozenset[int] = _NO_EXITS

    # Both caches are filled by walking down to the nearest frame that has one and back up,
    # in a loop: a stack may be 10,000 scopes deep (an ExitStack, a recursion with one `with`
    # per level), far beyond Python's recursion limit. Benign race: two threads may both
    # compute the same immutable value.
    @property
    def effective(self) -> CompilePolicy:
        effective = self._effective
        if effective is None:
            pending = self._uncached("_effective")
            effective = pending[-1].below_or_default()._effective
            assert effective is not None
            for frame in reversed(pending):
                effective = frame._effective = frame.layer.merged_over(effective)
        return effective

    @property
    def overrides(self) -> tuple[object, ...]:
        """Hashable key of the compile arguments set by the scopes (``None`` where unset)."""
        key = self._overrides
        if key is None:
            # Read by the compiled layer only, which has loaded it: `import compile_policy`
            # and the pytest plugin need neither it nor the _policy package.
            from .._policy.option_values import by_identity_if_unhashable

            pending = self._uncached("_overrides")
            key = pending[-1].below_or_default()._overrides
            assert key is not None
            for frame in reversed(pending):
                if _sets_compile_arguments(frame.layer):
                    p = frame.effective
                    # A policy's options are already deep-frozen: a hashable key as they are.
                    backend = by_identity_if_unhashable(p.backend)
                    key = (backend, p.mode, p.fullgraph, p.dynamic, p.options)
                # else compile_enabled()/compile_disabled(): the same arguments as below.
                frame._overrides = key
        return key

    def _uncached(self, cache: str) -> list[_Frame]:
        """This frame and the ones below it, down to the first whose ``cache`` is filled."""
        pending = [self]
        frame = self.below
        while frame is not None and getattr(frame, cache) is None:
            pending.append(frame)
            frame = frame.below
        return pending

    def below_or_default(self) -> _Frame:
        return self.below or _default_frame()

    def describe(self) -> str:
        where = self.where
        if isinstance(where, tuple):
            where = describe_location(where)
        fields_set = ", ".join(f"{k}={v!r}" for k, v in self.layer.set_fields().items())
        return f"{self.owner} at {where}: {fields_set}"


def _require_governance(layer: CompilePolicy) -> None:
    if not governs_torch_compile():
        raise PolicyError(
            f"{layer!r} sets stance={layer.stance!r}, which needs govern_torch_compile(): "
            "call compile_policy.govern_torch_compile() once before entering the scope "
            "(pytest: --compile-policy-govern-torch)"
        )


def _sets_compile_arguments(layer: CompilePolicy) -> bool:
    """Whether ``layer`` sets a field of a variant's key: more than ``enabled`` and a
    stance (which changes no compile argument)."""
    return not layer.set_fields().keys() <= {"enabled", "stance"}


@functools.cache
def _default_frame() -> _Frame:
    """The process default, read from the environment once, on first use.

    ``functools.cache`` does not cache an exception, so a bad value raises on every use.
    """
    from .._policy.value import CompilePolicy  # the value module loads on first use (see _policy/value.py)

    policy = CompilePolicy()
    sources = []
    raw = os.environ.get(ENV_VAR)
    if raw is not None and not raw.strip():
        # Set but empty (`COMPILE_POLICY= cmd`) is unset, as torch reads an empty
        # TORCH_COMPILE_DISABLE.
        sources.append(f"{ENV_VAR}={raw!r} (empty: unset)")
    elif raw is not None:
        from .._policy.value import parse_policy

        policy = parse_policy(raw, source=f"environment variable {ENV_VAR}=")
        sources.append(f"{ENV_VAR}={raw!r}")
    raw_torch = os.environ.get(TORCH_ENV_VAR)
    if raw_torch == TORCH_DISABLES:
        # Exactly as torch reads it: torch then compiles nothing, so it can only turn us
        # off; any other value (even "true") is one torch ignores, and so do we.
        policy = CompilePolicy(enabled=False).merged_over(policy)
        sources.append(f"{TORCH_ENV_VAR}={raw_torch!r}")
    elif raw_torch is not None:
        sources.append(f"{TORCH_ENV_VAR}={raw_torch!r} (ignored, as torch does: only '1' disables)")
    where = "environment " + ", ".join(sources) if sources else "built-in default"
    frame = _Frame(None, policy, "process default", where)
    frame._effective = policy  # the bottom of every stack: nothing to merge over
    # The compile arguments the environment sets (none by default), as every frame keys them.
    frame._overrides = (policy.backend, policy.mode, policy.fullgraph, policy.dynamic,
                        policy.options)
    return frame


def reread_default() -> None:
    """Read the process default from the environment again on its next use (tests).

    Governance remembers which stack top follows torch's default, the process default's
    too (:mod:`compile_policy._governance.install`), so it is told to forget: use this, not
    ``default_frame.cache_clear()``.
    """
    _default_frame.cache_clear()
    _forget_on_reread()


#: The process default frame (read once; :func:`reread_default` reads it again).
default_frame = _default_frame


# -- where a scope was pushed, as explain() and messages show it: path:line ---------------
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


# -- what governance tells the context layer --------------------------------------------
# Governance (govern_torch_compile()) sits two layers up, yet a frame must know whether it is
# on (a scope that sets a `stance` needs it; explain() says so), and governance must hear
# when the process default is reread (it remembers which stack tops follow torch's default).
# So governance links itself here when it is imported; before that, it cannot be on.
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


def governs_torch_compile() -> bool:
    """Whether ``govern_torch_compile()`` is on in this process."""
    return _is_governed()
