"""The version facts of compile_policy._base.torch_releases, each checked against the running torch.

Each test measures one fact on this torch and asserts the value its release has in the facts
module: they pass on every supported release and fail loudly when a release changes a fact
(then the facts module gets the new value, with the release it was measured on).
"""

from __future__ import annotations

import dis
import inspect
import types
from typing import Any

import pytest
import torch

from compile_policy._base import torch_releases
from compile_policy._base.torch_releases import facts_of, first_release_with, release_of, running

POLICY_FIELDS = {"model", "backend", "mode", "fullgraph", "dynamic", "options"}


def test_the_running_torch_is_a_supported_release() -> None:
    assert running().supported, f"torch {torch.__version__} is not in {torch_releases.SUPPORTED}"
    assert running().version == torch.__version__


def test_torch_compile_takes_the_arguments_and_defaults_of_its_release() -> None:
    measured = {name: parameter.default
                for name, parameter in inspect.signature(torch.compile).parameters.items()
                if name not in POLICY_FIELDS}
    expected = dict(running().compile_arguments)
    if "isolate_recompiles" in expected:
        expected["isolate_recompiles"] = False  # torch's default; policy_compiled's is True
    assert measured == expected


def test_torch_compile_has_the_modes_of_its_release() -> None:
    assert set(torch._inductor.list_mode_options()) == set(running().modes)


def test_a_mode_this_torch_lacks_is_refused_naming_the_torch_and_the_release_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from compile_policy import CompilePolicy, PolicyError

    monkeypatch.setattr(torch_releases, "running", lambda: facts_of("2.9.1"))
    with pytest.raises(PolicyError, match=r"mode='lite'.*torch 2\.9\.1 does not have it \(torch 2\.\d+\+"):
        CompilePolicy(mode="lite")


def test_a_renamed_argument_exists_under_one_of_its_names_only() -> None:
    parameters = inspect.signature(torch.compile).parameters
    for old, new in running().renamed_arguments.items():
        assert (old in parameters) != (new in parameters), (old, new)


def test_per_object_isolation_is_the_isolate_recompiles_argument() -> None:
    assert running().isolation == ("isolate_recompiles" in inspect.signature(torch.compile).parameters)


def test_compile_wrapper_reads_the_stance_globals_of_its_release() -> None:
    from torch._dynamo import eval_frame

    code = eval_frame._TorchDynamoContext.__call__.__code__
    wrapper = next(_nested(code, "compile_wrapper"))
    reads = {i.argval for i in dis.get_instructions(wrapper) if i.opname == "LOAD_GLOBAL"}
    stance_globals = {"_stance", "_set_stance", "_callback_from_stance",
                      "_is_skip_guard_eval_unsafe_stance"}
    assert reads & stance_globals == running().compile_wrapper_reads


def _nested(code: types.CodeType, name: str) -> Any:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_name == name:
                yield const
            yield from _nested(const, name)


def test_inductors_wrapper_takes_the_name_where_its_release_does() -> None:
    parameters = inspect.signature(torch._TorchCompileInductorWrapper.__init__).parameters
    assert ("name" in parameters) == running().inductor_takes_name


def _add_one(self: torch.Tensor) -> torch.Tensor:
    return self + 1


def _binds_and_calls(x: torch.Tensor) -> torch.Tensor:
    return _add_one.__get__(x)()  # type: ignore[attr-defined,no-any-return]


def test_dynamo_traces_function_get_where_its_release_does() -> None:
    compiled = torch.compile(_binds_and_calls, backend="eager", fullgraph=True)
    try:
        compiled(torch.ones(2))
    except torch._dynamo.exc.TorchDynamoException:  # Unsupported; 2.9: a warning made an error
        traced = False
    else:
        traced = True
    assert traced == running().traces_function_get


