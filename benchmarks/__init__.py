"""Benchmarks of compile-policy against PyTorch's own switches: ``python -m benchmarks``."""
