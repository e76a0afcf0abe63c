"""Process-wide totals of compiled and eager calls, read between tests by the pytest plugin.

Every policy-compiled object counts its compiled and eager calls, and so does every
function or module ``torch.compile``'d under governance (each with ``itertools.count``
objects, one C call per call). While something asks for totals (:func:`start`, the pytest
plugin run with options), each new counting object also registers its two counters here,
and :func:`totals` sums them, those of objects since collected included. Nothing per call;
nothing at all before :func:`start`.

    >>> start()
    >>> step = policy_compiled(train_step)
    >>> step(x)
    >>> totals()           # (compiled calls, eager calls) of every object made since start()
    (1, 0)
"""

from __future__ import annotations

import itertools
import threading
import weakref

__all__ = ["GovernedCalls", "counter_value", "register", "start", "totals"]

_LOCK = threading.Lock()
#: id(weak reference to an owner) -> (that reference, its compiled and eager counters);
#: None until start(): registering is then one global read.
_LIVE: dict[int, tuple[weakref.ref[object], itertools.count[int], itertools.count[int]]] | None = None
#: The counts of owners collected since, [compiled, eager], and the keys of those not yet
#: moved there.
_RETIRED = [0, 0]
_DEAD: list[int] = []


class GovernedCalls:
    """The calls of one function ``torch.compile``'d under governance, since it was compiled:
    ``compiled`` passed on to torch.compile's wrapper in an enabled context (compiled unless
    torch's own stance or Dynamo ran them eagerly), ``eager`` run as the plain function in a
    disabled one."""

    __slots__ = ("compiled", "eager")

    def __init__(self) -> None:
        self.compiled: itertools.count[int] = itertools.count()
        self.eager: itertools.count[int] = itertools.count()


def start() -> None:
    """Register every counting object made from now on (idempotent)."""
    global _LIVE
    with _LOCK:
        if _LIVE is None:
            _LIVE = {}


def register(owner: object, compiled: itertools.count[int], eager: itertools.count[int]) -> None:
    """Count ``owner``'s two counters in :func:`totals` (nothing before :func:`start`)."""
    if _LIVE is None:
        return
    ref = weakref.ref(owner, _retire)
    with _LOCK:
        _LIVE[id(ref)] = (ref, compiled, eager)


def _retire(ref: weakref.ref[object]) -> None:
    # Runs when the owner is collected: in any thread, possibly while this one holds _LOCK
    # (a collection set off inside totals()), so it only notes the key (an atomic append).
    _DEAD.append(id(ref))


def totals() -> tuple[int, int]:
    """``(compiled calls, eager calls)`` of every object registered since :func:`start`."""
    with _LOCK:
        live = _LIVE if _LIVE is not None else {}
        while _DEAD:
            entry = live.pop(_DEAD.pop(), None)
            if entry is not None:
                _RETIRED[0] += counter_value(entry[1])
                _RETIRED[1] += counter_value(entry[2])
        compiled, eager = _RETIRED
        for _ref, compiled_calls, eager_calls in tuple(live.values()):
            compiled += counter_value(compiled_calls)
            eager += counter_value(eager_calls)
    return compiled, eager


def counter_value(counter: itertools.count[int]) -> int:
    """The next value of ``counter``, i.e. how many times it was advanced."""
    # itertools.count exposes its next value only through its repr: "count(N)".
    return int(repr(counter)[len("count("):-1])
