"""A few real inductor compiles (seconds each on 2 cores): the default backend works."""

from __future__ import annotations

import pytest
import torch

from compile_policy import compile_disabled, policy_compiled


@pytest.mark.filterwarnings("ignore::UserWarning")  # inductor may warn about the CPU build
def test_inductor_compiles_once_and_matches_eager() -> None:
    @policy_compiled  # inductor, as torch.compile
    def step(t: torch.Tensor) -> torch.Tensor:
        return torch.relu(t) * 2 + t.sin()

    data = torch.randn(64)
    compiled = step(data)
    with compile_disabled():
        eager = step(data)
    for _ in range(3):
        step(data)
    torch.testing.assert_close(compiled, eager)
    stats = step.stats()
    assert (stats.compiled_calls, stats.eager_calls, stats.graphs_compiled) == (4, 1, 1)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_inductor_train_step_with_backward_and_optimizer_inside() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(32, 8), torch.randn(32, 1)

    @policy_compiled(fallback="raise")
    def train_step() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.detach()

    losses = [train_step().item() for _ in range(5)]
    assert losses[-1] < losses[0]
    assert train_step.stats().compiled_calls == 5
