"""The docs cannot rot: every Python code block of README.md and docs/*.md runs, and the
README's claims table is the one ``make bench`` checks (benchmarks/claims.py).

A block runs unless its first line is exactly ``# doc: fragment`` (for a piece of a larger
program: a test body, a torchrun script). The blocks of one file run in order, in one
namespace, in a fresh interpreter whose working directory is a temporary one, so a block may
build on the ones above it, as a reader reads them; tracebacks name the file and its line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from conftest import run_fresh

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT = "# doc: fragment"
#: Docs whose code needs packages that are not dependencies: run where those are installed
#: (``make test-integrations`` runs them), skipped with the reason elsewhere.
NEEDS = {"frameworks.md": ("transformers", "accelerate", "lightning")}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")

#: Runs the blocks of the file named by argv[1], listed in the JSON file argv[2] as
#: [first line, source] pairs.
RUNNER = """
import json, sys
path, blocks = sys.argv[1], json.load(open(sys.argv[2]))
namespace = {"__name__": "__main__", "__file__": path}
for line, source in blocks:
    # Leading newlines put each statement on its own line of the .md file in tracebacks.
    exec(compile("\\n" * (line - 1) + source, path, "exec"), namespace)
"""


def code_blocks(path: Path) -> list[tuple[int, str, str]]:
    """``(first line of code, language, source)`` of each fenced code block, in order."""
    blocks: list[tuple[int, str, str]] = []
    lines = path.read_text().splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        indent, fence = opening["indent"], opening["fence"]
        start, body = number + 1, []
        while number < len(lines) and not lines[number].strip().startswith(fence):
            line = lines[number]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            number += 1
        number += 1  # the closing fence
        blocks.append((start, opening["lang"].lower(), "\n".join(body) + "\n"))
    return blocks


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The blocks of ``path`` to run: Python, and not marked as a fragment."""
    return [(line, source) for line, lang, source in code_blocks(path)
            if lang in ("python", "py") and source.splitlines()[:1] != [FRAGMENT]]


def test_code_blocks_are_found_with_their_line_numbers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("text\n```python\nx = 1\n```\n\n  ```py\n  y = 2\n  ```\n```sh\nls\n```\n"
                   f"```python\n{FRAGMENT}\nz = undefined\n```\n")
    assert python_blocks(doc) == [(3, "x = 1\n"), (7, "y = 2\n")]
    assert [lang for _, lang, _ in code_blocks(doc)] == ["python", "py", "sh", "python"]


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path: Path) -> None:
    import importlib.util
    import json

    missing = [name for name in NEEDS.get(path.name, ()) if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}, not installed: make test-integrations runs it")

    blocks = python_blocks(path)
    listing = tmp_path / "blocks.json"
    listing.write_text(json.dumps(blocks))
    result = run_fresh([sys.executable, "-c", RUNNER, str(path), str(listing)], cwd=tmp_path)
    assert result.returncode == 0, (
        f"a code block of {path.name} failed (blocks start at lines {[n for n, _ in blocks]}):\n"
        f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )


def claims_table(text: str) -> list[tuple[str, str]]:
    """``(claim, target)`` of each row of the first Markdown table headed ``| claim | target |``."""
    rows: list[tuple[str, str]] = []
    in_table = False
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not in_table:
            in_table = line.startswith("|") and [c.lower() for c in cells[:2]] == ["claim", "target"]
        elif not line.startswith("|"):
            break
        elif not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[1]))
    return rows


def test_readme_claims_table_lists_exactly_the_claims_make_bench_checks() -> None:
    from benchmarks.claims import CLAIMS

    table = claims_table((ROOT / "README.md").read_text())
    assert table, "README.md has no table headed | claim | target |"
    assert table == [(claim.name, claim.target) for claim in CLAIMS]


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    import inspect

    import compile_policy

    missing = [
        name for name in compile_policy.__all__
        if not any(marker in (inspect.getdoc(getattr(compile_policy, name)) or "")
                   for marker in (">>> ", "$ "))
    ]
    assert not missing, f"public names without an example in their docstring: {missing}"
