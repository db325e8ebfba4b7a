"""Benchmarks: each script prints its figures and the machine; results under bench/results/."""
