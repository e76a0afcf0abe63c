"""Issue 13, the compiled-object side: what an adversarial read broke, pinned down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import warnings
import weakref
from typing import Any

import pytest
import torch

from compile_policy import (
    CompileFallbackWarning,
    CompileSkippedWarning,
    compile_enabled,
    compile_stats,
    policy_compiled,
)
from compile_policy._base import torch_releases
from conftest import CountingBackend

X = torch.ones(4)


def _plain(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) * 2 + 1


# -- 1. inside an outer torch.compile, never a Dynamo crash ---------------------------------
def test_an_outer_torch_compile_with_a_graph_break_around_the_call_works(counting: CountingBackend) -> None:
    inner = policy_compiled(_plain, backend=counting)
    lock = threading.Lock()

    def step(x: torch.Tensor) -> torch.Tensor:
        with lock:  # a graph break: Dynamo treats the inner call as a frame of its own
            y = inner(x)
        return y + 1

    outer = torch.compile(step, backend="eager")
    assert torch.equal(outer(X), _plain(X) + 1)
    assert torch.equal(torch.compile(inner, backend="eager")(X), _plain(X))


def test_policy_compiled_over_policy_compiled_records_no_fallback(counting: CountingBackend) -> None:
    outer = policy_compiled(policy_compiled(_plain, backend=counting), backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        for _ in range(3):
            assert torch.equal(outer(X), _plain(X))
    assert compile_stats(outer).failures == ()
    assert compile_stats(outer).fallback_calls == 0


def test_the_hot_path_has_builtins_like_a_plain_function() -> None:
    fast = policy_compiled(_plain, backend="eager")
    assert "__builtins__" in fast.__globals__  # type: ignore[attr-defined]


# -- 2. a class-body method first accessed inside an outer compile ---------------------------
@pytest.mark.needs_torch("traces_function_get")
@pytest.mark.parametrize("fullgraph", [False, True])
def test_a_class_body_method_first_accessed_inside_an_outer_compile(fullgraph: bool) -> None:
    class Agent(torch.nn.Module):
        @policy_compiled(backend="eager")
        def act(self, x: torch.Tensor) -> torch.Tensor:
            return x * 3

    agent = Agent()

    def step(x: torch.Tensor) -> torch.Tensor:
        return agent.act(x) + 1

    out = torch.compile(step, backend="eager", fullgraph=fullgraph)(X)
    assert torch.equal(out, X * 3 + 1)
    assert torch.equal(agent.act(X), X * 3)  # and eagerly afterwards


# -- 3. refused at wrap time ----------------------------------------------------------------
class _Net(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


async def _coroutine(x: torch.Tensor) -> torch.Tensor:
    return x


async def _async_gen(x: torch.Tensor) -> Any:
    yield x


def _gen(x: torch.Tensor) -> Any:
    yield x


class _GenCallable:
    def __call__(self, x: torch.Tensor) -> Any:
        yield x


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (_Net, "a class"),
        (dict, "a class"),
        (_coroutine, "a coroutine function"),
        (_async_gen, "an async generator function"),
        (_gen, "a generator function"),
        (_GenCallable(), "a generator function"),
    ],
)
def test_what_cannot_be_governed_is_a_type_error_at_wrap_time(target: object, says: str) -> None:
    with pytest.raises(TypeError, match=says):
        policy_compiled(target, backend="eager")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=says):
        policy_compiled(backend="eager")(target)  # type: ignore[arg-type]


def test_static_and_class_methods_stack_with_the_decorator_both_ways() -> None:
    class Model:
        factor = 5

        @policy_compiled(backend="eager")
        @staticmethod
        def static(x: torch.Tensor) -> torch.Tensor:
            return x + 1

        @classmethod
        @policy_compiled(backend="eager")
        def outer_classmethod(cls, x: torch.Tensor) -> torch.Tensor:
            return x * cls.factor

        @policy_compiled(backend="eager")
        @classmethod
        def inner_classmethod(cls, x: torch.Tensor) -> torch.Tensor:
            return x * cls.factor

    class Sub(Model):
        factor = 7

    for owner in (Model, Model()):
        assert torch.equal(owner.static(X), X + 1)
        assert torch.equal(owner.outer_classmethod(X), X * 5)
        assert torch.equal(owner.inner_classmethod(X), X * 5)
    assert torch.equal(Sub().outer_classmethod(X), X * 7)
    assert torch.equal(Sub.inner_classmethod(X), X * 7)

    async def method_refused() -> None:
        with pytest.raises(TypeError, match="a coroutine function"):

            class Bad:
                @policy_compiled(backend="eager")
                @staticmethod
                async def step(x: torch.Tensor) -> torch.Tensor:
                    return x

    asyncio.run(method_refused())


# -- 4. fallback="raise" always raises where compiling does not happen ----------------------
def test_raise_mode_raises_for_a_key_that_already_fell_back(failing: CountingBackend) -> None:
    fast = policy_compiled(lambda x: x + 1, backend=failing)
    with pytest.warns(CompileFallbackWarning):
        assert torch.equal(fast(X), X + 1)  # falls back, eager
    for _ in range(2):
        with compile_enabled(fallback="raise"), pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
            fast(X)
    [failure] = compile_stats(fast).failures
    assert failure.fell_back
    assert torch.equal(fast(X), X + 1)  # eager mode still falls back


def test_the_failure_record_follows_the_latest_state(failing: CountingBackend) -> None:
    fast = policy_compiled(lambda x: x * 2, backend=failing)
    with compile_enabled(fallback="raise"), pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
        fast(X)
    assert not compile_stats(fast).failures[0].fell_back
    with pytest.warns(CompileFallbackWarning):
        fast(X)
    stats = compile_stats(fast)
    assert stats.failures[0].fell_back and stats.fallback_calls == 1


# -- 5. a backend returning None or a non-callable -------------------------------------------
@pytest.mark.parametrize("returned", [None, 42, "graph"])
def test_a_backend_returning_a_non_callable_is_a_compile_failure(returned: object) -> None:
    def bad_backend(gm: Any, example_inputs: Any) -> Any:
        return returned

    fast = policy_compiled(lambda x: x - 1, backend=bad_backend)
    with pytest.warns(CompileFallbackWarning, match="returned"):
        assert torch.equal(fast(X), X - 1)
    assert torch.equal(fast(X), X - 1)
    stats = compile_stats(fast)
    assert stats.fallback_calls == 2 and len(stats.failures) == 1
    strict = policy_compiled(lambda x: x - 2, backend=bad_backend, fallback="raise")
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
        strict(X)


# -- 6. each object counts only its own graphs ----------------------------------------------
# Without isolation every object counts graph runs in one shared counter (SHARED_GRAPH_RUNS).
@pytest.mark.needs_torch("isolation")
def test_an_object_does_not_count_graphs_of_another_it_calls(counting: CountingBackend) -> None:
    inner = policy_compiled(_plain, backend=counting)

    @torch._dynamo.disable  # type: ignore[misc]
    def helper(x: torch.Tensor) -> torch.Tensor:
        return inner(x)

    def no_tensor_work(x: torch.Tensor) -> torch.Tensor:
        return helper(x)

    outer = policy_compiled(no_tensor_work, backend=CountingBackend())
    outer(X)
    outer(X)
    outer_stats, inner_stats = compile_stats(outer), compile_stats(inner)
    assert inner_stats.compiled_calls == 2 and inner_stats.graphs_compiled == 1
    assert outer_stats.graphs_compiled == 0 and outer_stats.compiled_calls == 0
    assert outer_stats.skipped_calls == 2


# -- 11. a compile interrupted by KeyboardInterrupt leaves nothing behind ---------------------
def test_a_keyboard_interrupt_while_compiling_leaves_nothing_behind() -> None:
    class InterruptOnce(CountingBackend):
        def __call__(self, gm: Any, example_inputs: Any) -> Any:
            if self.compiles == 0:
                self.compiles += 1
                raise KeyboardInterrupt
            return super().__call__(gm, example_inputs)

    backend = InterruptOnce()
    fast = policy_compiled(lambda x: x + 3, backend=backend)
    with pytest.raises(KeyboardInterrupt):
        fast(X)
    assert torch.equal(fast(X), X + 3)  # compiles normally
    state = fast._policy_state  # type: ignore[attr-defined]
    slow_calls = 0
    real_slow = state.slow_call

    def counting_slow(*args: Any) -> Any:
        nonlocal slow_calls
        slow_calls += 1
        return real_slow(*args)

    state.slow_call = counting_slow
    for _ in range(5):
        fast(X)
    assert slow_calls == 0  # later calls take the fast path again
    stats = compile_stats(fast)
    assert stats.compiled_calls == 6 and stats.failures == ()


# -- 16. a scope made anew in a loop stays on the fast path -----------------------------------
def _count_slow_calls(fast: Any) -> list[int]:
    state = fast._policy_state
    real_slow, count = state.slow_call, [0]

    def counting_slow(*args: Any) -> Any:
        count[0] += 1
        return real_slow(*args)

    state.slow_call = counting_slow
    return count


@pytest.mark.parametrize("outer", [False, True], ids=["top-level", "under-an-outer-scope"])
def test_a_scope_made_anew_each_iteration_takes_the_fast_path(
    counting: CountingBackend, outer: bool
) -> None:
    fast = policy_compiled(_plain, backend="eager")
    with compile_enabled() if outer else contextlib.nullcontext():
        for _ in range(2):  # warm
            with compile_enabled(backend=counting):
                fast(X)
        slow = _count_slow_calls(fast)
        for _ in range(20):
            with compile_enabled(backend=counting):
                assert torch.equal(fast(X), _plain(X))
        with compile_enabled(backend=counting, fullgraph=True):  # other options: a new key
            fast(X)
    assert slow[0] == 1
    # Without per-object isolation the new key's variant finds the first one's graph in the
    # code's shared cache (same backend): no second compile.
    assert counting.compiles == (2 if torch_releases.running().isolation else 1)
    assert compile_stats(fast).compiled_calls == 23


def test_a_new_scope_over_a_fallen_back_variant_takes_the_fast_path(
    failing: CountingBackend,
) -> None:
    fast = policy_compiled(_plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileFallbackWarning)
        for _ in range(2):
            with compile_enabled(backend=failing):
                fast(X)
    slow = _count_slow_calls(fast)
    for _ in range(10):
        with compile_enabled(backend=failing):
            assert torch.equal(fast(X), _plain(X))
    assert slow[0] == 0 and compile_stats(fast).fallback_calls == 12


# -- 7. dropped objects: freed, and new objects over Dynamo's budget say so -------------------
def _closure_over(module: torch.nn.Module) -> Any:
    return lambda x: module(x) + 1


@pytest.mark.parametrize("form", ["module", "bound-method", "closure"])
def test_a_dropped_object_does_not_keep_what_it_wraps_alive(
    counting: CountingBackend, form: str
) -> None:
    module = torch.nn.Linear(4, 4)
    wrapped: Any = {
        "module": module, "bound-method": module.forward, "closure": _closure_over(module)
    }[form]
    alive = weakref.ref(module)
    fast = policy_compiled(wrapped, backend=counting)
    fast(X)
    assert compile_stats(fast).compiled_calls == 1
    del fast, wrapped, module
    gc.collect()
    assert alive() is None


def _population_member(x: torch.Tensor) -> torch.Tensor:
    return torch.cos(x) + 2


@pytest.mark.needs_torch("isolation")
def test_new_objects_past_dynamos_budget_warn_that_they_run_no_graph(
    counting: CountingBackend,
) -> None:
    with torch._dynamo.config.patch(accumulated_recompile_limit=2):
        for _ in range(2):  # each a new agent, dropped after use
            agent = policy_compiled(_population_member, backend=counting)
            agent(X)
            assert compile_stats(agent).compiled_calls == 1
            del agent
            gc.collect()
        agent = policy_compiled(_population_member, backend=counting)
        with pytest.warns(CompileSkippedWarning, match="another object"):
            assert torch.equal(agent(X), _population_member(X))
        assert compile_stats(agent).skipped_calls == 1


def _shared_member(x: torch.Tensor) -> torch.Tensor:
    return torch.cos(x) * 3


@pytest.mark.needs_torch("isolate_recompiles")
def test_a_population_sharing_dynamos_cache_never_runs_out_of_budget(
    counting: CountingBackend,
) -> None:
    # torch 2.13 counts each compile of a code object for good (FRAME_COMPILE_COUNTER, capped by
    # accumulated_recompile_limit): dropped objects' compiles too. Sharing: one compile for all.
    with torch._dynamo.config.patch(accumulated_recompile_limit=2):
        for _ in range(5):
            agent = policy_compiled(_shared_member, backend=counting, isolate_recompiles=False)
            assert torch.equal(agent(X), _shared_member(X))
            assert compile_stats(agent).compiled_calls == 1
            del agent
            gc.collect()
    assert counting.compiles == 1


@pytest.mark.needs_torch("isolation")
def test_the_skipped_warning_names_the_shared_cache_as_the_remedy(
    counting: CountingBackend,
) -> None:
    def member(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) - 2

    with torch._dynamo.config.patch(accumulated_recompile_limit=1):
        policy_compiled(member, backend=counting)(X)
        with pytest.warns(CompileSkippedWarning, match="isolate_recompiles=False"):
            policy_compiled(member, backend=counting)(X)


# -- 15. many threads, heavy preemption: never a wrong result or an exception of ours ---------
def test_threads_under_heavy_preemption_get_right_results_and_no_errors(
    counting: CountingBackend,
) -> None:
    def own_code(x: torch.Tensor) -> torch.Tensor:  # a budget of its own, not _plain's
        return torch.sin(x) * 2 + 1

    objects = [policy_compiled(own_code, backend=counting) for _ in range(2)]
    want, wrong = own_code(X), [0]
    errors: list[BaseException] = []
    option_sets: list[dict[str, Any]] = [{}, {"fullgraph": True}]

    def work(i: int) -> None:
        try:
            for n in range(40):
                with compile_enabled(**option_sets[(i + n) % 2]):
                    if not torch.equal(objects[(i + n) % 2](X), want):
                        wrong[0] += 1
        except BaseException as exc:  # any exception is the failure
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    # Extra compiles of Dynamo's (docs/threads-and-asyncio.md) may spend a recompile budget:
    # then calls run without compiled code and say so. Never an error, never a wrong result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileSkippedWarning)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(old)
    assert errors == [] and wrong[0] == 0
    stats = [compile_stats(o) for o in objects]
    assert sum(s.compiled_calls + s.skipped_calls for s in stats) == 160
    assert all(s.eager_calls == s.fallback_calls == 0 and s.failures == () for s in stats)
