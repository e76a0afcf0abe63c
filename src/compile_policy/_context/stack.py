"""Where the compile policy lives: one immutable stack per thread or asyncio task.

The stack is the value of a single module-level :class:`~contextvars.ContextVar`. Each
scope pushes a :class:`_Frame` (its own fields, where it was set, which scope object pushed
it) and pops it on exit with the token its push got, so one scope object can be reused,
nested in itself and shared by threads, and an exit in a context that did not enter (a
child task, a thread, ``copy_context().run``) is refused. The policy itself, a value, is
:class:`~compile_policy.CompilePolicy`; the frames and the process default:
:mod:`.frames`.

    >>> from compile_policy import compile_disabled, current_policy
    >>> with compile_disabled():
    ...     current_policy().enabled
    False
"""

from __future__ import annotations

from contextvars import ContextVar

from .._base.errors import ScopeError
from .frames import _default_frame, _Frame, governs_torch_compile

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._policy.value import CompilePolicy

__all__ = ["current_policy", "explain"]

# The one piece of state: the innermost frame of the calling thread/task's stack.
_STACK: ContextVar[_Frame | None] = ContextVar("compile_policy_stack", default=None)


#: The innermost pushed frame of the calling thread/task, or None: bound once for the hot path.
pushed_top = _STACK.get


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
    if governs_torch_compile():
        return "; governs plain torch.compile code too (govern_torch_compile() is on)"
    return "; plain torch.compile code is not governed (govern_torch_compile() is off)"


def _isolation_note() -> str:
    from .._base.torch_releases import isolation_note

    note = isolation_note()
    return "" if note is None else f"; {note}"


def _thread_name() -> str:
    import threading  # for error messages only: about 1 ms of `import compile_policy`

    return threading.current_thread().name


