"""policy_compiled: the path each call takes, compile caching, per-object fallback."""

from __future__ import annotations

import copy
import pickle
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import compile_policy
from compile_policy import (
    CompileFallbackWarning,
    CompileSkippedWarning,
    PartialCompileError,
    PolicyCompiled,
    PolicyError,
    compile_disabled,
    compile_enabled,
    compile_stats,
    policy_compiled,
)
from compile_policy._base import torch_releases
from conftest import CountingBackend


def x() -> torch.Tensor:
    return torch.ones(4)


def test_enabled_calls_run_compiled_and_disabled_calls_run_plain(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t.sin() + 1, backend=counting)
    assert torch.allclose(step(x()), x().sin() + 1)
    with compile_disabled():
        assert torch.allclose(step(x()), x().sin() + 1)
    stats = step.stats()
    assert (stats.compiled_calls, stats.eager_calls, stats.fallback_calls) == (1, 1, 0)
    assert stats.skipped_calls == 0 and isinstance(step, PolicyCompiled)
    assert counting.runs == 1


def test_toggling_the_policy_never_recompiles(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t * 3, backend=counting)
    for _ in range(50):
        step(x())
        with compile_disabled():
            step(x())
    assert counting.compiles == 1
    assert step.stats().graphs_compiled == 1
    assert (step.stats().compiled_calls, step.stats().eager_calls) == (50, 50)


def test_each_merged_option_set_is_compiled_once_per_object(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t - 1, backend=counting)
    for _ in range(3):
        step(x())
        with compile_enabled(dynamic=False):
            step(x())
        with compile_enabled(backend="eager"):
            step(x())
    assert len(step.stats().variants) == 3
    assert counting.compiles == 2  # the third variant uses the "eager" backend


def test_scope_fields_override_the_decorator_arguments(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t + 2, backend="aot_eager")
    with compile_enabled(backend=counting):
        step(x())
    assert counting.compiles == 1
    assert step.stats().variants[0].backend is counting


def test_decorator_form_and_name_are_kept() -> None:
    @policy_compiled(backend="eager")
    def double(t: torch.Tensor) -> torch.Tensor:
        """Doubles."""
        return t * 2

    assert double.__name__ == "double" and double.__doc__ == "Doubles."
    assert torch.equal(double(x()), x() * 2)

    @policy_compiled
    def triple(t: torch.Tensor) -> torch.Tensor:
        return t * 3

    with compile_disabled():
        assert torch.equal(triple(x()), x() * 3)


def test_unknown_backend_name_is_refused_at_wrap_time_naming_it_and_the_registered_ones() -> None:
    with pytest.raises(PolicyError, match="'no-such-backend'.*allowed: .*'inductor'"):
        policy_compiled(lambda t: t, backend="no-such-backend")
    with pytest.raises(PolicyError, match="'no-such-backend'"):
        policy_compiled(backend="no-such-backend")  # as a decorator too


@pytest.mark.parametrize(("arguments", "message"), [
    ({"mode": "max-autotune", "options": {"max_autotune": True}}, "one or the other"),
    ({"options": {"no_such_option": True}}, "options=.*no_such_option.*allowed: inductor's options"),
    ({"options": {"max_autotune": "yes"}}, "options=.*max_autotune.*allowed"),
])
def test_what_torch_compile_refuses_when_it_wraps_is_refused_at_wrap_time(
    arguments: dict[str, Any], message: str,
) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_compiled(lambda t: t, **arguments)


def test_unknown_backend_name_from_a_scope_is_a_policy_error_at_the_first_compiled_call() -> None:
    step = policy_compiled(lambda t: t, backend="eager")
    with compile_enabled(backend="no-such-backend"):
        with compile_disabled():
            step(x())  # nothing to check while disabled
        with pytest.raises(PolicyError, match="'no-such-backend'.*allowed: .*'inductor'"):
            step(x())
    assert step.stats().fallback_calls == 0 and step.stats().failures == ()


