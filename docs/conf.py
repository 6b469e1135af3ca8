"""Sphinx configuration of k8snode's documentation site (``make docs``).

Laid out as the Salt extension template lays out its docs: topics, one reference page
per Salt module (autodoc), the changelog. The reference tables are built from the
code's data by ``_ext/k8snode_docs.py``, which also makes ``saltext.k8snode.<kind>``
import this tree's ``_<kind>`` directories, as setup.py maps them when installed.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path[:0] = [str(REPO), str(DOCS / "_ext")]

import saltext.k8snode  # noqa: E402 - after the path is set

project = "k8snode"
author = "the k8snode authors"
copyright = "the k8snode authors"
release = version = saltext.k8snode.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "myst_parser",
    "k8snode_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

# The reference pages are written out (one per Salt module, as the template's
# tools/ write them); autosummary only lists them.
autosummary_generate = False
autodoc_default_options = {"member-order": "bysource"}
# Salt's loader dunders (__salt__, __grains__, ...) are read at call time only: every
# module imports without a minion, so nothing is mocked.

# Commands and flags stay as typed (--out=k8snode, '*'): no smart quotes or dashes.
smartquotes = False

html_theme = "furo"
html_title = f"k8snode {release}"
