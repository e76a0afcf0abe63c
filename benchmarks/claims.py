"""Every performance claim of the package, with its target: the one source of truth.

``make bench`` checks each claim against a measured row (exit 1 on a miss, or on a claim no
row measured); the README's claims table must list exactly these names and targets
(``tests/test_docs.py`` checks it), so neither can claim a target the other does not.

To add a claim: one line here, ``NAME = claim("what is compared, as the README says it",
"<=", 1.05, "x")``, and ``Row(..., claim=claims.NAME)`` on the row that measures it (the row's
``ratio`` is checked when it has one, else its ``value``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

_OPERATORS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "<=": ("\N{LESS-THAN OR EQUAL TO}", operator.le),
    "==": ("=", operator.eq),
}
_UNITS = {"x": "{:.2f}\N{MULTIPLICATION SIGN}", "ms": "{:g} ms", "": "{:g}"}


@dataclass(frozen=True)
class Claim:
    """One claim: ``name`` (the README's words) ``op`` ``limit`` ``unit``."""

    name: str
    op: str
    limit: float
    unit: str = ""

    @property
    def target(self) -> str:
        """The target as the README's claims table writes it, e.g. ``<= 1.05x`` in symbols."""
        return f"{_OPERATORS[self.op][0]} {_UNITS[self.unit].format(self.limit)}"

    def holds(self, measured: float) -> bool:
        return _OPERATORS[self.op][1](measured, self.limit)


#: All claims, in the README's order.
CLAIMS: list[Claim] = []


def claim(name: str, op: str, limit: float, unit: str = "") -> Claim:
    """Register a claim (in :data:`CLAIMS`) and return it."""
    if op not in _OPERATORS or unit not in _UNITS:
        raise ValueError(f"claim {name!r}: op {op!r} / unit {unit!r}; allowed: "
                         f"{', '.join(_OPERATORS)} / {', '.join(map(repr, _UNITS))}")
    if any(c.name == name for c in CLAIMS):
        raise ValueError(f"claim {name!r} is registered twice")
    made = Claim(name, op, limit, unit)
    CLAIMS.append(made)
    return made


# Every call cost is timed after a compiled call (process_state.py), as users' processes are.
SCOPE = claim("enter+exit `compile_disabled()` vs `torch.no_grad()`", "<=", 0.60, "x")
SCOPE_FLOOR = claim("enter+exit `compile_disabled()` vs a bare `ContextVar` set/reset", "<=", 2.75, "x")
COMPILED_PATH = claim("compiled-path call vs the same compiled function called directly", "<=", 1.05, "x")
DISABLED_VS_FORCE_EAGER = claim(
    'overhead of a disabled call vs that of the same `torch.compile`d function under '
    '`set_stance("force_eager")`, each over the plain function', "<=", 0.10, "x")
EAGER_PATH = claim("eager-path call vs the plain function", "<=", 1.08, "x")
TRAIN_STEP = claim("MLP train step through `policy_compiled` vs `torch.compile` directly", "<=", 1.02, "x")
MODULE_COMPILED = claim("MLP forward through the module wrapper vs `torch.compile(module)`, compiled",
                        "<=", 1.03, "x")
MODULE_EAGER = claim("MLP forward through the module wrapper, disabled, vs the plain module", "<=", 1.05, "x")
MODULE_IN_PLACE = claim("MLP forward, `policy_compiled(module, inplace=True)` vs `module.compile()`",
                        "<=", 1.03, "x")
TOGGLING = claim("compilations per options key, toggling the policy 1,000 times", "==", 1)
IMPORT_TORCH = claim("torch modules loaded by `import compile_policy`", "==", 0)
IMPORT_TIME = claim("`import compile_policy` in a fresh interpreter", "<=", 25, "ms")
PLUGIN_LOAD = claim("import time the pytest plugin adds to a pytest run", "<=", 10, "ms")
GOVERNED_CALL = claim("warm plain `torch.compile` call, governed, no scope, vs not governed", "<=", 1.03, "x")
GOVERNED_DISABLED = claim("plain `torch.compile`d call in a governed disabled scope vs the plain function",
                          "<=", 1.10, "x")
GOVERNED_SCOPE = claim("enter+exit `compile_disabled()`, governed vs not governed", "<=", 1.05, "x")
