"""One row of the ``make bench`` table, and the table as text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .claims import Claim


@dataclass
class Row:
    """One measurement. With a ``claim``, ``ok`` says whether it holds: the claim is checked
    against ``ratio`` when the row has one, else against ``value``."""

    name: str
    value: float
    unit: str
    reference: str = ""
    ratio: float | None = None
    claim: Claim | None = None
    ok: bool | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.claim is not None:
            self.ok = self.claim.holds(self.measured)

    @property
    def measured(self) -> float:
        """What a claim is checked against."""
        return self.ratio if self.ratio is not None else self.value

    @property
    def target(self) -> str:
        return self.claim.target if self.claim is not None else ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "reference": self.reference, "ratio": self.ratio,
                "claim": self.claim.name if self.claim else None, "target": self.target,
                "ok": self.ok}


def render(rows: list[Row]) -> str:
    header = f"{'measurement':<66} {'value':>12}  {'vs':<34} {'ratio':>7}  {'target':<9} ok"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else ""
        ok = {True: "yes", False: "NO", None: ""}[row.ok]
        lines.append(
            f"{row.name:<66} {row.value:>9.3f} {row.unit:<3} {row.reference:<34} {ratio:>7}  "
            f"{row.target:<9} {ok}"
        )
    lines.append(
        "value: median of all rounds; ratio: median of per-round ratios, each round timing all "
        "of a table's candidates in one process (call costs and the train step pool fresh "
        "processes: workers.py)"
    )
    return "\n".join(lines)
