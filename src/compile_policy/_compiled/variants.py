"""Building one ``torch.compile`` variant per set of compile options, with counted graphs.

This is the only module that imports torch, and only when a variant is first built.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .._base import torch_releases
from .._base.errors import PolicyError
from .._policy.option_values import by_identity_if_unhashable
from .dynamo_frames import keep_dynamo_out_of_pending

__all__ = ["CompileOptions", "GraphRuns", "build_variant", "compiler_errors", "user_error_at_trace"]


class CompileOptions(NamedTuple):
    """The merged ``torch.compile`` arguments of one variant: the key of its cache.

    One per distinct set of arguments an object was called under; ``stats().variants``
    lists them, and each compiles at most once.

        >>> with compile_enabled(mode="max-autotune"):
        ...     step(x)
        >>> [key.mode for key in step.stats().variants]
        [None, 'max-autotune']
    """

    backend: str | Callable[..., Any]
    mode: str | None
    fullgraph: bool
    dynamic: bool | None
    options: object  # the options mapping made hashable (see policy.freeze)

    # A callable backend need not be hashable (a @dataclass instance): such a one is a key
    # by identity, as CompilePolicy compares it. Equal to a CompileOptions only; __ne__ too,
    # as tuple's would not follow this __eq__.
    def _as_key(self) -> tuple[object, ...]:
        return (by_identity_if_unhashable(self.backend), *self[1:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompileOptions):
            return NotImplemented
        return self._as_key() == other._as_key()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._as_key())

    def describe(self) -> str:
        """The arguments as the warnings and reports print them: ``backend='eager', mode=None, ...``."""
        backend = self.backend if isinstance(self.backend, str) else _name_of(self.backend)
        return (
            f"backend={backend!r}, mode={self.mode!r}, fullgraph={self.fullgraph!r}, "
            f"dynamic={self.dynamic!r}, options={self.options!r}"
        )



def _name_of(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)


class GraphRuns(threading.local):
    """How many compiled graphs of one object have run in this thread, in ``cell[0]``: a
    call reads it before and after, to tell whether any graph of its own ran during it.

    One per object: with one count for all, a call of another compiled object made inside
    this object's call (through a ``torch._dynamo.disable``d helper, or a nested wrapper)
    counted as this object's compiled call although none of its own graphs ran.

    Per thread rather than per context: a call is synchronous, so no other task runs in its
    thread meanwhile. Not a ContextVar: a ContextVar.set per graph run cost about 2 us
    inside a compiled call (torch 2.13 on CPU: 7% of a tiny call). A one-item list, so that
    a call reads the thread-local once and the counter twice.
    """

    def __init__(self) -> None:  # run once in each thread, on its first access
        self.cell = [0]


#: The count shared by objects made with ``isolate_recompiles=False``: they share Dynamo's
#: cache, so a call of one may run a graph another compiled, and that is a compiled call.
SHARED_GRAPH_RUNS = GraphRuns()


@functools.cache
def compiler_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the PyTorch compiler failed" in this torch.

    ``TorchDynamoException`` subclasses ``RuntimeError``, so a bare ``RuntimeError`` must
    never be caught as a compile failure; ``FailOnRecompileLimitHit`` is a plain Exception.
    """
    from torch._dynamo import exc

    errors: list[type[BaseException]] = [exc.TorchDynamoException]
    limit_hit = getattr(exc, "FailOnRecompileLimitHit", None)
    if isinstance(limit_hit, type):
        errors.append(limit_hit)
    return tuple(errors)


def user_error_at_trace() -> type[BaseException]:
    """Dynamo's type for an error raised by the user's own ops while it traced them."""
    from torch._dynamo.exc import TorchRuntimeError

    return TorchRuntimeError


def _check_backend(backend: str | Callable[..., Any]) -> None:
    if not isinstance(backend, str):
        return
    import torch

    known = torch.compiler.list_backends(exclude_tags=())
    if backend not in known:
        raise PolicyError(
            f"backend={backend!r} is not a registered torch.compile backend; "
            f"allowed: {', '.join(map(repr, sorted(known)))}, or a callable backend"
        )


