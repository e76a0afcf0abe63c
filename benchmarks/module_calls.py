"""What the module wrapper costs: a small MLP's forward through ``policy_compiled(module)``
against ``torch.compile(module)`` (compiled path, same backend) and the plain module call
(eager path), and the in-place form against ``module.compile()``.

Each candidate has its own copy of the MLP (same weights): ``module.compile()`` and the
in-place form change the module they are given. The MLP is a class of this file, not a bare
``nn.Sequential``: ``module.compile()`` compiles nothing for torch's own layers (Dynamo skips
their frames), so it would be compared with an eager call.
"""

from __future__ import annotations

import copy
from typing import Any

from . import claims
from .table import Row
from .timing import interleaved, median, ratio
from .workers import Samples, pooled

#: Fresh processes the table pools its rounds from (each compiles the MLP four times).
WORKERS = 3


def _mlp() -> Any:
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 128), nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    return MLP()


def module_samples(quick: bool) -> dict[str, Samples]:
    import torch

    from compile_policy import compile_disabled, compile_stats, policy_compiled

    model, x = _mlp(), torch.randn(32, 64)
    plain = copy.deepcopy(model)
    wrapper = policy_compiled(copy.deepcopy(model))
    optimized = torch.compile(copy.deepcopy(model))
    in_place = policy_compiled(copy.deepcopy(model), inplace=True)
    compiled_in_place = copy.deepcopy(model)
    compiled_in_place.compile()
    calls, rounds = (50, 11) if quick else (200, 41)
    with torch.no_grad():
        compiled = interleaved(
            {"wrapper": lambda: wrapper(x), "torch.compile": lambda: optimized(x),
             "in place": lambda: in_place(x), "module.compile()": lambda: compiled_in_place(x)},
            calls, rounds,
        )
        with compile_disabled():
            eager = interleaved({"wrapper": lambda: wrapper(x), "plain": lambda: plain(x)},
                                calls, rounds)
    for obj in (wrapper, in_place):
        stats = compile_stats(obj)
        assert stats.compiled_calls > 0 and stats.fallback_calls == 0 and stats.skipped_calls == 0
    return {"compiled": compiled, "eager": eager}


def module_cost(quick: bool) -> list[Row]:
    tables = pooled(module_samples, quick, 1 if quick else WORKERS)
    compiled, eager = tables["compiled"], tables["eager"]
    return [
        Row("MLP forward, compiled: torch.compile(module)", median(compiled["torch.compile"]) / 1e3,
            "us"),
        Row("MLP forward, compiled: policy_compiled(module)", median(compiled["wrapper"]) / 1e3, "us",
            "torch.compile(module)", ratio(compiled, "wrapper", "torch.compile"),
            claims.MODULE_COMPILED),
        Row("MLP forward, compiled: module.compile()", median(compiled["module.compile()"]) / 1e3,
            "us"),
        Row("MLP forward, compiled: policy_compiled(module, inplace=True)",
            median(compiled["in place"]) / 1e3, "us", "module.compile()",
            ratio(compiled, "in place", "module.compile()"), claims.MODULE_IN_PLACE),
        Row("MLP forward, eager: the plain module", median(eager["plain"]) / 1e3, "us"),
        Row("MLP forward, eager: policy_compiled(module) under compile_disabled()",
            median(eager["wrapper"]) / 1e3, "us", "the plain module", ratio(eager, "wrapper", "plain"),
            claims.MODULE_EAGER),
    ]
