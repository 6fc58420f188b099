"""Side-by-side timing harness for ``bench/``.

A *workload* is a named computation with several *implementations* (ppl, a
hand-written JAX version, NumPyro, BlackJAX, ...). Each implementation is a
zero-argument ``build()`` returning ``(fn, args)``; the harness times, in one
process and one JAX version:

* compile time: the first call of the jitted ``fn`` (tracing + XLA), measured
  after clearing JAX's caches so each implementation pays its own;
* run time: the median of ``repeats`` calls after ``warmup`` calls, each
  ended with ``block_until_ready``, the implementations called in
  interleaved rounds so that a drifting machine affects them alike.

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


def compile_time(build: Callable[[], tuple[Callable, tuple]]) -> float:
    """Seconds of the first call (tracing + XLA) with JAX's caches cleared."""
    jax.clear_caches()
    gc.collect()
    fn, args = build()
    t0 = time.perf_counter()
    _block(fn(*args))
    return time.perf_counter() - t0


def run_row(
    workload: str,
    config: str,
    impls: dict[str, Callable[[], tuple[Callable, tuple]]],
    baseline: str,
    *,
    warmup: int = 3,
    repeats: int = 30,
    min_time: float = 0.0,
) -> Row:
    """Time every implementation of one workload configuration.

    Compile time: the smaller of two first calls after clearing JAX's caches.
    Run time: all implementations are built, warmed up, then called in
    interleaved rounds (A, B, C, B, C, A, ...) so that drift in the machine's
    speed hits all of them alike; each reports the median of its calls.
    """
    compiles = {n: min(compile_time(b), compile_time(b)) for n, b in impls.items()}
    jax.clear_caches()
    built = {n: b() for n, b in impls.items()}
    for fn, args in built.values():
        for _ in range(warmup):
            _block(fn(*args))
    runs: dict[str, list[float]] = {n: [] for n in impls}
    names = list(impls)
    start = time.perf_counter()
    r = 0
    while r < repeats or (time.perf_counter() - start) < min_time:
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            fn, args = built[n]
            t = time.perf_counter()
            _block(fn(*args))
            runs[n].append(time.perf_counter() - t)
        r += 1
    timings = [Timing(n, compiles[n], statistics.median(runs[n]), runs[n]) for n in impls]
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