def test_mode_with_options_is_a_policy_error() -> None:
    step = policy_compiled(lambda t: t, mode="max-autotune")
    with compile_enabled(options={"max_autotune": True}):
        with pytest.raises(PolicyError, match="one or the other"):
            step(x())


def test_bad_decorator_argument_is_a_policy_error_at_decoration() -> None:
    with pytest.raises(PolicyError, match="'sometimes'"):
        policy_compiled(lambda t: t, fallback="sometimes")  # type: ignore[call-overload]


def test_compile_failure_falls_back_for_that_object_and_key_only(
    failing: CountingBackend, counting: CountingBackend
) -> None:
    broken = policy_compiled(lambda t: t.cos(), backend=failing)
    healthy = policy_compiled(lambda t: t.cos(), backend=counting)
    with pytest.warns(CompileFallbackWarning, match="counting backend told to fail") as record:
        assert torch.allclose(broken(x()), x().cos())
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later calls are silent
        broken(x())
        broken(x())
        healthy(x())
    assert failing.compiles == 1  # never retried for that key
    assert broken.stats().fallback_calls == 3
    [failure] = broken.stats().failures
    assert failure.fell_back and isinstance(failure.exception, torch._dynamo.exc.BackendCompilerFailed)
    assert failure.key.backend is failing
    # another key of the same object still compiles
    with compile_enabled(backend=counting):
        broken(x())
    assert broken.stats().compiled_calls == 1
    assert healthy.stats().compiled_calls == 1 and healthy.stats().failures == ()


def test_fallen_back_and_compiling_keys_alternate_with_exact_counters(
    failing: CountingBackend, counting: CountingBackend
) -> None:
    step = policy_compiled(lambda t: t.cos(), backend=counting)
    scope = compile_enabled(backend=failing)
    with pytest.warns(CompileFallbackWarning), scope:
        step(x())
    for _ in range(3):  # the fallen-back key's calls take the hot path from now on
        with scope:
            assert torch.allclose(step(x()), x().cos())
        step(x())
        with compile_disabled():
            step(x())
    stats = step.stats()
    assert (stats.fallback_calls, stats.compiled_calls, stats.eager_calls) == (4, 3, 3)
    assert failing.compiles == 1 and counting.compiles == 1


@pytest.fixture
def default_off(process_default: Callable[[str], None]) -> None:
    """The process default as with COMPILE_POLICY=off (read again, and again after)."""
    process_default("off")


@pytest.mark.usefixtures("default_off")
def test_with_the_default_off_calls_run_the_plain_function_until_a_scope_enables(
    counting: CountingBackend,
) -> None:
    step = policy_compiled(lambda t: t + 1, backend=counting)
    for _ in range(3):
        assert torch.equal(step(x()), x() + 1)
    with compile_enabled():
        step(x())
    step(x())
    assert (step.stats().eager_calls, step.stats().compiled_calls) == (4, 1)
    assert counting.compiles == 1


def test_compile_failure_is_logged(failing: CountingBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="compile_policy")  # INFO: the warning tells the user
    step = policy_compiled(lambda t: t.cos(), backend=failing)
    with pytest.warns(CompileFallbackWarning):
        step(x())
    assert any(r.name == "compile_policy" and "compile failed" in r.message for r in caplog.records)


def test_compile_failure_changes_no_module_level_state(failing: CountingBackend) -> None:
    modules = [m for name, m in sys.modules.items() if name.startswith("compile_policy")]
    policy_compiled(lambda t: t, backend="eager")(x())  # first build loads what it caches
    before = {m.__name__: dict(vars(m)) for m in modules}
    step = policy_compiled(lambda t: t.cos(), backend=failing)
    with pytest.warns(CompileFallbackWarning):
        step(x())
    after = {m.__name__: dict(vars(m)) for m in modules}
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].keys() == after[name].keys(), name
        changed = [k for k in before[name] if before[name][k] is not after[name][k]]
        assert changed == [], (name, changed)
    assert compile_policy.current_policy().enabled


