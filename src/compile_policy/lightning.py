"""Lightning: :class:`CompilePolicyCallback` runs validation, test and predict under a policy.

    >>> import lightning.pytorch as pl
    >>> from compile_policy.lightning import CompilePolicyCallback
    >>> trainer = pl.Trainer(callbacks=[CompilePolicyCallback(validate="off")])
    >>> trainer.fit(model)  # training compiled; validation, the sanity check included, eager

Lightning is imported by this module alone and is never a dependency of compile-policy:
``import compile_policy`` does not load this module. ``lightning`` (2.x) is used where it is
installed, else ``pytorch_lightning``.
"""

from __future__ import annotations

from typing import Any

from ._base.errors import PolicyError
from ._context import stack as _stack
from ._policy.value import CompilePolicy

try:
    from lightning.pytorch import Callback
except ImportError as _missing:  # only the older package name installed, or neither
    if _missing.name not in ("lightning", "lightning.pytorch"):
        raise  # Lightning is there but failed to import: its own error, not ours
    try:
        from pytorch_lightning import Callback
    except ImportError as _also_missing:
        if _also_missing.name != "pytorch_lightning":
            raise
        raise ImportError(
            "compile_policy.lightning needs Lightning: pip install lightning "
            "(or pytorch-lightning); compile-policy itself does not depend on it"
        ) from None

__all__ = ["CompilePolicyCallback"]

#: The stages a policy can be given for: the argument, and the words of Lightning's hooks.
_STAGES = {"validate": "validation", "test": "test", "predict": "predict"}


class _StageOwner:
    """What owns the frame one callback pushes for one stage: ``explain()`` prints it, and the
    exit finds its own frame by it (``is``), never another callback's."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


def _policy_for(stage: str, value: object) -> CompilePolicy | None:
    if value is None or isinstance(value, CompilePolicy):
        return value
    if isinstance(value, str):
        from ._policy.value import parse_policy

        return parse_policy(value, source=f"CompilePolicyCallback {stage}=")
    raise PolicyError(
        f"CompilePolicyCallback {stage}={value!r} is not allowed; allowed: None, a policy text "
        "such as 'off' or 'on,backend=aot_eager', or a CompilePolicy"
    )


class CompilePolicyCallback(Callback):
    """Run Lightning's validation, test and/or predict loops under a compile policy.

    Each of ``validate``, ``test`` and ``predict`` is a policy text (``"off"``,
    ``"on,backend=aot_eager"``, see :meth:`CompilePolicy.parse`), a :class:`CompilePolicy`,
    or ``None``: that loop runs under whatever policy is around the trainer call. ``validate``
    holds for ``trainer.validate()`` and for every validation inside ``fit``, the sanity check
    included. The policy is pushed on the calling thread's stack when the loop starts, and
    removed when it ends, when it raises (``on_exception``, Ctrl+C included) and at
    ``teardown``: after ``fit``, ``validate``, ``test`` or ``predict`` returns or raises, the
    thread's policy is exactly what it was before, and a scope entered inside the loop and
    never exited goes with it. The callback keeps no per-run state: one instance may serve
    several trainers, in several threads. Lightning calls the callbacks' end hooks in the
    order of their start hooks, so give one callback all its loops' policies rather than
    listing two that set the same loop.

        >>> trainer = pl.Trainer(callbacks=[CompilePolicyCallback(validate="off")])
        >>> trainer.fit(model)        # validation eager, training as the policy says
        >>> current_policy().enabled  # nothing left behind
        True
    """

    def __init__(
        self,
        *,
        validate: str | CompilePolicy | None = None,
        test: str | CompilePolicy | None = None,
        predict: str | CompilePolicy | None = None,
    ) -> None:
        super().__init__()
        given = {"validate": validate, "test": test, "predict": predict}
        policies = {stage: _policy_for(stage, value) for stage, value in given.items()}
        if all(policy is None for policy in policies.values()):
            raise TypeError(
                "CompilePolicyCallback() needs a policy for at least one of validate=, test=, "
                "predict= (a policy text such as 'off', or a CompilePolicy)"
            )
        shown = ", ".join(f"{stage}={value!r}" for stage, value in given.items() if value is not None)
        self._label = f"CompilePolicyCallback({shown})"
        self._stages = {
            stage: (policy, _StageOwner(f"{self._label} during {_STAGES[stage]}"))
            for stage, policy in policies.items() if policy is not None
        }

    def __repr__(self) -> str:
        return self._label

    # -- entering and leaving --------------------------------------------------------------
    def _enter(self, stage: str) -> None:
        if stage in self._stages:
            policy, owner = self._stages[stage]
            _stack.push(policy, owner, f"Lightning's {_STAGES[stage]} loop")

    def _leave(self, *stages: str) -> None:
        """Restore what the outermost frame of ``stages`` pushed in this thread/task replaced.

        Hooks run in the order the callbacks are listed, at the end as at the start, so two
        callbacks' frames are not exited last in, first out: a frame is found by its owner,
        wherever it is on the stack, and the stack goes back to exactly what was below it.
        What is above it goes with it: a scope entered in the loop and never exited, or the
        frame of a callback listed after this one (whose own exit then has nothing to do).
        """
        owners = [self._stages[stage][1] for stage in stages if stage in self._stages]
        outermost = None
        frame = _stack.pushed_top()
        while frame is not None:
            if any(frame.owner is owner for owner in owners):
                outermost = frame
            frame = frame.below
        if outermost is not None:
            _stack.set_top(outermost.below)

    # -- Lightning's hooks -----------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._enter("validate")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._leave("validate")

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._enter("test")

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._leave("test")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._enter("predict")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._leave("predict")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._leave(*self._stages)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._leave(*self._stages)
