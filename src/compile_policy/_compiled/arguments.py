"""The ``torch.compile`` arguments :func:`~compile_policy.policy_compiled` takes besides the
policy's fields (``name``, ``disable``, ``recompile_limit``, ...), checked against the running
torch, and what ``torch.compile`` itself would refuse at wrap time, refused now.

    >>> checked_compile_args(name=None, disable=False, recompile_limit=None,
    ...     isolate_recompiles=None, dynamic_shapes=None, shapes_spec=None)  # doctest: +SKIP
    {'isolate_recompiles': True}
"""

from __future__ import annotations

import sys
from typing import Any

from .._base import torch_releases
from .._base.errors import PolicyError
from .._policy.value import CompilePolicy

__all__ = ["check_as_torch_compile_does", "checked_compile_args"]


#: Every ``torch.compile`` argument that is not a policy field (no scope overrides them), in
#: any supported torch, with the value that means "not given". Which of them the running
#: torch has: :data:`TORCH_ONLY_ARGS`.
_NOT_GIVEN: dict[str, Any] = {
    "name": None, "disable": False, "recompile_limit": None, "isolate_recompiles": None,
    "dynamic_shapes": None, "shapes_spec": None,
}


def __getattr__(name: str) -> Any:
    # TORCH_ONLY_ARGS: the running torch's torch.compile arguments that are not policy
    # fields (no scope overrides them), with their defaults. Worked out on first use, so
    # that importing this module reads no torch version.
    if name == "TORCH_ONLY_ARGS":
        return dict(torch_releases.running().compile_arguments)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def checked_compile_args(**args: Any) -> dict[str, Any]:
    """The given ``torch.compile``-only arguments, each checked, under the running torch's
    names; ``isolate_recompiles`` always, where torch has it (True unless given)."""
    facts = torch_releases.running()
    known = facts.compile_arguments
    given = {k: v for k, v in args.items() if v is not _NOT_GIVEN[k]}
    for old, new in facts.renamed_arguments.items():
        if old in given and new in given:
            raise TypeError(
                f"policy_compiled() got both {old}= and {new}=, one torch.compile argument "
                f"under its old and new name; give only {new}="
            )
        if old in given or new in given:  # either name, passed on under torch's own
            value = given.pop(old if old in given else new)
            given[new if new in known else old] = value
    for argument in given:
        if argument not in known:
            raise TypeError(
                f"policy_compiled() got {argument}=, a torch.compile argument: "
                f"{torch_releases.lacking('compile_arguments', argument)}; "
                f"allowed here: {', '.join(sorted(known))}"
            )
    for flag in ("disable", "isolate_recompiles"):
        if flag in given and not isinstance(given[flag], bool):
            raise PolicyError(f"{flag}={given[flag]!r} is not allowed; allowed: True, False")
    if "name" in given and not isinstance(given["name"], str):
        raise PolicyError(f"name={given['name']!r} is not allowed; allowed: None or a string")
    limit = given.get("recompile_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise PolicyError(
            f"recompile_limit={limit!r} is not allowed; allowed: None or an int >= 1"
        )
    if given.get("disable") is False:
        del given["disable"]
    if facts.isolation:
        given.setdefault("isolate_recompiles", True)
    return given


def check_as_torch_compile_does(defaults: CompilePolicy) -> None:
    """Refuse now what ``torch.compile`` refuses when it wraps (PolicyError): ``mode`` with
    ``options``, an unregistered backend name, an option inductor does not have.

    The backend and the options are checked against torch's registries, so only once torch
    is loaded: wrapping never imports torch (a program that wraps before importing torch
    gets them checked at its first compiled call). Scopes' values are checked when a variant
    is built (variants.py).
    """
    mode, options, backend = defaults.mode, defaults.options, defaults.backend
    if mode is not None and options is not None:
        raise PolicyError(
            f"mode={mode!r} and options={dict(options)!r} are both given, and torch.compile "
            "takes one or the other; allowed: only one of them"
        )
    if "torch" not in sys.modules:
        return
    if isinstance(backend, str) and backend != "inductor":
        from .variants import _check_backend

        _check_backend(backend)
    elif backend == "inductor" and options is not None:
        import torch

        try:
            torch._TorchCompileInductorWrapper(None, dict(options), defaults.dynamic)  # type: ignore[no-untyped-call]
        except RuntimeError as error:  # torch's "Unexpected optimization option ..."
            raise PolicyError(
                f"options={dict(options)!r} is not allowed: {str(error).split(', known options')[0]}; "
                "allowed: inductor's options (torch._inductor.list_options())"
            ) from None
