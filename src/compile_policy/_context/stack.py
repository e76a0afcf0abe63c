"""Where the compile policy lives: one immutable stack per thread or asyncio task.

The stack is the value of a single module-level :class:`~contextvars.ContextVar`. Each
scope pushes a :class:`_Frame` (its own fields, where it was set, which scope object pushed
it) and pops it on exit with the token its push got, so one scope object can be reused,
nested in itself and shared by threads, and an exit in a context that did not enter (a
child task, a thread, ``copy_context().run``) is refused. The policy itself, a value, is
:class:`~compile_policy.policy.CompilePolicy`.

    >>> from compile_policy import compile_disabled, current_policy
    >>> with compile_disabled():
    ...     current_policy().enabled
    False
"""

from __future__ import annotations

import functools
import os
import sys
import types
from contextvars import ContextVar, Token

from .._base.errors import PolicyError, ScopeError
from .._policy.option_values import by_identity_if_unhashable
from . import links

# typing.TYPE_CHECKING without importing typing (see __init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._policy.value import CompilePolicy

__all__ = ["current_policy", "explain"]

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
    (:class:`~compile_policy.scopes.PolicyScope` hands it out from a free list), so its
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
        # the exits known to be its enter's (see scope_sites.py). None for other pushes.
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
    if not links.is_governed():
        raise PolicyError(
            f"{layer!r} sets stance={layer.stance!r}, which needs govern_torch_compile(): "
            "call compile_policy.govern_torch_compile() once before entering the scope "
            "(pytest: --compile-policy-govern-torch)"
        )


def _sets_compile_arguments(layer: CompilePolicy) -> bool:
    """Whether ``layer`` sets a field of a variant's key: more than ``enabled`` and a
    stance (which changes no compile argument)."""
    return not layer.set_fields().keys() <= {"enabled", "stance"}


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


@functools.cache
def _default_frame() -> _Frame:
    """The process default, read from the environment once, on first use.

    ``functools.cache`` does not cache an exception, so a bad value raises on every use.
    """
    from .._policy.value import CompilePolicy  # the value module loads on first use (see policy.py)

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
    too (:mod:`compile_policy.governance`), so it is told to forget: use this, not
    ``default_frame.cache_clear()``.
    """
    _default_frame.cache_clear()
    links.default_reread()


# The one piece of state: the innermost frame of the calling thread/task's stack.
_STACK: ContextVar[_Frame | None] = ContextVar("compile_policy_stack", default=None)


#: The innermost pushed frame of the calling thread/task, or None: bound once for the hot path.
pushed_top = _STACK.get
default_frame = _default_frame


#: Make a frame (and the frames below it) the calling context's whole stack: for code that
#: restores a stack it saved (scope exits, bind_policy, the pytest plugin).
set_top = _STACK.set


def chain(below: _Frame | None, layer: CompilePolicy, owner: object, where: object) -> _Frame:
    """A frame for ``layer`` on top of ``below``, without making it current."""
    return _Frame(below, layer, owner, where)


def top_frame() -> _Frame:
    """The innermost frame of the calling thread or task (the process default if none)."""
    return _STACK.get() or _default_frame()


def push(layer: CompilePolicy, owner: object, where: object) -> _Frame:
    """Push ``layer`` on the calling context's stack and return its frame."""
    frame = _Frame(_STACK.get(), layer, owner, where)
    frame.token = _STACK.set(frame)
    return frame


#: Restore what a frame's push replaced, in the context that pushed it (else ValueError or,
#: for a token already used, RuntimeError): bound once for the hot path of scope exits.
reset_to = _STACK.reset


