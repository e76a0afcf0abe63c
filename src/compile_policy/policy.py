"""The compile policy and where it lives: one immutable stack per thread or asyncio task.

The stack is the value of a single module-level :class:`~contextvars.ContextVar`. Each
scope pushes an immutable :class:`_Frame` (its own fields, where it was set, which scope
object pushed it) and pops it on exit, so one scope object can be reused, nested in itself
and shared by threads without keeping any per-use state of its own.

    >>> from compile_policy import compile_disabled, current_policy
    >>> with compile_disabled():
    ...     current_policy().enabled
    False
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
import types
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import PolicyError, ScopeError

__all__ = ["CompilePolicy", "current_policy", "explain"]

#: torch.compile's modes in torch 2.13 (``torch._inductor.list_mode_options()``), spelled out
#: here so that validating a scope never has to import torch.
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "lite")
FALLBACKS = ("eager", "raise")
FIELD_NAMES = ("enabled", "backend", "mode", "fullgraph", "dynamic", "options", "fallback", "stance")
#: torch.compiler.set_stance's stances a scope may set (torch 2.13); "force_eager" is
#: compile_disabled(). Applied to plain torch.compile code too: see governance.py.
STANCES = (
    "default", "eager_on_recompile", "fail_on_recompile", "eager_then_compile",
    "aot_eager_then_compile",
)

ENV_VAR = "COMPILE_POLICY"
TORCH_ENV_VAR = "TORCH_COMPILE_DISABLE"
_ON = ("on", "1", "true")
_OFF = ("off", "0", "false")

Fallback = Literal["eager", "raise"]


def _check_optional_bool(name: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise PolicyError(f"{name}={value!r} is not allowed; allowed: True, False or None")


@dataclass(frozen=True, slots=True)
class CompilePolicy:
    """Whether to compile, and with which ``torch.compile`` arguments.

    A field left ``None`` is "not set here": it is inherited from the enclosing scope, and
    in the end from the compiled object's own arguments. Fields are validated on
    construction; a bad value raises :class:`PolicyError`.

        >>> CompilePolicy(enabled=True, backend="eager").fallback is None
        True
    """

    enabled: bool = True
    backend: str | Callable[..., Any] | None = None
    mode: str | None = None
    fullgraph: bool | None = None
    dynamic: bool | None = None
    options: Mapping[str, object] | None = None
    fallback: Fallback | None = None
    stance: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PolicyError(f"enabled={self.enabled!r} is not allowed; allowed: True, False")
        backend = self.backend
        if backend is not None and not (
            (isinstance(backend, str) and backend) or callable(backend)
        ):
            raise PolicyError(
                f"backend={backend!r} is not allowed; allowed: None, a backend name "
                "(see torch.compiler.list_backends()) or a callable backend"
            )
        if self.mode is not None and self.mode not in MODES:
            raise PolicyError(
                f"mode={self.mode!r} is not a torch.compile mode; allowed: None, "
                + ", ".join(map(repr, MODES))
            )
        _check_optional_bool("fullgraph", self.fullgraph)
        _check_optional_bool("dynamic", self.dynamic)
        if self.options is not None:
            if not isinstance(self.options, Mapping) or not all(
                isinstance(key, str) for key in self.options
            ):
                raise PolicyError(
                    f"options={self.options!r} is not allowed; allowed: None or a mapping "
                    "of option names (str) to values"
                )
            # A private read-only copy: the caller's dict may change after the scope is made.
            object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))
        if self.fallback is not None and self.fallback not in FALLBACKS:
            raise PolicyError(
                f"fallback={self.fallback!r} is not allowed; allowed: None, "
                + ", ".join(map(repr, FALLBACKS))
            )
        if self.stance is not None and self.stance not in STANCES:
            hint = "; use compile_disabled() to run eagerly" if self.stance == "force_eager" else ""
            raise PolicyError(
                f"stance={self.stance!r} is not allowed; allowed: None, "
                + ", ".join(map(repr, STANCES)) + hint
            )

    def merged_over(self, outer: CompilePolicy) -> CompilePolicy:
        """This policy's fields, with the ones it leaves ``None`` taken from ``outer``."""
        return CompilePolicy(
            *[
                mine if mine is not None else getattr(outer, name)
                for name, mine in zip(FIELD_NAMES, self._values(), strict=True)
            ]
        )

    def set_fields(self) -> dict[str, object]:
        """The fields this policy sets (``enabled`` always; the others when not ``None``)."""
        return {
            name: value
            for name, value in zip(FIELD_NAMES, self._values(), strict=True)
            if value is not None
        }

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in FIELD_NAMES)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.set_fields().items())
        return f"CompilePolicy({shown})"

    # -- as text and as data (compile_policy.policy_text) --------------------------------
    @classmethod
    def parse(cls, text: str) -> CompilePolicy:
        """The policy a text spells: a switch word (``on``/``off``/``1``/``0``/``true``/
        ``false``) or a mode name first, then ``key=value`` items; bad text is a
        :class:`PolicyError` naming the bad part.

            >>> CompilePolicy.parse("max-autotune, fallback=raise")
            CompilePolicy(enabled=True, mode='max-autotune', fallback='raise')
        """
        from .policy_text import parse_policy

        return parse_policy(text)

    def __str__(self) -> str:
        """The canonical text: ``CompilePolicy.parse(str(p)) == p`` (without options or a
        callable backend, which text cannot carry).

            >>> str(CompilePolicy(backend="aot_eager", fullgraph=True))
            'on,backend=aot_eager,fullgraph=true'
        """
        from .policy_text import format_policy

        return format_policy(self)

    def to_dict(self) -> dict[str, object]:
        """The fields this policy sets, as JSON-safe data (for configs and checkpoints).

            >>> CompilePolicy(enabled=False, options={"shape": (1, 2)}).to_dict()
            {'enabled': False, 'options': {'shape': {'$tuple': [1, 2]}}}
        """
        from .policy_text import policy_to_dict

        return policy_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CompilePolicy:
        """The inverse of :meth:`to_dict`; an unknown key is a ``TypeError``, a bad value a
        :class:`PolicyError`.

            >>> CompilePolicy.from_dict({"enabled": True, "backend": "eager"})
            CompilePolicy(enabled=True, backend='eager')
        """
        from .policy_text import policy_from_dict

        return policy_from_dict(data)


