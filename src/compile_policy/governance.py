"""Governing plain ``torch.compile`` code: the policy decides for code you did not write.

``torch.compiler.set_stance`` is one process-wide value, read by torch's ``compile_wrapper``
on every call of every ``torch.compile``'d function (``eval_frame._stance``, torch 2.13).
:func:`govern_torch_compile` replaces that value with a stand-in whose fields resolve from
the calling thread or task's policy stack, so the stance becomes context-local: a disabled
context runs every compiled function and module eagerly, an enabled one with a ``stance``
field gets that stance, and every other context reads torch's own process-wide value.

    >>> import torch
    >>> from compile_policy import compile_disabled, govern_torch_compile
    >>> govern_torch_compile()             # once, process-wide; checks torch first
    >>> fn = torch.compile(torch.sin)
    >>> with compile_disabled():           # this thread/task only
    ...     _ = fn(torch.ones(3))          # the plain code: no cache lookup, no compile

These are torch internals: the install checks every name it relies on and refuses, changing
nothing, when they differ. Nothing here runs on import.
"""

from __future__ import annotations

import dataclasses
import dis
import sys
import threading
import types
from typing import Any

from .errors import TorchInternalsError
from .policy import default_frame, pushed_top

__all__ = ["govern_torch_compile", "is_governed"]

_LOCK = threading.Lock()
_FORCE_EAGER = "force_eager"
#: What the stand-in replaced, for the tests' private uninstall: (eval_frame, decorators,
#: the original _set_stance), or None while not installed.
_INSTALLED: tuple[Any, Any, Any] | None = None


class _GovernedStance:
    """Stands in for torch's process-wide ``DynamoStance`` (``eval_frame._stance``).

    Each field resolves from the calling context's policy: disabled -> ``force_eager``; a
    ``stance`` field set by a scope -> that stance, whole (no forced backend, no unsafe
    guard skipping); otherwise torch's real process-wide value, kept in ``real`` (what
    ``torch.compiler.set_stance`` sets from now on). torch reads two or three fields per
    compiled call, so each is one short function: no merge, no allocation.
    """

    __slots__ = ("real",)

    def __init__(self, real: Any) -> None:
        self.real = real

    @property
    def stance(self) -> str:
        top = pushed_top()
        if top is None:
            return self.real.stance if default_frame().enabled else _FORCE_EAGER  # type: ignore[no-any-return]
        if not top.enabled:
            return _FORCE_EAGER
        return top.effective.stance or self.real.stance  # type: ignore[no-any-return]

    @property
    def backend(self) -> Any:
        top = pushed_top()
        if top is None:
            return self.real.backend if default_frame().enabled else None
        if not top.enabled or top.effective.stance is not None:
            return None
        return self.real.backend

    @property
    def skip_guard_eval_unsafe(self) -> bool:
        top = pushed_top()
        if top is None:
            return bool(self.real.skip_guard_eval_unsafe) and default_frame().enabled
        if not top.enabled or top.effective.stance is not None:
            return False
        return bool(self.real.skip_guard_eval_unsafe)

    def __repr__(self) -> str:
        return f"governed stance {self.stance!r} (process-wide: {self.real!r})"


def is_governed() -> bool:
    """Whether :func:`govern_torch_compile` has been called in this process."""
    return _INSTALLED is not None


