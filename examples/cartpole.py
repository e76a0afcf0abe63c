"""CartPole, vectorised in torch: the classic CartPole-v1 dynamics and termination rule
(no gym dependency), a hand-written heuristic controller, and a small actor-critic network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = CART_MASS + POLE_MASS
POLE_MASS_LENGTH = POLE_MASS * HALF_LENGTH
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360
MAX_STEPS = 500  # CartPole-v1 truncates episodes at 500 steps


class CartPole:
    """``n`` CartPole-v1 environments stepped together; finished ones reset themselves."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.state = torch.zeros(n, 4)
        self.steps = torch.zeros(n, dtype=torch.long)
        self.returns = torch.zeros(n)
        self.reset(torch.ones(n, dtype=torch.bool))

    def reset(self, which: torch.Tensor) -> None:
        fresh = torch.rand(self.n, 4, generator=self.generator) * 0.1 - 0.05
        self.state = torch.where(which[:, None], fresh, self.state)
        self.steps = torch.where(which, 0, self.steps)
        self.returns = torch.where(which, 0.0, self.returns)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
        """Apply actions (0: push left, 1: push right). Returns the next observations, the
        rewards, whether each episode ended (terminated or truncated), and the returns of
        the episodes that ended."""
        x, x_dot, theta, theta_dot = self.state.unbind(1)
        force = torch.where(action == 1, FORCE, -FORCE)
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = (force + POLE_MASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
        theta_acc = (GRAVITY * sin - cos * temp) / (
            HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos**2 / TOTAL_MASS)
        )
        x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
        # Euler integration, as CartPole-v1
        x, x_dot = x + TAU * x_dot, x_dot + TAU * x_acc
        theta, theta_dot = theta + TAU * theta_dot, theta_dot + TAU * theta_acc
        self.state = torch.stack([x, x_dot, theta, theta_dot], dim=1)
        self.steps += 1
        reward = torch.ones(self.n)
        self.returns += reward
        terminated = (x.abs() > X_LIMIT) | (theta.abs() > THETA_LIMIT)
        done = terminated | (self.steps >= MAX_STEPS)
        finished = self.returns[done].tolist()
        if finished:
            self.reset(done)
        return self.state.clone(), reward, done, finished


def heuristic_action(obs: torch.Tensor) -> torch.Tensor:
    """A hand-written controller: push towards where the pole is falling."""
    x, x_dot, theta, theta_dot = obs.unbind(-1)
    return ((theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot) > 0).long()


class ActorCritic(nn.Module):
    """Action logits and a state value from a CartPole observation."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.actor = nn.Sequential(
            nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2)
        )
        self.critic = nn.Sequential(
            nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs).squeeze(-1)
