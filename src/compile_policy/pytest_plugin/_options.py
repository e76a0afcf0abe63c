"""The pytest plugin's settings: its command-line options, their ini twins, and the one
resolver that turns them into :class:`PluginSettings`.

Every setting is a command-line option with an ini key of the same name; the option wins
over the ini, the ini over the default. Values are case-insensitive. A bad value is a
usage error naming where it came from and the allowed values.

    pytest --compile-policy=both --compile-policy-reset=test --compile-policy-cache=per-worker
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import pytest

from .._base.errors import PolicyError, shown

if TYPE_CHECKING:  # the plugin loads the policy value only where a run sets fields
    from .._policy.value import CompilePolicy

__all__ = ["PluginSettings", "Setting", "add_options", "resolve"]


# NamedTuples, not frozen dataclasses: this module loads in every pytest run, and making a
# frozen dataclass costs about 0.7 ms at import.
class Setting(NamedTuple):
    """One option of the plugin: ``--<flag>`` on the command line, ``<ini>`` in the ini."""

    ini: str  # also the option's dest
    allowed: tuple[str, ...]
    default: str | None  # None: no value of its own (the policy falls to the environment)
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.ini.replace("_", "-")


POLICY = Setting(
    "compile_policy",
    ("on", "off", "both"),  # or a policy text: see _policy_choice
    None,
    "baseline compile policy for every test: on, off, a policy text such as max-autotune "
    "or on,backend=aot_eager, or both (every test twice, [compiled] and [eager]; marked "
    "tests once; both,backend=eager sets fields too) (default: COMPILE_POLICY / "
    "TORCH_COMPILE_DISABLE from the environment)",
)
LEAKS = Setting(
    "compile_policy_leaks",
    ("error", "warn", "off"),
    "error",
    "a test that leaves a policy scope active: report it as a teardown error (error), "
    "warn, or only restore the baseline silently (off) (default: error)",
)
RESET = Setting(
    "compile_policy_reset",
    ("test", "module", "off"),
    "off",
    "call torch._dynamo.reset() before each test or each module, so compile counts and "
    "recompile budgets do not depend on test order (default: off)",
)
CACHE = Setting(
    "compile_policy_cache",
    ("shared", "per-worker"),
    "shared",
    "inductor cache directory: shared, or per-worker (one TORCHINDUCTOR_CACHE_DIR per "
    "xdist worker, under one run directory) (default: shared)",
)
GOVERN = Setting(
    "compile_policy_govern_torch",
    ("yes", "no"),  # and the ini's booleans: see _govern_choice
    None,
    "govern plain torch.compile code too (compile_policy.govern_torch_compile(), imports "
    "torch), so that the baseline and the markers apply to it: yes (also the bare flag), or "
    "no (default: yes with --compile-policy=both or off, and from the first test marked "
    "compile_disabled or compile_both, where the running torch supports it)",
)
SETTINGS = (POLICY, LEAKS, RESET, CACHE)
#: The ini's boolean spellings, as pytest's own bool ini reads them.
_TRUE, _FALSE = ("yes", "true", "on", "1", "y", "t"), ("no", "false", "off", "0", "n", "f")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("compile-policy", "compile policy (torch.compile on/off)")
    for setting in SETTINGS:
        # No argparse `choices`: values are case-insensitive, and validated in resolve().
        group.addoption(
            setting.flag,
            dest=setting.ini,
            default=None,
            metavar="POLICY" if setting is POLICY else "{" + ",".join(setting.allowed) + "}",
            help=setting.help,
        )
        parser.addini(setting.ini, f"{'|'.join(setting.allowed)} (see {setting.flag})")
    # `--compile-policy-govern-torch` alone means yes, as it did when it was a flag.
    group.addoption(GOVERN.flag, dest=GOVERN.ini, nargs="?", const="yes", default=None,
                    metavar="{yes,no}", help=GOVERN.help)
    parser.addini(GOVERN.ini, f"yes|no, true|false (see {GOVERN.flag})")


class Choice(NamedTuple):
    """A resolved value and where it came from."""

    value: str | None
    source: str  # "pytest option --x=v", "pytest ini x = v", or "default"
    layer: CompilePolicy | None = None  # --compile-policy: the fields its text sets

    @property
    def is_default(self) -> bool:
        return self.source == "default"


class PluginSettings(NamedTuple):
    """Everything the options and ini decided, for one pytest process."""

    policy: Choice  # on / off / both, or None: the environment's default
    leaks: Choice
    reset: Choice
    cache: Choice
    govern: Choice  # yes / no, or None: yes where the run has eager tests (see GOVERN)


def resolve(config: pytest.Config) -> PluginSettings:
    """Option over ini over default, for every setting; a bad value is a UsageError."""
    policy, leaks, reset, cache = (_resolve_one(config, setting) for setting in SETTINGS)
    return PluginSettings(policy, leaks, reset, cache, _govern_choice(config))


def _govern_choice(config: pytest.Config) -> Choice:
    raw = config.getoption(GOVERN.ini)
    if raw is not None:
        label, source = f"{GOVERN.flag}=", f"pytest option {GOVERN.flag}={raw}"
    else:
        raw = str(config.getini(GOVERN.ini) or "").strip() or None
        if raw is None:
            return Choice(None, "default")
        label, source = f"ini option {GOVERN.ini} = ", f"pytest ini {GOVERN.ini} = {raw}"
    value = str(raw).strip().lower()
    if value in _TRUE or value in _FALSE:
        return Choice("yes" if value in _TRUE else "no", source)
    hint = ""
    if raw is config.getoption(GOVERN.ini) and not value.startswith("-"):
        # argparse took the next argument (a path?) as the flag's value.
        hint = f"; write {GOVERN.flag}=yes when a path follows it"
    raise pytest.UsageError(
        f"compile-policy: {label}{raw!r} is not allowed; allowed (any case): yes, no "
        f"(an ini also takes true, false){hint}"
    )


def _resolve_one(config: pytest.Config, setting: Setting) -> Choice:
    raw: str | None = config.getoption(setting.ini)
    if raw is not None:
        label, source = f"{setting.flag}=", f"pytest option {setting.flag}={raw}"
    else:
        raw = str(config.getini(setting.ini) or "").strip() or None
        if raw is None:
            return Choice(setting.default, "default")
        label, source = f"ini option {setting.ini} = ", f"pytest ini {setting.ini} = {raw}"
    if setting is POLICY:
        return _policy_choice(raw, label, source)
    value = raw.strip().lower()
    if value not in setting.allowed:
        raise pytest.UsageError(
            f"compile-policy: {label}{shown(raw)} is not allowed; "
            f"allowed (any case): {', '.join(setting.allowed)}"
        )
    return Choice(value, source)


def _policy_choice(raw: str, label: str, source: str) -> Choice:
    """``both`` (optionally followed by fields: ``both,backend=eager``), or a policy text
    (``off``, ``max-autotune``, ``on,backend=aot_eager``: see ``CompilePolicy.parse``)."""
    # The grammar loads only when a value needs it: this plugin loads in every pytest run.
    from .._policy.value import parse_policy

    first, _, rest = raw.partition(",")
    try:
        if first.strip().lower() == "both":
            # The fields hold in both runs; each run sets `enabled` itself.
            layer = parse_policy("on," + rest, source=f"{label}{shown(raw)}: ") if rest.strip() else None
            return Choice("both", source, layer)
        layer = parse_policy(raw, source=label)
    except PolicyError as error:
        raise pytest.UsageError(
            f"compile-policy: {error}; or both, optionally followed by fields "
            "(every test twice: [compiled] and [eager])"
        ) from None
    return Choice("on" if layer.enabled else "off", source, layer)
