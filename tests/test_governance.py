"""govern_torch_compile(): scopes that govern plain torch.compile code, per thread and task.

Governance is process-wide once installed. So that these tests never change how the other
tests of the same xdist worker behave, every test that installs it does so through the
``governed`` fixture, which puts torch's own objects back afterwards (a private uninstall
that only tests use) unless the whole run was started governed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch._dynamo.eval_frame as eval_frame

import compile_policy
import compile_policy._governance.torch_internals
from compile_policy import (
    CompilePolicy,
    PolicyError,
    TorchInternalsError,
    compile_disabled,
    compile_enabled,
    explain,
    govern_torch_compile,
    policy_compiled,
)
from compile_policy._base import torch_releases
from compile_policy._governance import install as governance
from compile_policy._governance.shortcut import SHORTCUT_FILE
from conftest import CountingBackend, run_fresh

RECOMPILE_REFUSED = "Detected recompile when torch.compile stance is 'fail_on_recompile'"


class WhoRan(CountingBackend):
    """A counting backend that also counts graph runs per thread and per asyncio task."""

    def __init__(self) -> None:
        super().__init__()
        self.by_runner: Counter[str] = Counter()

    def __call__(self, gm: Any, example_inputs: Any) -> Any:
        run = super().__call__(gm, example_inputs)

        def counted(*args: Any) -> Any:
            task = _current_task()
            self.by_runner[task.get_name() if task else threading.current_thread().name] += 1
            return run(*args)

        return counted


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


@pytest.fixture
def governed() -> Iterator[None]:
    was_governed = governance.is_governed()  # e.g. a run with --compile-policy-govern-torch
    govern_torch_compile()
    try:
        yield
    finally:
        assert eval_frame._stance.real.stance == "default", "a test left a set_stance behind"
        if not was_governed:
            governance._uninstall()


def ones(*shape: int) -> torch.Tensor:
    return torch.ones(*shape)


# -- the install ---------------------------------------------------------------------------
def test_torch_internals_are_what_governance_relies_on() -> None:
    # Fails loudly when a torch upgrade changes them: read the message, then adapt
    # _governance/install.py and torch_internals.py. A governed run checks torch's own objects too.
    installed = governance._uninstall()
    try:
        compile_policy._governance.torch_internals.check_torch_internals()
    finally:
        if installed is not None:
            governance._reinstall(installed)


def test_install_is_idempotent_and_swaps_the_stance_and_both_set_stance_names(governed: None) -> None:
    proxy = eval_frame._stance
    govern_torch_compile()
    assert eval_frame._stance is proxy and type(proxy).__name__ == "_GovernedStance"
    import torch._dynamo.decorators as decorators

    assert decorators._set_stance is eval_frame._set_stance
    assert governance.is_governed()
    plain = lambda t: t  # noqa: E731
    compiled = torch.compile(plain)
    assert compiled.__wrapped__ is plain and compiled._torchdynamo_orig_callable is plain  # type: ignore[attr-defined]
    assert eval_frame.innermost_fn(compiled) is plain


@pytest.mark.parametrize("breakage", ["reader", "stance type", "held elsewhere"])
def test_install_refuses_naming_torch_version_and_what_differs_changing_nothing(
    breakage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if governance.is_governed():
        pytest.skip("this run is governed as a whole")
    if breakage == "reader":
        reads_nothing = types.FunctionType((lambda callback: callback).__code__, vars(eval_frame))
        monkeypatch.setattr(eval_frame, "_callback_from_stance", reads_nothing)
        missing = "eval_frame._callback_from_stance no longer reads the global(s) _stance"
    elif breakage == "stance type":
        monkeypatch.setattr(eval_frame, "_stance", types.SimpleNamespace(stance="default"))
        missing = "eval_frame._stance is not a DynamoStance"
    else:
        holder = types.ModuleType("someone_elses_module")
        holder._stance = eval_frame._stance  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "someone_elses_module", holder)
        missing = "module someone_elses_module holds eval_frame._stance by name"
    before = (eval_frame._stance, eval_frame._set_stance)
    with pytest.raises(TorchInternalsError) as info:
        govern_torch_compile()
    assert f"torch {torch.__version__}" in str(info.value)
    assert f"supports, {torch_releases.supported_text()}" in str(info.value)
    assert missing in str(info.value)
    assert (eval_frame._stance, eval_frame._set_stance) == before
    assert not governance.is_governed()


def test_explain_says_whether_governance_is_on(governed: None) -> None:
    assert "govern_torch_compile() is on" in explain().splitlines()[0]


class Doubler(torch.nn.Module):
    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * 2


# -- disabled contexts run every torch.compile'd function eagerly --------------------------
def test_two_threads_at_once_only_the_disabled_one_runs_eagerly(governed: None) -> None:
    backend = WhoRan()
    fn = torch.compile(lambda t: t * 2, backend=backend)
    fn(ones(3))  # warm, in the main thread
    together = threading.Barrier(2)

    def calls(disabled: bool) -> None:
        scope = compile_disabled() if disabled else compile_enabled()
        with scope:
            for _ in range(50):
                together.wait()  # each call of one thread overlaps one of the other
                fn(ones(3))

    threads = [threading.Thread(target=calls, args=(d,), name=f"disabled={d}") for d in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.by_runner == {"MainThread": 1, "disabled=False": 50}
    assert backend.compiles == 1


def test_asyncio_tasks_interleave_and_children_inherit_the_scope(governed: None) -> None:
    backend = WhoRan()
    fn = torch.compile(lambda t: t + 1, backend=backend)

    async def child() -> None:
        fn(ones(3))

    async def worker(disabled: bool) -> None:
        scope = compile_disabled() if disabled else compile_enabled()
        with scope:
            for _ in range(5):
                fn(ones(3))
                await asyncio.sleep(0)  # let the other tasks run in between
            await asyncio.create_task(child(), name=f"child of {asyncio.current_task().get_name()}")  # type: ignore[union-attr]

    async def main() -> None:
        await asyncio.gather(*(
            asyncio.create_task(worker(n % 2 == 0), name=f"task{n}") for n in range(4)
        ))

    asyncio.run(main())
    assert backend.by_runner == {"task1": 5, "task3": 5, "child of task1": 1, "child of task3": 1}
    assert backend.compiles == 1


def test_a_warm_function_disabled_then_enabled_again_does_not_recompile(
    governed: None, counting: CountingBackend
) -> None:
    fn = torch.compile(lambda t: t.sin(), backend=counting)
    fn(ones(3))
    with compile_disabled():
        fn(ones(3))
        fn(ones(4))  # a new shape: no recompile either
    fn(ones(3))
    assert (counting.compiles, counting.runs) == (1, 2)


def test_a_cold_function_under_a_disabled_scope_is_not_compiled(
    governed: None, counting: CountingBackend
) -> None:
    fn = torch.compile(lambda t: t.cos(), backend=counting)
    with compile_disabled():
        assert torch.equal(fn(ones(3)), ones(3).cos())
    assert (counting.compiles, counting.runs) == (0, 0)
    fn(ones(3))
    assert (counting.compiles, counting.runs) == (1, 1)


def _positional(top: Any, fn: Any, b: Any, /) -> Any:  # names the shortcut uses itself
    return top + fn * b


def _keywords(a: Any, b: Any, c: Any = 2, *, d: Any = 1) -> Any:
    return a + b * c + d


class _Holder:
    def scale(self, a: Any, b: Any) -> Any:
        return a * b + 1


@pytest.mark.parametrize(
    ("function", "args", "kwargs"),
    [
        (lambda a, b: a - b, (ones(2),), {"b": ones(2) * 3}),  # its own parameter list
        (lambda a, /, b: a - b, (ones(2), ones(2) * 3), {}),  # positional-only
        (_positional, (ones(2), ones(2), ones(2) * 2), {}),  # a reserved name: generic
        (_keywords, (ones(2),), {"b": ones(2), "d": ones(2)}),  # defaults, keyword-only
        (_Holder().scale, (ones(2),), {"b": ones(2) * 3}),  # a bound method: without self
    ],
    ids=["plain", "positional-only", "reserved-names", "defaults", "bound-method"],
)
def test_the_shortcut_takes_every_call_the_function_takes_in_both_contexts(
    governed: None, counting: CountingBackend, function: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any]
) -> None:
    fn = torch.compile(function, backend=counting)
    expected = function(*args, **kwargs)
    assert torch.equal(fn(*args, **kwargs), expected)
    with compile_disabled():
        assert torch.equal(fn(*args, **kwargs), expected)
        with pytest.raises(TypeError):  # Python's own error for a wrong call, in both paths
            fn(*args, ones(2), ones(2), ones(2), **kwargs)
    with pytest.raises(TypeError):
        fn(*args, ones(2), ones(2), ones(2), **kwargs)
    assert counting.runs == 1


def test_fullgraph_warm_cold_and_a_new_shape_under_a_disabled_scope_raise_nothing(
    governed: None, counting: CountingBackend
) -> None:
    cold = torch.compile(lambda t: t - 1, backend=counting, fullgraph=True, dynamic=False)
    warm = torch.compile(lambda t: t + 3, backend=counting, fullgraph=True, dynamic=False)
    warm(ones(3))
    with compile_disabled():
        cold(ones(3))  # no "found no compiled frames" error
        warm(ones(3))
        warm(ones(5))  # would be a recompile
    assert (counting.compiles, counting.runs) == (1, 1)
    warm(ones(3))
    assert (counting.compiles, counting.runs) == (1, 2)


@pytest.mark.parametrize("how", ["torch.compile(module)", "module.compile()"])
def test_compiled_modules_run_eagerly_under_a_disabled_scope(
    how: str, governed: None, counting: CountingBackend
) -> None:
    module = Doubler()
    if how == "module.compile()":
        module.compile(backend=counting)
        compiled = module
    else:
        compiled = torch.compile(module, backend=counting)
    compiled(ones(1, 3))
    with compile_disabled():
        compiled(ones(1, 3))
        compiled(ones(4, 3))
    assert (counting.compiles, counting.runs) == (1, 1)


def test_nested_compiled_functions_both_run_eagerly(governed: None, counting: CountingBackend) -> None:
    inner = torch.compile(lambda t: t * 3, backend=counting)
    outer = torch.compile(lambda t: inner(t) + 1, backend=counting)
    inner(ones(2))
    with compile_disabled():
        assert torch.equal(outer(ones(2)), ones(2) * 3 + 1)  # outer is cold, inner warm
    assert (counting.compiles, counting.runs) == (1, 1)
    outer(ones(2))  # enabled: Dynamo traces through inner (inlined into outer's graph)
    assert (counting.compiles, counting.runs) == (2, 2)


@contextlib.contextmanager
def _fullgraph_check_without_stance() -> Iterator[None]:
    """Where compile_wrapper's fullgraph check does not read the stance (torch < 2.13),
    a fullgraph function run eagerly gets torch's own warning, as under
    ``set_stance("force_eager")`` without governance: not ours to turn into an error."""
    import warnings

    with warnings.catch_warnings():
        if "_stance" not in torch_releases.running().compile_wrapper_reads:
            warnings.filterwarnings("ignore", "torch.compile with fullgraph=True found no compiled frames")
        yield


def test_functions_compiled_before_the_install_are_governed_too(counting: CountingBackend) -> None:
    if governance.is_governed():
        pytest.skip("this run is governed as a whole")
    fn = torch.compile(lambda t: t * 11, backend=counting, fullgraph=True)
    fn(ones(2))
    govern_torch_compile()
    try:
        with compile_disabled(), _fullgraph_check_without_stance():
            fn(ones(2))
            fn(ones(3))
        assert (counting.compiles, counting.runs) == (1, 1)
        with compile_enabled(stance="fail_on_recompile"):
            with pytest.raises(RuntimeError, match=RECOMPILE_REFUSED):
                fn(ones(4))
    finally:
        governance._uninstall()


def test_with_the_default_off_plain_torch_compile_runs_eagerly_until_a_scope_enables(
    governed: None, counting: CountingBackend, process_default: Callable[[str], None]
) -> None:
    process_default("off")
    fn = torch.compile(lambda t: t * 5, backend=counting)
    fn(ones(2))
    assert counting.compiles == 0
    with compile_enabled():
        fn(ones(2))
    assert (counting.compiles, counting.runs) == (1, 1)


def test_a_stance_in_the_process_default_applies_where_no_scope_sets_one(
    governed: None, counting: CountingBackend, process_default: Callable[[str], None]
) -> None:
    process_default("on,stance=fail_on_recompile")
    fn = torch.compile(lambda t: t * 6, backend=counting)
    with pytest.raises(RuntimeError, match=RECOMPILE_REFUSED):
        fn(ones(2))
    with compile_enabled(stance="default"):
        fn(ones(2))
    assert counting.compiles == 1


def test_policy_compiled_objects_behave_as_before(governed: None, counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t + 2, backend=counting)
    step(ones(2))
    with compile_disabled():
        step(ones(2))
    stats = step.stats()
    assert (stats.compiled_calls, stats.eager_calls, counting.compiles) == (1, 1, 1)
    # Its variant is torch's own compile_wrapper: the object checks the policy itself.
    [variant] = step._policy_state.by_key.values()  # type: ignore[attr-defined]
    assert variant.compiled.__code__.co_name == "compile_wrapper"


# -- outside disabled scopes torch's process-wide stance applies ----------------------------
def test_set_stance_in_all_its_forms_stays_process_wide_outside_our_scopes(
    governed: None, counting: CountingBackend
) -> None:
    fn = torch.compile(lambda t: t / 2, backend=counting)
    fn(ones(2))  # 1 run

    @torch.compiler.set_stance("force_eager")
    def decorated() -> None:
        fn(ones(2))

    decorated()
    with torch.compiler.set_stance("force_eager"):
        fn(ones(2))
        with compile_enabled():  # no stance field: torch's stance still applies
            fn(ones(2))
        with compile_enabled(stance="default"):  # a scope's stance wins in its context
            fn(ones(2))  # 2 runs
        seen_in_thread = []
        thread = threading.Thread(target=lambda: seen_in_thread.append(eval_frame._stance.stance))
        thread.start()
        thread.join()
        assert seen_in_thread == ["force_eager"]
    torch.compiler.set_stance("force_eager")
    try:
        fn(ones(2))
    finally:
        torch.compiler.set_stance("default")
    fn(ones(2))  # 3 runs
    with torch.compiler.set_stance("eager_on_recompile"):
        fn(ones(7))  # a new shape runs eagerly: no compile
    assert (counting.compiles, counting.runs) == (1, 3)


@pytest.mark.parametrize("where", ["no scope", "compile_enabled()"])
def test_a_context_that_followed_torch_follows_a_later_set_stance(
    governed: None, counting: CountingBackend, where: str
) -> None:
    # Governance remembers the last stack top that follows torch's default stance (one
    # identity test per call); set_stance must make it look again.
    fn = torch.compile(lambda t: t - 3, backend=counting)
    with compile_enabled() if where != "no scope" else contextlib.nullcontext():
        fn(ones(2))
        fn(ones(2))  # remembered
        with torch.compiler.set_stance("eager_on_recompile"):
            fn(ones(9))  # a new shape: eager, no compile
        with torch.compiler.set_stance("force_eager"):
            fn(ones(2))
        fn(ones(2))
    assert (counting.compiles, counting.runs) == (1, 3)


def test_rereading_the_process_default_forgets_what_no_scope_followed(
    governed: None, counting: CountingBackend, process_default: Callable[[str], None]
) -> None:
    fn = torch.compile(lambda t: t * 9, backend=counting)
    fn(ones(2))  # no scope, default on: remembered
    process_default("off")
    fn(ones(2))
    fn(ones(5))
    assert (counting.compiles, counting.runs) == (1, 1)
    process_default("on")
    fn(ones(2))
    assert (counting.compiles, counting.runs) == (1, 2)


def test_a_reread_while_a_call_decides_is_not_remembered_as_the_old_default(
    governed: None, counting: CountingBackend, process_default: Callable[[str], None]
) -> None:
    # Another thread's reread_default() landing between a call's read of the process default
    # and its store of "no scope follows torch", made deterministic: torch's stance name runs
    # the reread when the call compares it with "default".
    fn = torch.compile(lambda t: t + 11, backend=counting)
    fn(ones(2))

    class RereadOnCompare(str):
        armed = False

        def __eq__(self, other: object) -> bool:
            if RereadOnCompare.armed:
                RereadOnCompare.armed = False
                process_default("off")
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    prior = eval_frame._set_stance(eval_frame.DynamoStance(RereadOnCompare("default")))
    try:
        RereadOnCompare.armed = True
        fn(ones(2))  # decided with the old default; the reread lands before its store
        runs = counting.runs
        fn(ones(2))
        fn(ones(5))
        assert (counting.compiles, counting.runs) == (1, runs)  # the new default: off
    finally:
        eval_frame._set_stance(prior)


def test_torch_dynamo_reset_keeps_governance(governed: None, counting: CountingBackend) -> None:
    fn = torch.compile(lambda t: t * 7, backend=counting)
    fn(ones(2))
    torch._dynamo.reset()
    assert governance.is_governed() and type(eval_frame._stance).__name__ == "_GovernedStance"
    with compile_disabled():
        fn(ones(2))
    assert counting.compiles == 1
    fn(ones(2))  # the cache was reset: compiles again
    assert (counting.compiles, counting.runs) == (2, 2)


def test_a_disabled_block_in_a_compiled_function_adds_no_graph_break_of_ours(
    governed: None, counting: CountingBackend
) -> None:
    import torch._dynamo.utils as dynamo_utils

    inner = torch.compile(lambda t: t.sin() + 1, backend=counting)
    plain = inner._torchdynamo_orig_callable  # type: ignore[attr-defined]

    def outer_of(callee: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def outer(t: torch.Tensor) -> torch.Tensor:
            t = t * 2
            with compile_disabled():
                t = callee(t)
            return t + 1
        return outer

    reasons = []
    for callee in (plain, inner):  # the same code calling the plain function, then governed
        torch._dynamo.reset()
        out = torch.compile(outer_of(callee), backend="eager")(ones(3))  # warnings are errors
        assert torch.equal(out, (ones(3) * 2).sin() + 2)
        reasons.append(sorted(dynamo_utils.counters["graph_break"]))
    assert reasons[1] == reasons[0]  # nothing of the shortcut's: its frames are Dynamo-free
    assert counting.compiles == 0  # the disabled block ran `inner` eagerly


def test_set_stance_in_another_thread_never_makes_a_governed_call_raise(governed: None) -> None:
    fn = torch.compile(lambda t: t + 1, backend="eager")
    fn(ones(2))
    errors: list[BaseException] = []
    done = threading.Event()

    def set_stances() -> None:
        while not done.is_set():  # two stances but the default: every call reads torch's
            for stance in ("eager_on_recompile", "fail_on_recompile"):
                torch.compiler.set_stance(stance)

    def call() -> None:
        # Warm calls (neither stance recompiles them), half a second: before the fix, one run
        # in a few raised (the test above shows the same deterministically).
        deadline = time.monotonic() + 0.5
        try:
            while time.monotonic() < deadline and not errors:
                fn(ones(2))
        except BaseException as error:  # reported below
            errors.append(error)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # many thread switches per call (found the bug in <1 s)
    setter = threading.Thread(target=set_stances)
    callers = [threading.Thread(target=call) for _ in range(2)]
    try:
        setter.start()
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join()
    finally:
        done.set()
        setter.join()
        sys.setswitchinterval(switch)
        torch.compiler.set_stance("default")
    assert errors == []


def test_a_call_decides_with_the_stance_it_read_when_set_stance_lands_meanwhile(
    governed: None, counting: CountingBackend
) -> None:
    fn = torch.compile(lambda t: t + 2, backend=counting)
    fn(ones(2))

    class SetStanceOnCompare(str):
        """A stance whose first comparison runs another thread's set_stance("default")."""

        armed = False

        def __eq__(self, other: object) -> bool:
            if SetStanceOnCompare.armed:
                SetStanceOnCompare.armed = False
                eval_frame._set_stance(eval_frame.DynamoStance())
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    prior = eval_frame._set_stance(eval_frame.DynamoStance(SetStanceOnCompare("force_eager")))
    try:
        SetStanceOnCompare.armed = True
        fn(ones(2))  # torch's branches, tested one by one, all see force_eager: eager
        assert counting.runs == 1 and eval_frame._stance.real.stance == "default"
        fn(ones(2))  # the next call reads the new stance
        assert counting.runs == 2
    finally:
        eval_frame._set_stance(prior)
        torch.compiler.set_stance("default")


