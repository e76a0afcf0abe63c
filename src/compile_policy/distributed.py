"""Every rank makes the same compile decision: check it, or adopt rank ``src``'s policy.

torch.distributed is imported lazily. State is exchanged as JSON bytes (a policy as its
``to_dict()``) in uint8 tensors with plain tensor collectives: ``all_gather_object`` and
``broadcast_object_list`` need numpy, which neither torch 2.13 nor this package depends on.
Every collective waits at most ``timeout`` (default: the process group's own), so a missing
rank is an error, never a hang.

    from compile_policy.distributed import broadcast_policy, check_consistent

    loss = train_step(batch)
    check_consistent(train_step)        # PolicyMismatchError on every rank if any differs
    with broadcast_policy(src=0):       # every rank adopts rank 0's effective policy
        train_step(batch)
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, TypeVar

from ._base.errors import PolicyError
from ._compiled.front_door import PolicyCompiled
from ._compiled.inspection import compile_stats
from ._context import frames as _frames
from ._context import stack as _stack
from ._context.decorators import wrap_in_scope
from ._context.stack import current_policy
from ._policy.value import CompilePolicy

__all__ = ["PolicyMismatchError", "broadcast_policy", "check_consistent", "policy_state"]

F = TypeVar("F", bound=Callable[..., Any])


class PolicyMismatchError(RuntimeError):
    """Ranks disagree on the compile policy or on a compiled object's state.

    Raised on every rank, with a table of rank -> policy/state.
    """


def policy_state(*compiled_fns: PolicyCompiled[..., Any]) -> dict[str, object]:
    """This rank's effective policy and, per object, the state of each options key."""
    objects = []
    for fn in compiled_fns:
        stats = compile_stats(fn)  # a module wrapper too: it has no stats() of its own
        failed = {failure.key: failure for failure in stats.failures}
        keys = {}
        for key in stats.variants:
            failure = failed.get(key)
            state = "compiled" if failure is None else ("fallback" if failure.fell_back else "failed")
            keys[key.describe()] = state
        objects.append({"name": getattr(fn, "__qualname__", repr(fn)), "keys": keys})
    policy = current_policy()
    try:
        fields: dict[str, object] = policy.to_dict()  # a callable backend by its name
    except PolicyError:  # one that cannot be named can still be compared by its repr
        fields = policy.set_fields()
    return {"policy": {name: repr(value) for name, value in fields.items()}, "objects": objects}


# -- collectives ---------------------------------------------------------------------------
def _device(group: Any) -> Any:
    import torch
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _wait(work: Any, timeout: datetime.timedelta | None) -> None:
    if timeout is None:
        work.wait()  # the process group's own timeout applies
    else:
        work.wait(timeout)


