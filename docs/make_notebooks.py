"""Turn the example scripts into executed notebooks: ``examples/<name>.ipynb``.

Run from the repository root after installing the ``docs`` extra::

    .venv/bin/pip install -e ".[docs]" && .venv/bin/python docs/make_notebooks.py

Each ``examples/<name>.py`` (cells marked ``# %%``, jupytext's percent format)
is read by jupytext and executed by nbclient in ``examples/`` with the full
number of draws, so every output in a notebook was produced by running it.
``tests/test_examples.py`` checks that the notebooks' code is the scripts' and
runs them again with few draws.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: the scripts published as notebooks (demo.py stays a script: the README runs it)
NOTEBOOKS = ("arabidopsis_tutorial", "theophylline_pk", "orange_growth", "residual_structures")


def build(name: str) -> float:
    """Execute ``examples/<name>.py`` as a notebook and write it; returns seconds."""
    notebook = jupytext.read(EXAMPLES / f"{name}.py")
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": EXAMPLES}}
    ).execute()
    nbformat.write(notebook, EXAMPLES / f"{name}.ipynb")
    return time.perf_counter() - start


if __name__ == "__main__":
    # the kernels inherit this: no progress bars stored in the published outputs
    os.environ["BAYESMIX_PROGRESS"] = "0"
    for name in sys.argv[1:] or NOTEBOOKS:
        print(f"{name}: executed in {build(name):.0f} s", flush=True)
