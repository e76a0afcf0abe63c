"""Policies as text and as data: :meth:`CompilePolicy.parse`, ``str(policy)``,
:meth:`CompilePolicy.to_dict` and :meth:`CompilePolicy.from_dict`.

Each field is described once, in ``_FIELDS``: how its value reads and writes in text, and how
it is written to JSON-safe data and read back. Text is comma-separated: a switch word or a
mode name first (optional), then ``key=value`` items. A value may be a JSON string in double
quotes, so that any backend name survives ``str()`` and ``parse()``: ``backend="my backend"``.

    >>> from compile_policy import CompilePolicy
    >>> p = CompilePolicy.parse("on, backend=aot_eager, fallback=raise")
    >>> str(p)
    'on,backend=aot_eager,fallback=raise'
    >>> CompilePolicy.from_dict(p.to_dict()) == p
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from .._base.errors import PolicyError, shown
from .fields import FALLBACKS, FIELD_NAMES, MODES, STANCES
from .json_values import callable_name, decode_value, encode_value, import_callable

__all__ = ["format_policy", "parse_text", "policy_from_dict", "policy_to_dict"]


class _Policy(Protocol):
    """What this module reads of a policy: it never imports the value (which imports it)."""

    @property
    def enabled(self) -> bool: ...

    def set_fields(self) -> dict[str, object]: ...


P = TypeVar("P", bound=_Policy)

_NONE = "none"
_ON, _OFF = ("on", "1", "true"), ("off", "0", "false")  # any case, as COMPILE_POLICY always took
_SWITCH_WORDS = _ON + _OFF
# A backend name as torch registers them ("inductor", "aot_eager", "tvm", ...). Only the
# shape is checked here: the registry is consulted on the first compiled call (it needs torch).
_BACKEND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# A backend *name* with ":" is tagged: a plain str with ":" is a callable's module:qualname.
_NAME = "$name"
# Items of a text with quoted values: a JSON string in double quotes (commas, "=" and
# escaped quotes inside), a run of anything else, a comma, or a quote never closed.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[^,"]+|[,"]', re.DOTALL)


class _Bad(ValueError):
    """A value that is not allowed for its field (turned into a PolicyError by the caller)."""


class _Field:
    """How one field reads from and writes to text, and to and from JSON-safe data."""

    in_text = True

    def __init__(self, allowed: str) -> None:
        self.allowed = allowed  # for error messages: the values this field takes in text

    def read(self, raw: str) -> object:
        raise NotImplementedError

    def read_quoted(self, raw: str) -> object:
        """The value of a quoted item (``none`` in quotes is the word, not None)."""
        return self.read(raw)

    def write(self, value: Any) -> str:
        return str(value)

    def encode(self, value: Any) -> object:
        return value

    def decode(self, data: object) -> object:
        return data  # the constructor validates


class _Switch(_Field):
    def __init__(self) -> None:
        super().__init__(", ".join(_SWITCH_WORDS) + " (any case), none")

    def read(self, raw: str) -> object:
        word = raw.lower()
        if word in _ON:
            return True
        if word in _OFF:
            return False
        raise _Bad

    def write(self, value: Any) -> str:
        return "true" if value else "false"


class _Choice(_Field):
    def __init__(self, words: tuple[str, ...]) -> None:
        super().__init__(", ".join(words) + ", none")
        self.words = words

    def read(self, raw: str) -> object:
        if raw.lower() not in self.words:
            raise _Bad
        return raw.lower()


class _Backend(_Field):
    def __init__(self) -> None:
        super().__init__(
            'a backend name (torch.compiler.list_backends()), any name in JSON double quotes '
            '("my backend"), or none; a callable backend only in Python or in policy data'
        )

    def read(self, raw: str) -> object:
        if not _BACKEND_NAME.fullmatch(raw):
            raise _Bad
        return raw

    def read_quoted(self, raw: str) -> object:
        if not raw:
            raise _Bad
        return raw

    def write(self, value: Any) -> str:
        if not isinstance(value, str):
            return callable_name(value, lenient=True)
        if _BACKEND_NAME.fullmatch(value) and value.lower() != _NONE:
            return value
        # A name the bare form cannot carry (a comma, "=", a space, a quote, "none"): quoted,
        # so that parse() reads back the same name.
        return json.dumps(value, ensure_ascii=False)

    def encode(self, value: Any) -> object:
        if isinstance(value, str):
            # A name with ":" would read back as "module:qualname": tag it.
            return {_NAME: value} if ":" in value else value
        return callable_name(value, lenient=False)

    def decode(self, data: object) -> object:
        if isinstance(data, dict) and data.keys() == {_NAME} and isinstance(data[_NAME], str):
            return data[_NAME]
        if not isinstance(data, str):
            raise PolicyError(
                f"backend={shown(data)} is not allowed in policy data; allowed: a backend name, "
                f"'module:qualname' of a callable backend, or {{{_NAME!r}: name}}"
            )
        return import_callable(data) if ":" in data else data


class _Options(_Field):
    in_text = False

    def __init__(self) -> None:
        super().__init__("options cannot be given in text")

    def write(self, value: Any) -> str:
        return repr(dict(value))

    def encode(self, value: Any) -> object:
        return {str(key): encode_value(item, f"options[{key!r}]") for key, item in value.items()}

    def decode(self, data: object) -> object:
        if not isinstance(data, dict):
            raise PolicyError(f"options={shown(data)} is not allowed in policy data; allowed: a dict")
        return {key: decode_value(item, f"options[{key!r}]") for key, item in data.items()}


def _fields() -> dict[str, _Field]:
    known: dict[str, _Field] = {
        "enabled": _Switch(),
        "backend": _Backend(),
        "mode": _Choice(MODES),
        "fullgraph": _Switch(),
        "dynamic": _Switch(),
        "options": _Options(),
        "fallback": _Choice(FALLBACKS),
        "stance": _Choice(STANCES),
    }
    # Every field of CompilePolicy is described here: a new field must be too.
    assert set(known) == set(FIELD_NAMES), (sorted(known), FIELD_NAMES)
    return {name: known[name] for name in FIELD_NAMES}


_FIELDS = _fields()
#: The keys of ``key=value`` items (``enabled`` is the leading switch word).
TEXT_KEYS = tuple(name for name, field in _FIELDS.items() if field.in_text and name != "enabled")


# -- text --------------------------------------------------------------------------------
# What an error lists as allowed: only the forms for the part that is wrong, so that every
# message stays short (the whole grammar with every field's values is ~600 characters).
_FIRST_WORDS = (f"a switch word ({', '.join(_SWITCH_WORDS)}, any case) or a mode name "
                f"({', '.join(MODES)})")
_KEYS = f"key=value items with keys {', '.join(TEXT_KEYS)}"
_GRAMMAR = f"comma-separated items: {_FIRST_WORDS} or neither first, then {_KEYS}"


def _items(text: str) -> list[str] | None:
    """The comma-separated items of ``text``, a quoted value kept whole; None for a quote
    never closed."""
    if '"' not in text:
        return text.split(",")
    items, item = [], ""
    for token in _TOKENS.findall(text):
        if token == ",":
            items.append(item)
            item = ""
        elif token == '"':
            return None
        else:
            item += token
    items.append(item)
    return items


def parse_text(text: object, make: Callable[..., P], source: str = "text ") -> P:
    """The policy ``text`` spells, made by ``make`` (the class :class:`CompilePolicy`; see
    :meth:`CompilePolicy.parse`); ``source`` names where the text came from, in the error
    message."""

    def bad(problem: str, allowed: str = _GRAMMAR) -> PolicyError:
        # One short line whatever the text's length: values are cut (errors.shown).
        return PolicyError(f"{source}{shown(text)} is not a compile policy: {problem}; allowed: {allowed}")

    if not isinstance(text, str):
        raise PolicyError(f"{source}{shown(text)} is not a compile policy: it must be a str; "
                          "allowed: a str such as 'on,backend=eager'")
    if not text.strip():
        raise bad("the text is empty")
    items = _items(text)
    if items is None:
        raise bad('a double quote is never closed', 'a quoted value in JSON form, "..."')
    values: dict[str, object] = {}
    for position, raw_item in enumerate(items):
        item = raw_item.strip()
        if not item:
            raise bad(f"item {position + 1} is empty (a stray comma?)")
        key, has_value, raw_value = (part.strip() for part in item.partition("="))
        if not has_value:
            if position:
                raise bad(f"{shown(item)} is not a key=value item (only the first item may be "
                          "a bare word)", _KEYS)
            word = item.lower()
            if word in _SWITCH_WORDS:
                values["enabled"] = word in _ON
            elif word in MODES:
                values["mode"] = word
            else:
                raise bad(f"{shown(item)} is neither a switch word nor a mode name", _FIRST_WORDS)
            continue
        name = key.lower()
        if name == "options":
            raise bad("options cannot be given in text (they are a mapping)",
                      "options in Python (CompilePolicy(options=...)) or in policy data "
                      "(CompilePolicy.from_dict)")
        if name not in TEXT_KEYS:
            raise bad(f"unknown key {shown(key)}", _KEYS)
        if name in values:
            raise bad(f"{name} is given twice", f"{_KEYS}, each once")
        field = _FIELDS[name]
        try:
            if raw_value.startswith('"'):
                quoted = json.loads(raw_value)
                if not isinstance(quoted, str):
                    raise _Bad
                values[name] = field.read_quoted(quoted)
            elif raw_value.lower() == _NONE:
                values[name] = None
            else:
                values[name] = field.read(raw_value)
        except ValueError:  # _Bad, or a quoted value that is not one JSON string
            raise bad(f"{name}={shown(raw_value)} is not allowed", f"{name}={field.allowed}") from None
    try:
        return make(**values)
    except PolicyError as error:  # a combination the constructor refuses
        raise bad(str(error), "see CompilePolicy") from None


def format_policy(policy: _Policy) -> str:
    """The canonical text of ``policy`` (see ``CompilePolicy.__str__``)."""
    items = ["on" if policy.enabled else "off"]
    for name, value in policy.set_fields().items():
        if name != "enabled":
            items.append(f"{name}={_FIELDS[name].write(value)}")
    return ",".join(items)


# -- data --------------------------------------------------------------------------------
def policy_to_dict(policy: _Policy) -> dict[str, object]:
    """The JSON-safe data of ``policy`` (see :meth:`CompilePolicy.to_dict`)."""
    return {name: _FIELDS[name].encode(value) for name, value in policy.set_fields().items()}


def policy_from_dict(data: object, make: Callable[..., P]) -> P:
    """The policy ``data`` describes, made by ``make`` (see :meth:`CompilePolicy.from_dict`)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"CompilePolicy.from_dict() takes a dict; got {shown(data)}; allowed: a dict "
                        "as to_dict() makes")
    unknown = sorted(shown(key) for key in data if key not in _FIELDS)
    if unknown:
        raise TypeError(
            f"CompilePolicy.from_dict() got unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_FIELDS)}"
        )
    values = {name: None if value is None else _FIELDS[name].decode(value) for name, value in data.items()}
    if values.get("enabled", True) is None:
        raise PolicyError("enabled=None is not allowed in policy data; allowed: true, false")
    return make(**values)
