"""The README's example runs as written."""

import re
from pathlib import Path

import numpy as np


def test_readme_example_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert np.isfinite(float(scope["posterior_slope"]))
    assert scope["traces"].choices["slope"].shape == (10_000,)
