"""How a compile failure, or a call Dynamo ran without compiled code, is told to the user.

Each is said three ways, in this order: the ``compile_policy`` logger (at INFO: the warning
is what a user sees by default, once), an event for the
observers of :mod:`compile_policy._base.compile_events` (the pytest run report), and a warning of
this package's own category attributed to the user's call (the first frame outside this
package), which the user's filters may turn into an error. What fell back, and the counters,
stay in :mod:`compile_policy._compiled.compile_state`.

    >>> summary(RuntimeError("no kernel for this op\\nmore detail"))
    'RuntimeError: no kernel for this op'
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING

from .._base import compile_events
from .._base.errors import CompileFallbackWarning, CompileSkippedWarning, PartialCompileError
from .._base.log import logger

if TYPE_CHECKING:
    from .variants import CompileOptions

__all__ = ["partial_compile_error", "report_failure", "report_skipped", "summary"]


def report_failure(name: str, key: CompileOptions, error: BaseException, *, fell_back: bool) -> None:
    """A failure of ``key``'s variant of ``name`` that changes what it does: its fallback
    (warned, once per variant), or its first failure under ``fallback="raise"``, an error the
    call re-raises (logged at INFO only)."""
    if not fell_back:
        logger.info("%s: compile failed for %s (%s); fallback='raise' re-raises",
                    name, key.describe(), summary(error))
        return
    # INFO: the warning below tells the user, once (an unconfigured logger prints WARNING
    # records to stderr: the fallback was told twice).
    logger.info("%s: compile failed for %s (%s); this object runs eagerly for these options",
                name, key.describe(), summary(error))
    logger.debug("%s: the compile error", name, exc_info=error)
    # Before the warning, which the user's filters may turn into an error.
    compile_events.emit("fell back", name, key.describe(), summary(error))
    warnings.warn(
        f"{name}: compile failed ({summary(error)}); running eagerly for {key.describe()} on "
        "this object only",
        CompileFallbackWarning,
        stacklevel=_user_stacklevel(),
    )


def partial_compile_error(name: str, key: CompileOptions, error: BaseException) -> PartialCompileError:
    """The error of a call whose later graph failed after earlier graphs of it had run."""
    return PartialCompileError(
        f"{name}: compiling a later graph failed after compiled graphs of this call had "
        "already run (a graph break splits the call); re-running it eagerly would repeat "
        f"their side effects, so this call raises. Later calls run eagerly for "
        f"{key.describe()}. Compile the whole step (forward, backward, optimizer step) as one "
        f"graph, or fix the graph break (TORCH_LOGS=graph_breaks). Compiler error: "
        f"{type(error).__name__}"
    )


def report_skipped(name: str, key: CompileOptions, why: str, *, isolated: bool) -> None:
    """Dynamo ran a call of ``name`` without compiled code although graphs were expected
    (``why``); ``isolated``: the object keeps a Dynamo cache of its own."""
    message = (
        f"{name}: the policy says compile ({key.describe()}), but Dynamo ran this call "
        f"without compiled code {why} (recompile limit hit? see TORCH_LOGS=recompiles and "
        "torch._dynamo.config.accumulated_recompile_limit)"
    )
    if isolated and "another object" in why:
        # torch 2.13 counts every compile of a code object, for good (dropped objects'
        # too, freed cache entries too); objects made anew can share one compile instead.
        message += ("; objects of the same code made anew (a population) can share one "
                    "compile with isolate_recompiles=False")
    logger.info(message)  # INFO: the warning below tells the user
    compile_events.emit("skipped", name, key.describe(),
                        "Dynamo ran calls without compiled code (recompile limit hit?)")
    warnings.warn(message, CompileSkippedWarning, stacklevel=_user_stacklevel())


def summary(error: BaseException) -> str:
    """One line naming the compiler error and, for a backend failure, its cause."""
    inner = getattr(error, "inner_exception", None) or error.__cause__
    if inner is not None:
        return f"{type(error).__name__} from {type(inner).__name__}: {inner}"
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"


#: Frames of this package and of its generated functions (hot_path.HOT_PATH_FILE,
#: generated_code.MODULE_CALL_FILE, _governance.shortcut.SHORTCUT_FILE; a test keeps these prefixes
#: equal to them) are skipped when a warning is attributed to the user's call.
#: The package's root folder, every layer in it (this module lies one folder down).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
GENERATED_PREFIXES = ("<policy_compiled ", "<governed torch.compile")


def _user_stacklevel() -> int:
    """``stacklevel`` for a warning raised by the caller: the first frame outside this
    package and torch (the user's call), whichever path (fast, slow, failure) led here.

    torch's frames too: a module is called through ``nn.Module.__call__`` (and a parent's
    ``nn.Sequential``, DDP's forward, ...), and the line users look for is theirs that
    called it, not ``torch/nn/modules/module.py:1776``.
    """
    skipped: tuple[str, ...] = (_PACKAGE_DIR, *GENERATED_PREFIXES)
    torch_file = getattr(sys.modules.get("torch"), "__file__", None)
    if torch_file:
        skipped += (os.path.dirname(torch_file) + os.sep,)
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(skipped):
        frame, level = frame.f_back, level + 1
    return level
