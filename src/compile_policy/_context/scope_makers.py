"""The public ways to make a scope: :func:`compile_disabled`, :func:`compile_enabled`,
:func:`use_policy`, and :func:`bind_policy`, which carries the calling context's policy into
another thread. Each scope is a :class:`~.scopes.PolicyScope`.

    >>> from compile_policy import compile_disabled, current_policy
    >>> @compile_disabled
    ... def debug_step():
    ...     return current_policy().enabled
    >>> debug_step()
    False
"""

from __future__ import annotations

import _thread
from collections.abc import Callable

from .._base.errors import PolicyError
from .frames import _Frame
from .locations import caller_location
from .scopes import PolicyScope
from .stack import pushed_top, set_top

# typing.TYPE_CHECKING without importing typing (see compile_policy/__init__.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    from .._policy.value import CompilePolicy

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["bind_policy", "compile_disabled", "compile_enabled", "use_policy"]


#: The fields a scope may set: CompilePolicy's but ``enabled`` (a test checks they match;
#: spelled out so that the plugin's marker help needs no CompilePolicy).
_SETTABLE = ("backend", "mode", "fullgraph", "dynamic", "options", "fallback", "stance")

# compile_disabled() and compile_enabled() return one scope each, made on first use (so the
# first `with` loads CompilePolicy, not `import compile_policy`: see policy.py). A lock, so
# that threads racing on the first use still get one object.
_DISABLED: PolicyScope | None = None
_ENABLED: PolicyScope | None = None
_MAKING = _thread.allocate_lock()


def _make_fixed_scopes() -> tuple[PolicyScope, PolicyScope]:
    """``(compile_disabled(), compile_enabled())``, made once."""
    global _DISABLED, _ENABLED
    with _MAKING:
        if _DISABLED is None or _ENABLED is None:
            from .._policy.value import CompilePolicy

            _DISABLED = PolicyScope(CompilePolicy(enabled=False), "compile_disabled()")
            _ENABLED = PolicyScope(CompilePolicy(enabled=True), "compile_enabled()")
        return _DISABLED, _ENABLED


if TYPE_CHECKING:  # the two ways to call it, for type checkers

    @overload
    def compile_disabled(func: F, /) -> F: ...
    @overload
    def compile_disabled() -> PolicyScope: ...


def compile_disabled(func: F | None = None, /) -> PolicyScope | F:
    """Run without compiling in the current thread or asyncio task, until an inner
    :func:`compile_enabled`. A context manager and a decorator (with or without ``()``).

        >>> with compile_disabled():
        ...     out = step(x)  # the plain function runs
    """
    scope = _DISABLED or _make_fixed_scopes()[0]
    if func is None:
        return scope
    return scope._decorate(func, caller_location(1))


if TYPE_CHECKING:

    @overload
    def compile_enabled(func: F, /) -> F: ...
    @overload
    def compile_enabled(**fields: Any) -> PolicyScope: ...


def compile_enabled(func: F | None = None, /, **fields: Any) -> PolicyScope | F:
    """Compile in the current thread or asyncio task, optionally overriding compile arguments.

    ``fields`` are any of ``backend``, ``mode``, ``fullgraph``, ``dynamic``, ``options``,
    ``fallback``, ``stance``; the ones left out are inherited from the enclosing scope.
    ``stance`` (torch's stance names but ``"force_eager"``) applies to every
    ``torch.compile``'d call in this context and needs :func:`govern_torch_compile`. A
    context manager and a decorator (with or without ``()``).

        >>> with compile_enabled(backend="aot_eager", fallback="raise"):
        ...     out = step(x)  # compiled with aot_eager; a compile failure raises
    """
    if not fields:
        scope = _ENABLED or _make_fixed_scopes()[1]
        return scope if func is None else scope._decorate(func, caller_location(1))
    unknown = sorted(set(fields) - set(_SETTABLE))
    if unknown:
        hint = "; use compile_disabled() to disable" if "enabled" in unknown else ""
        raise TypeError(
            f"compile_enabled() got unexpected field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_SETTABLE)}{hint}"
        )
    if func is not None:
        raise TypeError("compile_enabled(func) takes no fields; use compile_enabled(**fields)(func)")
    from .._policy.value import CompilePolicy

    layer = CompilePolicy(enabled=True, **fields)
    shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    return PolicyScope(layer, f"compile_enabled({shown})")


def use_policy(policy: CompilePolicy) -> PolicyScope:
    """Apply a whole :class:`CompilePolicy` in the current thread or asyncio task.

    Its ``None`` fields are inherited. A context manager and a decorator.

        >>> ci = CompilePolicy(enabled=True, backend="eager", fallback="raise")
        >>> with use_policy(ci):
        ...     out = step(x)
    """
    from .._policy.value import CompilePolicy

    if not isinstance(policy, CompilePolicy):
        raise PolicyError(f"use_policy() takes a CompilePolicy; got {policy!r}")
    return PolicyScope(policy, f"use_policy({policy!r})")


def bind_policy(fn: F) -> F:
    """Return ``fn`` bound to the calling thread/task's current policy.

    New threads and pool workers do not inherit context variables, so a callable handed to
    ``threading.Thread``, ``ThreadPoolExecutor.submit`` or a callback runs under the process
    default. The bound callable runs under the policy active here, and restores the
    worker's own policy afterwards (pool workers keep one context across work items).

        >>> with compile_disabled():
        ...     future = pool.submit(bind_policy(step), x)  # runs eagerly in the worker
    """
    from .decorators import wrap_in_scope

    bound = pushed_top()

    def enter() -> _Frame | None:
        saved = pushed_top()
        set_top(bound)
        return saved

    def leave(saved: _Frame | None) -> None:
        set_top(saved)  # exactly the worker's own stack again, even if fn leaked

    return wrap_in_scope(fn, enter, leave)
