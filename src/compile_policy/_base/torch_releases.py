"""What differs between the torch releases compile-policy supports, each fact with the
releases it was measured on.

This is the one place that compares torch versions: the rest of the package and the tests
read :func:`running` (the facts of the torch in this process) or :func:`first_release_with`.
A fact is a history of values, each holding from the release that introduced it; every value
names the releases where it was measured (``inspect.signature``, ``dis`` of the internals, a
run), and tests/test_torch_releases.py checks the running torch against each, so that a new
release that changes one fails loudly. Reading the facts never imports torch (the version
comes from the installed distribution's metadata until torch is loaded).

    >>> facts = running()                       # doctest: +SKIP
    >>> facts.version, facts.supported, facts.isolation
    ('2.13.0+cpu', True, True)
    >>> release_text(first_release_with("isolation"))
    '2.13'
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "SUPPORTED",
    "Release",
    "TorchFacts",
    "first_release_having",
    "first_release_with",
    "isolation_note",
    "lacking",
    "release_of",
    "release_text",
    "running",
    "supported_text",
]

Release = tuple[int, int]

#: The releases compile-policy supports and tests (`make test-matrix`; docs/compatibility.md).
SUPPORTED: tuple[Release, ...] = ((2, 9), (2, 10), (2, 11), (2, 12), (2, 13), (2, 14), (2, 15))


class Value(NamedTuple):
    """A fact's value from release ``since`` on, measured on the releases ``measured_on``."""

    since: Release
    value: Any
    measured_on: str


#: Each fact's values, oldest first.
HISTORY: dict[str, tuple[Value, ...]] = {
    # torch.compile's keyword arguments besides model, backend, mode, fullgraph, dynamic and
    # options (the policy's fields), with the default policy_compiled gives each
    # (isolate_recompiles: True, unlike torch's). inspect.signature(torch.compile).
    "compile_arguments": (
        Value((2, 9), {"disable": False}, "2.9.1, 2.10.0, 2.11.0"),
        Value((2, 12), {"name": None, "disable": False, "recompile_limit": None}, "2.12.1"),
        Value((2, 13), {"name": None, "disable": False, "recompile_limit": None,
                        "isolate_recompiles": True, "shapes_spec": None}, "2.13.0"),
        Value((2, 14), {"name": None, "disable": False, "recompile_limit": None,
                        "isolate_recompiles": True, "dynamic_shapes": None}, "2.14.1, 2.15.0"),
    ),
    # torch.compile's modes (torch._inductor.list_mode_options()).
    "modes": (
        Value((2, 9), ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"),
              "2.9.1"),
        Value((2, 10), ("default", "lite", "reduce-overhead", "max-autotune-no-cudagraphs",
                        "max-autotune"), "2.10.0, 2.11.0, 2.12.1, 2.13.0, 2.14.1, 2.15.0"),
    ),
    # Old name -> new name of a torch.compile argument torch renamed (same meaning): either
    # name is accepted where torch has one of them.
    "renamed_arguments": (
        Value((2, 9), {}, "2.9.1, 2.10.0, 2.11.0, 2.12.1"),
        Value((2, 13), {"shapes_spec": "dynamic_shapes"}, "2.13.0, 2.14.1, 2.15.0"),
    ),
    # Whether torch.compile can give each compiled object a Dynamo cache and recompile budget
    # of its own (isolate_recompiles); without it, objects of one code share torch's.
    "isolation": (
        Value((2, 9), False, "2.9.1, 2.10.0, 2.11.0, 2.12.1"),
        Value((2, 13), True, "2.13.0, 2.14.1, 2.15.0"),
    ),
    # Where torch keeps the isolate-recompiles region of the running call: one value for the
    # whole process (each compiled call sets and restores it), or one per thread.
    "isolation_region": (
        Value((2, 9), None, "2.9.1, 2.10.0, 2.11.0, 2.12.1"),
        Value((2, 13), "process", "2.13.0, 2.14.1"),
        Value((2, 15), "thread", "2.15.0"),
    ),
    # The eval_frame globals compile_wrapper (every torch.compile'd function's wrapper) reads
    # by name on every call; 2.13 added the read of _stance (its fullgraph check).
    "compile_wrapper_reads": (
        Value((2, 9), frozenset({"_callback_from_stance", "_is_skip_guard_eval_unsafe_stance"}),
              "2.9.1, 2.10.0, 2.11.0, 2.12.1"),
        Value((2, 13), frozenset({"_callback_from_stance", "_is_skip_guard_eval_unsafe_stance",
                                  "_stance"}), "2.13.0, 2.14.1, 2.15.0"),
    ),
    # Whether torch._TorchCompileInductorWrapper takes torch.compile's `name` (its 4th argument).
    "inductor_takes_name": (
        Value((2, 9), False, "2.9.1, 2.10.0, 2.11.0"),
        Value((2, 12), True, "2.12.1, 2.13.0, 2.14.1, 2.15.0"),
    ),
    # Whether torch.compiler.is_compiling() is True in every thread while one thread compiles.
    "is_compiling_process_wide": (
        Value((2, 9), False, "2.9.1"),
        Value((2, 13), True, "2.13.0"),
    ),
    # The torch.utils._python_dispatch function Dynamo asks whether a TorchDispatchMode makes
    # it skip a frame (convert_frame.py): torch.compile does not compile under such a mode.
    "dispatch_mode_check": (
        Value((2, 9), "is_in_torch_dispatch_mode", "2.9.1"),
        Value((2, 12), "any_torch_dispatch_mode_on_stack", "2.12.1, 2.13.0, 2.15.0"),
    ),
    # Whether AOTAutograd can compile a graph's backward together with its forward
    # (torch._functorch.config.force_non_lazy_backward_lowering); without it the backward
    # compiles at the first .backward(), outside the policy-compiled call.
    "backward_with_forward": (
        Value((2, 9), False, "2.9.1"),
        Value((2, 12), True, "2.12.1, 2.13.0, 2.15.0"),
    ),
    # Whether Dynamo can trace a call of function.__get__ (binding a function to an object
    # inside a compiled function).
    "traces_function_get": (
        Value((2, 9), False, "2.9.1, 2.10.0, 2.11.0, 2.12.1"),
        Value((2, 13), True, "2.13.0, 2.14.1, 2.15.0"),
    ),
}


