"""Policies as text and as data: CompilePolicy.parse, str(policy), to_dict/from_dict, the
COMPILE_POLICY grammar, and CompileStats.compile_seconds."""

from __future__ import annotations

import collections
import enum
import itertools
import json
import sys
import textwrap
import time
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from compile_policy import CompilePolicy, PolicyError, compile_enabled, policy_compiled
from compile_policy._base import torch_releases
from compile_policy._policy import fields as policy_module
from conftest import run_fresh


def module_backend(gm: Any, example_inputs: Any) -> Any:
    """A named callable backend (importable as test_policy_text:module_backend)."""
    return gm.forward


class BackendClass:
    """A class used as a backend: named by its qualname too."""

    def __new__(cls, gm: Any, example_inputs: Any) -> Any:
        return gm.forward


class CallableBackend:
    def __call__(self, gm: Any, example_inputs: Any) -> Any:
        return gm.forward


# -- the grammar -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(word, CompilePolicy(enabled=True)) for word in ("on", "ON", "1", "true", "True")],
        *[(word, CompilePolicy(enabled=False)) for word in ("off", "Off", "0", "false", "FALSE")],
        *[(mode, CompilePolicy(enabled=True, mode=mode)) for mode in torch_releases.running().modes],
        ("Max-Autotune", CompilePolicy(mode="max-autotune")),
        ("on,backend=aot_eager,fallback=raise", CompilePolicy(backend="aot_eager", fallback="raise")),
        ("mode=reduce-overhead,fullgraph=true", CompilePolicy(mode="reduce-overhead", fullgraph=True)),
        ("  off ,  backend = eager , dynamic=0  ", CompilePolicy(enabled=False, backend="eager",
                                                              dynamic=False)),
        ("max-autotune, fullgraph=off, dynamic=TRUE", CompilePolicy(mode="max-autotune",
                                                                    fullgraph=False, dynamic=True)),
        ("backend=none,mode=None,fullgraph=NONE,dynamic=none,fallback=none", CompilePolicy()),
        ("Backend=my.backend-2,FALLBACK=Eager", CompilePolicy(backend="my.backend-2", fallback="eager")),
        ("false,mode=reduce-overhead", CompilePolicy(enabled=False, mode="reduce-overhead")),
        ("on,stance=Eager_On_Recompile", CompilePolicy(stance="eager_on_recompile")),
        ("reduce-overhead,stance=fail_on_recompile,fallback=raise",
         CompilePolicy(mode="reduce-overhead", stance="fail_on_recompile", fallback="raise")),
    ],
)
def test_parse_reads_every_grammar_form(text: str, expected: CompilePolicy) -> None:
    assert CompilePolicy.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (",", "item 1 is empty"),
        ("on,", "item 2 is empty"),
        (",on", "item 1 is empty"),
        ("on,,fallback=raise", "item 2 is empty"),
        ("maybe", "'maybe' is neither a switch word nor a mode name"),
        ("on,off", "'off' is not a key=value item"),
        ("on,max-autotune", "'max-autotune' is not a key=value item"),
        ("bakend=eager", "unknown key 'bakend'"),
        ("=eager", "unknown key ''"),
        ("enabled=true", "unknown key 'enabled'"),
        ("fullgraph=maybe", "fullgraph='maybe' is not allowed"),
        ("dynamic=", "dynamic='' is not allowed"),
        ("mode=fast", "mode='fast' is not allowed"),
        ("fallback=ignore", "fallback='ignore' is not allowed"),
        ("stance=force_eager", "stance='force_eager' is not allowed"),
        ("backend=", "backend='' is not allowed"),
        ("backend=two words", "backend='two words' is not allowed"),
        ("backend=my_module:my_backend", "backend='my_module:my_backend' is not allowed"),
        ('backend="never closed', "a double quote is never closed"),
        ('backend="a" "b"', """backend='"a" "b"' is not allowed"""),
        ('backend=""', """backend='""' is not allowed"""),
        ('backend="7"x', """backend='"7"x' is not allowed"""),
        ('mode="none"', """mode='"none"' is not allowed"""),
        ("on,options={'max_autotune': True}", "options cannot be given in text"),
        ("mode=default,mode=lite", "mode is given twice"),
        ("max-autotune,mode=lite", "mode is given twice"),
    ],
)
def test_bad_text_is_a_policy_error_quoting_it_naming_the_bad_part_and_the_allowed(
    text: str, bad_part: str
) -> None:
    with pytest.raises(PolicyError) as info:
        CompilePolicy.parse(text)
    message = str(info.value)
    assert repr(text) in message and bad_part in message
    assert "allowed: " in message and len(message) < 400
    allowed = message.split("allowed: ", 1)[1]
    if bad_part.endswith("is not allowed"):  # a bad value: the field's own values are listed
        field = bad_part.split("=")[0]
        assert allowed.startswith(f"{field}=") and "none" in allowed
    elif "neither a switch word" in bad_part:  # the first item's forms
        assert "on, 1, true, off, 0, false" in allowed and "max-autotune" in allowed
    elif "empty" in bad_part:  # the whole grammar, in short
        for word in ("on, 1, true, off, 0, false", "max-autotune", "backend", "fallback"):
            assert word in allowed
    elif "options" not in bad_part and "quote" not in bad_part:  # a wrong key: the keys
        assert "keys backend, mode, fullgraph, dynamic, fallback, stance" in allowed


