"""Benchmark helpers shared by the benchmark commands (results go to docs/results/)."""
