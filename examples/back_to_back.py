"""Three trainers in one process, each with its own compile decision (``make demo``).

- ``train_heuristic``: imitates a hand-written CartPole controller, under compile_disabled().
- ``train_ppo``: PPO (clipped objective, GAE, minibatch epochs) on a vectorised CartPole, its
  update step a ``policy_compiled`` object compiled with inductor.
- ``train_failing``: a trainer whose backend fails to compile; it falls back to eager on
  its own, with a warning, while PPO keeps running compiled.

They run back to back, then interleaved, then in threads at once. With a module-level
``USE_COMPILED = False`` flipped by the failing trainer, every trainer would turn eager; here
only the failing object falls back. The last line is a machine-readable summary.

    python examples/back_to_back.py [--quick]      # DEMO_QUICK=1 works too
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cartpole import ActorCritic, CartPole, heuristic_action  # noqa: E402

from compile_policy import (  # noqa: E402
    CompileFallbackWarning,
    CompilePolicy,
    PolicyCompiled,
    PolicyCompiledModule,
    compile_disabled,
    compile_enabled,
    compile_stats,
    current_policy,
    policy_compiled,
)

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", flush=True)


@dataclass
class Trainer:
    """What the table reports for one trainer."""

    name: str
    step: PolicyCompiled[Any] | None = None
    network: PolicyCompiledModule[Any] | None = None  # a policy-compiled module, if any
    policy: CompilePolicy | None = None
    times: dict[str, float] = field(default_factory=dict)
    result: str = ""


# --- 1. imitation of the heuristic controller, never compiled ----------------------------
@compile_disabled  # holds during every step of the generator, never between them
def train_heuristic(trainer: Trainer, epochs: int, seed: int = 0) -> Iterator[float]:
    torch.manual_seed(seed)
    env = CartPole(256, seed=seed)
    states = []
    for _ in range(40):  # states visited by the (slightly noisy) heuristic
        obs = env.state.clone()
        states.append(obs)
        noisy = torch.rand(env.n, generator=env.generator) < 0.2
        action = torch.where(noisy, torch.randint(0, 2, (env.n,), generator=env.generator),
                             heuristic_action(obs))
        env.step(action)
    inputs = torch.cat(states)
    targets = heuristic_action(inputs)
    model = ActorCritic()
    optimizer = torch.optim.Adam(model.actor.parameters(), lr=3e-3)

    @policy_compiled(backend="inductor", dynamic=False)
    def imitation_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model.actor(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    trainer.step = imitation_step
    trainer.policy = current_policy()
    batches = inputs.split(1024), targets.split(1024)
    for _ in range(epochs):
        losses = [imitation_step(x, y) for x, y in zip(*batches, strict=True) if len(x) == 1024]
        yield float(torch.stack(losses).mean())
    accuracy = (model.actor(inputs).argmax(-1) == targets).float().mean().item()
    trainer.result = f"imitation accuracy {accuracy:.1%}"


# --- 2. PPO, its update step compiled with inductor -------------------------------------
def train_ppo(
    trainer: Trainer, iterations: int, target: float = 195.0, at_least: int = 0, seed: int = 0
) -> Iterator[float]:
    """Yields the mean return of the last 100 episodes after each iteration; stops once it
    reaches ``target`` (after ``at_least`` iterations) or after ``iterations``."""
    torch.manual_seed(seed)
    envs, steps, epochs, minibatches = 32, 128, 4, 4
    gamma, lam, clip, lr = 0.99, 0.95, 0.2, 2.5e-3
    env = CartPole(envs, seed=seed)
    # The module form: still an nn.Module (its optimizer, its state_dict() keys are the plain
    # ActorCritic's); the rollout's forward calls run compiled, and inside the compiled update
    # step below the call is inlined into that step's graph.
    model = policy_compiled(ActorCritic(), backend="inductor", dynamic=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-5)
    batch = envs * steps
    minibatch = batch // minibatches

    @policy_compiled(backend="inductor", dynamic=False)
    def ppo_update(obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                   advantages: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """One minibatch step: forward, backward and optimizer step in one compiled call."""
        logits, values = model(obs)
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(1, actions[:, None]).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
        ratio = (logp - old_logp).exp()
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
        value_loss = 0.5 * ((values - returns) ** 2).mean()
        loss = policy_loss + 0.5 * value_loss - 0.01 * entropy
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        return loss.detach()

    trainer.step = ppo_update
    trainer.network = model
    trainer.policy = current_policy()
    obs = env.state.clone()
    recent: list[float] = []
    for iteration in range(iterations):
        buf_obs, buf_act, buf_logp, buf_rew, buf_done, buf_val = [], [], [], [], [], []
        with torch.no_grad():
            for _ in range(steps):
                logits, value = model(obs)
                action = torch.distributions.Categorical(logits=logits).sample()
                logp = torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1)
                next_obs, reward, done, finished = env.step(action)
                buf_obs.append(obs), buf_act.append(action), buf_logp.append(logp)
                buf_rew.append(reward), buf_done.append(done.float()), buf_val.append(value)
                recent.extend(finished)
                obs = next_obs
            _, next_value = model(obs)
            advantages = torch.zeros(steps, envs)
            gae = torch.zeros(envs)
            for t in reversed(range(steps)):  # generalised advantage estimation
                following = next_value if t == steps - 1 else buf_val[t + 1]
                not_done = 1.0 - buf_done[t]
                delta = buf_rew[t] + gamma * following * not_done - buf_val[t]
                gae = delta + gamma * lam * not_done * gae
                advantages[t] = gae
            returns = advantages + torch.stack(buf_val)
        flat = [torch.stack(b).flatten(0, 1) for b in (buf_obs, buf_act, buf_logp)]
        flat += [advantages.flatten(), returns.flatten()]
        for _ in range(epochs):
            order = torch.randperm(batch)
            for start in range(0, batch, minibatch):
                index = order[start:start + minibatch]
                ppo_update(*(tensor[index] for tensor in flat))
        recent = recent[-100:]
        mean_return = sum(recent) / len(recent) if recent else 0.0
        yield mean_return
        if mean_return >= target and iteration + 1 >= at_least:
            break
    trainer.result = f"mean episode return {mean_return:.1f}"


# --- 3. a trainer whose compile fails: it falls back on its own -------------------------
def broken_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
    raise RuntimeError("this backend cannot compile anything (simulated compiler bug)")


def train_failing(trainer: Trainer, steps: int, seed: int = 0) -> Iterator[float]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(256, 4)
    y = x[:, :1] * 2 - x[:, 1:2]

    @policy_compiled(backend=broken_backend)
    def regression_step(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    trainer.step = regression_step
    trainer.policy = current_policy()
    for _ in range(steps):
        yield float(regression_step(x, y))
    trainer.result = f"final loss {float(regression_step(x, y)):.3f}"


# --- the driver ---------------------------------------------------------------------------
def step_time(step: PolicyCompiled[Any], args: tuple[Any, ...], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step(*args)
    return (time.perf_counter() - start) / calls * 1e3


def ppo_args() -> tuple[torch.Tensor, ...]:
    n = 32 * 128 // 4
    return (torch.randn(n, 4), torch.randint(0, 2, (n,)), torch.zeros(n), torch.randn(n), torch.randn(n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("DEMO_QUICK") == "1",
                        help="a short run (tests use it): fewer iterations, aot_eager for PPO")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
    warnings.simplefilter("always", CompileFallbackWarning)  # show the fallback as it happens
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    default = current_policy()
    heur, ppo, failing = Trainer("heuristic"), Trainer("ppo"), Trainer("failing")
    # The quick mode scopes PPO onto a faster backend: a policy field overriding the
    # decorator's argument, for that generator's steps only.
    ppo_scope = compile_enabled(backend="aot_eager") if args.quick else compile_enabled()
    ppo_iterations = 5 if args.quick else 80
    curve: list[float] = []

    def ppo_steps() -> Iterator[float]:
        generator = train_ppo(ppo, ppo_iterations, target=1e9 if args.quick else 195.0,
                              at_least=epochs + 10)  # so that PPO also runs in phase 3
        while True:
            with ppo_scope:
                try:
                    mean_return = next(generator)
                except StopIteration:
                    return
            curve.append(mean_return)
            log(f"ppo      iteration {len(curve):3d}: mean episode return {mean_return:6.1f} "
                f"[{'#' * int(mean_return // 10)}]")
            yield mean_return

    epochs = 2 if args.quick else 12
    ppo_run = ppo_steps()

    log("phase 1/3: back to back in one thread")
    for loss in train_heuristic(heur, epochs):
        log(f"heuristic epoch loss {loss:.3f} (policy: {'on' if current_policy().enabled else 'off'} "
            "between steps)")
    for loss in train_failing(failing, 3):
        log(f"failing  step loss {loss:.3f}")
    for _ in range(2 if args.quick else 4):
        next(ppo_run, None)

    log("phase 2/3: interleaved, round robin in one thread")
    short = [train_heuristic(Trainer("heuristic"), epochs), train_failing(Trainer("failing"), epochs)]
    while short:  # one step of each, then one PPO iteration, until the short ones finish
        for run in list(short):
            if next(run, None) is None:
                short.remove(run)
        next(ppo_run, None)

    log("phase 3/3: the three trainers in threads at once")
    errors: list[BaseException] = []

    def drive(run: Iterator[float]) -> None:
        try:
            for _ in run:
                pass
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=drive, args=(train_heuristic(heur, epochs),), name="heuristic"),
        threading.Thread(target=drive, args=(train_failing(failing, 5),), name="failing"),
        threading.Thread(target=drive, args=(ppo_run,), name="ppo"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    def path(trainer: Trainer) -> str:
        """Which path the trainer's step took, from its own counters."""
        stats = trainer.step.stats()  # type: ignore[union-attr]
        if stats.fallback_calls and stats.failures:
            return "fallback"
        return "compiled" if stats.compiled_calls and not stats.eager_calls else "eager"

    paths = {trainer.name: path(trainer) for trainer in (heur, ppo, failing)}
    log("timing each trainer's step, compiled vs eager")
    with ppo_scope:
        ppo.times["compiled"] = step_time(ppo.step, ppo_args(), 10)  # type: ignore[arg-type]
    with compile_disabled():
        ppo.times["eager"] = step_time(ppo.step, ppo_args(), 10)  # type: ignore[arg-type]
        x, y = torch.randn(1024, 4), torch.randint(0, 2, (1024,))
        heur.times["eager"] = step_time(heur.step, (x, y), 10)  # type: ignore[arg-type]
        regression = torch.randn(256, 4), torch.randn(256, 1)
        failing.times["eager"] = step_time(failing.step, regression, 10)  # type: ignore[arg-type]

    leaked = current_policy() != default
    print()
    print(f"{'trainer':<10} {'effective policy':<44} {'compiled':>8} {'eager':>6} {'fallback':>8} "
          f"{'step ms compiled/eager':>23}  result")
    for trainer in (heur, ppo, failing):
        stats = trainer.step.stats()  # type: ignore[union-attr]
        shown = "disabled" if not trainer.policy.enabled else "enabled"  # type: ignore[union-attr]
        if stats.variants:  # the merged compile arguments actually used
            backend = stats.variants[0].backend
            shown += f", backend={getattr(backend, '__name__', backend)}"
        compiled_ms = trainer.times.get("compiled")
        timing = f"{compiled_ms:.2f}" if compiled_ms is not None else "-"
        timing += f" / {trainer.times['eager']:.2f}"
        print(f"{trainer.name:<10} {shown[:44]:<44} {stats.compiled_calls:>8} {stats.eager_calls:>6} "
              f"{stats.fallback_calls:>8} {timing:>23}  {trainer.result}")
    network = compile_stats(ppo.network)
    print(f"ppo network (module form): {network.compiled_calls} compiled calls, "
          f"{network.eager_calls} eager, {len(ppo.network.state_dict())} state_dict keys "  # type: ignore[union-attr]
          f"as the plain ActorCritic's ({next(iter(ppo.network.state_dict()))!r}, ...)")  # type: ignore[union-attr]
    print(f"policy leaked: {'YES' if leaked else 'no'} (main thread: {current_policy()!r}; "
          f"process default: {default!r})")
    print()

    final_return = curve[-1] if curve else 0.0
    print(f"demo: ppo_return={final_return:.1f} heuristic={paths['heuristic']} ppo={paths['ppo']} "
          f"failing={paths['failing']} leaked={'yes' if leaked else 'no'}")
    ok = paths == {"heuristic": "eager", "ppo": "compiled", "failing": "fallback"} and not leaked
    if not args.quick:
        ok = ok and final_return >= 195.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
