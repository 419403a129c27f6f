"""Benchmarks that print figures (`make bench`); they never pass or fail on a time."""
