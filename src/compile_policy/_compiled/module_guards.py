"""What a module wrapper refuses, and wrapping a module twice.

``register_parametrization(wrapper, ...)`` and Hugging Face's ``Trainer(model=wrapper)`` are
refused when they first read the wrapper (a ``PolicyError`` naming what works instead), so
that nothing changes and no run fails half-way; ``policy_compiled(m)`` of a policy-compiled
``m`` returns it where the arguments are the same, and is refused where they differ:

    >>> net = policy_compiled(nn.Linear(4, 2), backend="eager")
    >>> policy_compiled(net, backend="eager") is net
    True

Imports no torch: the wrapper (:mod:`compile_policy._compiled.modules`) calls it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._base.errors import PolicyError

if TYPE_CHECKING:
    from torch import nn

    from .._policy.value import CompilePolicy

__all__ = ["refuse_hf_trainer", "refuse_parametrization", "rewrapped"]


def refuse_parametrization(name: str) -> None:
    """Raise when ``torch.nn.utils.parametrize.register_parametrization(wrapper, ...)`` asks
    whether the wrapper is parametrized, its first step: it would next delete the module's
    tensor and change the wrapper's class, not the module's (the module's forward then
    finds no tensor). Any other read of ``wrapper.parametrizations`` is the module's."""
    parametrize = sys.modules.get("torch.nn.utils.parametrize")
    # The reader is is_parametrized(); register_parametrization() called it.
    if not _read_from(getattr(parametrize, "register_parametrization", None), 2):
        return
    raise PolicyError(
        f"register_parametrization() on {name}: a parametrization changes the "
        "class of the module it is given; allowed: register it on the wrapped module, "
        "register_parametrization(unwrap(model), ...), before or after wrapping"
    )


def refuse_hf_trainer(name: str) -> None:
    """Raise when Hugging Face's ``Trainer.__init__`` reads an attribute of the wrapper.

    Trainer saves a model that is not a ``PreTrainedModel`` after unwrapping what accelerate
    recognises (``OptimizedModule`` only: ``isinstance``, which a wrapper cannot pass without
    breaking torch's own checks) as a raw state dict, which safetensors refuses for tied
    weights at the first checkpoint. ``inplace=True`` keeps the model a ``PreTrainedModel``.
    Costs a ``sys.modules`` lookup on the wrapper's attribute misses where transformers'
    Trainer is not loaded.
    """
    trainer = getattr(sys.modules.get("transformers.trainer"), "Trainer", None)
    # Trainer.__init__ itself reads the attribute, or a helper it called (tp_size, first).
    if _read_from(getattr(trainer, "__init__", None), 5):
        raise PolicyError(
            f"Trainer(model={name}): transformers' Trainer does not unwrap it "
            "(it unwraps torch.compile's OptimizedModule only) and saves checkpoints as a "
            "raw state dict, which safetensors refuses for tied weights; allowed: "
            "policy_compiled(model, inplace=True), which keeps the model a PreTrainedModel"
        )


def _read_from(function: object, frames: int) -> bool:
    """Whether the attribute the wrapper's ``__getattr__`` is asked for was read by
    ``function`` or by what it called, ``frames`` frames deep at most (``getattr()`` is C:
    the frame above ``__getattr__`` is the reader)."""
    code = getattr(function, "__code__", None)
    if code is None:  # not loaded: nobody called it
        return False
    frame: types.FrameType | None = sys._getframe(3)  # _read_from, refuse_*, __getattr__
    for _ in range(frames):
        if frame is None:
            return False
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def rewrapped(
    module: nn.Module, config: tuple[CompilePolicy, Mapping[str, Any]], defaults: Mapping[str, Any] | None
) -> Any:
    """``module`` itself where it is policy-compiled already (a wrapper, or compiled in place)
    with the same arguments, so that wrapping twice (Lightning's ``configure_model`` runs on
    every ``fit``) keeps one object and its counters; None where it is not policy-compiled.
    Other arguments are a :class:`PolicyError` naming both sets: a silent second wrapper
    would hide the first one's arguments and restart the counters.

    The same arguments: every argument's value, defaults filled in, is equal
    (``policy_compiled(m)`` and ``policy_compiled(m, backend="inductor")`` are the same);
    ``defaults``: policy_compiled's keyword defaults, for the message.
    """
    call = vars(module).get("_compiled_call_impl")
    state = vars(module).get("_policy_state") or getattr(call, "_policy_state", None)
    if state is None:
        return None
    if (state.defaults, dict(state.compile_args)) == (config[0], dict(config[1])):
        return module
    name = f"policy_compiled({type(vars(module).get('_orig_mod', module)).__qualname__})"
    before = _arguments(state.defaults, state.compile_args, defaults)
    raise PolicyError(
        f"{name} is policy-compiled already, with {before}; "
        f"asked again with {_arguments(*config, defaults)}; allowed: the same arguments (the module "
        "is returned as it is), or policy_compiled(unwrap(model), ...) for a new wrapper"
    )


def _arguments(
    defaults: CompilePolicy, compile_args: Mapping[str, Any], wrap_defaults: Mapping[str, Any] | None
) -> str:
    """The arguments of a policy_compiled() call that differ from its defaults, as written."""
    from .._base import torch_releases

    given = {name: getattr(defaults, name) for name in (
        "backend", "mode", "fullgraph", "dynamic", "options", "fallback")}
    given.update(compile_args)
    # The defaults as this torch fills them in (isolate_recompiles=None is True where it exists).
    standard = {**(wrap_defaults or {}), **torch_releases.running().compile_arguments}
    shown = [f"{k}={v!r}" for k, v in given.items() if k not in standard or standard[k] != v]
    return "(" + ", ".join(shown) + ")" if shown else "no arguments (the defaults)"