def test_fallback_raise_on_the_decorator_reraises(failing: CountingBackend) -> None:
    step = policy_compiled(lambda t: t.cos(), backend=failing, fallback="raise")
    for _ in range(2):
        with pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
            step(x())
    assert step.stats().fallback_calls == 0
    [failure] = step.stats().failures
    assert not failure.fell_back


def test_fallback_raise_scoped_then_eager_outside(failing: CountingBackend) -> None:
    step = policy_compiled(lambda t: t.cos(), backend=failing)
    with compile_enabled(fallback="raise"), pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
        step(x())
    with pytest.warns(CompileFallbackWarning):
        step(x())
    assert step.stats().fallback_calls == 1


def test_user_errors_propagate_and_are_not_compile_failures(counting: CountingBackend) -> None:
    @policy_compiled(backend=counting)
    def checks(t: torch.Tensor) -> torch.Tensor:
        if t.shape[0] != 4:
            raise ValueError("expected 4 rows")
        return t + 1

    with pytest.raises(ValueError, match="4 rows"):
        checks(torch.ones(3))
    assert checks.stats().failures == () and checks.stats().fallback_calls == 0
    assert torch.equal(checks(x()), x() + 1)
    # torch 2.13 quirk: after tracing a user exception, Dynamo skips this code object for
    # good and runs it eagerly; the counters say so instead of claiming a compiled call.
    assert (checks.stats().compiled_calls, checks.stats().skipped_calls) == (0, 1)


def test_shape_error_surfacing_from_dynamo_tracing_is_a_user_error(counting: CountingBackend) -> None:
    @policy_compiled(backend=counting)
    def matmul(t: torch.Tensor) -> torch.Tensor:
        return t @ torch.ones(5, 5)

    with pytest.raises(RuntimeError, match="must have same reduction dim|size mismatch|shapes") as info:
        matmul(torch.ones(3, 3))
    assert not isinstance(info.value, torch._dynamo.exc.TorchDynamoException)  # the eager error
    assert matmul.stats().failures == () and matmul.stats().fallback_calls == 0
    matmul(torch.ones(3, 5))
    assert matmul.stats().compiled_calls == 1


def test_shape_error_with_fallback_raise_propagates_without_a_record(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t @ torch.ones(5, 5), backend=counting, fallback="raise")
    with pytest.raises(RuntimeError):
        step(torch.ones(3, 3))
    assert step.stats().failures == ()


class SecondGraphFails:
    """Compiles the first graph, fails on the second (as after a graph break)."""

    __name__ = "second_graph_fails"

    def __init__(self) -> None:
        self.compiles = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: object) -> object:
        self.compiles += 1
        if self.compiles >= 2:
            raise RuntimeError("second graph does not compile")
        return gm.forward


def test_failure_after_compiled_code_ran_raises_instead_of_repeating_side_effects() -> None:
    param = torch.zeros(3)

    @policy_compiled(backend=SecondGraphFails())
    def step(t: torch.Tensor) -> torch.Tensor:
        param.add_(t)  # runs in the first graph
        torch._dynamo.graph_break()
        return t.cos()  # the second graph fails to compile

    with pytest.warns(CompileFallbackWarning):
        with pytest.raises(PartialCompileError, match="side effects") as info:
            step(torch.ones(3))
    assert isinstance(info.value.__cause__, torch._dynamo.exc.BackendCompilerFailed)
    assert torch.equal(param, torch.ones(3))  # applied once, not twice
    step(torch.ones(3))  # later calls fall back to eager for this key
    assert torch.equal(param, torch.full((3,), 2.0))
    assert step.stats().fallback_calls == 1


def test_inside_an_outer_compile_the_plain_function_is_traced_into_the_outer_graph(
    counting: CountingBackend,
) -> None:
    inner_backend = CountingBackend()
    inner = policy_compiled(lambda t: t.sin() * 2, backend=inner_backend)

    def outer(t: torch.Tensor) -> torch.Tensor:
        return inner(t) + 1

    compiled_outer = torch.compile(outer, backend=counting, fullgraph=True)
    with compile_disabled():  # the inner policy is not even consulted while traced
        pass
    assert torch.allclose(compiled_outer(x()), x().sin() * 2 + 1)
    assert counting.compiles == 1 and inner_backend.compiles == 0
    assert inner.stats().compiled_calls == 0 and inner.stats().eager_calls == 0


