"""Run the benchmarks, print one table, optionally write it as JSON, and exit non-zero when
a performance claim (``benchmarks/claims.py``) does not hold or was not measured.

    python -m benchmarks [--json PATH] [--quick] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable

from . import cases, governance, imports, module_calls
from .claims import CLAIMS
from .table import Row, render

#: Every case of ``make bench``, in order: a function ``(quick: bool) -> list[Row]``.
#: To add one, write it in a module of this package and list it here.
CASES: list[Callable[[bool], list[Row]]] = [
    cases.scope_cost,
    cases.call_overhead,
    cases.toggling,
    imports.import_cost,
    cases.train_step,
    module_calls.module_cost,
    governance.governance_cost,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="few repetitions: checks that every case runs and every claim is "
                             "measured, not whether the claims hold (exit 0 on a miss)")
    parser.add_argument("--case", action="append", metavar="NAME", choices=[c.__name__ for c in CASES],
                        help="run only this case (repeatable); claims of other cases are not checked")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

    rows: list[Row] = []
    for case in CASES:
        if args.case and case.__name__ not in args.case:
            continue
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
    status = 0
    measured = [row.claim for row in rows if row.claim is not None]
    allowed = {0, 1} if args.case else {1}
    for claim in CLAIMS:
        if measured.count(claim) not in allowed:
            print(f"NOT MEASURED: {claim.name} ({measured.count(claim)} rows check it, not 1)",
                  file=sys.stderr)
            status = 1
    for row in rows:
        if row.ok is False:
            print(f"MISSED: {row.name}: {row.measured:.3f} (target {row.target})", file=sys.stderr)
            if not args.quick:  # too few repetitions to judge a claim
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
