"""A small regression model and its train step, compiled when the policy says so."""

from __future__ import annotations

import torch
from torch import nn

from compile_policy import policy_compiled


class TinyRegressor(nn.Module):
    def __init__(self, features: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_train_step(model: nn.Module, lr: float = 0.05, backend: str = "aot_eager"):
    """One policy-governed object per model: forward, backward and optimizer step together."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    @policy_compiled(backend=backend)
    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return train_step


def toy_batch(n: int = 64, features: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = x.sum(dim=1, keepdim=True) * 0.5
    return x, y
