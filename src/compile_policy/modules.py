"""``policy_compiled(module)``: an ``nn.Module`` that is the wrapped module to everything but
its calls, and the in-place form ``policy_compiled(module, inplace=True)``.

The wrapper shares the wrapped module's own tables (parameters, buffers, submodules, hooks),
so a parent that holds it as a child sees the wrapped module's tensors under the wrapped
module's names, and its ``state_dict()`` has no ``_orig_mod.`` prefix:

    >>> parent.body = policy_compiled(nn.Linear(4, 4), backend="eager")
    >>> [name for name, _ in parent.named_parameters()]
    ['body.weight', 'body.bias']

This module imports torch: :mod:`compile_policy` loads it only when a module is wrapped.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from torch import nn

from .generated_code import module_call_function
from .policy import CompilePolicy

__all__ = ["PolicyCompiledModule", "compile_in_place", "module_call"]

M = TypeVar("M", bound=nn.Module)

#: Attributes the wrapper keeps for itself; every other attribute write goes to the module.
_OWN = frozenset({"_orig_mod", "_compiled_call_impl", "_policy_state", "_policy_config",
                  "_is_full_backward_hook"})
_PREFIX = "_orig_mod."  # what torch.compile(module) puts before every state_dict key


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
    return call


def compile_in_place(module: M, config: tuple[CompilePolicy, Mapping[str, Any]]) -> M:
    """``module``, whose calls from now on obey the policy (``nn.Module.compile()``'s slot).

    ``nn.Module.__call__`` runs ``_compiled_call_impl`` when it is set; torch's own
    ``__getstate__`` leaves it out, so copies and pickles are plain modules, as for
    ``module.compile()``.
    """
    module._compiled_call_impl = _make_call(module, config, in_place=True)
    return module


def _make_call(
    module: nn.Module, config: tuple[CompilePolicy, Mapping[str, Any]], *, in_place: bool = False
) -> Any:
    from .compiled import make_compiled  # the dispatch owns `disable` and the arguments

    return make_compiled(module_call(module, in_place=in_place), *config)


class PolicyCompiledModule(nn.Module, Generic[M]):
    """What ``policy_compiled(module)`` returns: the module, whose calls obey the policy.

    Its parameters, buffers, submodules and hooks are the wrapped module's own (the same
    objects), registered under the same names when it is a parent's child, with the same
    ``state_dict()`` keys; attribute reads and writes, ``train()``/``eval()``, ``to()``,
    ``apply()``, ``len()``, indexing and iteration act on the wrapped module. Each call, and
    ``forward(...)``, asks the current (thread/task-local) policy, as a ``policy_compiled``
    function does. ``__wrapped__`` and ``_orig_mod`` are the wrapped module; ``stats()``
    counts this object's calls. A deep copy wraps a copy of the module, with its own
    compiled state; a pickle leaves compiled state out.

        >>> model = policy_compiled(MLP(), backend="inductor")
        >>> optimizer = torch.optim.Adam(model.parameters())      # the MLP's parameters
        >>> with compile_disabled():
        ...     model(x)                                           # the plain MLP call
        >>> model.state_dict().keys() == model.__wrapped__.state_dict().keys()
        True
    """

    _orig_mod: M
    _policy_config: tuple[CompilePolicy, Mapping[str, Any]]

    def __init__(self, module: M, config: tuple[CompilePolicy, Mapping[str, Any]]) -> None:
        object.__setattr__(self, "_orig_mod", module)  # first: `training` reads it
        super().__init__()
        # Share the module's tables rather than registering it as a child: the parent's
        # recursion (parameters(), state_dict(), load_state_dict(), to()) then reaches the
        # module's tensors under the module's names, and hooks registered on either object
        # are the module's. `_is_full_backward_hook` is a flag, not a table: kept apart.
        for name, value in vars(self).items():
            shared = vars(module).get(name)
            if name not in _OWN and isinstance(value, dict | set) and type(shared) is type(value):
                object.__setattr__(self, name, shared)
        object.__setattr__(self, "_policy_config", config)
        call = _make_call(module, config)
        object.__setattr__(self, "_compiled_call_impl", call)  # what nn.Module.__call__ runs
        object.__setattr__(self, "_policy_state", call._policy_state)

    # -- calls ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The policy-obeying call, as ``OptimizedModule.forward`` is the compiled call.

            >>> model.forward(x)  # the same as model(x): compiled unless a scope says not
        """
        return self._compiled_call_impl(*args, **kwargs)  # type: ignore[misc]

    def stats(self) -> Any:
        """A snapshot of this object's counters (:class:`CompileStats`).

            >>> model(x); model.stats().compiled_calls
            1
        """
        return self._policy_state.stats()

    @property
    def __wrapped__(self) -> M:
        return self._orig_mod

    # -- the module's attributes ------------------------------------------------------------
    @property
    def training(self) -> bool:
        """The wrapped module's flag: ``model.eval()`` and ``model.training = False`` set it."""
        return self._orig_mod.training

    @training.setter
    def training(self, value: bool) -> None:
        if "_policy_state" in vars(self):  # nn.Module.__init__ sets the default: not ours
            self._orig_mod.training = value

    def __getattr__(self, name: str) -> Any:
        """What the wrapper lacks comes from the wrapped module, as on ``torch.compile(module)``:
        ``policy_compiled(nn.Linear(4, 4)).weight`` is the Linear's weight."""
        module = vars(self).get("_orig_mod")
        if module is None:  # while unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(module, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN or hasattr(type(self), name):  # `training`, a patched method
            super().__setattr__(name, value)
        else:
            setattr(self._orig_mod, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _OWN or hasattr(type(self), name):
            super().__delattr__(name)
        else:
            delattr(self._orig_mod, name)

    def __dir__(self) -> list[str]:
        """The wrapped module's names and the wrapper's own."""
        return sorted(set(dir(self._orig_mod)) | set(super().__dir__()))  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._orig_mod!r})"

    # Containers (nn.Sequential, nn.ModuleList, nn.ModuleDict): special methods are looked
    # up on the type, so __getattr__ never sees them.
    def __len__(self) -> int:
        return len(self._orig_mod)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._orig_mod)  # type: ignore[call-overload,no-any-return]

    def __getitem__(self, index: Any) -> Any:
        return self._orig_mod[index]  # type: ignore[index]

    def __bool__(self) -> bool:  # else __len__ decides, and raises for a non-container
        return bool(self._orig_mod)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped module's ``state_dict()`` (its overrides and hooks), no prefix.

            >>> list(policy_compiled(nn.Linear(4, 4)).state_dict())
            ['weight', 'bias']
        """
        return self._orig_mod.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """The wrapped module's ``load_state_dict()``; also takes a ``torch.compile(module)``
        checkpoint, whose keys start with ``_orig_mod.``.

            >>> model.load_state_dict(torch.compile(MLP()).state_dict())  # strict: no key missed
            <All keys matched successfully>
        """
        if "_orig_mod" not in self._modules and any(k.startswith(_PREFIX) for k in state_dict):
            state_dict = _strip_prefix(state_dict)
        return self._orig_mod.load_state_dict(state_dict, strict, assign)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A parent loading a checkpoint whose child was torch.compile'd: `child._orig_mod.w`.
        # `state_dict` is the parent's per-child copy, which the children's loads read next.
        if "_orig_mod" not in self._modules:
            for key in [k for k in state_dict if k.startswith(prefix + _PREFIX)]:
                state_dict[prefix + key[len(prefix) + len(_PREFIX):]] = state_dict.pop(key)
        self._orig_mod._load_from_state_dict(state_dict, prefix, *args)

    def _save_to_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._orig_mod._save_to_state_dict(*args, **kwargs)

    # -- copies and pickles -----------------------------------------------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> PolicyCompiledModule[M]:
        # Through the memo: a bundle holding the module and its wrapper copies into one
        # whose wrapper wraps the copied module. The configuration (a callable backend
        # included) is shared, as torch.compile's is; the compiled state is new.
        copied = type(self)(copy.deepcopy(self._orig_mod, memo), self._policy_config)
        memo[id(self)] = copied
        return copied

    def __reduce__(self) -> Any:
        return (type(self), (self._orig_mod, self._policy_config))


def _delegate(name: str) -> Callable[..., Any]:
    """``PolicyCompiledModule.<name>``: the wrapped module's own, so that its class's
    overrides count (nn.RNN overrides ``_apply``), returning the wrapper where it returns
    the module (``model.to(device)`` is still the wrapper)."""
    method = getattr(nn.Module, name)

    @functools.wraps(method)
    def delegated(self: PolicyCompiledModule[Any], *args: Any, **kwargs: Any) -> Any:
        out = getattr(self._orig_mod, name)(*args, **kwargs)
        return self if out is self._orig_mod else out

    return delegated


# The nn.Module methods that would otherwise act on the wrapper itself: yield it as a module
# (modules(), named_modules(), which a parent's recursion calls), pass it to `fn` (apply),
# or bypass an override of the wrapped class (train, _apply, to, ...).
for _name in ("named_modules", "modules", "apply", "_apply", "train", "eval", "to",
              "requires_grad_", "zero_grad"):
    setattr(PolicyCompiledModule, _name, _delegate(_name))
del _name


def _strip_prefix(state_dict: Mapping[str, Any]) -> Any:
    """A copy of ``state_dict`` (and its ``_metadata``) with the leading ``_orig_mod.``
    removed from the keys that have it."""
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    stripped: Any = type(state_dict)(state_dict) if isinstance(state_dict, dict) else dict(state_dict)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        stripped._metadata = copy.copy(metadata)
    consume_prefix_in_state_dict_if_present(stripped, _PREFIX)
    return stripped

