"""The example notebooks are the example scripts, and they run (issue 17).

``examples/<name>.ipynb`` are built from ``examples/<name>.py`` by
``docs/make_notebooks.py`` (executed with the full draws). Here each
notebook's code cells must equal the script's ``# %%`` cells, and the notebook
is executed again by a Jupyter kernel with ``BAYESMIX_EXAMPLE_DRAWS`` set low,
so an example that no longer runs fails the tests.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(p.stem for p in EXAMPLES.glob("*.ipynb"))


def _script_cells(path: Path) -> list[str]:
    """The code cells of a percent-format script (``# %%`` markers, markdown skipped)."""
    cells, current, kind = [], [], "code"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if kind == "code" and "".join(current).strip():
                cells.append("\n".join(current).strip())
            current, kind = [], "markdown" if "[markdown]" in line else "code"
            continue
        current.append(line)
    if kind == "code" and "".join(current).strip():
        cells.append("\n".join(current).strip())
    return cells


def test_every_published_example_has_a_notebook():
    assert set(NOTEBOOKS) == {
        "arabidopsis_tutorial",
        "orange_growth",
        "residual_structures",
        "theophylline_pk",
    }


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_the_script_and_was_executed(name):
    notebook = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.source.strip() for c in code] == _script_cells(EXAMPLES / f"{name}.py"), (
        f"examples/{name}.ipynb is out of date: rebuild it with docs/make_notebooks.py"
    )
    assert all(c.execution_count is not None for c in code)
    assert any(c.outputs for c in code)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, monkeypatch, tmp_path):
    monkeypatch.setenv("BAYESMIX_EXAMPLE_DRAWS", "40")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    # figures go to tmp_path/figures: the notebook writes beside its working directory
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors
