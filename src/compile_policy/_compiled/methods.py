"""``@policy_compiled`` on a method in a class body: one compiled object per instance.

Each instance (each agent) gets its own variants, recompile budget, counters and fallbacks,
made on first access and kept in the instance's ``__dict__``, so that later accesses are a
plain attribute read. A method an instance's class overrides (reached through ``super()``)
keeps its object aside, per defining class, so that it never shadows the override. Copies
and pickles leave them out (as ``nn.Module.__getstate__`` leaves out ``module.compile()``'s):
a copy gets its own on first access, never its original's.

    >>> class Agent(torch.nn.Module):
    ...     @policy_compiled(backend="inductor")
    ...     def act(self, obs): ...
    >>> target = copy.deepcopy(agent)   # target.act calls target's own method
"""

from __future__ import annotations

import copyreg
import functools
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .dynamo_frames import keep_dynamo_out

if TYPE_CHECKING:
    from .function import PolicyCompiled
    from .stats import CompileStats

__all__ = ["PerInstance", "in_class_body", "stacked_descriptor"]

#: Builds the compiled object for one callable (a bound method, or the function itself).
Factory = Callable[[Callable[..., Any]], "PolicyCompiled[..., Any]"]


class PerInstance:
    """The class attribute: makes, on first access from each instance, its compiled object."""

    def __init__(self, fn: Callable[..., Any], make: Factory) -> None:
        self.__wrapped__ = fn
        functools.update_wrapper(self, fn)
        self._make = make
        self._attr_name: str | None = None
        self._through_class: PolicyCompiled[..., Any] | None = None
        self._lock = threading.Lock()
        self._per_class: weakref.WeakKeyDictionary[type, PolicyCompiled[..., Any]] = (
            weakref.WeakKeyDictionary()
        )
        # Making an object, with the lock held, may run while an outer torch.compile's
        # frame hook is on (an override's `super().act` left to run after a graph break):
        # Dynamo must not trace it, where its own attribute reads could call this __get__
        # again, on the held lock.
        keep_dynamo_out(PerInstance._make_for.__code__)

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr_name = name
        _leave_out_of_copies(owner, name)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        if owner is instance:
            # `@classmethod` over `@policy_compiled`: Python 3.9-3.12 chain the classmethod's
            # __get__ to ours as __get__(cls, cls), which no plain access does. One object
            # per class (3.13 binds us as a method instead: __call__, one for all classes).
            return self._for_class(instance)
        if self._attr_name is None:  # set on a class after it was made: no __set_name__
            self._attr_name = self._find_name(type(instance).__mro__)
        if not hasattr(instance, "__dict__"):
            raise TypeError(
                f"@policy_compiled on {self.__wrapped__.__qualname__}: instances of "
                f"{type(instance).__qualname__} have no __dict__ to keep their own compiled "
                "object in; allowed: a class with __dict__, or policy_compiled(obj.method) "
                "per instance"
            )
        state = instance.__dict__
        bound: Any = state.get(self._attr_name)
        if self._made(bound):
            return bound
        # Not the attribute the instance's class finds (an override's `super().act`): kept
        # aside, per defining class, never under the name, which would shadow the override.
        aside = state.get(OVERRIDDEN)
        if aside is not None and (bound := aside.get(self)) is not None:
            return bound
        with self._lock:  # two threads' first accesses must not make two objects
            return self._make_for(instance, owner)

    def _make_for(self, instance: Any, owner: type | None) -> Any:
        state = instance.__dict__
        name = self._attr_name
        assert name is not None
        if _finds(type(instance), name) is self:
            bound = state.get(name)
            if not self._made(bound):
                bound = self._new_bound(instance, owner)
                # Shadows this (non-data) descriptor: later accesses are a plain attribute read.
                state[name] = bound
            return bound
        aside = state.setdefault(OVERRIDDEN, {})
        bound = aside.get(self)
        if bound is None:
            bound = aside[self] = self._new_bound(instance, owner)
        return bound

    def _new_bound(self, instance: object, owner: type | None) -> PolicyCompiled[..., Any]:
        bound = self._make(self.__wrapped__.__get__(instance, owner))
        bound._policy_defined_by = self  # type: ignore[attr-defined]
        return bound

    def _made(self, value: object) -> bool:
        """Whether ``value`` is a compiled object this descriptor made (not an override's)."""
        return getattr(value, "_policy_defined_by", None) is self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A call through the class (``Agent.act(agent, x)``): one object for all of them."""
        return self._class_level()(*args, **kwargs)

    def stats(self) -> CompileStats:
        """The counters of calls made through the class (each instance has its own)."""
        return self._class_level().stats()

    def _for_class(self, cls: Any) -> PolicyCompiled[..., Any]:
        with self._lock:
            made = self._per_class.get(cls)
            if made is None:
                made = self._per_class[cls] = self._make(self.__wrapped__.__get__(cls, type(cls)))
            return made

    def _class_level(self) -> PolicyCompiled[..., Any]:
        with self._lock:
            if self._through_class is None:
                self._through_class = self._make(self.__wrapped__)
            return self._through_class

    def _find_name(self, classes: Iterable[type]) -> str:
        for cls in classes:
            for name, value in vars(cls).items():
                if value is self:
                    _leave_out_of_copies(cls, name)
                    return name
        raise TypeError(f"@policy_compiled on {self.__wrapped__.__qualname__}: not a class attribute")

    def __repr__(self) -> str:
        return f"<policy_compiled method {self.__wrapped__.__qualname__}, one per instance>"


#: The instance ``__dict__`` key of the compiled objects of overridden methods (reached
#: through ``super()``), by their descriptor: one per (instance, defining class).
OVERRIDDEN = "_policy_compiled_overridden"


def _finds(cls: type, name: str) -> object:
    """What an instance of ``cls`` finds as ``name`` in its class (first in the MRO)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _get_while_traced(self: PerInstance, instance: object, owner: type | None = None) -> Any:
    """What Dynamo traces instead of :meth:`PerInstance.__get__` (an access inside an outer
    ``torch.compile``): the plain bound method, traced into the outer graph as the hot
    path's own ``_torchdynamo_inline`` is. Nothing is made or locked at trace time (Dynamo
    cannot enter a lock: an error under ``fullgraph=True``, a skipped frame otherwise)."""
    if instance is None:
        return self
    return self.__wrapped__.__get__(instance, owner)


