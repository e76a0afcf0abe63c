"""``make test-matrix``: the suite on several torch releases, and docs/compatibility.md's table.

For each release: ``make .venv-torch-X/.installed`` (kept and reused: a second run installs
nothing), the suite in that venv, and a probe of what the package says of that torch
(governance, per-object isolation). Then the table in docs/compatibility.md between its two
markers is rewritten: a row per release, this run's rows replacing the old rows of the same
releases, the others kept. Exits non-zero when a suite failed, after writing the table.

    python3 tools/torch_matrix.py 2.9.1 2.12.1 2.15.0
    python3 tools/torch_matrix.py --parallel --workers 2 2.9.1 2.12.1 2.15.0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "compatibility.md"
BEGIN, END = "<!-- matrix: begin (written by make test-matrix) -->", "<!-- matrix: end -->"
HEADER = (
    "| torch | suite: passed / failed / skipped | suite time | governance | "
    "per-object isolation | notes |\n|---|---|---|---|---|---|"
)

#: Run in each venv: what compile_policy itself says of that torch (one JSON line).
PROBE = """
import json, inspect, warnings
warnings.filterwarnings("ignore")
import torch
from compile_policy._base import torch_releases
from compile_policy._governance.install import governance_support
facts = torch_releases.running()
ok, why = governance_support()
arguments = sorted(set(inspect.signature(torch.compile).parameters) - {
    "model", "backend", "mode", "fullgraph", "dynamic", "options"})
print(json.dumps({"version": torch.__version__, "governance": ok, "why": why,
                  "isolation": facts.isolation, "region": facts.isolation_region,
                  "supported": facts.supported, "arguments": arguments}))
"""


def run_release(version: str, workers: str) -> dict[str, object]:
    venv = ROOT / f".venv-torch-{version}"
    installed = time.monotonic()
    report = venv / "junit.xml"
    report.unlink(missing_ok=True)
    with open(venv / "suite.log", "w") as log:  # the suite's own output, kept in the venv
        suite = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pytest", "-n", workers, "--dist", "loadgroup",
             "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    finished = time.monotonic()
    counts = _counts(report)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE], cwd=ROOT,
                           capture_output=True, text=True, check=True)
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"torch {version}: {counts}, suite {finished - installed:.0f} s, exit {suite.returncode} "
          f"(its output: {venv.name}/suite.log)", flush=True)
    return {**facts, "build": facts["version"], "version": version, "counts": counts,
            "seconds": finished - installed, "returncode": suite.returncode}


def _counts(report: Path) -> dict[str, int]:
    if not report.exists():
        return {"passed": 0, "failed": 0, "skipped": 0}
    root = ElementTree.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {key: sum(int(s.get(key, 0)) for s in suites)
             for key in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed,
            "skipped": total["skipped"]}


def row(result: dict[str, object]) -> str:
    counts = result["counts"]
    assert isinstance(counts, dict)
    governance = "yes" if result["governance"] else "no: " + str(result["why"]).split(" (")[0]
    isolation = "yes" if result["isolation"] else "no (objects of one code share torch's cache)"
    arguments = ", ".join(map(str, result["arguments"]))  # type: ignore[call-overload]
    notes = [f"build {result['build']}", f"torch.compile arguments: {arguments}"]
    if result["region"]:
        notes.append(f"isolate-recompiles region: per {result['region']}")
    if not result["supported"]:
        notes.append("not a supported release")
    date = datetime.date.today().isoformat()
    return (f"| {result['version']} | {counts['passed']} / {counts['failed']} / {counts['skipped']} "
            f"| {float(result['seconds']):.0f} s | {governance} | {isolation} | "  # type: ignore[arg-type]
            f"{'; '.join(notes)} (run {date}) |")


def write_table(rows: dict[str, str]) -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END)
    old = re.findall(r"^\| (\d[^ |]*) \|.*$", text[start:end], flags=re.MULTILINE)
    kept = {version: line for version, line in zip(
        old, [line for line in text[start:end].splitlines() if re.match(r"\| \d", line)], strict=True)}
    kept.update(rows)

    def release(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", version)[:3])

    table = "\n".join([HEADER, *(kept[v] for v in sorted(kept, key=release))])
    DOC.write_text(text[:start] + BEGIN + "\n" + table + "\n" + text[end:])


def main(versions: list[str], *, workers: str, parallel: bool) -> int:
    # Each venv is made first, one at a time (pip's cache and downloads are shared); then the
    # suites run, one after another or all at once (on a machine with cores to spare).
    for version in versions:
        subprocess.run(["make", "--no-print-directory", f".venv-torch-{version}/.installed"],
                       cwd=ROOT, check=True)
    if parallel:
        with concurrent.futures.ThreadPoolExecutor(len(versions)) as pool:
            results = list(pool.map(lambda v: run_release(v, workers), versions))
    else:
        results = []
        for version in versions:
            results.append(run_release(version, workers))
            write_table({version: row(results[-1])})  # each row as soon as it is measured
    write_table({str(r["version"]): row(r) for r in results})
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if any(r["returncode"] != 0 for r in results) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", help="torch releases, as pip spells them: 2.15.0")
    parser.add_argument("--workers", default="auto", help="pytest -n (default: auto)")
    parser.add_argument("--parallel", action="store_true", help="run the suites at the same time")
    arguments = parser.parse_args()
    sys.exit(main(arguments.versions, workers=arguments.workers, parallel=arguments.parallel))
