"""Benchmarks (``kvspec bench NAME``): impl vs model (and vs real engines) on one workload, in one
run, reported as ratios.  Never timed assertions."""
