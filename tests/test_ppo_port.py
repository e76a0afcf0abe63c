"""The acceptance check of the module form: a small PPO-style policy bundle written for
``torch.compile`` (as the ported codebase is) keeps working when its one
``torch.compile(self._network, ...)`` line becomes ``policy_compiled(self._network, ...)``."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from compile_policy import compile_disabled, compile_stats, policy_compiled
from conftest import CountingBackend


class ActorCritic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.rnn = nn.GRUCell(8, 8)
        self.pi, self.v = nn.Linear(8, 2), nn.Linear(8, 1)

    def forward(self, state: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.rnn(self.body(state), hidden)
        return self.pi(hidden), self.v(hidden).squeeze(-1), hidden

    def get_initial_hidden(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 8, device=next(self.parameters()).device)

    def evaluate_actions(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self(state, self.get_initial_hidden(len(state)))
        return torch.distributions.Categorical(logits=logits).log_prob(actions)


class PolicyBundle:
    """The codebase's bundle, unchanged but for the one line marked below."""

    def __init__(self, compile: bool, backend: Any = "eager") -> None:
        self._network = ActorCritic()
        if compile:
            # Was: self._network = torch.compile(self._network, mode=mode, dynamic=dynamic)
            self._network = policy_compiled(self._network, mode=None, dynamic=False,
                                            backend=backend)
        self.optimizer = torch.optim.Adam(self._network.parameters(), lr=1e-2)

    @property
    def is_compiled(self) -> bool:
        return hasattr(self._network, "_orig_mod")

    @property
    def network(self) -> ActorCritic:
        net = getattr(self._network, "_orig_mod", self._network)
        assert isinstance(net, ActorCritic)
        return net

    @property
    def device(self) -> torch.device:
        return next(self._network.parameters()).device

    def act(self, state: torch.Tensor) -> torch.Tensor:
        hidden = self.network.get_initial_hidden(len(state))
        logits, _, _ = self._network.forward(state=state, hidden=hidden)
        return logits.argmax(-1)

    def update(self, state: torch.Tensor, actions: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        hidden = self._network.get_initial_hidden(len(state))
        _, value, _ = self._network(state, hidden)
        loss = -self._network.evaluate_actions(state, actions).mean() + value.pow(2).mean()
        loss.backward()
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"network": self._network.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        self._network.load_state_dict(checkpoint["network"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])


def test_the_ported_bundle_works_unchanged_with_policy_compiled(counting: CountingBackend) -> None:
    state, actions = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 1, 0])
    eager, bundle = PolicyBundle(compile=False), PolicyBundle(compile=True, backend=counting)
    assert bundle.is_compiled and not eager.is_compiled  # 1. its "is compiled" check
    assert isinstance(bundle.network, ActorCritic)  # 2, 3. unwrap, isinstance on the result
    before = bundle.network.pi.weight.detach().clone()
    bundle.update(state, actions)  # 4. its optimizer over network.parameters() trains
    assert not torch.equal(bundle.network.pi.weight, before)
    assert bundle.act(state).shape == (6,)  # 5. network.forward(state=..., hidden=...)
    assert bundle._network.evaluate_actions(state, actions).shape == (6,)  # 6. own methods
    assert bundle._network.get_initial_hidden(3).shape == (3, 8)  # 7.
    assert bundle.device == torch.device("cpu")  # 8. .device from the parameters
    checkpoint = bundle.state_dict()
    assert list(checkpoint["network"]) == list(eager.state_dict()["network"])  # 9. same keys
    eager.load_state_dict(checkpoint)  # 10. a compiled run's checkpoint loads without compile
    PolicyBundle(compile=True, backend=counting).load_state_dict(eager.state_dict())  # 11.
    bundle._network.eval()  # 12. train/eval reach the network
    assert not bundle.network.training and not bundle.network.rnn.training
    target = copy.deepcopy(bundle)  # 13. a target copy runs its own weights
    with torch.no_grad():
        target.network.pi.bias.add_(100.0)
    hidden = bundle.network.get_initial_hidden(6)
    assert torch.allclose(target._network(state, hidden)[0], bundle._network(state, hidden)[0] + 100)
    assert target._network._orig_mod is target.network is not bundle.network
    stats = compile_stats(bundle._network)
    assert stats.compiled_calls >= 3 and stats.eager_calls == 0 and stats.fallback_calls == 0
    with compile_disabled():
        bundle.act(state)
    assert compile_stats(bundle._network).eager_calls == 1