def test_dynamo_asks_the_dispatch_mode_check_of_its_release() -> None:
    import torch._dynamo.convert_frame as convert_frame
    import torch.utils._python_dispatch as python_dispatch

    check = running().dispatch_mode_check
    # convert_frame imports the function it asks by name (torch 2.9.1, 2.12.1, 2.13.0, 2.15.0)
    assert getattr(convert_frame, check) is getattr(python_dispatch, check)


def test_aot_autograd_compiles_the_backward_with_the_forward_where_its_release_can() -> None:
    from torch._functorch import config

    from compile_policy._compiled.variants import EAGER_BACKWARD_SWITCH

    assert hasattr(config, EAGER_BACKWARD_SWITCH) == running().backward_with_forward


# -- the facts module itself (no torch behaviour) -------------------------------------------
@pytest.mark.parametrize(("version", "release"), [
    ("2.13.0+cpu", (2, 13)), ("2.9.1", (2, 9)), ("2.16.0a0+git1234", (2, 16)), ("3.0.0", (3, 0))])
def test_a_version_string_gives_its_release(version: str, release: tuple[int, int]) -> None:
    assert release_of(version) == release


def test_a_release_newer_than_the_newest_known_gets_the_newest_facts_and_is_not_supported() -> None:
    newest = facts_of("2.15.0")
    future = facts_of("2.99.0")
    assert not future.supported and newest.supported
    assert future._replace(version="2.15.0", release=(2, 15), supported=True) == newest


def test_each_value_holds_on_the_releases_it_was_measured_on() -> None:
    for name, history in torch_releases.HISTORY.items():
        for entry in history:
            measured = entry.measured_on.split(", ")
            assert measured and all(getattr(facts_of(v), name) == entry.value for v in measured), (
                name, entry)


def test_the_first_release_with_per_object_isolation_is_2_13() -> None:
    assert first_release_with("isolation") == (2, 13)
    assert not facts_of("2.12.1").isolation and facts_of("2.13.0").isolation


# -- what users are told where torch lacks per-object isolation -----------------------------
def test_explain_says_when_torch_has_no_per_object_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    from compile_policy import explain

    monkeypatch.setattr(torch_releases, "running", lambda: facts_of("2.12.1"))
    assert "torch 2.12.1 has no per-object isolation" in explain().splitlines()[0]
    monkeypatch.setattr(torch_releases, "running", lambda: facts_of("2.13.0"))
    assert "isolation" not in explain()


@pytest.mark.parametrize(("version", "isolation"), [("2.12.1", "per-object isolation: torch 2.12.1 has no"),
                                                    ("2.13.0", "per-object isolation: yes")])
def test_check_prints_support_governance_and_isolation_in_three_lines(
    monkeypatch: pytest.MonkeyPatch, version: str, isolation: str,
) -> None:
    from compile_policy.__main__ import support_lines

    monkeypatch.setattr(torch_releases, "running", lambda: facts_of(version))
    lines = support_lines()
    assert len(lines) == 3
    assert lines[0].startswith(f"torch {version}: supported (compile-policy supports torch 2.9 to 2.15)")
    assert lines[1].startswith("governance (govern_torch_compile): ")
    assert lines[2].startswith(isolation)


def _member(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) - 3


def test_without_isolation_the_skipped_warning_suggests_no_argument_torch_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from compile_policy import CompileSkippedWarning, policy_compiled

    # This torch's facts, but without isolation, as on 2.12 (its other facts stay true).
    without = {name: getattr(facts_of("2.12.1"), name)
               for name in ("isolation", "isolation_region", "compile_arguments")}
    facts = running()._replace(**without)
    monkeypatch.setattr(torch_releases, "running", lambda: facts)
    torch._dynamo.reset()  # the shared cache is per code object: start from none
    with torch._dynamo.config.patch(recompile_limit=1):
        policy_compiled(_member, backend="eager", dynamic=False)(torch.ones(2))
        with pytest.warns(CompileSkippedWarning) as record:
            policy_compiled(_member, backend="eager", dynamic=False)(torch.ones(3))
    assert all("isolate_recompiles" not in str(warning.message) for warning in record)
