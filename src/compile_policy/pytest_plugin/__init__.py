"""The pytest plugin (the ``pytest11`` entry point ``compile_policy.pytest_plugin``): a
run-wide baseline, per-test markers, both modes, a ``compile_policy`` fixture, a guard
against leaked scopes, a run report of fallbacks, Dynamo/inductor isolation, and plain
``torch.compile`` governed per test. The hooks live in :mod:`._hooks`; this package only
re-exports them, so that ``-p compile_policy.pytest_plugin`` and existing installs keep
working. It never imports torch, except for the settings that need it.

    pytest --compile-policy=off          # every test starts with compile disabled
    pytest --compile-policy=both         # every test twice: [compiled] and [eager]
    pytest -p compile_policy.pytest_plugin   # where plugin autoloading is off
"""

from __future__ import annotations

from ._fixture import PolicyFixture, compile_policy

# The hooks and the mode fixture, as `name as name`: re-exported for pytest, which reads
# this module's attributes, but kept out of __all__ (a conftest's `import *` would register
# them twice).
from ._hooks import _mode_param as _mode_param
from ._hooks import pytest_addoption as pytest_addoption
from ._hooks import pytest_collection_finish as pytest_collection_finish
from ._hooks import pytest_configure as pytest_configure
from ._hooks import pytest_generate_tests as pytest_generate_tests
from ._hooks import pytest_report_header as pytest_report_header
from ._hooks import pytest_runtest_call as pytest_runtest_call
from ._hooks import pytest_runtest_makereport as pytest_runtest_makereport
from ._hooks import pytest_runtest_setup as pytest_runtest_setup
from ._hooks import pytest_runtest_teardown as pytest_runtest_teardown
from ._hooks import pytest_sessionfinish as pytest_sessionfinish
from ._hooks import pytest_terminal_summary as pytest_terminal_summary
from ._hooks import pytest_unconfigure as pytest_unconfigure

__all__ = ["PolicyFixture", "compile_policy"]