# Dynamo follows `_torchdynamo_inline` on the functions it inlines, a descriptor's
# `__get__` included (torch 2.13, variables/functions.py UserFunctionVariable).
PerInstance.__get__._torchdynamo_inline = _get_while_traced  # type: ignore[attr-defined]


def stacked_descriptor(fn: object, make: Factory) -> object | None:
    """``@policy_compiled`` over ``@staticmethod`` / ``@classmethod``: the same kind of
    descriptor over one compiled object of the function (``None`` for anything else).

    One object, not one per instance: neither kind of method sees the instance. A
    classmethod's object takes the class as its first argument (Dynamo guards on it).
    """
    if not isinstance(fn, staticmethod | classmethod):
        return None
    from .wrappable import check_wrappable

    check_wrappable(fn.__func__)
    return type(fn)(make(fn.__func__))


def in_class_body(fn: object) -> bool:
    """A plain function whose qualified name says it is defined in a class body."""
    if not isinstance(fn, types.FunctionType):
        return False
    parts = fn.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def _leave_out_of_copies(owner: type, name: str) -> None:
    """Give ``owner`` a ``__getstate__`` that leaves out the per-instance compiled objects.

    ``copy.copy``, ``copy.deepcopy`` and ``pickle`` all take an object's state from
    ``__getstate__``. Without this, a copy's ``__dict__`` holds the original's object, bound
    to the original (a deep-copied target network would silently run the online network's
    method), and pickling fails on it.
    """
    existing = owner.__dict__.get("__getstate__")
    names: set[str] | None = getattr(existing, "_policy_compiled_names", None)
    if names is not None:  # another policy-compiled method of the same class
        names.add(name)
        return
    names = {name}

    def __getstate__(self: Any) -> Any:
        state = existing(self) if existing is not None else _inherited_state(owner, self)
        return _without_compiled(state, names)

    __getstate__._policy_compiled_names = names  # type: ignore[attr-defined]
    __getstate__.__qualname__ = f"{owner.__qualname__}.__getstate__"
    setattr(owner, "__getstate__", __getstate__)  # noqa: B010 (plain assignment: mypy refuses)


def _inherited_state(owner: type, obj: Any) -> Any:
    getter = getattr(super(owner, obj), "__getstate__", None)
    if getter is not None:
        return getter()
    # Python 3.10: object has no __getstate__; this is what copy and pickle take instead.
    slots = {n: getattr(obj, n) for n in copyreg._slotnames(type(obj)) if hasattr(obj, n)}  # type: ignore[attr-defined]
    return (obj.__dict__, slots) if slots else obj.__dict__


def _without_compiled(state: Any, names: set[str]) -> Any:
    """``state`` without the per-instance compiled objects (a copy: never changes the
    instance's own ``__dict__``, which the default state is)."""
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | None):
        return (_without_compiled(state[0], names), state[1])
    if not isinstance(state, dict) or not (
        OVERRIDDEN in state or any(_is_compiled(state.get(n)) for n in names)
    ):
        return state
    return {
        k: v for k, v in state.items() if k != OVERRIDDEN and not (k in names and _is_compiled(v))
    }


def _is_compiled(value: object) -> bool:
    return getattr(value, "_policy_state", None) is not None
