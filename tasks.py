#!/usr/bin/env python3
"""Run ppl's main example or its test suite on a fresh machine.

    python3 tasks.py example   # Bayesian regression on scikit-learn's diabetes data
    python3 tasks.py test      # the whole test suite (extra args go to pytest)
    python3 tasks.py bench     # the side-by-side benchmarks in bench/

Only Python 3.11+ is needed: the first run makes a virtual environment in
.venv and installs ppl with what the task needs; later runs reuse it.

`test` takes one option of its own, before the pytest arguments:

    python3 tasks.py test --env py312   # the suite in .venv-py312: Python >= 3.12,
                                        # newest jax/numpyro and ArviZ 1.x
    python3 tasks.py test --env all     # .venv, then .venv-py312; fails if either fails

In .venv-py312 the default run leaves out the tests marked ``slow`` (long
statistical batteries: posteriordb reference posteriors, sampler grids,
end-to-end training; much of the code they use is run by fast tests too),
so that CI runs both environments in its time budget; pass pytest
arguments to choose otherwise, e.g. ``--env py312 -q -n 2 --dist loadfile``
for everything.

The Python for py312 is found through pyenv, `python3.12`/`python3.13`/...
on PATH or /root/.pyenv/versions/3.12*/ (or named by PPL_PYTHON312). If none
is found the run fails; outside CI (no CI=true) `--env all` then warns loudly
and runs only .venv.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXTRAS = {"example": "examples", "test": "test", "bench": "bench,examples"}


class Env:
    """A virtual environment under the repository root, made by ``python`` (None: this interpreter)."""

    def __init__(self, name: str, python: str | None = None, extra_reqs: tuple[str, ...] = ()) -> None:
        self.name = name
        self.dir = ROOT / name
        self.python = python
        self.extra_reqs = extra_reqs
        bindir = self.dir / ("Scripts" if os.name == "nt" else "bin")
        self.py = bindir / ("python.exe" if os.name == "nt" else "python")

    def ensure(self, extras: str) -> None:
        if not self.py.exists():
            print(f"creating virtual environment in {self.dir}", flush=True)
            if self.python is None:
                venv.EnvBuilder(with_pip=True).create(self.dir)
            else:
                subprocess.check_call([self.python, "-m", "venv", str(self.dir)])
        stamp = self.dir / f".installed-{extras.replace(',', '-')}"
        deps = ROOT / "pyproject.toml"
        if stamp.exists() and stamp.stat().st_mtime >= deps.stat().st_mtime:
            return
        py = str(self.py)
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--upgrade", "pip"])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]", *self.extra_reqs])
        stamp.touch()


DEFAULT = Env(".venv")
PY312_NAME = ".venv-py312"
PY312_REQS = ("arviz>=1",)  # the newest jax/numpyro come with a fresh environment


def _version(python: str) -> tuple[int, int] | None:
    """``(major, minor)`` of an interpreter that runs and can make venvs, else None."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys, venv, ensurepip; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python312() -> str | None:
    """A Python >= 3.12 (3.12 itself preferred, then the oldest newer one), or None."""
    candidates: list[str] = []
    if os.environ.get("PPL_PYTHON312"):
        candidates.append(os.environ["PPL_PYTHON312"])
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/root/.pyenv"]
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0:
            roots.insert(0, out.stdout.strip())
    for root in dict.fromkeys(r for r in roots if r):
        for d in sorted(glob.glob(os.path.join(root, "versions", "3.1[2-9]*"))):
            candidates.append(os.path.join(d, "bin", "python3"))
    for minor in range(12, 20):
        exe = shutil.which(f"python3.{minor}")
        if exe:
            candidates.append(exe)
    found: dict[tuple[int, int], str] = {}
    for c in dict.fromkeys(candidates):
        v = _version(c)
        if v is not None and v >= (3, 12):
            found.setdefault(v, c)
    return found[min(found)] if found else None


def py312_env() -> Env | None:
    existing = ROOT / PY312_NAME / "bin" / "python"
    if existing.exists() and (_version(str(existing)) or (0, 0)) >= (3, 12):
        return Env(PY312_NAME, str(existing), PY312_REQS)
    python = find_python312()
    if python is None:
        return None
    print(f"{PY312_NAME}: using {python}", flush=True)
    return Env(PY312_NAME, python, PY312_REQS)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{msg}\n{bar}\n", file=sys.stderr, flush=True)


def run_tests(env: Env, args: list[str], fast_only: bool = False) -> int:
    env.ensure(EXTRAS["test"])
    environ = dict(os.environ, PYTHONUNBUFFERED="1")
    # two worker processes (pytest-xdist), each test file on one worker so its compiled programs are reused
    default = ["-q", "-n", "2", "--dist", "loadfile"] + (["-m", "not slow"] if fast_only else [])
    what = "tests not marked slow" if fast_only and not args else "pytest " + " ".join(args or default)
    print(f"== {what} in {env.name}", flush=True)
    return subprocess.call([str(env.py), "-m", "pytest", *(args or default)], cwd=ROOT, env=environ)


def test(argv: list[str]) -> int:
    which = "default"
    if argv and argv[0].startswith("--env"):
        if argv[0] == "--env" and len(argv) > 1:
            which, argv = argv[1], argv[2:]
        elif argv[0].startswith("--env="):
            which, argv = argv[0].split("=", 1)[1], argv[1:]
        else:
            print("--env needs a value: default, py312 or all", file=sys.stderr)
            return 2
    if which not in ("default", "py312", "all"):
        print(f"unknown --env {which!r}: default, py312 or all", file=sys.stderr)
        return 2
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    codes: dict[str, int] = {}
    if which in ("default", "all"):
        codes[DEFAULT.name] = run_tests(DEFAULT, argv)
    if which in ("py312", "all"):
        env = py312_env()
        if env is None:
            loud(
                "NO PYTHON >= 3.12 FOUND (looked in pyenv, PATH python3.12+, /root/.pyenv/versions/3.12*; "
                "set PPL_PYTHON312 to name one): the py312 test environment did NOT run."
            )
            if which == "py312" or in_ci:
                return 1
        else:
            codes[env.name] = run_tests(env, argv, fast_only=True)
    if len(codes) > 1:
        print("== " + ", ".join(f"{k}: {'passed' if c == 0 else f'FAILED (exit {c})'}" for k, c in codes.items()))
    return next((c for c in codes.values() if c != 0), 0)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    if task == "test":
        return test(rest)
    DEFAULT.ensure(EXTRAS[task])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if task == "example":
        cmd = [str(DEFAULT.py), str(ROOT / "examples" / "regression.py"), *rest]
    else:
        cmd = [str(DEFAULT.py), str(ROOT / "bench" / "run.py"), *rest]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
