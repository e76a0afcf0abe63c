"""DDP training with a policy-governed train step; every rank checks that it made the same
compile decision after the first step (``make example-ddp``).

    torchrun --nproc-per-node 2 examples/ddp_train.py [--steps 30] [--backend inductor]

CPU and gloo here; with GPUs, init with nccl and move the model and data to the rank's device.
"""

from __future__ import annotations

import argparse
import os
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from compile_policy import current_policy, policy_compiled  # noqa: E402
from compile_policy.distributed import check_consistent  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
    inputs = torch.randn(256, 16, generator=generator)
    targets = inputs[:, :4].sum(dim=1, keepdim=True)

    @policy_compiled(backend=args.backend)
    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, backward (DDP all-reduces the gradients) and optimizer step, together."""
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    for step in range(args.steps):
        loss = train_step(inputs, targets)
        if step == 0:
            # Every rank compiled (or fell back) the same way, or every rank raises here.
            check_consistent(train_step)
            print(f"rank {rank}/{world}: step 0 loss {loss.item():.4f}; policy consistent "
                  f"({current_policy()!r})", flush=True)
    stats = train_step.stats()
    print(f"rank {rank}/{world}: final loss {loss.item():.4f}; compiled calls "
          f"{stats.compiled_calls}, eager {stats.eager_calls}, fallback {stats.fallback_calls}",
          flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
