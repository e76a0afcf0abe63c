"""Policies are values, stacks may be deep, and the environment is read as torch reads it."""

from __future__ import annotations

import ast
import collections
import contextlib
import copy
import pickle
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from compile_policy import (
    CompilePolicy,
    compile_disabled,
    compile_enabled,
    current_policy,
    explain,
    policy_compiled,
    use_policy,
)
from conftest import CountingBackend, run_fresh

# -- item 9: options are values --------------------------------------------------------------


def test_nested_option_values_are_frozen_when_the_policy_is_made() -> None:
    passes, inner = ["a"], {"depth": [1]}
    policy = CompilePolicy(options={"passes": passes, "inner": inner})
    scope = compile_enabled(options={"passes": passes})
    passes.append("b")
    inner["depth"].append(2)
    inner["new"] = True
    assert policy.options == {"passes": ["a"], "inner": {"depth": [1]}}
    assert scope.policy.options["passes"] == ["a"]
    # What a read returns is a fresh copy, of the type that was passed.
    read = policy.options["passes"]
    read.append("c")
    assert policy.options["passes"] == ["a"] and isinstance(read, list)
    with pytest.raises(TypeError):
        policy.options["passes"] = []  # type: ignore[index]


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, True), (1, 1.0), (True, 1.0), (0, False), ([1, 2], (1, 2)), ({1}, frozenset({1})),
     ({"a": 1}, {"a": True}), ([[1]], [(1,)]), ("1", 1), (None, 0)],
)
def test_values_equal_only_without_their_types_are_different_policies(
    one: object, other: object
) -> None:
    a, b = CompilePolicy(options={"x": one}), CompilePolicy(options={"x": other})
    assert a != b
    assert a.options != b.options
    assert CompilePolicy(options={"x": copy.deepcopy(one)}) == a


class _Unhashable:
    """Unhashable, with one repr for every instance (as the issue saw collide)."""

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<same>"


def test_unhashable_values_with_the_same_repr_are_different_keys() -> None:
    first, second = _Unhashable(), _Unhashable()
    assert CompilePolicy(options={"x": first}) != CompilePolicy(options={"x": second})
    assert CompilePolicy(options={"x": first}) == CompilePolicy(options={"x": first})
    assert CompilePolicy(options={"x": first}).options["x"] is first  # used as it is