def _all_gather_bytes(payload: bytes, group: Any, timeout: datetime.timedelta | None) -> list[bytes]:
    import torch
    import torch.distributed as dist

    device = _device(group)
    world = dist.get_world_size(group)
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    _wait(dist.all_gather(sizes, size, group=group, async_op=True), timeout)
    longest = max(int(s.item()) for s in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8, device=device)
    if payload:
        mine[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    gathered = [torch.zeros(longest, dtype=torch.uint8, device=device) for _ in range(world)]
    _wait(dist.all_gather(gathered, mine, group=group, async_op=True), timeout)
    return [bytes(t[: int(s.item())].cpu().tolist()) for t, s in zip(gathered, sizes, strict=True)]


def _broadcast_bytes(
    payload: bytes, src: int, group: Any, timeout: datetime.timedelta | None
) -> bytes:
    import torch
    import torch.distributed as dist

    device = _device(group)
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    _wait(dist.broadcast(size, src=src, group=group, async_op=True), timeout)
    data = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if dist.get_rank() == src and payload:
        data[:] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    _wait(dist.broadcast(data, src=src, group=group, async_op=True), timeout)
    return bytes(data.cpu().tolist())


# -- the public API ------------------------------------------------------------------------
def check_consistent(
    *compiled_fns: PolicyCompiled[..., Any],
    group: Any = None,
    timeout: datetime.timedelta | None = None,
) -> None:
    """Check that every rank has the same effective policy and, for each given object, the
    same compiled/fallback state per options key; raise :class:`PolicyMismatchError` on every
    rank otherwise. A collective: every rank of ``group`` must call it.

        >>> train_step(batch)                 # the first step compiled (or fell back)
        >>> check_consistent(train_step)
    """
    import torch.distributed as dist

    mine = json.dumps(policy_state(*compiled_fns), sort_keys=True).encode()
    states = _all_gather_bytes(mine, group, timeout)
    if len(set(states)) == 1:
        return
    ranks = dist.get_process_group_ranks(group) if group is not None else range(len(states))
    lines = ["ranks disagree on the compile policy or compiled state:"]
    for rank, raw in zip(ranks, states, strict=True):
        state = json.loads(raw)
        policy = ", ".join(f"{k}={v}" for k, v in state["policy"].items() if v != "None")
        objects = "; ".join(
            f"{o['name']}: " + (", ".join(f"[{k}] {v}" for k, v in o["keys"].items()) or "not compiled")
            for o in state["objects"]
        )
        marker = "" if raw == states[0] else "   <-- differs from the first rank"
        lines.append(f"  rank {rank}: policy {policy} | {objects or 'no objects'}{marker}")
    raise PolicyMismatchError("\n".join(lines))


class broadcast_policy:
    """Make every rank adopt rank ``src``'s effective policy for the body: a context manager
    and a decorator. A collective on enter: every rank of ``group`` must enter it.

        >>> with broadcast_policy(src=0):
        ...     train_step(batch)             # every rank decides as rank 0 does

    The policy travels as its :meth:`~CompilePolicy.to_dict` data, so option values keep
    their types. A policy that cannot be written as data (a lambda backend, a ``set`` in
    ``options``), or that some rank cannot read back (a callable backend it cannot import),
    is a :class:`PolicyError` on every rank.
    """

    def __init__(
        self, src: int = 0, group: Any = None, timeout: datetime.timedelta | None = None
    ) -> None:
        self.src, self.group, self.timeout = src, group, timeout
        # The stacks its enters replaced (LIFO): a rank enters it from its main thread.
        self._saved: list[_frames._Frame | None] = []

    def _adopt(self) -> _frames._Frame | None:
        import torch.distributed as dist

        payload, failure = b"", None
        if dist.get_rank() == self.src:
            try:
                message: dict[str, object] = {"policy": current_policy().to_dict()}
            except PolicyError as error:
                # Sent all the same, so that every rank raises, instead of the others
                # waiting for a policy until the timeout.
                failure, message = error, {"error": str(error)}
            payload = json.dumps(message).encode()
        received = json.loads(_broadcast_bytes(payload, self.src, self.group, self.timeout))
        if failure is not None:
            raise failure
        if "error" in received:  # every rank knows it from the broadcast: no more collectives
            raise PolicyError(
                f"rank {self.src}'s effective policy cannot be sent to the other ranks (it "
                f"raised there too): {received['error']}"
            )
        policy, problem = self._read(received["policy"])
        # A rank that cannot read it (a callable backend its code cannot import) would leave
        # the others to run the body alone, and hang in its first collective: agree first.
        problems = _all_gather_bytes(problem.encode(), self.group, self.timeout)
        if policy is None or any(problems):
            ranks = (dist.get_process_group_ranks(self.group) if self.group is not None
                     else range(len(problems)))
            failed = "; ".join(f"rank {rank}: {text.decode()}"
                               for rank, text in zip(ranks, problems, strict=True) if text)
            raise PolicyError(f"not every rank could adopt rank {self.src}'s policy: {failed}")
        saved = _stack.pushed_top()
        # Over nothing but the process default, and setting every field: rank src's
        # effective policy exactly, whatever scopes this rank had.
        _stack.set_top(_stack.chain(None, policy, f"broadcast_policy(src={self.src})",
                                    f"rank {self.src}'s effective policy"))
        return saved

    @staticmethod
    def _read(data: object) -> tuple[CompilePolicy | None, str]:
        try:
            return CompilePolicy.from_dict(data), ""  # type: ignore[arg-type]
        except (PolicyError, TypeError) as error:
            return None, f"{type(error).__name__}: {error}"

    def __enter__(self) -> None:
        self._saved.append(self._adopt())

    def __exit__(self, *exc_info: object) -> None:
        self._restore(self._saved.pop())

    def __call__(self, fn: F) -> F:
        return wrap_in_scope(fn, self._adopt, self._restore)

    @staticmethod
    def _restore(saved: _frames._Frame | None) -> None:
        _stack.set_top(saved)  # exactly this rank's stack before the enter
