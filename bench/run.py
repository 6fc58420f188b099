#!/usr/bin/env python3
"""Run the benchmarks in ``bench/workloads`` and print one markdown table.

    python3 tasks.py bench                 # everything
    python3 tasks.py bench hierarchical    # workloads whose name matches

Each workload module defines ``rows(quick: bool) -> list[harness.Row]``.
``--quick`` runs smaller configurations (a smoke test, not for the record).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import workloads


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("only", nargs="*", help="substrings of workload module names to run")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="also write the table to this file")
    a = p.parse_args()
    rows = []
    for m in sorted(pkgutil.iter_modules(workloads.__path__), key=lambda m: m.name):
        if a.only and not any(s in m.name for s in a.only):
            continue
        mod = importlib.import_module(f"workloads.{m.name}")
        print(f"# running {m.name}", file=sys.stderr, flush=True)
        rows.extend(mod.rows(a.quick))
    table = harness.markdown(rows)
    notes = [f"- {r.workload} / {r.config}: {r.note}" for r in rows if r.note]
    text = f"Environment: {harness.environment()}\n\n{table}\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
