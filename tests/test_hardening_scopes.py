"""Scopes never mask an exception leaving them, and refuse an exit in a context that did not
enter them (a child task, a bind_policy thread, copy_context().run)."""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from compile_policy import (
    CompilePolicy,
    PolicyScope,
    ScopeError,
    bind_policy,
    compile_disabled,
    compile_enabled,
    current_policy,
    use_policy,
)
from compile_policy._context import stack as _stack

SCOPES: list[Callable[[], PolicyScope]] = [
    compile_disabled,
    lambda: compile_enabled(backend="eager"),
    lambda: use_policy(CompilePolicy(enabled=False, fallback="raise")),
]


def _notes(error: BaseException) -> str:
    return "\n".join(getattr(error, "__notes__", []))


# -- never mask an exception ------------------------------------------------------------------


@pytest.mark.parametrize("make", SCOPES)
@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError, SystemExit, GeneratorExit])
def test_an_exception_leaving_a_scope_with_a_leaked_inner_one_propagates_unchanged(
    make: Callable[[], PolicyScope], error: type[BaseException]
) -> None:
    before = current_policy()
    raised = error("the user's")
    with pytest.raises(error) as info:
        with make():
            compile_enabled(mode="max-autotune").__enter__()  # leaked: never exited
            raise raised
    assert info.value is raised
    assert "out of order" in _notes(raised)
    assert current_policy() == before and _stack.pushed_top() is None


def test_without_an_exception_a_leaked_inner_scope_is_still_a_scope_error() -> None:
    with pytest.raises(ScopeError, match="out of order"):
        with compile_disabled():
            compile_enabled().__enter__()
    assert _stack.pushed_top() is None


def test_a_decorated_function_that_leaks_a_scope_and_raises_keeps_its_exception() -> None:
    @compile_disabled
    def body() -> None:
        compile_enabled(backend="eager").__enter__()
        raise KeyboardInterrupt

    @compile_enabled(backend="eager")
    def gen() -> Iterator[int]:
        yield 1
        compile_disabled().__enter__()
        raise ValueError("in a step")

    with pytest.raises(KeyboardInterrupt):
        body()
    assert _stack.pushed_top() is None
    steps = gen()
    assert next(steps) == 1
    with pytest.raises(ValueError, match="in a step") as info:
        next(steps)
    assert "out of order" in _notes(info.value)
    assert _stack.pushed_top() is None


def test_an_exception_through_a_foreign_exit_propagates_with_a_note() -> None:
    scope = compile_disabled()
    scope.__enter__()
    try:
        error = ValueError("user")
        assert contextvars.copy_context().run(scope.__exit__, ValueError, error, None) is None
        assert "did not enter it" in _notes(error)
    finally:
        scope.__exit__(None, None, None)
    assert current_policy().enabled


# -- foreign exits ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", SCOPES)
def test_exiting_a_parents_scope_in_a_child_task_is_a_scope_error(
    make: Callable[[], PolicyScope],
) -> None:
    scope = make()
    expected = scope.policy

    async def child() -> CompilePolicy:
        with pytest.raises(ScopeError, match="did not enter it"):
            scope.__exit__(None, None, None)
        return current_policy()  # unchanged: the refused exit changed nothing

    async def main() -> None:
        with scope:
            seen = await asyncio.create_task(child())
            assert seen == current_policy()
            assert current_policy().enabled == expected.enabled
            # The parent's own exit still works after the child's refused one.
            results = await asyncio.gather(child(), child())
            assert len(results) == 2
        assert current_policy() == CompilePolicy()

    asyncio.run(main())


def test_exiting_a_parents_scope_in_a_bind_policy_thread_is_a_scope_error() -> None:
    scope = compile_enabled(backend="eager")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            scope.__exit__(None, None, None)
        except ScopeError as error:
            errors.append(error)

    with scope:
        thread = threading.Thread(target=bind_policy(worker))
        thread.start()
        thread.join()
        assert current_policy().backend == "eager"
    assert len(errors) == 1 and "did not enter it" in str(errors[0])
    assert current_policy() == CompilePolicy()


def test_exiting_in_a_copied_context_is_a_scope_error_even_after_the_scope_was_reused() -> None:
    scope = compile_disabled()
    with scope:
        inherited = contextvars.copy_context()
        with pytest.raises(ScopeError):
            inherited.run(scope.__exit__, None, None, None)
    # The same frame is pushed again from this line's `with` below: the copy still may not
    # exit it, nor the frame it holds from before.
    for _ in range(2):
        with scope:
            with pytest.raises(ScopeError):
                inherited.run(scope.__exit__, None, None, None)
            with pytest.raises(ScopeError):
                contextvars.copy_context().run(scope.__exit__, None, None, None)
    assert current_policy().enabled


def test_a_child_task_exits_its_own_scopes_of_a_shared_scope_object() -> None:
    scope = compile_disabled()

    async def child() -> bool:
        with scope:  # over the inherited frame of the same scope object
            await asyncio.sleep(0)
            inside = current_policy().enabled
        return inside

    async def main() -> None:
        with scope:
            assert await asyncio.gather(*(child() for _ in range(5))) == [False] * 5
            assert not current_policy().enabled
        assert current_policy().enabled

    asyncio.run(main())


def test_repeated_scopes_push_the_same_frame_and_nesting_in_itself_too() -> None:
    scope = compile_enabled(backend="eager")
    tops = []
    for _ in range(3):
        with scope:
            outer = _stack.pushed_top()
            with scope:
                tops.append((outer, _stack.pushed_top()))
    assert len(set(tops)) == 1 and tops[0][0] is not tops[0][1]


def test_threads_sharing_scopes_under_heavy_preemption_never_share_a_frame() -> None:
    scopes = [make() for make in SCOPES]
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        try:
            for _ in range(300):
                first, second = rng.choice(scopes), rng.choice(scopes)
                with first:
                    assert current_policy().enabled == first.policy.enabled
                    with second:
                        assert current_policy().enabled == second.policy.enabled
                    assert current_policy().enabled == first.policy.enabled
                assert _stack.pushed_top() is None
        except BaseException as error:  # reported below, in the main thread
            failures.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
