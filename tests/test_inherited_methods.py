"""``@policy_compiled`` methods under inheritance: overrides (plain or compiled) that call the
base through ``super()``, several levels, mixins. Every call gives the plain-Python result,
compiled and disabled, with one compiled object per (instance, defining class)."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch

from compile_policy import compile_disabled, policy_compiled
from compile_policy._compiled.methods import PerInstance


class Base:
    @policy_compiled(backend="eager")
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


class PlainOverride(Base):
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super().act(x) * 10


class CompiledOverride(Base):
    @policy_compiled(backend="eager")
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super().act(x) * 10


class CompiledOverrideExplicitSuper(Base):
    @policy_compiled(backend="eager")
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super(CompiledOverrideExplicitSuper, self).act(x) * 10  # noqa: UP008


class ThirdLevel(CompiledOverride):
    @policy_compiled(backend="eager")
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super().act(x) - 5


class LeftMixin(Base):
    @policy_compiled(backend="eager")
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super().act(x) * 2


class RightMixin(Base):
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super().act(x) * 3


class Diamond(LeftMixin, RightMixin):
    @policy_compiled(backend="eager")
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return super().act(x) + 100


# The plain-Python result for x = 1: what the same classes give with no decorator at all.
EXPECTED: dict[type, float] = {
    Base: 2.0,
    PlainOverride: 20.0,
    CompiledOverride: 20.0,
    CompiledOverrideExplicitSuper: 20.0,
    ThirdLevel: 15.0,
    Diamond: 112.0,  # Diamond -> LeftMixin (*2) -> RightMixin (*3) -> Base (+1)
}
MODES: dict[str, Callable[[Callable[[], Any]], Any]] = {
    "compiled": lambda call: call(),
    "disabled": lambda call: _disabled(call),
}


def _disabled(call: Callable[[], Any]) -> Any:
    with compile_disabled():
        return call()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls", EXPECTED, ids=lambda cls: cls.__name__)
def test_every_call_of_an_inherited_method_gives_the_plain_python_result(cls: type, mode: str) -> None:
    agent = cls()
    for _ in range(3):
        out = MODES[mode](lambda: agent.act(torch.ones(1)))
        assert out.item() == EXPECTED[cls]


def test_the_override_calls_compiled_and_disabled_alternately_stay_right() -> None:
    agent = ThirdLevel()
    for _ in range(2):
        assert agent.act(torch.ones(1)).item() == 15.0
        with compile_disabled():
            assert agent.act(torch.ones(1)).item() == 15.0


def _compiled_objects(agent: object) -> dict[type, Any]:
    """Each defining class's compiled object for ``agent``, as ``super()`` reaches it."""
    return {
        cls: vars(cls)["act"].__get__(agent, type(agent))
        for cls in type(agent).__mro__
        if isinstance(vars(cls).get("act"), PerInstance)
    }


def test_one_compiled_object_per_instance_and_defining_class() -> None:
    first, second = Diamond(), Diamond()
    for agent in (first, second):
        for _ in range(3):
            agent.act(torch.ones(1))
    objects = {agent: _compiled_objects(agent) for agent in (first, second)}
    assert set(objects[first]) == {Diamond, LeftMixin, Base}
    for agent in (first, second):
        # The same object on every access, the one the instance's own attribute is.
        assert _compiled_objects(agent) == objects[agent]
        assert agent.act is objects[agent][Diamond]
        assert [obj.stats().compiled_calls for obj in objects[agent].values()] == [3, 3, 3]
    every = [obj for per_class in objects.values() for obj in per_class.values()]
    assert len({id(obj) for obj in every}) == 6


def test_a_plain_override_keeps_its_own_attribute_and_the_base_object_aside() -> None:
    agent = PlainOverride()
    agent.act(torch.ones(1))
    assert "act" not in vars(agent)  # never shadowed by the base's compiled object
    assert type(agent).act is PlainOverride.act


def test_copies_and_pickles_leave_out_the_objects_of_overridden_methods() -> None:
    agent = ThirdLevel()
    agent.act(torch.ones(1))
    for made in (copy.copy(agent), copy.deepcopy(agent), pickle.loads(pickle.dumps(agent))):
        assert vars(made) == {}
        assert made.act(torch.ones(1)).item() == 15.0
        assert set(_compiled_objects(made).values()).isdisjoint(_compiled_objects(agent).values())


def test_the_ordinary_access_stays_a_plain_attribute_read() -> None:
    agent = Base()
    bound = agent.act
    assert vars(agent)["act"] is bound  # later accesses never reach the descriptor


@pytest.mark.needs_torch("traces_function_get")
@pytest.mark.parametrize("cls", [PlainOverride, ThirdLevel], ids=lambda cls: cls.__name__)
def test_an_override_calling_super_inside_an_outer_compile_gives_the_plain_result(cls: type) -> None:
    # Dynamo cannot call a super() attribute that is a descriptor object (torch 2.13): a
    # graph break, after which the override runs, making its objects with Dynamo's frame
    # hook on. No hang on the descriptor's lock, no recursion.
    agent = cls()
    outer = torch.compile(lambda x: agent.act(x), backend="eager")
    for _ in range(2):
        assert outer(torch.ones(1)).item() == EXPECTED[cls]
        assert agent.act(torch.ones(1)).item() == EXPECTED[cls]
