#!/usr/bin/env python3
"""Run ppl's main example or its test suite on a fresh machine.

    python3 tasks.py example   # Bayesian regression on scikit-learn's diabetes data
    python3 tasks.py test      # the whole test suite (extra args go to pytest)
    python3 tasks.py bench     # the side-by-side benchmarks in bench/

Only Python 3.11+ is needed: the first run makes a virtual environment in
.venv and installs ppl with what the task needs; later runs reuse it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
EXTRAS = {"example": "examples", "test": "test", "bench": "bench,examples"}


def ensure_env(extras: str) -> None:
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras.replace(',', '-')}"
    deps = ROOT / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= deps.stat().st_mtime:
        return
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]"])
    stamp.touch()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    ensure_env(EXTRAS[task])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if task == "example":
        cmd = [str(PY), str(ROOT / "examples" / "regression.py"), *rest]
    elif task == "test":
        cmd = [str(PY), "-m", "pytest", *(rest or ["-q"])]
    else:
        cmd = [str(PY), str(ROOT / "bench" / "run.py"), *rest]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
