"""Benchmarks that print their figures (see bench/README.md). Not tests: pytest only collects tests/."""