def build_variant(
    target: Callable[..., Any],
    key: CompileOptions,
    options: Mapping[str, object] | None,
    on_graph_compiled: Callable[[float, bool], object],
    runs: GraphRuns,
    compile_args: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """``torch.compile(target, ...)`` for ``key``, whose graphs count their runs in ``runs``;
    ``compile_args``: the object's other ``torch.compile`` arguments (``name``, ...).

    ``on_graph_compiled(seconds, ok)`` is told of every graph the backend compiled (``ok``)
    or failed to compile, with the wall time the backend took.

    Configuration errors (unknown backend, ``mode`` with ``options``) are raised here as
    :class:`PolicyError`: they are never a reason to fall back silently.
    """
    import torch

    keep_dynamo_out_of_pending()  # hot paths made before torch was loaded
    _check_backend(key.backend)
    options = None if options is None else dict(options)
    if key.mode is not None and options is not None:
        raise PolicyError(
            f"mode={key.mode!r} and options={options!r} are both set for this call, and "
            "torch.compile takes one or the other; allowed: set only one of them "
            "(the decorator's and the scopes' values are merged)"
        )
    # What torch.compile itself would build for a backend name/callable with mode/options;
    # wrapping it lets every compiled graph count its runs without changing what compiles.
    # compile_args: checked against the running torch (arguments.py), isolate_recompiles in
    # them where torch has it: Dynamo keeps one cache and one recompile limit per code
    # object, shared by every wrapper of the same method; isolated, one object's recompiles
    # never push another over the limit (silently eager until torch._dynamo.reset()).
    extra = dict(compile_args or {})
    name = extra.pop("name", None)  # torch.compile gives it to the inductor wrapper only
    real: Any
    if key.backend == "inductor":
        named = (name,) if torch_releases.running().inductor_takes_name else ()
        real = torch._TorchCompileInductorWrapper(  # type: ignore[no-untyped-call]
            key.mode or "default", options, key.dynamic, *named
        )
    else:
        real = torch._TorchCompileWrapper(  # type: ignore[no-untyped-call]
            key.backend, key.mode, options, key.dynamic
        )
    compiled = torch.compile(
        target,
        backend=_CountingBackend(real, on_graph_compiled, runs),
        fullgraph=key.fullgraph,
        dynamic=key.dynamic,
        **extra,
    )
    # Under govern_torch_compile() a compiled function comes with a shortcut for disabled
    # contexts; a variant only ever runs in an enabled one, so call torch's own function.
    return getattr(compiled, "_compile_policy_compiled", compiled)


#: torch's switch (torch._functorch.config, torch 2.13) that makes AOTAutograd compile a
#: graph's backward when it compiles the forward, not at the first ``.backward()``.
EAGER_BACKWARD_SWITCH = "force_non_lazy_backward_lowering"


def _backward_compiled_with_forward() -> contextlib.AbstractContextManager[object]:
    """While a backend compiles a graph: compile its backward too (aot_eager, inductor, any
    backend made with ``aot_autograd``). A backward that fails to compile is then a compile
    failure of the call, which falls back or raises per policy; compiled lazily, it failed at
    ``loss.backward()``, outside the object, on every step, recorded nowhere. Costs nothing
    for a training step, whose backward compiles anyway; a graph called with grad enabled but
    never backpropagated pays for a backward compile it does not use. The switch is a
    context-local config value in torch 2.13 (no other thread sees it); a torch without it
    (torch_releases: backward_with_forward) compiles lazily, as before."""
    from torch._functorch import config

    if not torch_releases.running().backward_with_forward:  # torch < 2.12: lazily, as before
        return contextlib.nullcontext()
    return config.patch(EAGER_BACKWARD_SWITCH, True)  # type: ignore[no-any-return]


class _CountingBackend:
    """A backend that compiles with ``real`` and wraps each graph to count its runs."""

    def __init__(
        self, real: Any, on_graph_compiled: Callable[[float, bool], object], runs: GraphRuns
    ) -> None:
        self.real = real
        self.runs = runs
        # torch names the backend by __name__ in its messages (BackendCompilerFailed).
        self.__name__ = str(getattr(real, "compiler_name", None) or _name_of(real))
        self.on_graph_compiled = on_graph_compiled

    def __call__(self, gm: Any, example_inputs: Any) -> Callable[..., Any]:
        start = time.perf_counter()
        try:
            with _backward_compiled_with_forward():
                compiled = self.real(gm, example_inputs)
            if not callable(compiled):
                # Raised inside the backend call, so Dynamo reports it as BackendCompilerFailed,
                # a compile failure (fallback or raise per policy), not a TypeError per call.
                raise TypeError(
                    f"the torch.compile backend {self.__name__!r} returned {compiled!r}; "
                    "allowed: a callable that runs the graph (such as gm.forward)"
                )
        except BaseException:
            self.on_graph_compiled(time.perf_counter() - start, False)  # time spent all the same
            raise
        self.on_graph_compiled(time.perf_counter() - start, True)
        # Dynamo wraps whatever a backend returns in its own `disable` wrapper; inductor's
        # graph already is one. Call the function inside, so that a run pays for one
        # wrapper, not two (unwrapping as torch's innermost_fn does).
        while hasattr(compiled, "_torchdynamo_orig_callable"):
            compiled = compiled._torchdynamo_orig_callable

        runs = self.runs

        def counted_graph(*args: Any) -> Any:
            runs.cell[0] += 1
            return compiled(*args)

        # Keep the graph's calling convention (inductor's takes one boxed list of inputs).
        counted_graph._boxed_call = getattr(compiled, "_boxed_call", False)  # type: ignore[attr-defined]
        return counted_graph

    # Dynamo reuses a cache entry only under an equal backend: as torch.compile's own
    # wrappers, equal when the real backends are, so isolate_recompiles=False shares.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountingBackend) and bool(self.real == other.real)

    def __hash__(self) -> int:
        return hash(type(self.real))

    def get_compiler_config(self) -> Any:
        getter = getattr(self.real, "get_compiler_config", None)
        return getter() if getter is not None else None

    def reset(self) -> None:
        reset = getattr(self.real, "reset", None)
        if reset is not None:
            reset()