def test_a_stance_in_compile_policy_lets_governance_install(monkeypatch: pytest.MonkeyPatch) -> None:
    if governance.is_governed():
        pytest.skip("this run is governed as a whole")
    monkeypatch.setenv("COMPILE_POLICY", "on,stance=fail_on_recompile")
    compile_policy._context.frames.reread_default()
    try:
        govern_torch_compile()
        assert compile_policy.current_policy().stance == "fail_on_recompile"
        assert eval_frame._stance.stance == "fail_on_recompile"
    finally:
        governance._uninstall()
        monkeypatch.delenv("COMPILE_POLICY")
        compile_policy._context.frames.reread_default()


def test_a_bad_compile_policy_refuses_the_install_changing_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    if governance.is_governed():
        pytest.skip("this run is governed as a whole")
    monkeypatch.setenv("COMPILE_POLICY", "on,stance=bogus")
    compile_policy._context.frames.reread_default()
    try:
        with pytest.raises(PolicyError, match="bogus"):
            govern_torch_compile()
        assert not governance.is_governed() and type(eval_frame._stance) is eval_frame.DynamoStance
    finally:
        monkeypatch.delenv("COMPILE_POLICY")
        compile_policy._context.frames.reread_default()


@pytest.mark.parametrize("how", ["torch.compile(fn)", "torch.compile(module)", "module.compile()"])
def test_compile_stats_counts_compiled_and_eager_calls_of_plain_torch_compile(
    governed: None, counting: CountingBackend, how: str
) -> None:
    obj: Any
    if how == "torch.compile(fn)":
        obj = torch.compile(lambda t: t + 3, backend=counting)
    else:
        module = torch.nn.Linear(2, 2)
        obj = torch.compile(module, backend=counting) if how == "torch.compile(module)" else module
        if how == "module.compile()":
            module.compile(backend=counting)
    obj(ones(2))
    runs = counting.runs
    with compile_disabled():
        obj(ones(2))
        obj(ones(2))
    stats = compile_policy.compile_stats(obj)
    assert (stats.compiled_calls, stats.eager_calls, counting.runs) == (1, 2, runs)


