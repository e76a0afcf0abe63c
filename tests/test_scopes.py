"""Scopes: restoration, reuse, decorators over every kind of function, threads and tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from compile_policy import (
    CompilePolicy,
    ScopeError,
    bind_policy,
    compile_disabled,
    compile_enabled,
    current_policy,
    use_policy,
)


def enabled() -> bool:
    return current_policy().enabled


def test_scope_restores_on_normal_exit() -> None:
    before = current_policy()
    with compile_disabled():
        assert not enabled()
    assert current_policy() == before


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
def test_scope_restores_on_any_exception(error: type[BaseException]) -> None:
    before = current_policy()
    with pytest.raises(error), compile_disabled():
        raise error()
    assert current_policy() == before


def test_one_scope_object_can_be_reused_and_nested_in_itself() -> None:
    scope = compile_enabled(backend="eager")
    with compile_disabled():
        with scope:
            with compile_disabled():
                with scope:
                    assert enabled() and current_policy().backend == "eager"
                assert not enabled()
            assert enabled()
        assert not enabled()
        with scope:
            assert enabled()
    assert current_policy().backend is None


def test_use_policy_applies_a_whole_policy() -> None:
    with use_policy(CompilePolicy(enabled=False, backend="eager")):
        assert current_policy() == CompilePolicy(enabled=False, backend="eager")


def test_one_scope_object_used_by_several_threads_at_once() -> None:
    scope = compile_disabled()
    barrier = threading.Barrier(4)
    seen: list[bool] = []

    def worker() -> None:
        with scope:
            barrier.wait()
            seen.append(enabled())
            barrier.wait()
        seen.append(enabled())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == [False] * 4 + [True] * 4


def test_a_scope_is_invisible_to_other_threads() -> None:
    entered, checked = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        entered.wait()
        seen.append(enabled())
        checked.set()

    thread = threading.Thread(target=other)
    thread.start()
    with compile_disabled():
        entered.set()
        checked.wait()
    thread.join()
    assert seen == [True]


def test_new_threads_start_from_the_default_and_bind_policy_carries_it() -> None:
    results: dict[str, bool] = {}
    with compile_disabled():
        plain = threading.Thread(target=lambda: results.update(plain=enabled()))
        bound = threading.Thread(target=bind_policy(lambda: results.update(bound=enabled())))
    plain.start(), bound.start()
    plain.join(), bound.join()
    assert results == {"plain": True, "bound": False}


def test_bind_policy_in_a_pool_does_not_leak_to_later_work_items() -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        with compile_disabled():
            first = pool.submit(bind_policy(enabled)).result()
        second = pool.submit(enabled).result()
    assert (first, second) == (False, True)


def test_exiting_in_another_thread_raises_in_plain_words() -> None:
    scope = compile_disabled()
    scope.__enter__()
    errors: list[BaseException] = []

    def exit_here() -> None:
        try:
            scope.__exit__(None, None, None)
        except ScopeError as error:
            errors.append(error)

    thread = threading.Thread(target=exit_here)
    thread.start()
    thread.join()
    scope.__exit__(None, None, None)
    assert len(errors) == 1
    assert "same thread or asyncio task" in str(errors[0])
    assert enabled()


def test_exiting_in_another_task_raises() -> None:
    scope = compile_disabled()

    async def enter() -> None:
        scope.__enter__()

    async def leave() -> None:
        scope.__exit__(None, None, None)

    async def main() -> None:
        await asyncio.create_task(enter())
        with pytest.raises(ScopeError, match="thread or asyncio task"):
            await asyncio.create_task(leave())

    asyncio.run(main())


def test_out_of_order_exit_raises_and_restores_what_the_enter_replaced() -> None:
    outer, inner = compile_enabled(backend="eager"), compile_disabled()
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(ScopeError, match="out of order"):
        outer.__exit__(None, None, None)
    assert current_policy() == CompilePolicy()


def test_decorator_with_and_without_parentheses() -> None:
    @compile_disabled
    def bare() -> bool:
        return enabled()

    @compile_disabled()
    def called() -> bool:
        return enabled()

    @compile_enabled
    def enabled_bare() -> bool:
        return enabled()

    assert bare() is False and called() is False
    with compile_disabled():
        assert enabled_bare() is True
    assert bare.__name__ == "bare"


def test_decorated_function_restores_on_exception() -> None:
    @compile_disabled
    def fails() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fails()
    assert enabled()


def test_decorating_a_class_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not classes"):
        compile_disabled(type("Model", (), {}))


def test_generator_holds_the_policy_at_every_step_and_never_leaks_between_yields() -> None:
    @compile_disabled
    def steps() -> Iterator[bool]:
        received = yield enabled()
        assert received == "hello"
        yield enabled()
        return

    gen = steps()
    assert next(gen) is False
    assert enabled() is True  # the caller, between yields
    assert gen.send("hello") is False
    assert enabled() is True
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_return_value_throw_and_close_run_under_the_policy() -> None:
    log: list[object] = []

    @compile_disabled
    def steps() -> Iterator[int]:
        try:
            yield 1
        except ValueError:
            log.append(("caught", enabled()))
            yield 2
        finally:
            log.append(("finally", enabled()))

    gen = steps()
    next(gen)
    assert gen.throw(ValueError()) == 2
    gen.close()
    assert log == [("caught", False), ("finally", False)]

    @compile_disabled
    def returns() -> Iterator[int]:
        yield 1
        return 42

    gen2 = returns()
    next(gen2)
    with pytest.raises(StopIteration) as stop:
        next(gen2)
    assert stop.value.value == 42


def test_coroutine_holds_the_policy_across_awaits() -> None:
    @compile_disabled
    async def work() -> list[bool]:
        seen = [enabled()]
        await asyncio.sleep(0)
        seen.append(enabled())
        return seen

    async def main() -> tuple[list[bool], bool]:
        return await work(), enabled()

    assert asyncio.run(main()) == ([False, False], True)


def test_async_generator_holds_the_policy_per_step_without_leaking() -> None:
    @compile_disabled
    async def stream() -> AsyncIterator[bool]:
        yield enabled()
        await asyncio.sleep(0)
        yield enabled()

    async def main() -> list[bool]:
        seen = []
        async for value in stream():
            seen.append(value)
            seen.append(enabled())
        return seen

    assert asyncio.run(main()) == [False, True, False, True]


def test_tasks_inherit_the_scope_they_are_created_in_and_stay_isolated() -> None:
    async def child() -> bool:
        await asyncio.sleep(0)
        return enabled()

    async def disables_itself(started: asyncio.Event, done: asyncio.Event) -> None:
        with compile_disabled():
            started.set()
            await done.wait()

    async def main() -> tuple[bool, bool, bool]:
        with compile_disabled():
            inherited = await asyncio.create_task(child())
        started, done = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(disables_itself(started, done))
        await started.wait()
        sibling_sees = enabled()
        done.set()
        await task
        return inherited, sibling_sees, enabled()

    assert asyncio.run(main()) == (False, True, True)
