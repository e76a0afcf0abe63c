"""Messages point where users look: warnings at the user's line, Dynamo's logs at the user's
forward, one telling per fallback, readable stats, the backend list, a quiet install."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import compile_policy
from compile_policy import CompileFallbackWarning, compile_disabled, policy_compiled
from conftest import CountingBackend


class Doubles(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def caller_line() -> int:
    return sys._getframe(1).f_lineno + 1  # the line after the call


@pytest.mark.parametrize("shape", ["wrapper", "in-place", "inside-sequential"])
def test_a_modules_fallback_warning_names_the_users_line_that_called_it(
    failing: CountingBackend, shape: str
) -> None:
    if shape == "in-place":
        model: nn.Module = policy_compiled(Doubles(), backend=failing, inplace=True)
    elif shape == "wrapper":
        model = policy_compiled(Doubles(), backend=failing)
    else:  # torch's own container calls the wrapped module: still the user's line
        model = nn.Sequential(policy_compiled(Doubles(), backend=failing))
    with pytest.warns(CompileFallbackWarning) as record:
        line = caller_line()
        model(torch.ones(2))
    assert (record[0].filename, record[0].lineno) == (__file__, line)


@pytest.mark.parametrize("through", ["bind_policy", "a scope decorator"])
def test_a_fallback_warning_names_the_users_line_through_our_own_wrappers(
    failing: CountingBackend, through: str
) -> None:
    # Frames of every layer of the package are skipped, not only those of the compiled layer.
    from compile_policy import bind_policy, compile_enabled
    from compile_policy._compiled import compile_failures

    assert os.path.dirname(compile_policy.__file__) + os.sep == compile_failures._PACKAGE_DIR
    step = policy_compiled(lambda t: t + 1, backend=failing)
    wrap = {"bind_policy": bind_policy, "a scope decorator": compile_enabled(fallback="eager")}[through]
    wrapped = wrap(step)
    with pytest.warns(CompileFallbackWarning) as record:
        line = caller_line()
        wrapped(torch.ones(2))
    assert (record[0].filename, record[0].lineno) == (__file__, line)


def test_a_fallback_is_told_once_by_default(
    failing: CountingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    # By default (no logging configured), WARNING records reach stderr: only the warning may.
    caplog.set_level(logging.WARNING)
    step = policy_compiled(lambda t: t + 1, backend=failing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step(torch.ones(2))
        step(torch.ones(2))
    assert [w.category for w in caught] == [CompileFallbackWarning]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("compile_policy")] == []


@pytest.fixture
def recompile_log() -> Iterator[list[str]]:
    """The messages of ``TORCH_LOGS=recompiles`` while the test runs."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect()
    torch._logging.set_logs(recompiles=True)
    logging.getLogger("torch._dynamo").addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger("torch._dynamo").removeHandler(handler)
        torch._logging.set_logs()


@pytest.mark.parametrize("inplace", [False, True], ids=["wrapper", "in-place"])
def test_dynamos_recompile_log_names_the_users_forward_of_a_module(
    recompile_log: list[str], inplace: bool
) -> None:
    model = policy_compiled(Doubles(), backend="eager", dynamic=False, inplace=inplace)
    model(torch.ones(2))
    model(torch.ones(3))  # another shape: a recompile
    forward_line = Doubles.forward.__code__.co_firstlineno
    [message] = [m for m in recompile_log if m.startswith("Recompiling function")]
    first = message.splitlines()[0]
    assert first.startswith("Recompiling function forward in <policy_compiled Doubles.forward (")
    assert f"test_messages.py:{forward_line})>" in first
    assert "compile_policy" not in first.replace("<policy_compiled", "")


def test_compile_stats_print_readably(failing: CountingBackend) -> None:
    step = policy_compiled(lambda t: t + 1, backend="eager")
    step(torch.ones(2))
    with compile_disabled():
        step(torch.ones(2))
    shown = repr(step.stats())
    assert shown.startswith("<CompileStats compiled_calls=1 eager_calls=1 fallback_calls=0 ")
    assert shown.endswith(" variants=1 failures=0>") and "\n" not in shown
    lines = str(step.stats()).splitlines()
    assert lines[0].startswith("compiled_calls=1 eager_calls=1 fallback_calls=0 skipped_calls=0 "
                               "graphs_compiled=1 compile_seconds=")
    assert lines[1].startswith("  variant backend='eager', mode=None,") and len(lines) == 2

    broken = policy_compiled(lambda t: t + 1, backend=failing)
    with pytest.warns(CompileFallbackWarning):
        broken(torch.ones(2))
    [failure] = [line for line in str(broken.stats()).splitlines() if "failure" in line]
    assert failure.endswith("RuntimeError: counting backend told to fail (fell back)")


def test_python_m_compile_policy_lists_each_backend_once_without_testing_only_ones() -> None:
    from compile_policy.__main__ import backend_list

    listed = backend_list()
    names = [name for group in listed.split("; ") for name in group.split(": ", 1)[1].split(", ")]
    assert len(names) == len(set(names))
    assert "TESTING_ONLY" not in listed
    assert {"inductor", "eager", "aot_eager"} <= set(names)
    assert listed.startswith("backends: ") and "inductor" in listed.split(";")[0]


def test_the_license_is_an_spdx_expression_so_the_install_prints_no_deprecation_banner() -> None:
    # Read as text: tomllib is Python 3.11+, and this package supports 3.10.
    lines = (Path(__file__).parent.parent / "pyproject.toml").read_text().splitlines()
    assert 'license = "BSD-3-Clause"' in lines  # not {text = ...}: setuptools warns on it
    [requires] = [line for line in lines if line.startswith("requires = ")]
    assert '"setuptools>=77"' in requires  # the first to read an SPDX string (PEP 639)
    assert not any("License ::" in line for line in lines)  # refused beside an SPDX string