def govern_torch_compile() -> None:
    """Let the policy govern every ``torch.compile``'d function and module, process-wide.

    From then on, in every thread and asyncio task, a context whose effective policy is
    disabled (a :func:`compile_disabled` scope, or ``COMPILE_POLICY=off`` with no scope)
    runs all ``torch.compile``'d code eagerly, however it was compiled (``torch.compile(fn)``,
    ``torch.compile(module)``, ``module.compile()``, inside other libraries), while other
    threads and tasks keep running compiled; a scope's ``stance`` field applies in its
    context only. Contexts without either follow ``torch.compiler.set_stance`` as before.
    Idempotent; there is no uninstall. Imports torch, checks the internals it relies on and
    raises :class:`TorchInternalsError` (changing nothing) when they differ.

        >>> govern_torch_compile()
        >>> with compile_disabled():
        ...     model(x)  # a torch.compile'd model, run eagerly in this thread/task only
    """
    global _INSTALLED
    with _LOCK:
        if _INSTALLED is not None:
            return
        eval_frame, decorators = check_torch_internals()
        original = eval_frame._set_stance
        proxy = _GovernedStance(eval_frame._stance)
        get_callback = sys.modules["torch._C._dynamo.eval_frame"].get_eval_frame_callback

        def _set_stance(stance: Any) -> Any:
            # torch's own rule, kept: no stance change inside a compiled region.
            callback = get_callback()
            if callback is not False and callback is not None:
                raise RuntimeError("attempted to set_stance in a torch.compile region")
            prior, proxy.real = proxy.real, stance
            return prior

        _set_stance._dynamo_forbidden = True  # type: ignore[attr-defined]
        # Three stores, no torch call between them. A torch.compiler.set_stance() racing in
        # another thread during these could be lost; installing happens once, at start-up.
        eval_frame._stance = proxy
        eval_frame._set_stance = _set_stance
        decorators._set_stance = _set_stance
        _INSTALLED = (eval_frame, decorators, original)


def _uninstall() -> None:
    """Put torch's own objects back, keeping its current process-wide stance (tests only:
    governance has no public uninstall)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED is None:
            return
        eval_frame, decorators, original = _INSTALLED
        eval_frame._stance = eval_frame._stance.real
        eval_frame._set_stance = original
        decorators._set_stance = original
        _INSTALLED = None


def check_torch_internals() -> tuple[types.ModuleType, types.ModuleType]:
    """Check every torch internal :func:`govern_torch_compile` relies on, and return
    ``(torch._dynamo.eval_frame, torch._dynamo.decorators)``.

    Raises :class:`TorchInternalsError` naming the torch version and each thing missing.
    Changes nothing.
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
    # Each of these must read the module global `_stance` (or call a function that does) on
    # every call, by name, from eval_frame's globals: that read is what we redirect.
    readers = {
        "_callback_from_stance": {"_stance"},
        "_is_skip_guard_eval_unsafe_stance": {"_stance"},
        "_set_stance": {"_stance"},
    }
    for name, wanted in readers.items():
        problems += _global_reads(names.get(name), f"eval_frame.{name}", wanted, names)
    context = names.get("_TorchDynamoContext")
    call = getattr(context, "__call__", None)
    wrapper = _nested_code(getattr(call, "__code__", None), "compile_wrapper")
    if wrapper is None:
        problems.append("eval_frame._TorchDynamoContext.__call__ defines no compile_wrapper")
    else:
        problems += _code_global_reads(
            wrapper, "eval_frame compile_wrapper",
            {"_callback_from_stance", "_is_skip_guard_eval_unsafe_stance", "_stance"},
        )
    if getattr(decorators, "_set_stance", None) is not names.get("_set_stance"):
        problems.append("torch._dynamo.decorators._set_stance is not eval_frame._set_stance")
    set_stance = getattr(decorators, "set_stance", None)
    for method in ("__init__", "__enter__", "__exit__"):
        problems += _global_reads(
            getattr(set_stance, method, None), f"decorators.set_stance.{method}",
            {"_set_stance"}, vars(decorators),
        )
    callback_module = sys.modules.get("torch._C._dynamo.eval_frame")
    if not callable(getattr(callback_module, "get_eval_frame_callback", None)):
        problems.append("torch._C._dynamo.eval_frame.get_eval_frame_callback is missing")
    if not problems:
        problems += _held_elsewhere(
            {"_stance": names["_stance"], "_set_stance": names["_set_stance"]},
            allowed=(eval_frame, decorators),
        )
    if problems:
        raise TorchInternalsError(
            f"govern_torch_compile() cannot govern torch.compile in torch {torch.__version__}: "
            "the torch internals it relies on differ from torch 2.13's ("
            + "; ".join(problems)
            + "). Nothing was changed; compile_disabled() still governs policy_compiled "
            "objects. Use a torch version compile-policy supports, or do without governance."
        )
    return eval_frame, decorators


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


def _nested_code(code: types.CodeType | None, name: str) -> types.CodeType | None:
    if code is None:
        return None
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
