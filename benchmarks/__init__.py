"""Benchmarks of impactagent against its peers, in one process and one run."""
