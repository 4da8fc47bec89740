"""Sphinx configuration for spec2vol-bids (built with `make docs`, warnings are errors)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NIPYPE_NO_ET", "1")
# numpydoc parses the init_*_wf docstrings for signatures too; their Inputs/Outputs sections are handled below
warnings.filterwarnings("ignore", message="Unknown section (Inputs|Outputs)", category=UserWarning)

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
# argparse help texts are rendered as reST by sphinx-argparse: "|FFT|" there is text, not a substitution
rst_prolog = r".. |FFT| replace:: \|FFT\|"


def _nipype_sections(app, what, name, obj, options, lines):
    """Render the ``Inputs``/``Outputs`` sections of the ``init_*_wf`` docstrings (niworkflows style).

    numpydoc knows no such sections and would drop them: move them, as rubrics, into a ``Notes`` section.
    """
    if what != "function" or not name.rsplit(".", 1)[-1].startswith("init_"):
        return
    headers = [i for i in range(len(lines) - 1)
               if lines[i].strip() and set(lines[i + 1].strip()) == {"-"} and len(lines[i + 1].strip()) >= 3]
    keep, moved, i = [], [], 0
    while i < len(lines):
        if i in headers and lines[i].strip() in ("Inputs", "Outputs"):
            end = next((h for h in headers if h > i), len(lines))
            moved += [f".. rubric:: {lines[i].strip()}", ""] + lines[i + 2:end] + [""]
            i = end
            continue
        keep.append(lines[i])
        i += 1
    if moved:
        lines[:] = keep + ([""] if keep and keep[-1].strip() else []) + ["Notes", "-----"] + moved


def setup(app):
    app.connect("autodoc-process-docstring", _nipype_sections, priority=400)
