"""Benchmarks: every figure is a ratio against a ceiling measured in the same run."""
