"""Sphinx configuration for spec2vol-bids (built with `make docs`, warnings are errors)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NIPYPE_NO_ET", "1")

from spec2vol_bids._version import __version__  # noqa: E402

project = "spec2vol-bids"
author = "The spec2vol-bids developers"
copyright = "2026, The spec2vol-bids developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.graphviz",
    "numpydoc",
    "sphinxarg.ext",
]

autosummary_generate = True
autodoc_typehints = "none"
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
graphviz_output_format = "svg"

# no network here: intersphinx targets are listed but never fetched during CI builds
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.rst.txt"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = f"spec2vol-bids {__version__}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
nitpicky = False
suppress_warnings = ["config.cache"]
