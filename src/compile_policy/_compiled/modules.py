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
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from torch import nn

from .._base.errors import PolicyError
from .._policy.value import CompilePolicy
from .module_calls import ForwardSignature, make_call
from .module_guards import refuse_hf_trainer, refuse_parametrization

__all__ = ["PolicyCompiledModule"]

M = TypeVar("M", bound=nn.Module)

#: Attributes the wrapper keeps for itself; every other attribute write goes to the module.
_OWN = frozenset({"_orig_mod", "_compiled_call_impl", "_policy_state", "_policy_config",
                  "_policy_call"})
_PREFIX = "_orig_mod."  # what torch.compile(module) puts before every state_dict key


class PolicyCompiledModule(nn.Module, Generic[M]):
    """What ``policy_compiled(module)`` returns: the module, whose calls obey the policy.

    Its parameters, buffers, submodules and hooks are the wrapped module's own (the same
    objects), registered under the same names when it is a parent's child, with the same
    ``state_dict()`` keys; attribute reads and writes and ``nn.Module``'s public methods
    (``train()``, ``to()``, ``apply()``, ``register_*``, ...; the wrapped class's overrides
    included) act on the wrapped module, whose own attributes the wrapper never shadows.
    Each call, and ``forward(...)``, asks the current (thread/task-local) policy, as a
    ``policy_compiled`` function does; ``forward`` has the wrapped module's signature, and
    ``model.forward = fn`` replaces the call, as on ``torch.compile(module)``.
    ``__wrapped__`` and ``_orig_mod`` are the wrapped module; ``compile_stats(model)`` counts
    this object's calls. A deep copy wraps a copy of the module, with its own compiled
    state; a pickle leaves compiled state out.

        >>> model = policy_compiled(MLP(), backend="inductor")
        >>> optimizer = torch.optim.Adam(model.parameters())      # the MLP's parameters
        >>> with compile_disabled():
        ...     model(x)                                           # the plain MLP call
        >>> model.state_dict().keys() == model.__wrapped__.state_dict().keys()
        True
    """

    _orig_mod: M
    _policy_config: tuple[CompilePolicy, Mapping[str, Any]]
    __signature__ = ForwardSignature()

    def __init__(self, module: M, config: tuple[CompilePolicy, Mapping[str, Any]]) -> None:
        object.__setattr__(self, "_orig_mod", module)  # first: `training` reads it
        super().__init__()
        # Share the module's tables rather than registering it as a child: the parent's
        # recursion (parameters(), state_dict(), load_state_dict(), to()) then reaches the
        # module's tensors under the module's names, and hooks registered on either object
        # are the module's. Flags (`_is_full_backward_hook`, which the module's own call
        # reads to fire full backward hooks) are read and written on the module.
        for name, value in list(vars(self).items()):
            shared = vars(module).get(name)
            if name in _OWN or name == "training":
                continue
            if isinstance(value, dict | set) and type(shared) is type(value):
                object.__setattr__(self, name, shared)
            else:
                object.__delattr__(self, name)
        object.__setattr__(self, "_policy_config", config)
        call = make_call(module, config)
        object.__setattr__(self, "_policy_call", call)
        object.__setattr__(self, "_policy_state", call._policy_state)
        # As OptimizedModule's: `forward` is an attribute of the instance (with the module's
        # signature), and what it is, nn.Module.__call__ runs (see __setattr__).
        object.__setattr__(self, "forward", call)
        object.__setattr__(self, "_compiled_call_impl", call)  # what nn.Module.__call__ runs

    # -- calls ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The policy-obeying call, as ``OptimizedModule.forward`` is the compiled call. Each
        instance has its own (this method is what ``del model.forward`` leaves).

            >>> model.forward(x)  # the same as model(x): compiled unless a scope says not
        """
        return self._policy_call(*args, **kwargs)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Refused: the wrapper already compiles by the policy, and ``torch.compile`` over
        its call would compile the policy check itself."""
        raise PolicyError(
            f"{self._name()}.compile(): it is policy-compiled already; "
            "allowed: torch.compile(unwrap(model)) or policy_compiled(unwrap(model), ...) "
            "for other compile arguments"
        )

    def _name(self) -> str:
        return f"policy_compiled({type(self._orig_mod).__qualname__})"

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
        if name == "parametrizations":
            refuse_parametrization(self._name())
        refuse_hf_trainer(self._name())
        try:
            return getattr(module, name)
        except AttributeError:
            if name != "stats":
                raise
            raise AttributeError(
                f"{type(module).__name__!r} object has no attribute 'stats'; the counters of "
                f"{self._name()} are compile_stats(model)"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "forward":  # m(x) runs what m.forward is, as on torch.compile(module)
            object.__setattr__(self, "forward", value)
            object.__setattr__(self, "_compiled_call_impl", value)
        elif name in _OWN or hasattr(type(self), name):  # `training`, a patched method
            super().__setattr__(name, value)
        else:
            setattr(self._orig_mod, name, value)

    def __delattr__(self, name: str) -> None:
        if name == "forward":  # back to the policy-obeying call
            self.__setattr__("forward", self._policy_call)
        elif name in _OWN or hasattr(type(self), name):
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

    # -- traversal and replicas -------------------------------------------------------------
    def named_modules(self, memo: set[nn.Module] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Module]]:
        """The wrapper, then the wrapped module and its submodules, under the same names:
        a parent's ``modules()`` holds every module its ``_modules`` tables name, as
        ``torch.nn.parallel.replicate`` needs. The wrapper has no tensors of its own (its
        tables are the module's), so a listing with duplicates (``remove_duplicate=False``)
        leaves it out rather than list each tensor twice.

            >>> [type(m).__name__ for m in policy_compiled(nn.Linear(4, 4)).modules()]
            ['PolicyCompiledModule', 'Linear']
        """
        if memo is None:
            memo = set()
        if remove_duplicate and self not in memo:
            memo.add(self)
            yield prefix, self
        yield from self._orig_mod.named_modules(memo, prefix, remove_duplicate)

    def _replicate_for_data_parallel(self) -> PolicyCompiledModule[M]:
        # nn.Module's copies the instance dict: the replica would write its tensors into the
        # original module. A replica wraps a replica of the module, with its own compiled
        # state (DataParallel replicates on every call: each replica compiles anew).
        replica = self._orig_mod._replicate_for_data_parallel()  # type: ignore[no-untyped-call]
        return type(self)(replica, self._policy_config)

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
    overrides count (nn.RNN overrides ``_apply``, LightningModule ``to`` and ``half``),
    returning the wrapper where it returns the module (``model.to(device)`` is still the
    wrapper)."""
    method = getattr(nn.Module, name)

    @functools.wraps(method)
    def delegated(self: PolicyCompiledModule[Any], *args: Any, **kwargs: Any) -> Any:
        out = getattr(self._orig_mod, name)(*args, **kwargs)
        return self if out is self._orig_mod else out

    return delegated


#: nn.Module's public methods the wrapper has its own of; every other one is the wrapped
#: module's (see _delegate), so that the wrapper never shadows what its class overrides.
_KEPT = frozenset({"forward", "compile", "named_modules", "modules", "state_dict",
                   "load_state_dict"})
for _name, _value in vars(nn.Module).items():
    if inspect.isfunction(_value) and not _name.startswith("_") and _name not in _KEPT:
        setattr(PolicyCompiledModule, _name, _delegate(_name))
PolicyCompiledModule._apply = _delegate("_apply")  # type: ignore[method-assign]
del _name, _value


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
