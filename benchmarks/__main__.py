"""Run the benchmarks, print one table, optionally write it as JSON, and exit non-zero when
a performance claim of the README does not hold.

    python -m benchmarks [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

from .cases import ALL, Row
from .governance import CASES as GOVERNANCE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="few repetitions: checks that the benchmarks run, not the claims")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

    rows: list[Row] = []
    for case in ALL + GOVERNANCE:
        started = time.perf_counter()
        print(f"[bench] {case.__name__} ...", file=sys.stderr, flush=True)
        rows.extend(case(args.quick))
        print(f"[bench] {case.__name__} done in {time.perf_counter() - started:.1f}s",
              file=sys.stderr, flush=True)

    print(render(rows))
    import torch

    meta = {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "quick": args.quick}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "rows": [row.as_dict() for row in rows]}, handle, indent=2)
    missed = [row for row in rows if row.ok is False]
    for row in missed:
        print(f"MISSED: {row.name}: {row.ratio if row.ratio is not None else row.value:.3f} "
              f"(target {row.target})", file=sys.stderr)
    if args.quick:
        return 0  # too few repetitions to judge a claim
    return 1 if missed else 0


def render(rows: list[Row]) -> str:
    header = f"{'measurement':<62} {'value':>12}  {'vs':<30} {'ratio':>7}  {'target':<9} ok"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else ""
        ok = {True: "yes", False: "NO", None: ""}[row.ok]
        lines.append(
            f"{row.name:<62} {row.value:>9.3f} {row.unit:<3} {row.reference:<30} {ratio:>7}  "
            f"{row.target:<9} {ok}"
        )
    lines.append(
        "value: median of all rounds; ratio: median of per-round ratios, each round timing all "
        "of a table's candidates in one process (call costs and the train step pool fresh "
        "processes: workers.py)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
