"""An enter of the same scope object left open inside its ``with`` block (``__enter__()``
without ``__exit__()``, an ``ExitStack`` never closed) is noticed by the block's exit: a
ScopeError, the stack restored to what the block's enter replaced, as for two different
scope objects; never a silent pop of the leaked frame. Nesting in itself, ``ExitStack`` and
pairs called by hand keep working."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import pytest

from compile_policy import ScopeError, compile_disabled, compile_enabled, current_policy


def enabled() -> bool:
    return current_policy().enabled


@pytest.fixture(autouse=True)
def _stack_as_it_was() -> Iterator[None]:
    """A leaked frame a test leaves on purpose never reaches the next test."""
    from compile_policy._context import stack as policy_stack

    saved = policy_stack.pushed_top()
    yield
    policy_stack.set_top(saved)


def test_an_enter_leaked_inside_the_same_shared_scope_raises_and_restores() -> None:
    with pytest.raises(ScopeError, match="exited out of order.*never exited"):
        with compile_disabled():
            compile_disabled().__enter__()
    assert enabled() is True


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 tells the call sites by line only")
def test_an_enter_leaked_on_the_with_statements_own_line_raises() -> None:
    with pytest.raises(ScopeError, match="exited out of order"):
        with compile_disabled(): compile_disabled().__enter__()  # noqa: E701
    assert enabled() is True


def test_an_exit_stack_never_closed_inside_the_block_raises() -> None:
    stack = contextlib.ExitStack()
    with pytest.raises(ScopeError, match="exited out of order"):
        with compile_disabled():
            stack.enter_context(compile_disabled())
    assert enabled() is True
    stack.pop_all()  # never closed: it would exit a frame that is gone


def test_an_enter_leaked_by_a_helper_function_raises() -> None:
    def helper() -> None:
        compile_enabled().__enter__()
        compile_disabled().__enter__()

    with pytest.raises(ScopeError, match="exited out of order"):
        with compile_disabled():
            helper()
    assert enabled() is True


def test_a_contextmanager_holding_the_scope_left_open_inside_the_block_raises() -> None:
    @contextlib.contextmanager
    def eager() -> Iterator[None]:
        with compile_disabled():
            yield

    left_open = eager()
    with pytest.raises(ScopeError, match="exited out of order"):
        with compile_disabled():
            left_open.__enter__()
    assert enabled() is True


def test_the_users_exception_stays_primary_and_the_leak_is_noted() -> None:
    with pytest.raises(KeyError, match="the user's") as raised:
        with compile_disabled():
            compile_disabled().__enter__()
            raise KeyError("the user's")
    assert "exited out of order" in "\n".join(raised.value.__notes__)
    assert enabled() is True


def test_a_leak_is_caught_every_time_not_only_the_first() -> None:
    def leaks() -> None:
        with compile_disabled():
            compile_disabled().__enter__()

    for _ in range(3):
        with pytest.raises(ScopeError):
            leaks()
        assert enabled() is True


def test_the_scope_nested_in_itself_and_one_line_pairs_still_exit_in_order() -> None:
    scope = compile_disabled()
    for _ in range(3):
        with scope:
            with scope:
                assert enabled() is False
            assert enabled() is False
        with scope, scope:
            assert enabled() is False
        assert enabled() is True


def test_enter_and_exit_called_by_hand_inside_the_block_pair_up() -> None:
    scope = compile_disabled()
    with scope:
        scope.__enter__()
        scope.__exit__(None, None, None)
        assert enabled() is False
    assert enabled() is True


def test_an_exit_stack_of_the_same_scope_with_a_block_inside_pairs_up() -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(compile_disabled())
        with compile_disabled():
            assert enabled() is False
        stack.enter_context(compile_enabled())
        assert enabled() is True
    assert enabled() is True


def test_every_exit_of_a_with_block_pops_its_own_frame() -> None:
    def leaves_early(n: int) -> int:
        with compile_disabled():
            if n == 0:
                return 0
            for i in range(n):
                with compile_disabled():
                    if i == 1:
                        break
                    continue
            if n == 2:
                raise ValueError(n)
        return n

    for n in (0, 1, 2, 3, 0, 2, 3):
        with contextlib.suppress(ValueError):
            leaves_early(n)
        assert enabled() is True


def test_a_generators_with_block_across_yields_exits_in_order() -> None:
    def steps() -> Iterator[bool]:
        with compile_disabled():
            yield enabled()
            yield enabled()

    with compile_disabled():
        assert list(steps()) == [False, False]
        first = steps()
        next(first)
        first.close()
    assert enabled() is True


def test_an_enter_of_the_decorators_own_scope_left_open_in_the_body_raises() -> None:
    @compile_disabled
    def body() -> None:
        compile_disabled().__enter__()

    @compile_disabled
    def steps() -> Iterator[int]:
        compile_disabled().__enter__()
        yield 1

    with pytest.raises(ScopeError, match="exited out of order"):
        body()
    assert enabled() is True
    with pytest.raises(ScopeError, match="exited out of order"):
        list(steps())
    assert enabled() is True
