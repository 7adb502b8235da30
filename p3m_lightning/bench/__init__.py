"""Benchmarks that print figures (``make bench``); ratios are measured in the same run."""
