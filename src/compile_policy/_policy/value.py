"""The compile policy as a value: :class:`CompilePolicy`, whether to compile and with which
``torch.compile`` arguments. Where it lives (one stack per thread or asyncio task) is
:mod:`compile_policy._context.stack`.

    >>> from compile_policy import CompilePolicy
    >>> CompilePolicy.parse("off,backend=eager")
    CompilePolicy(enabled=False, backend='eager')

This module loads on first use of :class:`CompilePolicy`, not with the package:
``dataclasses`` imports ``inspect``, ``re`` and ``enum``, about 20 ms in a fresh interpreter
on a 2-core VM, three times what the rest of ``import compile_policy`` costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from .._base.errors import PolicyError, shown
from .fields import FALLBACKS, FIELD_NAMES, MODES, STANCES

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .fields import Fallback

__all__ = ["CompilePolicy", "parse_policy"]


def _check_optional_bool(name: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise PolicyError(f"{name}={shown(value)} is not allowed; allowed: True, False or None")


# eq=False, repr=False: the class defines its own (fields with their types; set fields only),
# and dataclasses would still make and discard one of each, about 0.3 ms of its import.
@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CompilePolicy:
    """Whether to compile, and with which ``torch.compile`` arguments.

    A field left ``None`` is "not set here": it is inherited from the enclosing scope, and
    in the end from the compiled object's own arguments. Fields are validated on
    construction; a bad value raises :class:`PolicyError`. A policy is a value: ``options``
    are deep-frozen (:class:`~compile_policy._policy.option_values.FrozenOptions`), and policies
    compare and hash by their fields with their types, pickle and deep-copy.

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
            raise PolicyError(f"enabled={shown(self.enabled)} is not allowed; allowed: True, False")
        backend = self.backend
        if backend is not None and not (
            (isinstance(backend, str) and backend) or callable(backend)
        ):
            raise PolicyError(
                f"backend={shown(backend)} is not allowed; allowed: None, a backend name "
                "(see torch.compiler.list_backends()) or a callable backend"
            )
        if self.mode is not None and self.mode not in MODES:
            raise PolicyError(
                f"mode={shown(self.mode)} is not a torch.compile mode; allowed: None, "
                + ", ".join(map(repr, MODES))
            )
        if self.mode is not None:
            _check_mode_of_torch(self.mode)
        _check_optional_bool("fullgraph", self.fullgraph)
        _check_optional_bool("dynamic", self.dynamic)
        if self.options is not None:
            if not isinstance(self.options, Mapping) or not all(
                isinstance(key, str) for key in self.options
            ):
                raise PolicyError(
                    f"options={shown(self.options)} is not allowed; allowed: None or a mapping "
                    "of option names (str) to values"
                )
            from .option_values import FrozenOptions  # loads only for policies with options

            if not isinstance(self.options, FrozenOptions):
                # A private deep-frozen copy: the caller's dict, and the lists in it, may
                # change after the scope is made.
                object.__setattr__(self, "options", FrozenOptions(self.options))
        if self.fallback is not None and self.fallback not in FALLBACKS:
            raise PolicyError(
                f"fallback={shown(self.fallback)} is not allowed; allowed: None, "
                + ", ".join(map(repr, FALLBACKS))
            )
        if self.stance is not None and self.stance not in STANCES:
            hint = "; use compile_disabled() to run eagerly" if self.stance == "force_eager" else ""
            raise PolicyError(
                f"stance={shown(self.stance)} is not allowed; allowed: None, "
                + ", ".join(map(repr, STANCES)) + hint
            )

    def merged_over(self, outer: CompilePolicy) -> CompilePolicy:
        """This policy's fields, with the ones it leaves ``None`` taken from ``outer``.

            >>> CompilePolicy(enabled=False).merged_over(CompilePolicy(enabled=True, backend="eager"))
            CompilePolicy(enabled=False, backend='eager')
        """
        return CompilePolicy(
            *[
                mine if mine is not None else getattr(outer, name)
                for name, mine in zip(FIELD_NAMES, self._values(), strict=True)
            ]
        )

    def set_fields(self) -> dict[str, object]:
        """The fields this policy sets (``enabled`` always; the others when not ``None``).

            >>> CompilePolicy.parse("on,backend=eager").set_fields()
            {'enabled': True, 'backend': 'eager'}
        """
        return {
            name: value
            for name, value in zip(FIELD_NAMES, self._values(), strict=True)
            if value is not None
        }

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in FIELD_NAMES)

    def _key(self) -> tuple[object, ...]:
        # Every field with its type (True is not 1); a backend that cannot be hashed (an
        # object with __eq__ but no __hash__) by identity, so that equal policies hash equal.
        return tuple(
            (type(value), value if name != "backend" or _hashable(value) else id(value))
            for name, value in zip(FIELD_NAMES, self._values(), strict=True)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompilePolicy):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.set_fields().items())
        return f"CompilePolicy({shown})"

    # -- as text and as data (text.py) -----------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> CompilePolicy:
        """The policy a text spells: a switch word (``on``/``off``/``1``/``0``/``true``/
        ``false``) or a mode name first, then ``key=value`` items; bad text is a
        :class:`PolicyError` naming the bad part.

            >>> CompilePolicy.parse("max-autotune, fallback=raise")
            CompilePolicy(enabled=True, mode='max-autotune', fallback='raise')
        """
        return parse_policy(text)

    def __str__(self) -> str:
        """The canonical text: ``CompilePolicy.parse(str(p)) == p`` (without options or a
        callable backend, which text cannot carry).

            >>> str(CompilePolicy(backend="aot_eager", fullgraph=True))
            'on,backend=aot_eager,fullgraph=true'
        """
        from .text import format_policy

        return format_policy(self)

    def to_dict(self) -> dict[str, object]:
        """The fields this policy sets, as JSON-safe data (for configs and checkpoints).

            >>> CompilePolicy(enabled=False, options={"shape": (1, 2)}).to_dict()
            {'enabled': False, 'options': {'shape': {'$tuple': [1, 2]}}}
        """
        from .text import policy_to_dict

        return policy_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CompilePolicy:
        """The inverse of :meth:`to_dict`; an unknown key is a ``TypeError``, a bad value a
        :class:`PolicyError`.

            >>> CompilePolicy.from_dict({"enabled": True, "backend": "eager"})
            CompilePolicy(enabled=True, backend='eager')
        """
        from .text import policy_from_dict

        return policy_from_dict(data, CompilePolicy)  # as parse(): a CompilePolicy


assert tuple(f.name for f in fields(CompilePolicy)) == FIELD_NAMES


def parse_policy(text: object, source: str = "text ") -> CompilePolicy:
    """The policy ``text`` spells (see :meth:`CompilePolicy.parse`); ``source`` names where
    the text came from, in the error message (``"environment variable COMPILE_POLICY="``).

        >>> parse_policy("off", source="--compile-policy=")
        CompilePolicy(enabled=False)
    """
    from .text import parse_text  # the grammar (`re`, `json`) loads only when there is text

    return parse_text(text, CompilePolicy, source)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _check_mode_of_torch(mode: str) -> None:
    from .._base.torch_releases import lacking, running

    modes = running().modes
    if mode not in modes:
        raise PolicyError(
            f"mode={mode!r} is not a torch.compile mode of this torch: {lacking('modes', mode)}; "
            "allowed: None, " + ", ".join(map(repr, modes))
        )