def test_compile_stats_refuses_what_was_compiled_before_the_install(counting: CountingBackend) -> None:
    if governance.is_governed():
        pytest.skip("this run is governed as a whole")
    fn = torch.compile(lambda t: t + 3, backend=counting)
    with pytest.raises(TypeError, match=r"once govern_torch_compile\(\) is on"):
        compile_policy.compile_stats(fn)


# -- stance: a context-local set_stance ----------------------------------------------------
def test_fail_on_recompile_raises_in_its_own_context_only(
    governed: None, counting: CountingBackend
) -> None:
    fn = torch.compile(lambda t: t + 4, backend=counting, dynamic=False)
    fn(ones(2))
    other_thread_may: list[torch.Tensor] = []
    with compile_enabled(stance="fail_on_recompile"):
        fn(ones(2))  # cached: fine
        thread = threading.Thread(target=lambda: other_thread_may.append(fn(ones(6))))
        thread.start()
        thread.join()
        with pytest.raises(RuntimeError, match=RECOMPILE_REFUSED):
            fn(ones(5))
    assert len(other_thread_may) == 1 and counting.compiles == 2
    fn(ones(5))
    assert counting.compiles == 3


def test_fail_on_recompile_on_policy_compiled_propagates_and_records_no_failure(
    governed: None, counting: CountingBackend
) -> None:
    step = policy_compiled(lambda t: t * 9, backend=counting, dynamic=False)
    with compile_enabled(stance="fail_on_recompile"):
        with pytest.raises(RuntimeError, match=RECOMPILE_REFUSED):
            step(ones(2))  # torch 2.13 refuses a cold function's first compile too
    step(ones(2))
    with compile_enabled(stance="fail_on_recompile"):
        step(ones(2))
        with pytest.raises(RuntimeError, match=RECOMPILE_REFUSED):
            step(ones(3))
    stats = step.stats()
    assert (stats.failures, stats.fallback_calls, len(stats.variants)) == ((), 0, 1)
    step(ones(3))  # the object compiles as usual after the scope
    assert step.stats().compiled_calls == 3


