"""Sphinx configuration of bayesmix's documentation.

Build from the repository root::

    .venv/bin/pip install -e ".[docs]" && .venv/bin/sphinx-build -b html docs docs/_build/html

The API reference comes from the numpydoc docstrings (napoleon); the example
notebooks (``examples/*.ipynb``, executed by ``docs/make_notebooks.py``) are
copied here and rendered with their stored outputs by myst-nb.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import bayesmix

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "bayesmix"
author = "the bayesmix developers"
release = version = bayesmix.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nb_execution_mode = "off"  # the notebooks carry the outputs of a full run
exclude_patterns = ["_build", "make_notebooks.py"]
html_theme = "alabaster"
html_title = "bayesmix"

# the notebooks live in examples/; myst-nb reads them from the source tree
(HERE / "examples").mkdir(exist_ok=True)
for notebook in ROOT.glob("examples/*.ipynb"):
    shutil.copy2(notebook, HERE / "examples" / notebook.name)
