"""Run a notebook from notebooks/ and read the summary its last cell prints."""

import ast
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook_summary(name: str) -> dict:
    """Execute ``notebooks/<name>`` top to bottom; return the dict its last code cell prints."""
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    return ast.literal_eval(text.strip().splitlines()[-1])