def pop(owner: object, error: BaseException | None = None, mine: _Frame | None = None) -> None:
    """Pop the innermost frame ``owner`` pushed in this thread/task (or ``mine``, the frame
    of ``owner``'s that this exit belongs to, where the caller found it).

    An exit that is not the innermost one's (a scope entered inside it was never exited)
    restores what ``owner``'s enter replaced; an exit in a context that did not push the
    frame (another thread, a child task, ``copy_context().run``) changes nothing. Both are
    a :class:`ScopeError`, unless ``error`` (the exception leaving the scope) is already on
    its way: that one is never masked, it only gets a note saying what went wrong.
    """
    top = _STACK.get()
    frame, inside = top, []
    while frame is not None:
        if frame is mine or (mine is None and frame.owner is owner):
            break
        inside.append(frame)
        frame = frame.below
    problem = None
    if frame is None:
        problem = (
            f"{owner} is being exited in thread {_thread_name()!r} "
            "(or asyncio task) that did not enter it: a policy scope must be exited in the "
            "same thread or asyncio task that entered it. To carry a policy into another "
            "thread, wrap the callable with bind_policy()."
        )
    else:
        try:
            reset_to(frame.token)  # type: ignore[arg-type]  # None: TypeError, caught
        except (ValueError, RuntimeError, TypeError):
            problem = (
                f"{owner} is being exited in a thread, asyncio task or context copy that "
                f"did not enter it (thread {_thread_name()!r}): it was "
                "inherited from the context that did. A policy scope must be exited in the "
                "same thread or asyncio task that entered it; this exit changed nothing."
            )
        else:
            if frame is not top and all(getattr(f.owner, "outlives_scopes", False) for f in inside):
                # Changes that hold "for the rest of the test" (the pytest fixture's
                # disable()), made inside this scope: carry them over onto what this
                # scope's enter replaced.
                below = frame.below
                for kept in reversed(inside):
                    below = _Frame(below, kept.layer, kept.owner, kept.where)
                _STACK.set(below)
            elif frame is not top:
                assert top is not None
                problem = (
                    f"{owner} exited out of order: {top.describe()} was entered inside it "
                    "and never exited (an __enter__() without __exit__()?); both are now "
                    "exited."
                )
    if problem is None:
        return
    if error is not None:
        error.add_note(f"compile_policy: {problem}")
        return
    raise ScopeError(problem)


def current_policy() -> CompilePolicy:
    """The effective policy of the calling thread or asyncio task.

    Scopes are merged innermost first over the process default (``COMPILE_POLICY`` /
    ``TORCH_COMPILE_DISABLE``). Fields no scope set are ``None``: a compiled object then
    uses its own arguments.

        >>> with compile_enabled(backend="eager"):
        ...     current_policy().backend
        'eager'
    """
    return top_frame().effective


def explain() -> str:
    """Why the calling thread/task's decision is what it is, innermost scope first.

        >>> print(explain())  # doctest: +SKIP
        compile policy: disabled
          1. compile_disabled() at train.py:12: enabled=False
          2. process default at built-in default: enabled=True
    """
    policy = current_policy()
    lines = [f"compile policy: {'enabled' if policy.enabled else 'disabled'} ({policy!r})"]
    frame = _STACK.get()
    while frame is not None:
        lines.append(frame.describe())
        frame = frame.below
    lines.append(_default_frame().describe())  # the bottom of every stack, never pushed
    lines[0] += _governance_note()
    lines[0] += _isolation_note()
    return "\n".join([lines[0]] + [f"  {n}. {line}" for n, line in enumerate(lines[1:], 1)])


def _governance_note() -> str:
    if links.is_governed():
        return "; governs plain torch.compile code too (govern_torch_compile() is on)"
    return "; plain torch.compile code is not governed (govern_torch_compile() is off)"


def _isolation_note() -> str:
    from .._base.torch_releases import isolation_note

    note = isolation_note()
    return "" if note is None else f"; {note}"


def _thread_name() -> str:
    import threading  # for error messages only: about 1 ms of `import compile_policy`

    return threading.current_thread().name


def caller_location(depth: int) -> tuple[types.CodeType, int]:
    """Where the frame ``depth`` levels above the caller is: its code and bytecode offset.

    The line number is only worked out when explain() needs it (f_lineno costs more).
    """
    frame = sys._getframe(depth + 1)
    return frame.f_code, frame.f_lasti