def test_stance_is_never_part_of_a_variants_key(governed: None, counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t - 9, backend=counting)
    step(ones(2))
    for stance in ("eager_on_recompile", "fail_on_recompile", "default"):
        with compile_enabled(stance=stance):
            step(ones(2))
    stats = step.stats()
    assert (len(stats.variants), stats.graphs_compiled, stats.compiled_calls) == (1, 1, 4)


def test_eager_on_recompile_on_policy_compiled_counts_a_skip_without_warning(
    governed: None, counting: CountingBackend
) -> None:
    step = policy_compiled(lambda t: t * 8, backend=counting, dynamic=False)
    step(ones(2))
    with compile_enabled(stance="eager_on_recompile"):
        assert torch.equal(step(ones(3)), ones(3) * 8)  # filterwarnings=error: no warning
    stats = step.stats()
    assert (stats.skipped_calls, stats.failures, counting.compiles) == (1, (), 1)


@pytest.mark.parametrize(
    ("stance", "hint"),
    [("force_eager", "use compile_disabled()"), ("eager", "'fail_on_recompile'"), (1, "'default'")],
)
def test_bad_stance_is_a_policy_error_at_scope_creation(stance: object, hint: str) -> None:
    for make in (lambda: compile_enabled(stance=stance), lambda: CompilePolicy(stance=stance)):  # type: ignore[arg-type]
        with pytest.raises(PolicyError, match=repr(stance)) as info:
            make()
        assert hint in str(info.value)


