"""Values as JSON-safe data with their types, and callables by their importable name.

JSON has no tuples and no infinities, and cannot tell a tag from a dict: a tuple is written
``{"$tuple": [...]}``, a non-finite float ``{"$float": "inf"}``, and a dict with a key that
starts with ``$`` is wrapped as ``{"$dict": {...}}``, so no dict is mistaken for a tag. Used
for a policy's ``options`` (:meth:`CompilePolicy.to_dict`).

    >>> encode_value({"shape": (1, 2), "scale": 1.0}, "options")
    {'shape': {'$tuple': [1, 2]}, 'scale': 1.0}
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

from .._base.errors import PolicyError, shown

__all__ = ["callable_name", "decode_value", "encode_value", "import_callable"]

_TUPLE, _FLOAT, _DICT = "$tuple", "$float", "$dict"

_ALLOWED_VALUES = (
    "None, bool, int, float, str, and lists, tuples and dicts with str keys of these "
    "(exactly these types, not subclasses)"
)


def encode_value(value: object, where: str) -> object:
    """``value`` as JSON-safe data; ``where`` names it in the error for a value that has none."""
    # Exact types: a subclass (an IntEnum, a named tuple) would come back as its base type,
    # which is not the same option value (options compare with their types).
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if type(value) is list:
        return [encode_value(item, f"{where}[{n}]") for n, item in enumerate(value)]
    if type(value) is tuple:
        return {_TUPLE: [encode_value(item, f"{where}[{n}]") for n, item in enumerate(value)]}
    if type(value) is dict:
        if not all(type(key) is str for key in value):
            raise PolicyError(
                f"{where}={shown(value)} cannot be written as policy data: its keys must be str; "
                f"allowed values: {_ALLOWED_VALUES}"
            )
        encoded = {key: encode_value(item, f"{where}[{key!r}]") for key, item in value.items()}
        return {_DICT: encoded} if any(key.startswith("$") for key in value) else encoded
    raise PolicyError(
        f"{where}={shown(value)} ({type(value).__name__}) cannot be written as policy data; "
        f"allowed values: {_ALLOWED_VALUES}"
    )


def decode_value(data: object, where: str) -> object:
    """The value :func:`encode_value` wrote as ``data``."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode_value(item, f"{where}[{n}]") for n, item in enumerate(data)]
    if isinstance(data, dict):
        if len(data) == 1:
            (tag, inner), = data.items()
            if tag == _TUPLE and isinstance(inner, list):
                return tuple(decode_value(item, f"{where}[{n}]") for n, item in enumerate(inner))
            if tag == _FLOAT and inner in ("nan", "inf", "-inf"):
                return float(inner)
            if tag == _DICT and isinstance(inner, dict):
                return {key: decode_value(item, f"{where}[{key!r}]") for key, item in inner.items()}
        if any(isinstance(key, str) and key.startswith("$") for key in data):
            raise PolicyError(
                f"{where}={shown(data)} is not valid policy data: a key starting with '$' is a tag "
                f"({_TUPLE!r}: list, {_FLOAT!r}: 'nan'/'inf'/'-inf', {_DICT!r}: dict), alone in its dict"
            )
        return {key: decode_value(item, f"{where}[{key!r}]") for key, item in data.items()}
    raise PolicyError(f"{where}={shown(data)} is not valid policy data; allowed: JSON values")


def callable_name(backend: Callable[..., Any], *, lenient: bool) -> str:
    """``module:qualname`` of a callable backend, checked to import back to itself."""
    module = getattr(backend, "__module__", None)
    qualname = getattr(backend, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        try:
            found = _resolve(module, qualname)
        except (ImportError, AttributeError, ValueError):
            found = None
        if found is backend or found == backend:  # a bound method is made anew on access
            return f"{module}:{qualname}"
    if lenient:
        return repr(backend)
    raise PolicyError(
        f"backend={shown(backend)} cannot be written as policy data: a callable backend is written "
        "as its importable module:qualname, and this one does not import back to itself; "
        "allowed: a backend name, or a module-level function or class"
    )


def _resolve(module: str, qualname: str) -> object:
    target: object = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def import_callable(reference: str) -> object:
    module, _, qualname = reference.partition(":")
    try:
        target = _resolve(module, qualname)
    except (ImportError, AttributeError, ValueError) as error:
        raise PolicyError(
            f"backend={shown(reference)} in policy data cannot be imported: {error}; allowed: a "
            "backend name, or 'module:qualname' of an importable callable"
        ) from error
    if not callable(target):
        raise PolicyError(f"backend={shown(reference)} in policy data names {shown(target)}, "
                          "which is not callable")
    return target
