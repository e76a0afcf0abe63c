"""Checked by `mypy` (strict; pyproject's [tool.mypy] files), never run: what type checkers
see of policy_compiled. Each assert_type fails the check if a signature loses its types."""

from __future__ import annotations

from typing import assert_type

import torch
from torch import nn

from compile_policy import PolicyCompiled, PolicyCompiledModule, policy_compiled, unwrap


def step(x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    return x * scale


class MLP(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Agent:
    def act(self, obs: torch.Tensor) -> int:
        return int(obs.sum())

    @policy_compiled(backend="eager")
    def value(self, obs: torch.Tensor) -> float:
        return float(obs.mean())

    @policy_compiled
    def bare(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


@policy_compiled(backend="eager")
def decorated(x: torch.Tensor) -> torch.Tensor:
    return x


@policy_compiled
def decorated_bare(x: torch.Tensor, *, n: int) -> list[torch.Tensor]:
    return [x] * n


def check(x: torch.Tensor, agent: Agent, net: MLP) -> torch.Tensor:
    compiled = policy_compiled(step, backend="eager")
    annotated: PolicyCompiled[[torch.Tensor, float], torch.Tensor] = compiled
    assert_type(annotated(x, 1.0), torch.Tensor)
    assert_type(compiled(x), torch.Tensor)
    assert_type(compiled(x, scale=3.0), torch.Tensor)
    assert_type(policy_compiled(agent.act)(x), int)
    assert_type(agent.value(x), float)
    assert_type(agent.bare(x), torch.Tensor)
    assert_type(decorated(x), torch.Tensor)
    assert_type(decorated_bare(x, n=2), list[torch.Tensor])
    assert_type(policy_compiled(net), PolicyCompiledModule[MLP])
    assert_type(policy_compiled(net, inplace=True), MLP)
    assert_type(policy_compiled(backend="eager")(net), PolicyCompiledModule[MLP])
    assert_type(unwrap(policy_compiled(net)), PolicyCompiledModule[MLP])
    assert_type(policy_compiled(net).__wrapped__, MLP)
    assert_type(policy_compiled(net)._orig_mod, MLP)
    return compiled(x)  # no "Returning Any from function declared to return Tensor"


def wrong(x: torch.Tensor) -> None:
    compiled = policy_compiled(step)
    compiled("not a tensor")  # type: ignore[arg-type]
    compiled(x, 1.0, 2)  # type: ignore[call-arg]
