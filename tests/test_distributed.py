"""compile_policy.distributed with 2 real ranks (gloo on CPU), bounded by timeouts."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from compile_policy import CompilePolicy, PolicyError
from compile_policy.distributed import PolicyMismatchError

TIMEOUT = 90.0

# One spawn of 2 ranks serves every test here: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("distributed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(worker: Any, args: tuple[Any, ...], nprocs: int, out: Path) -> list[dict[str, str]]:
    """Spawn ``nprocs`` ranks running ``worker(rank, *args)``, killed after TIMEOUT."""
    import torch.multiprocessing as mp

    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"distributed workers did not finish within {TIMEOUT}s")
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(nprocs)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    from distributed_worker import worker

    out = tmp_path_factory.mktemp("ranks")
    return run_ranks(worker, (free_port(), str(out)), 2, out)


def test_consistent_ranks_pass(ranks: list[dict[str, str]]) -> None:
    assert [r["consistent"] for r in ranks] == ["ok", "ok"]
    assert [r["consistent_again"] for r in ranks] == ["ok", "ok"]


def test_a_rank_under_compile_disabled_makes_every_rank_raise(ranks: list[dict[str, str]]) -> None:
    for result in ranks:
        assert result["disabled"].startswith("PolicyMismatchError")
        assert "rank 0: policy enabled=True" in result["disabled"]
        assert "rank 1: policy enabled=False" in result["disabled"]


def test_a_rank_whose_compile_fell_back_is_detected(ranks: list[dict[str, str]]) -> None:
    for result in ranks:
        assert result["fallback"].startswith("PolicyMismatchError")
        assert "] fallback" in result["fallback"] and "<-- differs" in result["fallback"]


def test_broadcast_policy_makes_rank_1_adopt_rank_0s_policy(ranks: list[dict[str, str]]) -> None:
    expected = "CompilePolicy(enabled=True, backend='aot_eager', fallback='raise')"
    assert ranks[0]["broadcast"] == ranks[1]["broadcast"] == expected
    assert ranks[1]["after_broadcast"] == "CompilePolicy(enabled=False)"  # restored on exit
    decorated = "CompilePolicy(enabled=True, mode='max-autotune')"
    assert ranks[0]["decorated"] == ranks[1]["decorated"] == decorated


def test_a_missing_rank_is_an_error_not_a_hang(ranks: list[dict[str, str]]) -> None:
    assert ranks[0]["missing_rank"] != "ok"


def test_a_policy_rank_0_cannot_send_raises_on_every_rank_without_waiting(
    ranks: list[dict[str, str]],
) -> None:
    for result in ranks:
        assert result["unsendable"].startswith("PolicyError"), result["unsendable"]
        assert "options['passes']" in result["unsendable"] and "set" in result["unsendable"]
    assert "raised there too" in ranks[1]["unsendable"]


def test_a_policy_one_rank_cannot_read_raises_on_every_rank(ranks: list[dict[str, str]]) -> None:
    for result in ranks:
        assert result["unreadable"].startswith("PolicyError: not every rank could adopt rank 0's")
        assert "rank 1: PolicyError: backend='rank0_only_backends:backend'" in result["unreadable"]


def test_broadcast_options_keep_their_types(ranks: list[dict[str, str]]) -> None:
    expected = {"count": ("int", 1), "flag": ("bool", True), "scale": ("float", 1.0),
                "shape": ("tuple", (1, (2, 3))), "sizes": ("list", [4])}
    assert ranks[0]["typed"] == ranks[1]["typed"] == repr(expected)


def test_policy_round_trips_with_a_named_callable_backend() -> None:
    policy = CompilePolicy(enabled=True, backend=free_port, options={"a": 1}, fallback="eager")
    data = json.loads(json.dumps(policy.to_dict()))
    assert data["backend"] == f"{__name__}:free_port"
    assert CompilePolicy.from_dict(data) == policy


def test_an_unnameable_callable_backend_is_a_clear_error() -> None:
    with pytest.raises(PolicyError, match="importable module:qualname"):
        CompilePolicy(backend=lambda gm, inputs: gm).to_dict()


def test_mismatch_error_is_a_runtime_error() -> None:
    assert issubclass(PolicyMismatchError, RuntimeError)


def test_nccl_ranks_exchange_on_their_gpus(tmp_path: Path) -> None:
    """The NCCL path, where this machine has GPUs (one rank per GPU, at most 2)."""
    import torch
    import torch.distributed as dist

    if not (torch.cuda.is_available() and dist.is_nccl_available()):
        pytest.skip("needs CUDA and NCCL")
    from distributed_worker import nccl_worker

    world = min(2, torch.cuda.device_count())
    results = run_ranks(nccl_worker, (world, free_port(), str(tmp_path)), world, tmp_path)
    assert [r["consistent"] for r in results] == ["ok"] * world
    expected_disabled = "PolicyMismatchError" if world > 1 else "ok"
    assert all(r["disabled"].startswith(expected_disabled) for r in results)
    assert all(r["broadcast"] == results[0]["broadcast"] for r in results)
    assert "aot_eager" in results[0]["broadcast"]
