"""A progress bar for compiled MCMC runs that costs (almost) nothing.

The whole run is one compiled program, so progress is reported from inside
it: every ``every``-th iteration a ``jax.debug.callback`` calls back into
Python with the iteration number (about 20 callbacks per run, not one per
draw). The compiled program keeps a reference to :func:`_report`, which
writes to whichever :class:`ProgressBar` is active, so cached programs
report to the current run. Runs without a progress bar compile a program
with no callback in it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import jax
import jax.numpy as jnp

_ACTIVE: list[ProgressBar] = []


class ProgressBar:
    """Text progress on stderr: ``nuts 4 chains: warm-up  40% (800/2000) 1.2 s``."""

    def __init__(self, label: str, num_warmup: int, total: int):
        self.label = label
        self.num_warmup = num_warmup
        self.total = total
        self.start = time.perf_counter()

    def update(self, i: int) -> None:
        phase = "warm-up " if i < self.num_warmup else "sampling"
        frac = i / max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.label}: {phase} {frac:4.0%} ({i}/{self.total}) {elapsed:.1f} s   ")
        sys.stderr.flush()

    def close(self) -> None:
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.label}: done {self.total}/{self.total} iterations in {elapsed:.1f} s          \n")
        sys.stderr.flush()

    def __enter__(self) -> ProgressBar:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _ACTIVE.remove(self)
        if exc[0] is None:
            self.close()
        else:
            sys.stderr.write("\n")


def _report(i: Any) -> None:
    if _ACTIVE:
        _ACTIVE[-1].update(int(i))


def tick(i: Any, total: int, enabled: bool) -> None:
    """Inside a scan body: report iteration ``i`` about every 5% of ``total``.

    ``enabled`` is static: without a progress bar the program holds no host
    callback at all (a callback in a loop can keep XLA from optimising it).
    """
    if not enabled:
        return
    every = max(1, total // 20)
    jax.lax.cond(
        jnp.equal(jnp.mod(i, every), 0),
        lambda j: jax.debug.callback(_report, j),
        lambda j: None,
        i,
    )


def default_enabled() -> bool:
    """Progress is shown by default only when stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except Exception:
        return False