def test_parse_takes_only_text() -> None:
    with pytest.raises(PolicyError, match="must be a str"):
        CompilePolicy.parse(None)  # type: ignore[arg-type]


FIVE_MB = "x" * 5_000_000


@pytest.mark.parametrize(
    "text",
    [FIVE_MB, f"on,{FIVE_MB}", f"on,backend=-{FIVE_MB}", f"on,backend={FIVE_MB} y",
     f"on,{FIVE_MB}=1", f"on,mode={FIVE_MB}", f"on,fallback=eager,fallback={FIVE_MB}",
     f'on,backend="{FIVE_MB}', f"{FIVE_MB},", f"on,backend=eager,mode=lite,{FIVE_MB}"],
    ids=["first-word", "later-word", "backend", "backend-space", "key", "mode", "twice",
         "open-quote", "empty-item", "late"],
)
def test_a_bad_text_of_5_mb_gets_one_short_message_naming_its_start_and_length(text: str) -> None:
    with pytest.raises(PolicyError) as info:
        CompilePolicy.parse(text)
    message = str(info.value)
    assert len(message) < 500 and "\n" not in message, message[:1000]
    assert f"…({len(text)} chars)" in message and message.startswith("text 'on,") == (
        text.startswith("on,"))
    assert "allowed: " in message


@pytest.mark.parametrize(
    ("make", "source"),
    [
        (lambda: CompilePolicy(mode=FIVE_MB), "mode="),
        (lambda: CompilePolicy(fallback=FIVE_MB), "fallback="),
        (lambda: CompilePolicy(stance=FIVE_MB), "stance="),
        (lambda: CompilePolicy(enabled=FIVE_MB), "enabled="),  # type: ignore[arg-type]
        (lambda: CompilePolicy(fullgraph=FIVE_MB), "fullgraph="),  # type: ignore[arg-type]
        (lambda: CompilePolicy(backend=[FIVE_MB]), "backend="),  # type: ignore[arg-type]
        (lambda: CompilePolicy(options=[FIVE_MB]), "options="),  # type: ignore[arg-type]
        (lambda: CompilePolicy.parse([FIVE_MB]), "text "),  # type: ignore[arg-type]
        (lambda: CompilePolicy.from_dict({FIVE_MB: 1}), "unknown key"),
        (lambda: CompilePolicy.from_dict({"backend": [FIVE_MB]}), "backend="),
        (lambda: CompilePolicy.from_dict({"options": [FIVE_MB]}), "options="),
        (lambda: CompilePolicy.from_dict({"options": {"k": {FIVE_MB}}}), "options['k']="),
        (lambda: CompilePolicy.from_dict([FIVE_MB]), "from_dict() takes a dict"),  # type: ignore[arg-type]
        (lambda: compile_enabled(mode=FIVE_MB), "mode="),
    ],
)
def test_every_bad_value_error_is_short_for_a_5_mb_value(make: Any, source: str) -> None:
    with pytest.raises((PolicyError, TypeError)) as info:
        make()
    message = str(info.value)
    assert len(message) < 500, message[:1000]
    assert source in message and "chars" in message and "allowed" in message


