"""Sphinx configuration of the sgcache_layers documentation.

Build with ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``).
The package is imported from ``../src``, so the docs build without installing it.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "_ext"))

import sgcache_layers  # noqa: E402

project = "sgcache_layers"
author = "sgcache_layers developers"
copyright = "sgcache_layers developers"
version = sgcache_layers.__version__
release = version

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sgcl_docs",  # local: CLI help and the table of public names (docs/_ext/sgcl_docs.py)
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path: list[str] = []

html_theme = "alabaster"
html_title = f"sgcache_layers {release}"
html_theme_options = {
    "description": "Layered caching for ShotGrid tools",
    "fixed_sidebar": True,
}

nitpicky = False
default_role = "literal"
pygments_style = "sphinx"

# -- autodoc -----------------------------------------------------------------

autoclass_content = "class"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_inherit_docstrings = True

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