assert tuple(f.name for f in fields(CompilePolicy)) == FIELD_NAMES


def freeze(value: object) -> object:
    """A hashable stand-in for an option value, for use in a cache key."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class _Frame:
    """One pushed scope: immutable once made, except for two caches filled on first use.

    ``below`` is exactly the stack value the push replaced (``None`` for an empty stack),
    so popping restores it exactly.
    """

    __slots__ = ("_effective", "_overrides", "below", "enabled", "layer", "owner", "where")

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
        if layer.stance is not None:
            _require_governance(layer)
        self._effective: CompilePolicy | None = None
        self._overrides: tuple[object, ...] | None = None

    @property
    def effective(self) -> CompilePolicy:
        # Benign race: two threads may both compute the same immutable value.
        effective = self._effective
        if effective is None:
            below = self.below or _default_frame()
            effective = self._effective = self.layer.merged_over(below.effective)
        return effective

    @property
    def overrides(self) -> tuple[object, ...]:
        """Hashable key of the compile arguments set by the scopes (``None`` where unset)."""
        key = self._overrides
        if key is None:
            layer = self.layer
            if layer.set_fields().keys() <= {"enabled", "stance"}:
                # compile_enabled()/compile_disabled(), maybe with a stance (never part of a
                # variant's key: it changes no compile argument): the arguments from below.
                key = (self.below or _default_frame()).overrides
            else:
                p = self.effective
                key = (p.backend, p.mode, p.fullgraph, p.dynamic, freeze(p.options))
            self._overrides = key
        return key

    def describe(self) -> str:
        where = self.where
        if isinstance(where, tuple):
            where = describe_location(where)
        fields_set = ", ".join(f"{k}={v!r}" for k, v in self.layer.set_fields().items())
        return f"{self.owner} at {where}: {fields_set}"


def _require_governance(layer: CompilePolicy) -> None:
    from .governance import is_governed  # lazily: governance reads this module's stack

    if not is_governed():
        raise PolicyError(
            f"{layer!r} sets stance={layer.stance!r}, which needs govern_torch_compile(): "
            "call compile_policy.govern_torch_compile() once before entering the scope "
            "(pytest: --compile-policy-govern-torch)"
        )


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


def _parse_switch(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise PolicyError(
        f"environment variable {var}={raw!r} is not allowed; allowed (any case): "
        + ", ".join(_ON + _OFF)
        + f"; unset {var} for the default"
    )


@functools.cache
def _default_frame() -> _Frame:
    """The process default, read from the environment once, on first use.

    ``functools.cache`` does not cache an exception, so a bad value raises on every use.
    """
    from .policy_text import parse_policy

    policy = CompilePolicy()
    sources = []
    raw = os.environ.get(ENV_VAR)
    if raw is not None:
        policy = parse_policy(raw, source=f"environment variable {ENV_VAR}=")
        sources.append(f"{ENV_VAR}={raw!r}")
    raw_torch = os.environ.get(TORCH_ENV_VAR)
    if raw_torch is not None and raw_torch.strip():
        # torch itself skips compiling when this is 1, so it can only turn us off.
        if _parse_switch(TORCH_ENV_VAR, raw_torch):
            policy = dataclasses.replace(policy, enabled=False)
        sources.append(f"{TORCH_ENV_VAR}={raw_torch!r}")
    where = "environment " + ", ".join(sources) if sources else "built-in default"
    frame = _Frame(None, policy, "process default", where)
    frame._effective = policy  # the bottom of every stack: nothing to merge over
    # The compile arguments the environment sets (none by default), as every frame keys them.
    frame._overrides = (policy.backend, policy.mode, policy.fullgraph, policy.dynamic,
                        freeze(policy.options))
    return frame


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
    _STACK.set(frame)
    return frame


def pop(owner: object) -> None:
    """Pop the innermost frame, which ``owner`` must have pushed in this thread/task."""
    top = _STACK.get()
    if top is not None and top.owner is owner:
        _STACK.set(top.below)
        return
    frame, inside = top, []
    while frame is not None and frame.owner is not owner:
        inside.append(frame)
        frame = frame.below
    if frame is not None and all(getattr(f.owner, "outlives_scopes", False) for f in inside):
        # Changes that hold "for the rest of the test" (the pytest fixture's disable()),
        # made inside this scope: carry them over onto what this scope's enter replaced.
        below = frame.below
        for kept in reversed(inside):
            below = _Frame(below, kept.layer, kept.owner, kept.where)
        _STACK.set(below)
        return
    if frame is None:
        raise ScopeError(
            f"{owner} is being exited in thread {threading.current_thread().name!r} "
            "(or asyncio task) that did not enter it: a policy scope must be exited in the "
            "same thread or asyncio task that entered it. To carry a policy into another "
            "thread, wrap the callable with bind_policy()."
        )
    # Out of order: a scope entered inside this one was never exited. Drop it too, so the
    # stack is back to what this scope's enter replaced, and say so loudly.
    _STACK.set(frame.below)
    assert top is not None
    raise ScopeError(
        f"{owner} exited out of order: {top.describe()} was entered inside it and never "
        "exited (an __enter__() without __exit__()?); both are now exited."
    )


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
    return "\n".join([lines[0]] + [f"  {n}. {line}" for n, line in enumerate(lines[1:], 1)])


def _governance_note() -> str:
    from .governance import is_governed

    if is_governed():
        return "; governs plain torch.compile code too (govern_torch_compile() is on)"
    return "; plain torch.compile code is not governed (govern_torch_compile() is off)"


def caller_location(depth: int) -> tuple[types.CodeType, int]:
    """Where the frame ``depth`` levels above the caller is: its code and bytecode offset.

    The line number is only worked out when explain() needs it (f_lineno costs more).
    """
    frame = sys._getframe(depth + 1)
    return frame.f_code, frame.f_lasti