def test_wraps_an_nn_module_like_torch_compile(counting: CountingBackend) -> None:
    net = torch.nn.Linear(4, 2)
    model = policy_compiled(net, backend=counting)
    out = model(torch.ones(1, 4))
    assert out.shape == (1, 2)
    assert model.__wrapped__ is net
    with compile_disabled():
        model(torch.ones(1, 4))
    assert (compile_stats(model).compiled_calls, compile_stats(model).eager_calls) == (1, 1)


class Agent:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def act(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.scale


def test_bound_methods_are_separate_objects_per_agent(failing: CountingBackend) -> None:
    good, bad = Agent(2.0), Agent(3.0)
    good_act = policy_compiled(good.act, backend="eager")
    bad_act = policy_compiled(bad.act, backend=failing)
    with pytest.warns(CompileFallbackWarning):
        assert torch.equal(bad_act(x()), x() * 3)
    assert torch.equal(good_act(x()), x() * 2)
    assert good_act.stats().compiled_calls == 1 and bad_act.stats().fallback_calls == 1


class Policy(torch.nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    @policy_compiled(backend="eager")
    def act(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.scale


def test_decorated_method_gives_each_instance_its_own_object() -> None:
    first, second = Policy(2.0), Policy(3.0)
    assert first.act is first.act and first.act is not second.act
    assert torch.equal(first.act(x()), x() * 2) and torch.equal(second.act(x()), x() * 3)
    assert first.act.stats().compiled_calls == 1
    assert isinstance(first.act, PolicyCompiled) and isinstance(Policy.act, PolicyCompiled)
    assert torch.equal(Policy.act(second, x()), x() * 3)  # through the class: its own object
    assert Policy.act.stats().compiled_calls == 1 and second.act.stats().compiled_calls == 1


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["copy", "deepcopy", "pickle"])
def test_a_copy_of_an_instance_calls_its_own_method(clone: Any) -> None:
    """A deep-copied target network must not run the online network's method."""
    online = Policy(2.0)
    online.act(x())
    target = clone(online)
    target.scale = 3.0
    assert target.act is not online.act
    assert torch.equal(target.act(x()), x() * 3) and torch.equal(online.act(x()), x() * 2)
    assert target.act.stats().compiled_calls == 1 and online.act.stats().compiled_calls == 2
    assert "act" in vars(online)  # the original keeps its own object


class Recorder:
    """A plain class with its own __getstate__ and two policy-compiled methods."""

    def __init__(self) -> None:
        self.scale, self.cache = 2.0, {"big": 1}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, cache={})

    @policy_compiled(backend="eager")
    def double(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.scale

    @policy_compiled(backend="eager")
    def triple(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.scale * 1.5


def test_copies_leave_out_every_compiled_method_and_keep_the_class_getstate() -> None:
    original = Recorder()
    original.double(x())
    original.triple(x())
    clone = pickle.loads(pickle.dumps(original))
    assert clone.cache == {} and not {"double", "triple"} & set(vars(clone))
    clone.scale = 4.0
    assert torch.equal(clone.double(x()), x() * 4) and torch.equal(clone.triple(x()), x() * 6)


def test_a_method_set_on_a_class_after_it_was_made_is_still_one_per_instance() -> None:
    class Late:
        def __init__(self, scale: float) -> None:
            self.scale = scale

    Late.act = policy_compiled(Agent.act, backend="eager")  # type: ignore[attr-defined]
    first, second = Late(2.0), Late(3.0)
    assert first.act is first.act and first.act is not second.act  # type: ignore[attr-defined]
    assert torch.equal(copy.deepcopy(second).act(x()), x() * 3)  # type: ignore[attr-defined]


def test_a_method_of_a_class_without_instance_dict_is_refused() -> None:
    class Slotted:
        __slots__ = ("scale",)

        @policy_compiled(backend="eager")
        def act(self, t: torch.Tensor) -> torch.Tensor:
            return t * self.scale

    with pytest.raises(TypeError, match=r"Slotted have no __dict__.*policy_compiled\(obj.method\)"):
        Slotted().act  # noqa: B018


def test_recompile_budget_is_per_object_with_many_agents() -> None:
    """A guarded per-instance float in a shared method: 12 agents > Dynamo's limit of 8."""
    agents = [Agent(float(i + 1)) for i in range(12)]
    steps = [policy_compiled(agent.act, backend="eager") for agent in agents]
    for _ in range(2):
        for agent, step in zip(agents, steps, strict=True):
            assert torch.equal(step(x()), x() * agent.scale)
    assert all(s.stats().compiled_calls == 2 and s.stats().skipped_calls == 0 for s in steps)


def test_calls_dynamo_ran_without_compiled_code_are_counted_and_warned_once() -> None:
    torch._dynamo.reset()
    old = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = 1
    try:
        agent = Agent(1.0)
        step = policy_compiled(agent.act, backend="eager")
        step(x())
        agent.scale = 2.0  # guard failure, over the limit: Dynamo runs eager silently
        with pytest.warns(CompileSkippedWarning, match="recompile limit"):
            assert torch.equal(step(x()), x() * 2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            step(x())
        stats = step.stats()
        assert (stats.compiled_calls, stats.skipped_calls) == (1, 2)
    finally:
        torch._dynamo.config.recompile_limit = old
        torch._dynamo.reset()


def test_another_thread_compiling_does_not_send_this_thread_down_the_plain_path(
    counting: CountingBackend,
) -> None:
    """torch.compiler.is_compiling() is True in every thread while any thread compiles; the
    object must not mistake that for being traced."""
    import threading

    warm = policy_compiled(lambda t: t * 5, backend=counting)
    warm(x())
    inside, release = threading.Event(), threading.Event()

    def slow_backend(gm: torch.fx.GraphModule, example_inputs: object) -> object:
        inside.set()
        release.wait(30)
        return gm.forward

    slow = policy_compiled(lambda t: t - 5, backend=slow_backend)
    compiling = threading.Thread(target=slow, args=(x(),))
    compiling.start()
    try:
        assert inside.wait(30)
        # the process-wide flag is fooled (where torch keeps it process-wide)...
        assert torch.compiler.is_compiling() is torch_releases.running().is_compiling_process_wide
        runs = counting.runs
        warm(x())
        assert counting.runs == runs + 1  # ...but this call still ran compiled code
    finally:
        release.set()
        compiling.join()
    assert warm.stats().compiled_calls == 2


def test_fallback_warning_points_at_the_callers_line(failing: CountingBackend) -> None:
    step = policy_compiled(lambda t: t.cos(), backend=failing)
    with pytest.warns(CompileFallbackWarning) as record:
        step(x())
    assert record[0].filename == __file__


def test_scopes_made_anew_in_a_loop_keep_the_fast_table_bounded(counting: CountingBackend) -> None:
    step = policy_compiled(lambda t: t + 1, backend=counting)
    for _ in range(200):
        with compile_enabled(fullgraph=False):  # a new scope object, so a new stack top, each time
            step(x())
        with compile_disabled():
            step(x())
    stats = step.stats()
    assert (stats.compiled_calls, stats.eager_calls, counting.compiles) == (200, 200, 1)
    assert len(step._policy_state.ready) <= 64  # type: ignore[attr-defined]


def _calls_on_every_path(
    step: PolicyCompiled[torch.Tensor], *args: object, **kwargs: object
) -> list[torch.Tensor]:
    """The same call on the cold path (first call), the warm compiled path and the eager path."""
    first = step(*args, **kwargs)
    warm = step(*args, **kwargs)
    with compile_disabled():
        eager = step(*args, **kwargs)
    return [first, warm, eager]


def test_plain_signatures_take_positional_and_keyword_calls_on_every_path(
    counting: CountingBackend,
) -> None:
    def scale(t: torch.Tensor, factor: torch.Tensor, /, offset: torch.Tensor) -> torch.Tensor:
        return t * factor + offset

    step = policy_compiled(scale, backend=counting)
    two, one = torch.full((4,), 2.0), torch.ones(4)
    outs = _calls_on_every_path(step, x(), two, one) + _calls_on_every_path(step, x(), two, offset=one)
    for out in outs:
        assert torch.equal(out, x() * 2 + 1)
    with pytest.raises(TypeError, match=r"scale\(\) missing 1 required positional argument"):
        step(x(), two)
    with pytest.raises(TypeError, match="positional-only"):
        step(x(), factor=two, offset=one)
    assert step.stats().compiled_calls == 4 and step.stats().eager_calls == 2


def test_defaults_varargs_and_keyword_only_parameters_are_forwarded_as_given(
    counting: CountingBackend,
) -> None:
    def combine(
        t: torch.Tensor, k: float = 2.0, *more: torch.Tensor, bias: float, **extra: float
    ) -> torch.Tensor:
        return t * k + sum(more, torch.zeros(4)) + bias + sum(extra.values())

    step = policy_compiled(combine, backend=counting)
    for out in _calls_on_every_path(step, x(), 3.0, x(), bias=1.0, more=0.5):
        assert torch.equal(out, x() * 3 + 1 + 1 + 0.5)
    for out in _calls_on_every_path(step, x(), bias=0.0):
        assert torch.equal(out, x() * 2)


def test_parameters_named_like_the_wrappers_own_names_still_work(counting: CountingBackend) -> None:
    def step_fn(target: torch.Tensor, state: torch.Tensor, next: torch.Tensor) -> torch.Tensor:
        return target + state * next

    step = policy_compiled(step_fn, backend=counting)
    for out in _calls_on_every_path(step, x(), x(), next=x() * 3):
        assert torch.equal(out, x() * 4)


def test_methods_and_zero_argument_functions_keep_their_calling_convention(
    counting: CountingBackend,
) -> None:
    class Agent:
        def __init__(self) -> None:
            self.weight = torch.full((4,), 5.0)

        @policy_compiled(backend="eager")
        def act(self, obs: torch.Tensor) -> torch.Tensor:
            return obs * self.weight

    agent = Agent()
    for out in _calls_on_every_path(agent.act, obs=x()):
        assert torch.equal(out, x() * 5)
    bound = policy_compiled(agent.act.__wrapped__, backend=counting)  # a bound method
    assert torch.equal(bound(x()), x() * 5)

    tensor = x()
    step = policy_compiled(lambda: tensor.cos(), backend=counting)
    for out in _calls_on_every_path(step):
        assert torch.equal(out, tensor.cos())
    with pytest.raises(TypeError):
        step(x())


def test_a_recompile_that_fails_on_a_warm_object_falls_back_for_that_key(
    counting: CountingBackend,
) -> None:
    class FailsOnSecondCompile(CountingBackend):
        def __call__(self, gm: Any, example_inputs: Any) -> Any:
            self.fail = self.compiles >= 1
            return super().__call__(gm, example_inputs)

    backend = FailsOnSecondCompile()
    step = policy_compiled(lambda t: t * 2, backend=backend, dynamic=False)
    step(torch.ones(4))
    step(torch.ones(4))  # warm: the hot path
    with pytest.warns(CompileFallbackWarning):
        assert torch.equal(step(torch.ones(5)), torch.full((5,), 2.0))  # a recompile, which fails
    assert torch.equal(step(torch.ones(4)), torch.full((4,), 2.0))
    stats = step.stats()
    assert (stats.compiled_calls, stats.fallback_calls) == (2, 2)
    assert len(stats.failures) == 1 and backend.compiles == 2
