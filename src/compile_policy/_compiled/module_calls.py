"""What a policy-compiled module runs and compiles: the module's own call, as a frame of this
package, made policy-obeying by :func:`~.function.make_compiled`; and the in-place form,
``policy_compiled(module, inplace=True)`` (``nn.Module.compile()``'s slot).

    >>> call = make_call(model, (CompilePolicy(), {}))     # doctest: +SKIP
    >>> call(x)   # model(x), compiled or not as the policy says
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._policy.value import CompilePolicy
from .function import make_compiled
from .generated_code import module_call_function

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ForwardSignature", "compile_in_place", "make_call", "module_call"]

M = TypeVar("M", bound="nn.Module")


def module_call(module: nn.Module, *, in_place: bool = False) -> Callable[..., Any]:
    """What a policy-compiled module runs and compiles: ``module``'s call, hooks included.

    A frame of this package, not of torch: Dynamo skips the frames of torch's own layers
    (``nn.Linear(4, 4).compile()`` compiles nothing in torch 2.13), but inlines them when
    they are called from here, as ``torch.compile(module)`` does through its ``wrap_inline``.
    ``module(...)`` as there (Dynamo handles a module call, DDP's included, as a call);
    ``_call_impl`` in place, as ``module.compile()``: the module's ``__call__`` leads here.
    """
    # Generated, named after the module's forward: Dynamo's logs name the frame it compiles.
    call = module_call_function(module, "module._call_impl" if in_place else "module")
    # Messages and stats name the module's class: "policy_compiled(MLP): compile failed ...".
    call.__name__ = call.__qualname__ = type(module).__qualname__
    # Tools that read the parameters (HF Trainer's column filter reads
    # inspect.signature(model.forward)) see the module's own, not (*args, **kwargs); the
    # policy-obeying function copies it (functools.update_wrapper copies __dict__).
    with contextlib.suppress(TypeError, ValueError):  # a forward without one: the generic one
        call.__signature__ = inspect.signature(module.forward)  # type: ignore[attr-defined]
    return call


def compile_in_place(module: M, config: tuple[CompilePolicy, Mapping[str, Any]]) -> M:
    """``module``, whose calls from now on obey the policy (``nn.Module.compile()``'s slot).

    ``nn.Module.__call__`` runs ``_compiled_call_impl`` when it is set; torch's own
    ``__getstate__`` leaves it out, so copies and pickles are plain modules, as for
    ``module.compile()``.
    """
    module._compiled_call_impl = make_call(module, config, in_place=True)
    return module


def make_call(
    module: nn.Module, config: tuple[CompilePolicy, Mapping[str, Any]], *, in_place: bool = False
) -> Any:
    return make_compiled(module_call(module, in_place=in_place), *config)


class ForwardSignature:
    """``inspect.signature(wrapper)``: the signature of its ``forward``, which is the wrapped
    module's (``inspect.signature`` reads ``__signature__`` before following ``__wrapped__``
    to the module, whose own is ``nn.Module.__call__``'s ``(*args, **kwargs)``)."""

    def __get__(self, obj: Any, owner: type | None = None) -> inspect.Signature | None:
        if obj is None:  # inspect.signature(PolicyCompiledModule): the class's own
            return None
        return inspect.signature(obj.forward)
