"""Every Python example of ``README.md`` and ``docs/*.rst`` runs, so none can rot.

One test per page: its ``.. code-block:: python`` blocks (the README's ```` ```python ````
fences) run in order, in one namespace, against a fresh loopback ShotGrid site with a small
demo production.  Before them runs the set-up that the docs show once, the getting-started
block named ``examples-set-up``: it reads the site from ``SG_URL``, ``SG_SCRIPT`` and
``SG_API_KEY``, which point at the loopback site here, and defines ``sg``, ``CACHE_DIR``,
``project`` and ``shot``.  ``HOME``, ``XDG_CACHE_HOME`` and the working directory are a
temporary directory, so nothing is written outside it, and ``SGCACHE_REDIS_URL`` is the test
Redis (``redis_url`` in ``conftest.py``) on pages that use Redis.

Conventions the pages follow:

* a block whose first line is ``# NAME.py`` is that file: it is written to the working
  directory (so later blocks can import it), not run; a ``# test_NAME.py`` file is run with
  pytest at the end of the page, and every one of its tests must pass;
* a block that is not meant to run (a shell session, a unit file, output) uses another
  language (``console``, ``ini``, ``text``).

A failing block is reported by page and line; tracebacks point into the page itself.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from sgcache_layers.config import CLIENT_VARIABLES, SETTING_VARIABLES
from sgcache_layers.testing.server import ShotgridServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: The ``:name:`` of the getting-started block every page's examples start from.
PRELUDE_NAME = "examples-set-up"
PRELUDE_PAGE = DOCS / "getting-started.rst"

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block::[ \t]*(?P<lang>\S+)[ \t]*$")
_OPTION = re.compile(r"^[ \t]+:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")
_FILE = re.compile(r"^#[ \t]*(?P<name>[\w.-]+\.py)[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One Python example: where it is, its code and its ``:name:`` if any."""

    page: Path
    line: int  # the 1-based line of the first line of code
    code: str
    name: Optional[str] = None

    @property
    def file_name(self) -> Optional[str]:
        """``NAME.py`` when the block is a file (its first line is ``# NAME.py``)."""
        match = _FILE.match(self.code.splitlines()[0]) if self.code.strip() else None
        return match.group("name") if match else None

    def where(self) -> str:
        """``PAGE:LINE``, the page relative to the repository when it is in it."""
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rst_blocks(page: Path) -> List[Block]:
    """The ``.. code-block:: python`` blocks of a reStructuredText page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        i += 1
        if match is None:
            continue
        indent = len(match.group("indent"))
        options: Dict[str, str] = {}
        while i < len(lines) and _OPTION.match(lines[i]) and _indent(lines[i]) > indent:
            option = _OPTION.match(lines[i])
            assert option is not None
            options[option.group("name")] = option.group("value").strip()
            i += 1
        body: List[str] = []
        start = None
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
            if start is None and lines[i].strip():
                start = i
            if start is not None:
                body.append(lines[i])
            i += 1
        if match.group("lang") == "python" and start is not None:
            code = textwrap.dedent("\n".join(body)).rstrip() + "\n"
            blocks.append(Block(page, start + 1, code, options.get("name")))
    return blocks


def markdown_blocks(page: Path) -> List[Block]:
    """The ```` ```python ```` fences of a Markdown page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            blocks.append(Block(page, start + 1, "\n".join(lines[start:end]) + "\n"))
            i = end
        i += 1
    return blocks


def blocks_of(page: Path) -> List[Block]:
    return markdown_blocks(page) if page.suffix == ".md" else rst_blocks(page)


def prelude() -> Block:
    """The set-up block every page's examples run after."""
    named = [b for b in rst_blocks(PRELUDE_PAGE) if b.name == PRELUDE_NAME]
    assert len(named) == 1, f"{PRELUDE_PAGE.name} must have one block named {PRELUDE_NAME}"
    return named[0]


#: The pages, when the docs are here (an unpacked sdist may hold the tests without them).
PAGES = [README, *sorted(DOCS.glob("*.rst"))] if PRELUDE_PAGE.is_file() else []


def _live(kind: type) -> Dict[int, Any]:
    return {id(o): o for o in gc.get_objects() if isinstance(o, kind)}


def _run_block(block: Block, namespace: Dict[str, Any], number: int) -> None:
    source = "\n" * (block.line - 1) + block.code  # so tracebacks give the page's lines
    try:
        exec(compile(source, str(block.page), "exec"), namespace)
    except Exception:
        pytest.fail(
            f"block {number} of {block.page.name} ({block.where()}) failed:\n"
            + traceback.format_exc(),
            pytrace=False,
        )


@pytest.fixture
def docs_site(
    shotgrid_server: ShotgridServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ShotgridServer:
    """A fresh loopback site, named by SG_URL/SG_SCRIPT/SG_API_KEY, and a private home."""
    for name in SETTING_VARIABLES.values():
        monkeypatch.delenv(name, raising=False)
    for url_variable, pairs in CLIENT_VARIABLES:
        monkeypatch.delenv(url_variable, raising=False)
        for _kind, name, secret in pairs:
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(secret, raising=False)
    monkeypatch.setenv("SG_URL", shotgrid_server.url)
    monkeypatch.setenv("SG_SCRIPT", shotgrid_server.script_name)
    monkeypatch.setenv("SG_API_KEY", shotgrid_server.api_key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return shotgrid_server


_CONFTEST = '''
import os

import pytest


@pytest.fixture
def redis_url():
    """The test Redis of the docs run."""
    if not os.environ.get("SGCACHE_REDIS_URL"):
        pytest.skip("no test Redis")
    return os.environ["SGCACHE_REDIS_URL"]
'''


def _run_test_files(files: List[Path], where: Path) -> None:
    (where / "conftest.py").write_text(_CONFTEST, encoding="utf-8")
    # Only the plugin the pages rely on (the package's own) is loaded: the environment's
    # other plugins would cost more start-up time than the tests take.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "sgcache_layers.testing.pytest_plugin", *map(str, files)]
    proc = subprocess.run(
        command,
        cwd=where,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0 and " passed" in summary and "failed" not in summary, (
        f"the docs' test files {[f.name for f in files]} failed:\n{proc.stdout}\n{proc.stderr}"
    )


@pytest.mark.parametrize(
    "page", [p for p in PAGES if blocks_of(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_python_block_of_the_page_runs(
    page: Path,
    docs_site: ShotgridServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from sgcache_layers import Session

    blocks = blocks_of(page)
    if any("redis" in block.code.lower() for block in blocks):
        monkeypatch.setenv("SGCACHE_REDIS_URL", request.getfixturevalue("redis_url"))
    sessions, servers = _live(Session), _live(ShotgridServer)
    modules, environment = set(sys.modules), dict(os.environ)
    namespace: Dict[str, Any] = {"__name__": "__docs__"}
    test_files: List[Path] = []
    try:
        set_up = prelude()
        _run_block(set_up, namespace, 0)
        for number, block in enumerate(blocks, 1):
            if block == set_up:
                continue
            name = block.file_name
            if name is not None:
                (tmp_path / name).write_text(block.code, encoding="utf-8")
                if name.startswith("test_"):
                    test_files.append(tmp_path / name)
                continue
            _run_block(block, namespace, number)
        if test_files:
            _run_test_files(test_files, tmp_path)
    finally:
        # Undo what the examples set (os.environ), close what they left open, and forget
        # the modules they wrote.
        os.environ.clear()
        os.environ.update(environment)
        for key, session in _live(Session).items():
            if key not in sessions:
                session.close()
        for key, server in _live(ShotgridServer).items():
            if key not in servers and server.running:
                server.stop()
        for name in set(sys.modules) - modules:
            module_file = getattr(sys.modules.get(name), "__file__", None) or ""
            if module_file.startswith(str(tmp_path)):
                del sys.modules[name]


@pytest.mark.skipif(not PAGES, reason="the docs are not in this tree")
def test_the_collector_finds_blocks_and_their_lines() -> None:
    """The parser itself: options, nesting, other languages, line numbers."""
    prelude_block = prelude()
    assert prelude_block.page == PRELUDE_PAGE and "sg = " in prelude_block.code
    lines = PRELUDE_PAGE.read_text(encoding="utf-8").splitlines()
    assert lines[prelude_block.line - 1].strip() == prelude_block.code.splitlines()[0].strip()
    assert all(block.code.strip() for page in PAGES for block in blocks_of(page))
    readme = markdown_blocks(README)
    assert readme and all("```" not in block.code for block in readme)
