"""Side-by-side timing harness for ``bench/``.

A *workload* is a named computation with several *implementations* (ppl, a
hand-written JAX version, NumPyro, BlackJAX, ...). Each implementation is a
zero-argument ``build()`` returning ``(fn, args)``; the harness times, in one
process and one JAX version:

* compile time: the first call of the jitted ``fn`` (tracing + XLA), measured
  after clearing JAX's caches so each implementation pays its own;
* run time: the median of ``repeats`` calls after ``warmup`` calls, each
  ended with ``block_until_ready``.

Ratios are reported against the implementation named ``baseline`` (the
hand-written one). Timings never go in tests: this is the only place.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax


@dataclass
class Timing:
    impl: str
    compile_s: float
    run_s: float
    runs: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    workload: str
    config: str
    baseline: str
    timings: list[Timing]
    note: str = ""


def _block(x: Any) -> Any:
    return jax.block_until_ready(x)


def time_impl(
    name: str, build: Callable[[], tuple[Callable, tuple]], *, warmup: int = 3, repeats: int = 30, min_time: float = 0.0
) -> Timing:
    """Compile time and median run time of one implementation."""
    jax.clear_caches()
    gc.collect()
    fn, args = build()
    t0 = time.perf_counter()
    _block(fn(*args))
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        _block(fn(*args))
    runs = []
    start = time.perf_counter()
    while len(runs) < repeats or (time.perf_counter() - start) < min_time:
        t = time.perf_counter()
        _block(fn(*args))
        runs.append(time.perf_counter() - t)
    return Timing(name, compile_s, statistics.median(runs), runs)


def run_row(
    workload: str, config: str, impls: dict[str, Callable[[], tuple[Callable, tuple]]], baseline: str, **kw: Any
) -> Row:
    """Time every implementation of one workload configuration (interleaved twice)."""
    first = {n: time_impl(n, b, **kw) for n, b in impls.items()}
    second = {n: time_impl(n, b, **kw) for n, b in impls.items()}
    timings = []
    for n in impls:
        a, b = first[n], second[n]
        runs = a.runs + b.runs
        timings.append(Timing(n, min(a.compile_s, b.compile_s), statistics.median(runs), runs))
    return Row(workload, config, baseline, timings)


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def markdown(rows: list[Row]) -> str:
    """One table: per workload/config, each implementation's time and ratio."""
    lines = [
        "| workload | config | implementation | run time (median) | ratio to hand-written | compile time | compile ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        base = next(t for t in r.timings if t.impl == r.baseline)
        for t in r.timings:
            lines.append(
                f"| {r.workload} | {r.config} | {t.impl} | {fmt_time(t.run_s)} | {t.run_s / base.run_s:.2f} "
                f"| {fmt_time(t.compile_s)} | {t.compile_s / base.compile_s:.2f} |"
            )
    return "\n".join(lines)


def environment() -> str:
    import platform

    import jaxlib

    devs = ", ".join(str(d) for d in jax.devices())
    return f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, Python {platform.python_version()}, devices: {devs}"