def test_entering_a_stance_scope_before_governance_says_to_call_it() -> None:
    if governance.is_governed():
        pytest.skip("this run is governed as a whole")
    scope = compile_enabled(stance="fail_on_recompile")  # making it is fine
    with pytest.raises(PolicyError, match=r"call compile_policy.govern_torch_compile\(\)"):
        with scope:
            pass
    assert compile_policy.current_policy().stance is None


# -- the pytest plugin and a fresh interpreter ---------------------------------------------
def stance_probe(baseline_stance: str) -> str:
    """A test file: a marked test sees the marker's stance, an unmarked one the baseline's."""
    return f"""
import pytest, torch
import torch._dynamo.eval_frame as eval_frame

@pytest.mark.compile_enabled(stance="fail_on_recompile")
def test_marker_stance():
    assert eval_frame._stance.stance == "fail_on_recompile"

def test_baseline_stance():
    assert eval_frame._stance.stance == {baseline_stance!r}
"""


def test_plugin_ini_governs_plain_torch_compile(pytester: pytest.Pytester) -> None:
    was_governed = governance.is_governed()
    pytester.makepyfile(test_probe=stance_probe("eager_on_recompile"))
    pytester.makeini(
        "[pytest]\ncompile_policy = on,stance=eager_on_recompile\ncompile_policy_govern_torch = true\n"
    )
    try:
        pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=2)
    finally:
        if not was_governed:
            governance._uninstall()  # the inner run governed this process


