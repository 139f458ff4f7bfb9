"""Reproducible benchmarks of connex-async against baselines measured in the same run.

Run ``python -m benchmarks.run`` (or ``make bench``); ``--quick`` is a smoke run of every code path.
"""
