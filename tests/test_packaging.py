"""What the distribution ships and declares: licence, metadata, entry points, test fixtures.

These run against the installed distribution's metadata, so they check an editable install
in a checkout and a real install from the sdist alike (``make dist-check`` runs them from
the unpacked sdist).
"""

from __future__ import annotations

import json
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Dict, List

import sgcache_layers

#: The directory holding ``tests/``: the checkout or the unpacked sdist.
ROOT = Path(__file__).resolve().parent.parent
REAL_SCHEMA = ROOT / "tests" / "fixtures" / "real-site-schema"
URL = "https://github.com/sgcache-layers/sgcache-layers"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _distribution() -> metadata.Distribution:
    return metadata.distribution("sgcache-layers")


def _license_text() -> str:
    return (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_the_licence_is_bsd_3_clause() -> None:
    text = _license_text()
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, sgcache_layers developers" in text
    for clause in (
        "1. Redistributions of source code must retain the above copyright notice",
        "2. Redistributions in binary form must reproduce the above copyright notice",
        "3. Neither the name of the copyright holder nor the names of its",
        'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"',
    ):
        assert clause in text


def test_the_installed_distribution_carries_the_licence() -> None:
    dist = _distribution()
    assert dist.metadata["License-Expression"] == "BSD-3-Clause"
    assert dist.metadata.get_all("License-File") == ["LICENSE"]
    files = list(dist.files or [])
    shipped = [f for f in files if f.parts[-2:] == ("licenses", "LICENSE")]
    if shipped:  # an installed wheel (or editable install): *.dist-info/licenses/LICENSE
        assert len(shipped) == 1, files
        assert shipped[0].read_text(encoding="utf-8") == _license_text()
    else:  # with src/ on sys.path, src/*.egg-info is found first: its SOURCES.txt lists it
        assert "LICENSE" in [str(f) for f in files], files


def test_metadata_version_and_python_support() -> None:
    dist = _distribution()
    assert dist.version == sgcache_layers.__version__
    assert dist.metadata["Requires-Python"] == ">=3.10"
    classifiers: List[str] = dist.metadata.get_all("Classifier") or []
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == PYTHONS
    # The oldest classified Python is the floor of Requires-Python.
    assert dist.metadata["Requires-Python"] == f">={versions[0]}"
    for wanted in ("Operating System :: OS Independent", "Typing :: Typed"):
        assert wanted in classifiers
    for prefix in ("Development Status :: ", "Intended Audience :: ", "Topic :: "):
        assert any(c.startswith(prefix) for c in classifiers), prefix
    # A licence classifier next to the SPDX License-Expression is an error for the backend.
    assert not any(c.startswith("License :: ") for c in classifiers)


def test_project_urls() -> None:
    urls: Dict[str, str] = {}
    for entry in _distribution().metadata.get_all("Project-URL") or []:
        label, _, url = entry.partition(", ")
        urls[label] = url
    assert sorted(urls) == ["Documentation", "Homepage", "Issues", "Source"]
    assert urls["Homepage"] == urls["Source"] == URL
    assert urls["Issues"] == URL + "/issues"
    assert urls["Documentation"].startswith(URL + "/")


def test_entry_points() -> None:
    points = {(ep.group, ep.name): ep for ep in _distribution().entry_points}
    script = points[("console_scripts", "sgcache-layers")]
    assert script.value == "sgcache_layers.cli:main"
    from sgcache_layers.cli import main

    assert script.load() is main
    plugin = points[("pytest11", "sgcache_layers")]
    assert plugin.value == "sgcache_layers.testing.pytest_plugin"
    assert hasattr(plugin.load(), "shotgrid_server")


def test_py_typed_ships_with_the_package() -> None:
    marker = resources.files("sgcache_layers").joinpath("py.typed")
    assert marker.is_file()


def test_the_real_site_schema_fixture_keeps_its_licence_notice() -> None:
    notice = (REAL_SCHEMA / "README.md").read_text(encoding="utf-8")
    assert "Licence of the original data (BSD-3-Clause)" in notice
    assert "Copyright (c) 2009-2011, Shotgun Software Inc" in notice
    for name in ("schema.json", "schema_entity.json"):
        with open(REAL_SCHEMA / name, encoding="utf-8") as fh:
            data = json.load(fh)
        assert isinstance(data, dict) and "Shot" in data, name
