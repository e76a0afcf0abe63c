"""A generator or async generator run under a scope decorator or ``bind_policy`` may hold
scopes open across ``yield`` (the very scope object its caller uses included): each step
resumes with the body's own stack as it left it, the caller sees its own between steps,
and nothing raises."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from compile_policy import bind_policy, compile_disabled, compile_enabled, current_policy


def state() -> tuple[bool, Any]:
    policy = current_policy()
    return policy.enabled, policy.backend


@compile_enabled(backend="eager")
def steps_with_inner_scopes() -> Iterator[tuple[bool, Any]]:
    with compile_disabled():
        yield state()
        yield state()
    yield state()
    with compile_enabled(backend="aot_eager"):
        yield state()


BODY_STATES = [(False, "eager"), (False, "eager"), (True, "eager"), (True, "aot_eager")]


def test_a_generator_resumes_with_its_own_scopes_and_the_caller_keeps_its_own() -> None:
    seen, between = [], []
    with compile_disabled():
        for item in steps_with_inner_scopes():
            seen.append(item)
            between.append(state())
    assert seen == BODY_STATES
    assert between == [(False, None)] * 4
    assert state() == (True, None)


def test_a_generator_enters_the_callers_own_shared_scope_object_across_yields() -> None:
    @compile_disabled
    def body() -> Iterator[bool]:
        with compile_disabled():  # the very object the decorator and the caller use
            yield current_policy().enabled
            with compile_enabled():
                yield current_policy().enabled
            yield current_policy().enabled
        yield current_policy().enabled

    with compile_disabled():
        between = []
        for _ in body():
            between.append(current_policy().enabled)
        assert between == [False] * 4
    assert list(body()) == [False, True, False, False]
    assert current_policy().enabled is True


def test_the_caller_changing_its_scopes_between_steps_changes_nothing_in_the_body() -> None:
    steps = steps_with_inner_scopes()
    seen = [next(steps)]
    with compile_enabled(backend="inductor"):
        seen.append(next(steps))
        assert state() == (True, "inductor")
    seen += list(steps)
    assert seen == BODY_STATES


def test_send_throw_and_close_resume_the_body_with_its_own_stack() -> None:
    @compile_enabled(backend="eager")
    def body() -> Iterator[Any]:
        with compile_disabled():
            received = yield state()
            try:
                yield (received, *state())
            except KeyError:
                yield ("thrown", *state())
            try:
                yield "waiting"
            finally:
                closed.append(state())

    closed: list[tuple[bool, Any]] = []
    steps = body()
    assert next(steps) == (False, "eager")
    assert steps.send(7) == (7, False, "eager")
    assert steps.throw(KeyError("k")) == ("thrown", False, "eager")
    assert next(steps) == "waiting"
    steps.close()
    assert closed == [(False, "eager")]
    assert state() == (True, None)


def test_an_exception_leaving_the_body_keeps_its_scopes_and_restores_the_caller() -> None:
    @compile_disabled
    def body() -> Iterator[int]:
        with compile_enabled(backend="eager"):
            yield 1
            raise ValueError("the user's")

    steps = body()
    with compile_enabled(backend="aot_eager"):
        next(steps)
        with pytest.raises(ValueError, match="the user's"):
            next(steps)
        assert state() == (True, "aot_eager")
    assert state() == (True, None)


def test_a_bound_generator_keeps_its_inner_scope_from_step_to_step() -> None:
    def body() -> Iterator[tuple[bool, Any]]:
        yield state()
        with compile_enabled(backend="eager"):
            yield state()
            yield state()
        yield state()

    with compile_disabled():
        bound: Callable[[], Iterator[tuple[bool, Any]]] = bind_policy(body)
    with compile_enabled(backend="inductor"):
        between = []
        seen = []
        for item in bound():
            seen.append(item)
            between.append(state())
    assert seen == [(False, None), (True, "eager"), (True, "eager"), (False, None)]
    assert between == [(True, "inductor")] * 4


def test_an_async_generator_keeps_its_scopes_across_yields_and_awaits() -> None:
    @compile_enabled(backend="eager")
    async def stream() -> AsyncIterator[tuple[bool, Any]]:
        with compile_disabled():
            yield state()
            await asyncio.sleep(0)
            yield state()
        yield state()

    async def main() -> tuple[list[Any], list[Any]]:
        seen, between = [], []
        with compile_enabled(backend="inductor"):
            async for item in stream():
                seen.append(item)
                between.append(state())
        return seen, between

    seen, between = asyncio.run(main())
    assert seen == [(False, "eager"), (False, "eager"), (True, "eager")]
    assert between == [(True, "inductor")] * 3


def test_an_async_generator_closed_or_thrown_into_resumes_with_its_own_stack() -> None:
    finally_states: list[tuple[bool, Any]] = []

    @compile_disabled
    async def stream() -> AsyncIterator[Any]:
        with compile_enabled(backend="eager"):
            try:
                yield state()
            except KeyError:
                yield ("thrown", *state())
            try:
                yield "waiting"
            finally:
                finally_states.append(state())

    async def main() -> list[Any]:
        steps = stream()
        out = [await steps.__anext__(), await steps.athrow(KeyError("k"))]
        out.append(await steps.__anext__())
        await steps.aclose()
        out.append(state())
        return out

    assert asyncio.run(main()) == [(True, "eager"), ("thrown", True, "eager"), "waiting", (True, None)]
    assert finally_states == [(True, "eager")]


def test_a_scope_decorated_contextmanager_still_works() -> None:
    @contextlib.contextmanager
    @compile_enabled(backend="eager")
    def managed() -> Iterator[tuple[bool, Any]]:
        with compile_disabled():
            yield state()
            inside.append(state())

    inside: list[tuple[bool, Any]] = []
    with compile_enabled(backend="inductor"):
        with managed() as entered:
            assert state() == (True, "inductor")  # the caller's block: the caller's stack
        assert state() == (True, "inductor")
    assert entered == (False, "eager")
    assert inside == [(False, "eager")]


def test_an_async_generator_finished_in_another_task_than_it_started_in() -> None:
    closed_under: list[tuple[bool, Any]] = []

    @compile_enabled(backend="eager")
    async def stream() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed_under.append(state())

    async def main() -> None:
        steps = stream()
        await asyncio.create_task(steps.__anext__())  # a task (a context) of its own
        await asyncio.create_task(steps.aclose())  # as an event loop's finalizer closes it

    asyncio.run(main())
    assert closed_under == [(True, "eager")]
    assert state() == (True, None)


def test_an_async_generator_stepped_in_several_tasks_keeps_its_inner_scope() -> None:
    @compile_enabled(backend="eager")
    async def stream() -> AsyncIterator[tuple[bool, Any]]:
        with compile_disabled():
            yield state()
            yield state()
        yield state()

    async def main() -> list[Any]:
        steps = stream()
        seen = [await asyncio.create_task(steps.__anext__()) for _ in range(3)]
        await asyncio.create_task(steps.aclose())
        return seen

    assert asyncio.run(main()) == [(False, "eager"), (False, "eager"), (True, "eager")]
    assert state() == (True, None)
