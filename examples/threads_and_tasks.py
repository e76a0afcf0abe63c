"""Serving-style isolation: a thread pool and asyncio tasks serve requests with one compiled
model; some requests are served under ``compile_disabled()``, and no request's policy reaches
another. ``bind_policy`` carries the submitter's policy into pool workers.

    python examples/threads_and_tasks.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy

import torch  # noqa: E402

from compile_policy import (  # noqa: E402
    bind_policy,
    compile_disabled,
    compile_stats,
    current_policy,
    policy_compiled,
)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
serve = policy_compiled(model, backend="aot_eager")  # one compiled object for all requests


def handle(request_id: int) -> tuple[int, bool]:
    """Serve one request; report whether this request ran under an enabled policy."""
    with torch.no_grad():
        serve(torch.randn(8, 16))
    return request_id, current_policy().enabled


def threads(requests: int) -> None:
    wrong = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = []
        for request_id in range(requests):
            if request_id % 3 == 0:  # a "debug" request: eager, in whichever worker runs it
                with compile_disabled():
                    futures.append((False, pool.submit(bind_policy(handle), request_id)))
            else:
                futures.append((True, pool.submit(handle, request_id)))
        for expected, future in futures:
            _, enabled = future.result()
            wrong += enabled is not expected
    print(f"thread pool: {requests} requests, {wrong} on the wrong path "
          f"(bind_policy carried compile_disabled() into the workers)")
    assert wrong == 0


async def tasks(requests: int) -> None:
    async def request(request_id: int) -> bool:
        if request_id % 2:
            with compile_disabled():  # this task only, across its awaits
                await asyncio.sleep(0)
                return handle(request_id)[1] is False
        await asyncio.sleep(0)
        return handle(request_id)[1] is True

    results = await asyncio.gather(*(request(i) for i in range(requests)))
    print(f"asyncio: {requests} concurrent tasks, {results.count(False)} on the wrong path")
    assert all(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args(argv)
    requests = 24 if args.quick else 300
    threads(requests)
    asyncio.run(tasks(requests))
    stats = compile_stats(serve)
    print(f"model: {stats.compiled_calls} compiled calls, {stats.eager_calls} eager calls, "
          f"{stats.graphs_compiled} graph(s) compiled; main thread policy enabled: "
          f"{current_policy().enabled}; threads alive: {threading.active_count()}")
    assert stats.compiled_calls + stats.eager_calls == 2 * requests
    return 0


if __name__ == "__main__":
    sys.exit(main())