def test_plugin_flag_governs_on_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe=stance_probe("force_eager"))  # the baseline is off
    result = pytester.runpytest_subprocess("-n", "1", "--compile-policy=off", "--compile-policy-govern-torch")
    result.assert_outcomes(passed=2)


def test_without_governance_plain_torch_compile_is_untouched_in_a_fresh_interpreter() -> None:
    code = """
    import sys
    import compile_policy
    from compile_policy import compile_disabled, explain
    assert "torch" not in sys.modules, "importing compile_policy imported torch"
    import torch
    import torch._dynamo.eval_frame as eval_frame
    runs = []
    def backend(gm, example_inputs):
        return lambda *args: runs.append(1) or gm.forward(*args)
    fn = torch.compile(lambda t: t + 1, backend=backend, fullgraph=True)
    with compile_disabled():
        fn(torch.ones(2))
    assert runs == [1], runs
    assert type(eval_frame._stance) is eval_frame.DynamoStance
    assert "govern_torch_compile() is off" in explain()
    print("UNTOUCHED")
    """
    result = run_fresh(
        [sys.executable, "-c", textwrap.dedent(code)], env={"COMPILE_POLICY": "off"}, timeout=120
    )
    assert "UNTOUCHED" in result.stdout, result.stderr


def test_generated_frames_show_their_source_and_warnings_skip_them(governed: None) -> None:
    from compile_policy._compiled import compile_failures, hot_path

    generated = (hot_path.HOT_PATH_FILE.format(" (x)"), SHORTCUT_FILE.format("x"))
    assert all(name.startswith(compile_failures.GENERATED_PREFIXES) for name in generated)

    def fails(t: torch.Tensor) -> torch.Tensor:
        raise ValueError("the user's own error")

    fn = torch.compile(fails, backend="eager")
    with compile_disabled(), pytest.raises(ValueError) as caught:
        fn(ones(1))
    [shortcut] = [e for e in caught.traceback if str(e.path).startswith("<governed torch.compile")]
    assert "return fn(t)" in str(shortcut.statement)  # the line, from linecache
