"""A callable backend that cannot be hashed (a ``@dataclass`` instance, a class with ``__eq__``
and no ``__hash__``) works as torch.compile takes it: as a decorator argument and as a scope
field, keyed by identity."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

from compile_policy import CompilePolicy, compile_enabled, policy_compiled, use_policy
from compile_policy._compiled.variants import CompileOptions


@dataclasses.dataclass
class DataclassBackend:
    """Unhashable: a dataclass with eq=True (the default) sets __hash__ to None."""

    compiles: int = 0

    def __call__(self, gm: Any, example_inputs: Any, **options: Any) -> Any:
        self.compiles += 1
        return gm.forward


class EqOnlyBackend:
    """Unhashable: defines __eq__ without __hash__."""

    def __init__(self) -> None:
        self.compiles = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqOnlyBackend)

    def __call__(self, gm: Any, example_inputs: Any) -> Any:
        self.compiles += 1
        return gm.forward


BACKENDS: list[Callable[[], Any]] = [DataclassBackend, EqOnlyBackend]


@pytest.mark.parametrize("make_backend", BACKENDS, ids=["dataclass", "eq_only"])
def test_unhashable_backend_as_decorator_argument_compiles_once_and_runs(
    make_backend: Callable[[], Any],
) -> None:
    backend = make_backend()
    step = policy_compiled(lambda x: x + 1, backend=backend)
    for _ in range(3):
        assert torch.equal(step(torch.ones(2)), torch.full((2,), 2.0))
    assert backend.compiles == 1
    assert step.stats().compiled_calls == 3


@pytest.mark.parametrize("make_backend", BACKENDS, ids=["dataclass", "eq_only"])
def test_unhashable_backend_as_scope_field_compiles_once_and_runs(
    make_backend: Callable[[], Any],
) -> None:
    backend = make_backend()
    step = policy_compiled(lambda x: x * 2, backend="eager")
    for scope in (compile_enabled(backend=backend), use_policy(CompilePolicy(backend=backend))):
        with scope:
            assert torch.equal(step(torch.ones(2)), torch.full((2,), 2.0))
            step(torch.ones(2))
    assert backend.compiles == 1
    assert step.stats().compiled_calls == 4
    assert [key.backend for key in step.stats().variants] == [backend]


def test_equal_unhashable_backends_are_separate_variants_keyed_by_identity() -> None:
    first, second = DataclassBackend(), DataclassBackend()
    assert first == second  # equal, but each is its own key
    step = policy_compiled(lambda x: x - 1, backend="eager")
    for backend in (first, second, first):
        with compile_enabled(backend=backend):
            step(torch.ones(2))
    assert (first.compiles, second.compiles) == (1, 1)
    assert len(step.stats().variants) == 2


def test_unhashable_backend_leaves_mode_and_options_keys_as_they_were() -> None:
    backend = DataclassBackend()
    step = policy_compiled(lambda x: x + 3, backend=backend)
    step(torch.ones(2))
    with compile_enabled(options={"passes": ["a"]}):
        step(torch.ones(2))
    with compile_enabled(options={"passes": ["a"]}):
        step(torch.ones(2))
    assert [key.options for key in step.stats().variants] == [None, {"passes": ["a"]}]
    assert backend.compiles == 2


def test_compile_options_with_an_unhashable_backend_hash_and_compare_by_identity() -> None:
    backend = DataclassBackend()
    key = CompileOptions(backend, None, False, None, None)
    assert hash(key) == hash(CompileOptions(backend, None, False, None, None))
    assert key == CompileOptions(backend, None, False, None, None)
    assert key != CompileOptions(DataclassBackend(), None, False, None, None)
    assert CompileOptions("eager", None, False, None, None) == ("eager", None, False, None, None)
