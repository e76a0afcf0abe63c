"""DistributedDataParallel both ways round with a policy-compiled module (2 gloo ranks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_distributed import free_port, run_ranks

pytestmark = pytest.mark.xdist_group("module_ddp")  # one spawn of 2 ranks for all tests


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    from module_ddp_worker import worker

    out: Path = tmp_path_factory.mktemp("module_ddp")
    return run_ranks(worker, (free_port(), str(out)), 2, out)  # type: ignore[return-value]


@pytest.mark.parametrize("order", ["compiled_ddp", "ddp_of_compiled"])
def test_ddp_finds_the_parameters_and_averages_gradients(
    ranks: list[dict[str, Any]], order: str
) -> None:
    first, second = (r[order] for r in ranks)
    assert first["parameters"] == second["parameters"] == 2
    assert first["grads"] == second["grads"]  # all-reduced: the same on both ranks
    # Each rank's batch is rank + 1 everywhere: the mean gradient of weight over 2 calls is
    # 2 calls x 2 rows x 2 outputs x 4 inputs x mean(1, 2).
    assert first["grads"][0] == pytest.approx(2 * 2 * 2 * 4 * 1.5)


@pytest.mark.parametrize("order", ["compiled_ddp", "ddp_of_compiled"])
def test_ddp_calls_take_the_policys_paths(ranks: list[dict[str, Any]], order: str) -> None:
    assert [r[order]["calls"] for r in ranks] == [[1, 1], [1, 1]]


def test_checkpoint_keys_are_ddps_own(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        assert rank["compiled_ddp"]["keys"] == ["module.fc.weight", "module.fc.bias"]
        assert rank["ddp_of_compiled"]["keys"] == ["module.fc.weight", "module.fc.bias"]
        assert rank["compiled_ddp"]["unwrapped"] == "DistributedDataParallel"
        assert rank["ddp_of_compiled"]["unwrapped"] == "Net"
