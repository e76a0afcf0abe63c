"""Policies as text and as data: :meth:`CompilePolicy.parse`, ``str(policy)``,
:meth:`CompilePolicy.to_dict` and :meth:`CompilePolicy.from_dict`.

Each field is described once, in :data:`.field_forms.FIELDS`: how its value reads and
writes in text, and how it is written to JSON-safe data and read back. Text is
comma-separated: a switch word or a mode name first (optional), then ``key=value`` items.
A value may be a JSON string in double quotes, so that any backend name survives ``str()``
and ``parse()``: ``backend="my backend"``.

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
from typing import Protocol, TypeVar

from .._base.errors import PolicyError, shown
from .field_forms import FIELDS, NONE, ON, SWITCH_WORDS, TEXT_KEYS, Bad
from .fields import MODES

__all__ = ["format_policy", "parse_text", "policy_from_dict", "policy_to_dict"]


class _Policy(Protocol):
    """What this module reads of a policy: it never imports the value (which imports it)."""

    @property
    def enabled(self) -> bool: ...

    def set_fields(self) -> dict[str, object]: ...


P = TypeVar("P", bound=_Policy)

# Items of a text with quoted values: a JSON string in double quotes (commas, "=" and
# escaped quotes inside), a run of anything else, a comma, or a quote never closed.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[^,"]+|[,"]', re.DOTALL)



# -- text --------------------------------------------------------------------------------
# What an error lists as allowed: only the forms for the part that is wrong, so that every
# message stays short (the whole grammar with every field's values is ~600 characters).
_FIRST_WORDS = (f"a switch word ({', '.join(SWITCH_WORDS)}, any case) or a mode name "
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
            if word in SWITCH_WORDS:
                values["enabled"] = word in ON
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
        field = FIELDS[name]
        try:
            if raw_value.startswith('"'):
                quoted = json.loads(raw_value)
                if not isinstance(quoted, str):
                    raise Bad
                values[name] = field.read_quoted(quoted)
            elif raw_value.lower() == NONE:
                values[name] = None
            else:
                values[name] = field.read(raw_value)
        except ValueError:  # Bad, or a quoted value that is not one JSON string
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
            items.append(f"{name}={FIELDS[name].write(value)}")
    return ",".join(items)


# -- data --------------------------------------------------------------------------------
def policy_to_dict(policy: _Policy) -> dict[str, object]:
    """The JSON-safe data of ``policy`` (see :meth:`CompilePolicy.to_dict`)."""
    return {name: FIELDS[name].encode(value) for name, value in policy.set_fields().items()}


def policy_from_dict(data: object, make: Callable[..., P]) -> P:
    """The policy ``data`` describes, made by ``make`` (see :meth:`CompilePolicy.from_dict`)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"CompilePolicy.from_dict() takes a dict; got {shown(data)}; allowed: a dict "
                        "as to_dict() makes")
    unknown = sorted(shown(key) for key in data if key not in FIELDS)
    if unknown:
        raise TypeError(
            f"CompilePolicy.from_dict() got unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(FIELDS)}"
        )
    values = {name: None if value is None else FIELDS[name].decode(value) for name, value in data.items()}
    if values.get("enabled", True) is None:
        raise PolicyError("enabled=None is not allowed in policy data; allowed: true, false")
    return make(**values)