QUOTED_NAMES = ["a,b", "x=y", "two words", ' "quoted" ', "it's", "back\\slash", "none", "NONE",
                "m:q", "tab\there", "line\nbreak", "é", "=", ",", '"', "eager"]


@pytest.mark.parametrize("name", QUOTED_NAMES)
def test_any_backend_name_survives_str_and_parse(name: str) -> None:
    policy = CompilePolicy(backend=name, fallback="raise")
    text = str(policy)
    assert CompilePolicy.parse(text) == policy, text
    assert CompilePolicy.parse(f" {text.replace(',fallback=', ' , fallback = ')} ") == policy
    if name != "eager":  # the bare form only where it reads back the same
        assert text.startswith('on,backend="'), text


# -- round trips over every combination of field values ------------------------------------
def _values() -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {
        "enabled": [True, False],
        "backend": [None, "eager", "aot_eager"],
        "mode": [None, *torch_releases.running().modes],  # the modes this torch has
        "fullgraph": [None, True, False],
        "dynamic": [None, True, False],
        "options": [None],
        "fallback": [None, *policy_module.FALLBACKS],
        "stance": [None, *policy_module.STANCES],
    }
    # A field added to CompilePolicy must be added here too, or its round trip goes untested.
    assert set(values) == set(policy_module.FIELD_NAMES)
    return values


def all_policies(**extra: list[Any]) -> list[CompilePolicy]:
    values = {**_values(), **extra}
    names = policy_module.FIELD_NAMES
    return [CompilePolicy(**dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*(values[name] for name in names))]


def test_text_round_trips_for_every_policy_without_options_or_callable_backend() -> None:
    policies = all_policies()
    assert len(policies) > 900
    for policy in policies:
        text = str(policy)
        assert CompilePolicy.parse(text) == policy, text
        assert " " not in text and text.split(",")[0] in ("on", "off")


OPTIONS = [
    None,
    {},
    {"max_autotune": True, "epilogue_fusion": False},
    {"ints": 1, "floats": 1.0, "neg": -2.5, "big": 2**70, "none": None, "text": "x"},
    {"tuple": (1, (2, 3), ()), "list": [1, [2], []], "mixed": ((1, [2]), [3, (4,)])},
    {"nested": {"a": {"b": (1.0, True)}}, "$looks_like_a_tag": {"$tuple": [1]}},
    {"inf": float("inf"), "ninf": float("-inf")},
]


def same_typed(a: object, b: object) -> bool:
    """Equal, with the same types all the way down (1, 1.0 and True are ==, not the same)."""
    if isinstance(a, Mapping):  # the policy's own read-only options, or a dict in them
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(
            same_typed(a[k], b[k]) for k in a
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_typed(x, y) for x, y in zip(a, b, strict=False))  # type: ignore[arg-type]
    return a == b