class TorchFacts(NamedTuple):
    """The facts of one torch release (see ``HISTORY`` for what each means)."""

    version: str
    release: Release
    supported: bool
    compile_arguments: Mapping[str, Any]
    modes: tuple[str, ...]
    renamed_arguments: Mapping[str, str]
    isolation: bool
    isolation_region: str | None
    compile_wrapper_reads: frozenset[str]
    inductor_takes_name: bool
    is_compiling_process_wide: bool
    dispatch_mode_check: str
    backward_with_forward: bool
    traces_function_get: bool


def release_of(version: str) -> Release:
    """``(major, minor)`` of a torch version string (``"2.13.0+cpu"``, ``"2.16.0a0+git1"``).

        >>> release_of("2.13.0+cpu")
        (2, 13)
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"torch version {version!r} is not major.minor[...]")
    return int(match.group(1)), int(match.group(2))


def release_text(release: Release) -> str:
    """``"2.13"`` for ``(2, 13)``."""
    return f"{release[0]}.{release[1]}"


def supported_text() -> str:
    """The supported releases, as the messages and docs name them: ``"2.9 to 2.15"``."""
    return f"{release_text(SUPPORTED[0])} to {release_text(SUPPORTED[-1])}"


def facts_of(version: str) -> TorchFacts:
    """The facts of torch ``version``; a release newer than the newest known gets the newest
    values (and ``supported=False``), one older than the oldest the oldest values."""
    release = release_of(version)
    values = {name: _value_at(history, release) for name, history in HISTORY.items()}
    return TorchFacts(version=version, release=release, supported=release in SUPPORTED, **values)


@functools.cache
def running() -> TorchFacts:
    """The facts of the torch installed in this process (cached; never imports torch).

        >>> running().isolation                 # doctest: +SKIP
        True
    """
    return facts_of(_torch_version())


def isolation_note() -> str | None:
    """What a torch without per-object isolation means for policy_compiled objects (None
    where it has it): explain(), ``python -m compile_policy --check`` and the docs say it."""
    facts = running()
    if facts.isolation:
        return None
    return (f"torch {facts.version} has no per-object isolation (isolate_recompiles, torch "
            f"{release_text(first_release_with('isolation'))}+): policy_compiled objects of one "
            "code share torch's per-code Dynamo cache and recompile budget")


def first_release_with(fact: str, value: Any = True) -> Release:
    """The first release whose ``fact`` has ``value``: ``first_release_with("isolation")``."""
    for entry in HISTORY[fact]:
        if entry.value == value:
            return entry.since
    raise ValueError(f"no torch release has {fact}={value!r}")


def first_release_having(fact: str, item: str) -> Release | None:
    """The first release whose ``fact`` (a collection) holds ``item``; None: none does.

        >>> first_release_having("compile_arguments", "recompile_limit")
        (2, 13)
    """
    for entry in HISTORY[fact]:
        if item in entry.value:
            return entry.since
    return None


def lacking(fact: str, item: str) -> str:
    """``"torch 2.9.1 does not have it (torch 2.13+ has it)"``: why ``item`` of ``fact``
    (a torch.compile argument, a mode) is refused on the running torch."""
    since = first_release_having(fact, item)
    has = f" (torch {release_text(since)}+ has it)" if since is not None else ""
    return f"torch {running().version} does not have it{has}"


def _value_at(history: tuple[Value, ...], release: Release) -> Any:
    value = history[0].value
    for entry in history:
        if entry.since <= release:
            value = entry.value
    return value


def _torch_version() -> str:
    torch = sys.modules.get("torch")
    version = getattr(torch, "__version__", None)  # None while torch is still importing
    if isinstance(version, str):
        return str(version)  # a TorchVersion, a str subclass
    from importlib.metadata import version as installed_version  # torch stays unloaded

    return installed_version("torch")
