"""Functions generated from source text with a wrapped function's own parameter list.

The hot path of :func:`~compile_policy.policy_compiled` and governance's shortcut around
``torch.compile``'s wrapper are both compiled from a template, once per parameter list, so
that a call passes its arguments on as they came: no ``*args`` tuple and ``**kwargs`` dict
per call (on the tiny benchmark function: 4,100 -> 2,500 instructions over the direct
compiled call for the hot path; 1.036x -> 1.02x the ungoverned call for the shortcut).

    >>> code = compile_source("def f({params}):\\n    return g({args})\\n".format(
    ...     params="x, /", args="x"), "<example>")
    >>> code.co_name, sorted(names_used(code))
    ('f', ['g', 'x'])
"""

from __future__ import annotations

import builtins
import functools
import inspect
import linecache
import types

from .._context.frames import _short_path  # the path as explain() shows it

__all__ = ["compile_source", "module_call_function", "names_used", "plain_parameters"]


def plain_parameters(target: object, reserved: frozenset[str]) -> tuple[str, str] | None:
    """``(params, args)``: the parameter list and the call's argument list of a wrapper
    generated with ``target``'s own parameters, or None where it needs ``*args, **kwargs``.

    Its own parameters where it is a plain function or bound method whose parameters are
    all positional without defaults, none named like one of ``reserved`` (the names the
    generated code uses); keyword calls stay valid (binding is the same) and a wrong call
    gets Python's own TypeError. Anything else (defaults, ``*args``, keyword-only
    parameters, modules, whose hooks see how arguments were passed) is generic. The list is
    read once: a later change of ``target``'s parameters (a new ``__code__``) needs a new
    wrapper.

        >>> plain_parameters(lambda x, y, /: 0, frozenset())
        ('x, y, /', 'x, y')
    """
    function = target.__func__ if isinstance(target, types.MethodType) else target
    bound = function is not target
    if not isinstance(function, types.FunctionType) or function.__defaults__:
        return None
    code = function.__code__
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or code.co_kwonlyargcount:
        return None
    names = code.co_varnames[: code.co_argcount]
    if bound:
        names = names[1:]  # `self` is already in the method
    if not reserved.isdisjoint(names) or not all(name.isidentifier() for name in names):
        return None  # a name made by hand (code.replace) is never pasted into source
    positional_only = code.co_posonlyargcount - bound
    params = list(names)
    if positional_only > 0:
        params.insert(positional_only, "/")
    return ", ".join(params), ", ".join(names)


def compile_source(source: str, filename: str) -> types.CodeType:
    """The code of the one function ``source`` defines, compiled under ``filename``, whose
    lines tracebacks and pdb then show (from linecache, as for a file)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = compile(source, filename, "exec")
    [code] = (c for c in module.co_consts if isinstance(c, types.CodeType))
    return code


def names_used(code: types.CodeType) -> frozenset[str]:
    """Every name ``code`` and the functions it defines use: a parameter named like one
    would shadow it."""
    names = set(code.co_names + code.co_varnames + code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= names_used(const)
    return frozenset(names)


# The frame a policy-compiled module compiles (see module_calls.module_call): Dynamo names a
# frame by its code's co_name and co_filename in its logs (TORCH_LOGS=recompiles, graph
# breaks), so this one is named after the module's forward and where that is defined:
# "Recompiling function forward in <policy_compiled MLP.forward (model.py:12)>", not a
# frame of this package. One code object per class, as modules of one class shared one.
# `module` is a closure cell, as in the function this replaced: Dynamo's guards keep a
# frame's globals alive, and a module held there was never freed.
MODULE_CALL = """\
def make(module):
    def forward(*args, **kwargs):
        return {call}(*args, **kwargs)
    return forward
"""
MODULE_CALL_FILE = "<policy_compiled {}>"
_MODULE_CALL_GLOBALS = {"__builtins__": builtins}  # see hot_path: Dynamo reads them


def module_call_function(module: object, call: str) -> types.FunctionType:
    """A function running ``call`` (an expression of the global ``module``, such as
    ``module._call_impl``) with its arguments, named after ``module``'s forward.

        >>> module_call_function(obj, "module.run").__code__.co_filename  # doctest: +SKIP
        '<policy_compiled Runner.forward (runner.py:3)>'
    """
    cls = type(module)
    code = getattr(getattr(cls, "forward", None), "__code__", None)
    forward = f"{cls.__qualname__}.forward"
    if isinstance(code, types.CodeType):
        forward += f" ({_short_path(code.co_filename)}:{code.co_firstlineno})"
    make = types.FunctionType(_module_call_code(forward, call), _MODULE_CALL_GLOBALS)
    function: types.FunctionType = make(module)
    return function


@functools.lru_cache(maxsize=256)
def _module_call_code(forward: str, call: str) -> types.CodeType:
    return compile_source(MODULE_CALL.format(call=call), MODULE_CALL_FILE.format(forward))
