"""Fixtures of the framework integration tests (``make test-integrations``): offline hub,
governance for one test, a counting backend (tiny_models.py has the models and data).

The frameworks are not dependencies of compile-policy: these tests run in their own venv
(``.venv-integrations``, pinned by constraints-integrations.txt). The main suite never
collects this folder (``collect_ignore`` in tests/conftest.py).
"""

from __future__ import annotations

import os

# Read by huggingface_hub and transformers at import: set before either is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from collections.abc import Iterator

import pytest

from compile_policy._governance import install as governance

from .tiny_models import CountingBackend


@pytest.fixture
def counting_aot_eager() -> CountingBackend:
    return CountingBackend("aot_eager")


@pytest.fixture
def governed() -> Iterator[None]:
    """``govern_torch_compile()`` for one test, uninstalled after it unless it was on before."""
    from compile_policy import govern_torch_compile

    was_governed = governance.is_governed()
    govern_torch_compile()
    try:
        yield
    finally:
        if not was_governed:
            governance._uninstall()