def test_data_round_trips_through_json_for_every_policy_with_types_kept() -> None:
    # Every field set and unset with every kind of value; each mode's text is covered above.
    fewer = {name: values[:2] for name, values in _values().items() if name in ("mode", "fallback", "stance")}
    policies = all_policies(backend=[None, "eager", module_backend, BackendClass], options=OPTIONS, **fewer)
    assert len(policies) > 2_000
    for policy in policies:
        data = policy.to_dict()
        text = json.dumps(data, allow_nan=False)  # strict JSON: no NaN/Infinity literals
        back = CompilePolicy.from_dict(json.loads(text))
        assert back == policy, data
        assert back.backend is policy.backend or back.backend == policy.backend
        assert same_typed(policy.options, back.options), (policy.options, back.options)


def test_to_dict_holds_only_the_fields_set_and_names_a_callable_backend() -> None:
    assert CompilePolicy().to_dict() == {"enabled": True}
    assert CompilePolicy(enabled=False, backend=module_backend, fullgraph=False).to_dict() == {
        "enabled": False, "backend": f"{__name__}:module_backend", "fullgraph": False,
    }
    assert CompilePolicy(options={"t": (1, 2)}).to_dict() == {
        "enabled": True, "options": {"t": {"$tuple": [1, 2]}},
    }


def test_a_backend_name_that_looks_like_a_callable_reference_round_trips() -> None:
    policy = CompilePolicy(backend="odd:name")
    assert CompilePolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


def _local_backend(gm: Any, example_inputs: Any) -> Any:
    return gm.forward


@pytest.mark.parametrize(
    "backend",
    [lambda gm, inputs: gm.forward, BackendClass.__new__.__get__(BackendClass), CallableBackend(),
     torch.nn.Identity()],
    ids=["lambda", "unnamed-method", "instance", "module-instance"],
)
def test_a_callable_backend_that_cannot_be_named_fails_at_to_dict(backend: Any) -> None:
    with pytest.raises(PolicyError, match="cannot be written as policy data.*module:qualname"):
        CompilePolicy(backend=backend).to_dict()


def test_a_renamed_backend_that_imports_as_something_else_fails_at_to_dict() -> None:
    def impostor(gm: Any, example_inputs: Any) -> Any:
        return gm.forward

    impostor.__qualname__ = "module_backend"  # imports back as another function
    with pytest.raises(PolicyError, match="does not import back to itself"):
        CompilePolicy(backend=impostor).to_dict()


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"passes": {"a", "b"}}, "options['passes']"),
        ({"passes": frozenset({1})}, "options['passes']"),
        ({"deep": [1, (2, {3})]}, "options['deep'][1][1]"),
        ({"raw": b"bytes"}, "options['raw']"),
        ({"obj": object()}, "options['obj']"),
        ({"keys": {1: "int key"}}, "options['keys']"),
        ({"dtype": torch.float32}, "options['dtype']"),
        ({"enum": enum.IntEnum("Level", "LOW HIGH").LOW}, "options['enum']"),
        ({"point": collections.namedtuple("Point", "x y")(1, 2)}, "options['point']"),
    ],
)
def test_options_that_json_cannot_carry_fail_at_to_dict_naming_where(
    options: dict[str, object], where: str
) -> None:
    with pytest.raises(PolicyError) as info:
        CompilePolicy(options=options).to_dict()
    assert where in str(info.value) and "allowed values: None, bool, int, float, str" in str(info.value)


