"""The torch internals :func:`compile_policy.govern_torch_compile` relies on, checked.

Everything here is private to torch (``torch._dynamo.eval_frame``, torch 2.13) and may change
in any release, so :func:`check_torch_internals` verifies each name, type and field, and that
each is still read by name, as a module global, on every call; it changes nothing and raises
:class:`~compile_policy.TorchInternalsError` naming the torch version and what differs.

    >>> internals = check_torch_internals()  # doctest: +SKIP
    >>> internals.eval_frame.__name__
    'torch._dynamo.eval_frame'
"""

from __future__ import annotations

import dataclasses
import dis
import sys
import types
from typing import Any, NamedTuple

from .._base import torch_releases
from .._base.errors import TorchInternalsError

__all__ = ["REPLACED", "Internals", "check_torch_internals"]

#: The eval_frame globals the install replaces (``decorators._set_stance`` too).
REPLACED = ("_stance", "_set_stance", "_callback_from_stance", "_is_skip_guard_eval_unsafe_stance")


class Internals(NamedTuple):
    """What the install needs, found and checked."""

    eval_frame: types.ModuleType
    decorators: types.ModuleType
    context_call: types.FunctionType  # _TorchDynamoContext.__call__, which makes compile_wrapper
    wrapper_code: types.CodeType  # compile_wrapper's code: every torch.compile'd function's
    set_eval_frame: Any
    get_eval_frame_callback: Any


def check_torch_internals() -> Internals:
    """Check every torch internal :func:`govern_torch_compile` relies on; change nothing.

    Raises :class:`TorchInternalsError` naming the torch version and each thing missing.
    """
    import torch
    import torch._dynamo.decorators as decorators
    import torch._dynamo.eval_frame as eval_frame

    problems: list[str] = []
    names = vars(eval_frame)
    stance_type = names.get("DynamoStance")
    if not (isinstance(stance_type, type) and dataclasses.is_dataclass(stance_type)):
        problems.append("eval_frame.DynamoStance is not a dataclass")
    elif {f.name for f in dataclasses.fields(stance_type)} != {
        "stance", "skip_guard_eval_unsafe", "backend"
    }:
        problems.append(
            "eval_frame.DynamoStance's fields are not (stance, skip_guard_eval_unsafe, backend): "
            f"{[f.name for f in dataclasses.fields(stance_type)]}"
        )
    elif not isinstance(names.get("_stance"), stance_type):
        problems.append(f"eval_frame._stance is not a DynamoStance: {names.get('_stance')!r}")
    # Each must read the module global `_stance` by name, from eval_frame's globals, on every
    # call: that read is what the install redirects.
    for name in ("_callback_from_stance", "_is_skip_guard_eval_unsafe_stance", "_set_stance"):
        problems += _global_reads(names.get(name), f"eval_frame.{name}", {"_stance"}, names)
    problems += _pinnable(names.get("_callback_from_stance"))
    context = names.get("_TorchDynamoContext")
    context_call = vars(context).get("__call__") if isinstance(context, type) else None
    wrapper = None
    if not isinstance(context_call, types.FunctionType):
        problems.append("eval_frame._TorchDynamoContext defines no __call__")
    else:
        wrapper = _nested_code(context_call.__code__, "compile_wrapper")
    if wrapper is None:
        problems.append("eval_frame._TorchDynamoContext.__call__ defines no compile_wrapper")
    else:
        # Before torch 2.13 compile_wrapper reads the stance only through the two functions
        # the install replaces; 2.13+ reads _stance itself too (the stand-in answers it).
        problems += _code_global_reads(
            wrapper, "eval_frame compile_wrapper", set(torch_releases.running().compile_wrapper_reads)
        )
        assert isinstance(context_call, types.FunctionType)
        stored = {i.argval for i in dis.get_instructions(context_call) if i.opname == "STORE_ATTR"}
        if "_torchdynamo_orig_callable" not in stored:
            problems.append("compile_wrapper no longer keeps _torchdynamo_orig_callable")
    if getattr(decorators, "_set_stance", None) is not names.get("_set_stance"):
        problems.append("torch._dynamo.decorators._set_stance is not eval_frame._set_stance")
    set_stance = getattr(decorators, "set_stance", None)
    for method in ("__init__", "__enter__", "__exit__"):
        problems += _global_reads(
            getattr(set_stance, method, None), f"decorators.set_stance.{method}",
            {"_set_stance"}, vars(decorators),
        )
    c_eval_frame = sys.modules.get("torch._C._dynamo.eval_frame")
    for name in ("get_eval_frame_callback", "set_eval_frame"):
        if not callable(getattr(c_eval_frame, name, None)):
            problems.append(f"torch._C._dynamo.eval_frame.{name} is missing")
    if not problems:
        problems += _held_elsewhere(
            {name: names[name] for name in REPLACED}, allowed=(eval_frame, decorators)
        )
    if problems:
        raise TorchInternalsError(
            f"govern_torch_compile() cannot govern torch.compile in torch {torch.__version__}: "
            "the torch internals it relies on differ from those of the torch releases "
            f"compile-policy supports, {torch_releases.supported_text()} ("
            + "; ".join(problems)
            + "). Nothing was changed; compile_disabled() still governs policy_compiled "
            "objects. Use a torch release compile-policy supports, or do without governance."
        )
    assert isinstance(context_call, types.FunctionType) and wrapper is not None
    return Internals(
        eval_frame, decorators, context_call, wrapper,
        c_eval_frame.set_eval_frame, c_eval_frame.get_eval_frame_callback,  # type: ignore[union-attr]
    )