class _OptionsBackend(CountingBackend):
    """A counting backend that takes options (torch passes them as keyword arguments)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[object] = []

    def __call__(self, gm: Any, example_inputs: Any, options: dict[str, Any] | None = None) -> Any:
        self.seen.append((options or {}).get("some_option"))
        return super().__call__(gm, example_inputs)


@pytest.mark.needs_torch("isolation")
def test_each_typed_option_value_builds_its_own_variant() -> None:
    import torch

    backend = _OptionsBackend()
    step = policy_compiled(lambda t: t + 1, backend=backend)
    x = torch.ones(2)
    values: list[object] = [1, True, 1.0, [1], (1,), 1, [1]]
    for value in values:
        with compile_enabled(options={"some_option": value}):
            assert torch.equal(step(x), x + 1)
    assert len(step.stats().variants) == 5
    assert backend.compiles == 5
    # The backend gets each value with its own type, as the user passed it.
    assert [type(v) for v in backend.seen] == [int, bool, float, list, tuple]


def test_equal_policies_hash_equal_and_policies_with_options_pickle_and_copy() -> None:
    def make() -> CompilePolicy:
        return CompilePolicy(
            enabled=False, backend="eager", fallback="raise",
            options={"b": {"k": [1, (2, 3)]}, "a": {4, 5}, "c": collections.OrderedDict(z=1)},
        )

    policy = make()
    assert policy == make() and hash(policy) == hash(make())
    assert len({policy, make(), CompilePolicy()}) == 2
    for clone in (pickle.loads(pickle.dumps(policy)), copy.deepcopy(policy), copy.copy(policy)):
        assert clone == policy and hash(clone) == hash(policy)
        assert clone.options["b"] == {"k": [1, (2, 3)]}
        assert isinstance(clone.options["b"]["k"][1], tuple)
    # Named tuples keep their type; insertion order does not make a different policy.
    point = collections.namedtuple("point", "x y")
    assert isinstance(CompilePolicy(options={"p": point(1, 2)}).options["p"], point)
    assert CompilePolicy(options={"a": 1, "b": 2}) == CompilePolicy(options={"b": 2, "a": 1})


def test_a_policy_with_options_reaches_a_spawned_worker() -> None:
    import multiprocessing

    policy = CompilePolicy(backend="eager", options={"passes": ["a", "b"]})
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        assert pool.apply(copy.deepcopy, (policy,)) == policy


def test_a_backend_without_hash_still_makes_a_hashable_policy() -> None:
    class Backend:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, gm: object, example_inputs: object) -> object:
            return gm

    backend = Backend()
    assert hash(CompilePolicy(backend=backend)) == hash(CompilePolicy(backend=backend))
    assert CompilePolicy(backend=backend) != CompilePolicy(backend=Backend())


# -- item 8: deep stacks ---------------------------------------------------------------------


def test_ten_thousand_nested_scopes_work() -> None:
    import torch

    counting = _OptionsBackend()
    step = policy_compiled(lambda t: t * 2, backend=counting)
    x = torch.ones(2)
    with contextlib.ExitStack() as stack:
        for level in range(10_000):
            if level % 3 == 0:
                stack.enter_context(compile_enabled(backend=counting, fallback="raise"))
            elif level % 3 == 1:
                stack.enter_context(compile_disabled())
            else:
                stack.enter_context(use_policy(CompilePolicy(options={"level": level})))
        stack.enter_context(compile_enabled())
        policy = current_policy()
        assert policy.enabled and policy.fallback == "raise"
        assert policy.options == {"level": 9_998}
        assert len(explain().splitlines()) == 10_003
        assert torch.equal(step(x), x * 2)
    assert current_policy() == CompilePolicy()
    assert step.stats().compiled_calls == 1


def test_deep_recursion_with_one_scope_per_level(counting: CountingBackend) -> None:
    import torch

    step = policy_compiled(lambda t: t - 1, backend=counting)
    x = torch.ones(2)
    depth = sys.getrecursionlimit() - 150  # leaves room for pytest's own frames

    def recurse(n: int) -> object:
        scope = compile_disabled() if n % 2 else compile_enabled(dynamic=False)
        with scope:
            if n:
                return recurse(n - 1)
            return current_policy(), explain(), step(x)

    policy, text, out = recurse(depth)
    assert isinstance(policy, CompilePolicy) and policy.dynamic is False
    assert len(text.splitlines()) == depth + 3  # type: ignore[attr-defined]
    assert torch.equal(out, x - 1)  # type: ignore[arg-type]


# -- item 12: TORCH_COMPILE_DISABLE as torch reads it -----------------------------------------


def _torch_disables(environ: dict[str, str]) -> bool:
    """torch's own decision: the expression torch/_dynamo/config.py assigns to ``disable``,
    evaluated over ``environ`` (torch reads it once, at import, so not re-importable)."""
    import importlib.util

    spec = importlib.util.find_spec("torch._dynamo.config")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and [getattr(t, "id", None) for t in node.targets] == ["disable"]]
    fake_os = types.SimpleNamespace(environ=environ)
    return bool(eval(compile(ast.Expression(value), "torch/_dynamo/config.py", "eval"),
                     {"os": fake_os}))


def test_torch_compile_disable_disables_exactly_when_torch_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from compile_policy._context import frames as policy_stack

    values = ["1", "0", "true", "True", "TRUE", "yes", "on", " 1", "1 ", "", "2", "off", "01"]
    monkeypatch.delenv("COMPILE_POLICY", raising=False)
    try:
        decisions = {}
        for value in values:
            monkeypatch.setenv("TORCH_COMPILE_DISABLE", value)
            policy_stack.reread_default()
            ours = policy_stack.default_frame().enabled  # never a PolicyError: torch has none
            assert ours is not _torch_disables({"TORCH_COMPILE_DISABLE": value}), value
            assert f"TORCH_COMPILE_DISABLE={value!r}" in policy_stack.default_frame().describe()
            decisions[value] = ours
        assert [value for value, enabled in decisions.items() if not enabled] == ["1"]
        monkeypatch.delenv("TORCH_COMPILE_DISABLE")
        assert _torch_disables({}) is False
    finally:
        monkeypatch.undo()
        policy_stack.reread_default()  # this process's own environment again


def test_torch_compile_disable_in_a_fresh_process_matches_torch() -> None:
    code = textwrap.dedent(
        """
        from compile_policy import current_policy
        import torch._dynamo.config as config
        print(current_policy().enabled, not config.disable)
        """
    )
    for value in ("1", "true"):
        done = run_fresh([sys.executable, "-c", code], env={"TORCH_COMPILE_DISABLE": value})
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str(value != "1")] * 2
