"""Framework integration tests (make test-integrations): a package, so that its conftest and
helpers never shadow tests/conftest.py, which tests/test_docs.py imports as ``conftest``."""
