"""Benchmark workloads: each module defines rows(quick) -> list[harness.Row]."""
