"""Policies as data: a training config whose compile policy comes from the command line, is
saved in every checkpoint, and is restored on resume, so a resumed run compiles as it did.

    python examples/config_and_checkpoint.py --compile max-autotune --checkpoint run.pt
    python examples/config_and_checkpoint.py --resume run.pt --steps 40
    python examples/config_and_checkpoint.py --quick        # both halves in one run (the tests)

``--compile`` takes the policy grammar: ``on``, ``off``, a mode name such as
``reduce-overhead``, then ``key=value`` items (``on,backend=aot_eager,fallback=raise``).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy

import torch  # noqa: E402

from compile_policy import CompilePolicy, PolicyError, policy_compiled, use_policy  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything a run needs to be repeated, the compile policy included."""

    steps: int = 200
    lr: float = 0.1
    compile: CompilePolicy = dataclasses.field(default_factory=lambda: CompilePolicy.parse("on"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, numbers, dicts, lists): loads with ``torch.load(weights_only=True)``."""
        return {"steps": self.steps, "lr": self.lr, "compile": self.compile.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        return cls(steps=data["steps"], lr=data["lr"], compile=CompilePolicy.from_dict(data["compile"]))


def policy_argument(text: str) -> CompilePolicy:
    """argparse ``type=``: our message (what is wrong, what is allowed) instead of argparse's."""
    try:
        return CompilePolicy.parse(text)
    except PolicyError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


@policy_compiled
def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x), y)


def train(config: TrainingConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          start: int, stop: int) -> float:
    """Steps ``start`` .. ``stop - 1``, compiled as ``config.compile`` says."""
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(8, 1, generator=generator)
    loss = torch.tensor(float("nan"))  # if there are no steps
    with use_policy(config.compile):  # the policy travels with the config, not a global
        for _ in range(start, stop):
            x = torch.randn(32, 8, generator=generator)
            loss = loss_of(model, x, x @ weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return loss.item()


def save(path: Path, config: TrainingConfig, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, step: int) -> None:
    torch.save({"config": config.to_dict(), "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict()}, path)


def resume(path: Path, steps: int | None) -> tuple[TrainingConfig, torch.nn.Module,
                                                   torch.optim.Optimizer, int]:
    checkpoint = torch.load(path, weights_only=True)  # the policy is plain data: no pickle
    config = TrainingConfig.from_dict(checkpoint["config"])
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    model = make_model()
    model.load_state_dict(checkpoint["model"])
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    optimizer.load_state_dict(checkpoint["optimizer"])
    return config, model, optimizer, int(checkpoint["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", type=policy_argument, default=None, metavar="POLICY",
                        help="compile policy text, e.g. off, max-autotune, on,backend=aot_eager")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None, help="where to save the run")
    parser.add_argument("--resume", type=Path, default=None, help="a checkpoint to continue")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps, save, resume in the same process, check the policy")
    args = parser.parse_args()

    if args.resume is not None:
        config, model, optimizer, step = resume(args.resume, args.steps)
        loss = train(config, model, optimizer, step, config.steps)
        print(f"resumed at step {step} with compile policy {config.compile}; final loss {loss:.4f}")
        return

    config = TrainingConfig()
    if args.quick:
        config = dataclasses.replace(config, steps=10)
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    if args.compile is not None:
        config = dataclasses.replace(config, compile=args.compile)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    half = config.steps // 2 if args.quick else config.steps
    loss = train(config, model, optimizer, 0, half)
    stats = loss_of.stats()
    print(f"trained {half} steps with compile policy {config.compile}: loss {loss:.4f}; "
          f"compiled calls {stats.compiled_calls}, compiling took {stats.compile_seconds:.2f}s")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or Path(tmp, "checkpoint.pt")
        save(path, config, model, optimizer, half)
        print(f"saved {path.name}: config {config.to_dict()}")
        if not args.quick:
            return
        # What `--resume` does in a later process: the config, policy included, from the file.
        restored, model, optimizer, step = resume(path, None)
    loss = train(restored, model, optimizer, step, restored.steps)
    stats = loss_of.stats()
    print(f"resumed at step {step} with compile policy {restored.compile} "
          f"(same as saved: {restored == config}); final loss {loss:.4f}; "
          f"compiled calls {stats.compiled_calls}, eager {stats.eager_calls}")


if __name__ == "__main__":
    main()