def test_from_dict_refuses_unknown_keys_and_non_mappings_with_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"unknown key\(s\) 'backnd', 'extra'; allowed: enabled, backend"):
        CompilePolicy.from_dict({"enabled": True, "backnd": "eager", "extra": 1})
    with pytest.raises(TypeError, match="takes a dict"):
        CompilePolicy.from_dict("on")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"enabled": "yes"}, "enabled='yes' is not allowed"),
        ({"enabled": None}, "enabled=None is not allowed"),
        ({"mode": "fast"}, "mode='fast' is not a torch.compile mode"),
        ({"fullgraph": 1}, "fullgraph=1 is not allowed"),
        ({"fallback": "ignore"}, "fallback='ignore' is not allowed"),
        ({"backend": 3}, "backend=3 is not allowed in policy data"),
        ({"backend": "no_such_module_here:fn"}, "backend='no_such_module_here:fn' in policy data cannot"),
        ({"backend": f"{__name__}:no_such_name"}, "cannot be imported"),
        ({"backend": f"{__name__}:OPTIONS"}, "which is not callable"),
        ({"options": [1]}, "options=\\[1\\] is not allowed in policy data"),
        ({"options": {"a": {"$tuple": 1}}}, "options\\['a'\\]=.* a key starting with '\\$' is a tag"),
        ({"options": {"a": {"$float": "huge"}}}, "options\\['a'\\]"),
    ],
)
def test_from_dict_refuses_bad_values_with_a_policy_error(data: dict[str, object], match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        CompilePolicy.from_dict(data)


# -- COMPILE_POLICY and the pytest option, in fresh processes ------------------------------
ENV_PROBE = """
import json, os, sys
import torch
from compile_policy import PolicyError, compile_enabled, current_policy, explain, policy_compiled
from compile_policy._context import frames as policy_stack

def probe():
    try:
        p = current_policy()
    except PolicyError as error:
        return {"error": str(error)}
    step = policy_compiled(lambda x: x * 2)
    step(torch.ones(2))  # no scope: the process default's fields alone
    with compile_enabled(dynamic=False):  # a scope sets one field and inherits the rest
        step(torch.ones(2))
    keys = [key._asdict() for key in step.stats().variants]
    return {"policy": repr(p), "explain": explain(), "keys": keys}

results = [probe()]  # the first read of the environment, in a fresh process
for case in json.loads(sys.argv[1]):  # later cases: a new environment, read anew
    os.environ.pop("TORCH_COMPILE_DISABLE", None)
    os.environ.update(case)
    policy_stack.reread_default()
    results.append(probe())
print(json.dumps(results, default=repr))
"""


def test_compile_policy_env_var_takes_the_whole_grammar() -> None:
    later = [
        {"COMPILE_POLICY": "max-autotune", "TORCH_COMPILE_DISABLE": "1"},
        {"COMPILE_POLICY": "on,options=1"},
        {"COMPILE_POLICY": "on,fullgraph=sometimes"},
    ]
    result = run_fresh(
        [sys.executable, "-c", textwrap.dedent(ENV_PROBE), json.dumps(later)],
        env={"COMPILE_POLICY": " on, backend=eager, fullgraph=true, fallback=raise"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, disabled, options, bad = json.loads(result.stdout)
    assert first["policy"] == (
        "CompilePolicy(enabled=True, backend='eager', fullgraph=True, fallback='raise')"
    )
    assert ("process default at environment COMPILE_POLICY=' on, backend=eager, fullgraph=true, "
            "fallback=raise': enabled=True, backend='eager', fullgraph=True, fallback='raise'"
            in first["explain"])
    assert [(k["backend"], k["fullgraph"], k["dynamic"]) for k in first["keys"]] == [
        ("eager", True, None), ("eager", True, False),
    ]
    assert disabled["policy"] == "CompilePolicy(enabled=False, mode='max-autotune')"
    assert "COMPILE_POLICY='max-autotune', TORCH_COMPILE_DISABLE='1'" in disabled["explain"]
    assert disabled["keys"] == [] or all(k["mode"] == "max-autotune" for k in disabled["keys"])
    for case in (options, bad):
        assert case["error"].startswith("environment variable COMPILE_POLICY='on,")
    assert "options cannot be given in text" in options["error"]
    assert "fullgraph='sometimes' is not allowed" in bad["error"]


PLUGIN_PROBE = """
from compile_policy import current_policy

def test_probe():
    print("POLICY", repr(current_policy()))
"""


def test_pytest_option_and_ini_take_the_whole_grammar(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=PLUGIN_PROBE)
    pytester.makeini("[pytest]\ncompile_policy = max-autotune, dynamic=false\n")
    runs = {
        "ini": pytester.runpytest_subprocess("-s", "-p", "no:xdist"),
        "option": pytester.runpytest_subprocess(
            "-s", "-p", "no:xdist", "--compile-policy=on,backend=aot_eager,fallback=raise"
        ),
        "bad": pytester.runpytest_subprocess("-p", "no:xdist", "--compile-policy=on,backend=x,oops"),
    }
    seen = {name: [line[line.index("POLICY"):] for line in run.outlines if "POLICY" in line]
            for name, run in runs.items()}
    assert seen["ini"] == ["POLICY CompilePolicy(enabled=True, mode='max-autotune', dynamic=False)"]
    assert seen["option"] == [
        "POLICY CompilePolicy(enabled=True, backend='aot_eager', fallback='raise')"
    ]
    runs["option"].stdout.fnmatch_lines(["compile-policy: baseline on (from pytest option "
                                         "--compile-policy=on,backend=aot_eager,fallback=raise)*"])
    assert runs["bad"].ret == pytest.ExitCode.USAGE_ERROR
    runs["bad"].stderr.fnmatch_lines(
        ["*'on,backend=x,oops' is not a compile policy: 'oops' is not a key=value*"]
    )


def test_a_bad_pytest_option_or_ini_of_5_mb_is_one_short_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=PLUGIN_PROBE)
    results = [
        pytester.runpytest("-p", "no:xdist", f"--compile-policy={FIVE_MB}"),
        pytester.runpytest("-p", "no:xdist", f"--compile-policy=both,{FIVE_MB}"),
        pytester.runpytest("-p", "no:xdist", f"--compile-policy-reset={FIVE_MB}"),
    ]
    pytester.makeini(f"[pytest]\ncompile_policy = on,backend=eager,{FIVE_MB}\n")
    results.append(pytester.runpytest("-p", "no:xdist"))
    for result in results:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        [line] = [line for line in result.errlines if "compile-policy" in line]
        assert len(line) < 600 and "chars)" in line and "allowed" in line, line[:1000]


# -- compile_seconds -----------------------------------------------------------------------
SLEEP = 0.2


def sleeping_backend(gm: Any, example_inputs: Any) -> Any:
    time.sleep(SLEEP)
    return gm.forward


def failing_sleeping_backend(gm: Any, example_inputs: Any) -> Any:
    time.sleep(SLEEP)
    raise RuntimeError("told to fail after compiling a while")


def test_compile_seconds_sums_the_backends_compile_time_and_not_warm_calls() -> None:
    def two_graphs(x: torch.Tensor) -> torch.Tensor:
        y = x + 1
        torch._dynamo.graph_break()
        return y * 2

    step = policy_compiled(two_graphs, backend=sleeping_backend)
    assert step.stats().compile_seconds == 0.0
    x = torch.ones(2)
    step(x)
    first = step.stats()
    assert first.graphs_compiled == 2 and first.compile_seconds >= 2 * SLEEP
    step(x)
    step(x)
    assert step.stats().compile_seconds == first.compile_seconds  # warm calls compile nothing
    assert dict(first.variant_compile_seconds) == {first.variants[0]: first.compile_seconds}
    with compile_enabled(backend="eager"):  # another variant of the same object adds its own
        step(x)
    later = step.stats()
    assert later.compile_seconds == pytest.approx(sum(later.variant_compile_seconds.values()))
    assert later.variant_compile_seconds[first.variants[0]] == first.compile_seconds
    assert len(later.variant_compile_seconds) == 2


def test_compile_seconds_counts_a_failed_compile_too() -> None:
    step = policy_compiled(lambda x: x + 1, backend=failing_sleeping_backend)
    with pytest.warns(match="compile failed"):
        step(torch.ones(2))
    stats = step.stats()
    assert stats.fallback_calls == 1 and stats.graphs_compiled == 0
    assert stats.compile_seconds >= SLEEP
