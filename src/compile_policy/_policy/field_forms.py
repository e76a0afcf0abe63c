"""How each field of a policy reads from and writes to text, and to and from JSON-safe data:
one :class:`Field` per field, in :data:`FIELDS` (the grammar, :mod:`.text`, reads them).

    >>> FIELDS["fullgraph"].read("on"), FIELDS["fullgraph"].write(False)
    (True, 'off')
"""

from __future__ import annotations

import json
import re
from typing import Any

from .._base.errors import PolicyError, shown
from .fields import FALLBACKS, FIELD_NAMES, MODES, STANCES
from .json_values import callable_name, decode_value, encode_value, import_callable

__all__ = ["FIELDS", "NONE", "OFF", "ON", "SWITCH_WORDS", "TEXT_KEYS", "Bad", "Field"]

#: The word for "not set here" (a field left None), in any case.
NONE = "none"

ON, OFF = ("on", "1", "true"), ("off", "0", "false")  # any case, as COMPILE_POLICY always took
SWITCH_WORDS = ON + OFF
# A backend name as torch registers them ("inductor", "aot_eager", "tvm", ...). Only the
# shape is checked here: the registry is consulted on the first compiled call (it needs torch).
_BACKEND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# A backend *name* with ":" is tagged: a plain str with ":" is a callable's module:qualname.
_NAME = "$name"
class Bad(ValueError):
    """A value that is not allowed for its field (turned into a PolicyError by the caller)."""


class Field:
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


class _Switch(Field):
    def __init__(self) -> None:
        super().__init__(", ".join(SWITCH_WORDS) + " (any case), none")

    def read(self, raw: str) -> object:
        word = raw.lower()
        if word in ON:
            return True
        if word in OFF:
            return False
        raise Bad

    def write(self, value: Any) -> str:
        return "true" if value else "false"


class _Choice(Field):
    def __init__(self, words: tuple[str, ...]) -> None:
        super().__init__(", ".join(words) + ", none")
        self.words = words

    def read(self, raw: str) -> object:
        if raw.lower() not in self.words:
            raise Bad
        return raw.lower()


class _Backend(Field):
    def __init__(self) -> None:
        super().__init__(
            'a backend name (torch.compiler.list_backends()), any name in JSON double quotes '
            '("my backend"), or none; a callable backend only in Python or in policy data'
        )

    def read(self, raw: str) -> object:
        if not _BACKEND_NAME.fullmatch(raw):
            raise Bad
        return raw

    def read_quoted(self, raw: str) -> object:
        if not raw:
            raise Bad
        return raw

    def write(self, value: Any) -> str:
        if not isinstance(value, str):
            return callable_name(value, lenient=True)
        if _BACKEND_NAME.fullmatch(value) and value.lower() != NONE:
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


class _Options(Field):
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


def _fields() -> dict[str, Field]:
    known: dict[str, Field] = {
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


FIELDS = _fields()
#: The keys of ``key=value`` items (``enabled`` is the leading switch word).
TEXT_KEYS = tuple(name for name, field in FIELDS.items() if field.in_text and name != "enabled")