def _global_reads(
    function: object, label: str, wanted: set[str], module_globals: dict[str, Any]
) -> list[str]:
    if not isinstance(function, types.FunctionType):
        return [f"{label} is not a Python function"]
    if function.__globals__ is not module_globals:
        return [f"{label} does not run in its module's globals"]
    return _code_global_reads(function.__code__, label, wanted)


def _code_global_reads(code: types.CodeType, label: str, wanted: set[str]) -> list[str]:
    read = {
        ins.argval for ins in dis.get_instructions(code)
        if ins.opname in ("LOAD_GLOBAL", "STORE_GLOBAL")
    }
    missing = sorted(wanted - read)
    return [f"{label} no longer reads the global(s) {', '.join(missing)}"] if missing else []


def _pinnable(function: object) -> list[str]:
    """governance runs copies of ``_callback_from_stance`` with ``_stance`` pinned in a copy
    of eval_frame's globals: right only while it keeps no state of its own (stores no
    global, no closure, no defaults)."""
    if not isinstance(function, types.FunctionType):
        return []  # already reported by _global_reads
    stored = sorted({
        i.argval for i in dis.get_instructions(function) if i.opname in ("STORE_GLOBAL", "DELETE_GLOBAL")
    })
    if stored or function.__closure__ or function.__defaults__ or function.__kwdefaults__:
        return [
            "eval_frame._callback_from_stance keeps state of its own "
            f"(stores the global(s) {stored}, or has a closure or defaults)"
        ]
    return []


def _nested_code(code: types.CodeType, name: str) -> types.CodeType | None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_name == name:
                return const
            found = _nested_code(const, name)
            if found is not None:
                return found
    return None


def _held_elsewhere(targets: dict[str, object], allowed: tuple[types.ModuleType, ...]) -> list[str]:
    """Modules other than ``allowed`` that hold one of ``targets`` as a global: they would
    keep using torch's object after the swap (a ``from eval_frame import _stance``)."""
    allowed_ids = {id(module) for module in allowed}
    problems = []
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if id(module) in allowed_ids or not isinstance(namespace, dict):
            continue
        for name, target in targets.items():
            if any(value is target for value in list(namespace.values())):
                problems.append(f"module {module_name} holds eval_frame.{name} by name")
    return problems
