"""Compile options as values: deep-frozen when a policy is made, compared and hashed with
their types, picklable and copyable.

``torch.compile``'s ``options`` are a dict whose values may be lists or dicts themselves. A
policy keeps a private frozen copy, so a list changed after the scope was made changes
nothing; two option sets are one cache key only when they are equal *with their types*
(``1``, ``True`` and ``1.0`` are three keys, a list and a tuple two), because inductor
checks the type of each value (``isinstance(value, attr_type)``). Reading a value gives a
fresh copy of what was passed (a list is a list again), so the dict handed to torch is the
user's, never something torch could change in the policy.

    >>> from compile_policy import CompilePolicy
    >>> passes = ["a"]
    >>> policy = CompilePolicy(options={"passes": passes})
    >>> passes.append("b")
    >>> policy.options["passes"]
    ['a']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    _Frozen = tuple[Any, ...]

__all__ = ["FrozenOptions", "by_identity_if_unhashable", "freeze"]

# A frozen value is a tagged tuple: ("atom", value) for a hashable value kept as it is;
# ("object", value) for any other object, used as is and compared by identity (it cannot be
# copied safely, and its repr says nothing about equality); and ("list"|"tuple"|"set"|
# "frozenset"|"dict", items) or ("namedtuple", type, items) for containers, frozen item by item
# (the type `_Frozen`, above).


def _freeze(value: object) -> _Frozen:
    # Exact types first: a subclass of a container (an OrderedDict, a named tuple) is
    # rebuilt as what torch can take, and a named tuple keeps its type.
    if isinstance(value, Mapping):
        return ("dict", tuple((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, tuple):
        items = tuple(_freeze(v) for v in value)
        if hasattr(type(value), "_make"):
            return ("namedtuple", type(value), items)
        return ("tuple", items)
    if isinstance(value, list):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, (set, frozenset)):
        tag = "frozenset" if isinstance(value, frozenset) else "set"
        return (tag, tuple(_freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("object", value)
    return ("atom", value)


def _thaw(frozen: _Frozen) -> Any:
    tag = frozen[0]
    if tag in ("atom", "object"):
        return frozen[1]
    if tag == "dict":
        return {_thaw(k): _thaw(v) for k, v in frozen[1]}
    if tag == "list":
        return [_thaw(v) for v in frozen[1]]
    if tag == "tuple":
        return tuple(_thaw(v) for v in frozen[1])
    if tag == "namedtuple":
        return frozen[1]._make(_thaw(v) for v in frozen[2])
    if tag == "set":
        return {_thaw(v) for v in frozen[1]}
    return frozenset(_thaw(v) for v in frozen[1])


class _Identity:
    """An object that is equal only to itself, as a part of a key."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def by_identity_if_unhashable(value: object) -> object:
    """``value`` as a part of a table's key: itself where hashable, else by identity (a
    ``@dataclass`` instance or any object with ``__eq__`` and no ``__hash__`` as a callable
    backend, which ``torch.compile`` takes).

        >>> import dataclasses
        >>> @dataclasses.dataclass
        ... class Backend:
        ...     def __call__(self, gm, example_inputs): return gm.forward
        >>> key = by_identity_if_unhashable
        >>> b = Backend()
        >>> key(b) == key(b) != key(Backend())
        True
    """
    try:
        hash(value)
    except TypeError:
        return _Identity(value)
    return value


def _key(frozen: _Frozen) -> object:
    """The typed, order-free, hashable form of a frozen value, for equality and hashing."""
    tag = frozen[0]
    if tag == "atom":
        return (type(frozen[1]), frozen[1])
    if tag == "object":
        return _Identity(frozen[1])
    if tag == "dict":
        return ("dict", frozenset((_key(k), _key(v)) for k, v in frozen[1]))
    if tag in ("set", "frozenset"):
        return (tag, frozenset(_key(v) for v in frozen[1]))
    if tag == "namedtuple":
        return (tag, frozen[1], tuple(_key(v) for v in frozen[2]))
    return (tag, tuple(_key(v) for v in frozen[1]))


class FrozenOptions(Mapping[str, "Any"]):
    """A read-only, deep-frozen copy of a ``torch.compile`` options mapping.

    Equal (and hashing equal) to another exactly when every value is equal with its type;
    each read returns a fresh copy of the value. Picklable and deep-copyable, so a policy
    with options can go to a spawned worker or into a deep-copied config.

        >>> FrozenOptions({"a": 1}) == FrozenOptions({"a": True})
        False
    """

    __slots__ = ("_hash", "_items", "_key")

    def __init__(self, options: Mapping[str, object]) -> None:
        items = {name: _freeze(value) for name, value in options.items()}
        self._items = items
        self._key = frozenset((name, _key(value)) for name, value in items.items())
        self._hash = hash(self._key)

    def __getitem__(self, name: str) -> Any:
        return _thaw(self._items[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenOptions):
            return self._key == other._key
        if isinstance(other, Mapping):
            return self._key == FrozenOptions(other)._key
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenOptions, (dict(self),))

    def __copy__(self) -> FrozenOptions:
        return self  # immutable: a copy would be indistinguishable

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenOptions:
        return self

    def __repr__(self) -> str:
        return repr(dict(self))


def freeze(options: Mapping[str, object] | None) -> FrozenOptions | None:
    """The options as a cache key: equal exactly when equal with their types; a policy's
    options already are one.

        >>> freeze({"a": [1]}) == freeze({"a": [1]})
        True
    """
    if options is None or isinstance(options, FrozenOptions):
        return options
    return FrozenOptions(options)
