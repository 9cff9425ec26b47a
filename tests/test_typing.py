"""The typed surface, as a user's ``mypy --strict`` sees it.

A correct tool passes; one that misspells a session method, or takes ``get``'s answer for
an entity that is always there, fails and is told where.  (``Session.__getattr__``, which
hands unknown names to the client at run time, is hidden from type checkers on purpose.)
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = """
from typing import Any, Optional

from sgcache_layers import Entity, Session


def report(sg: Any) -> list[str]:  # a shotgun_api3.Shotgun (typed only in newer releases)
    with Session(sg, cache="~/.cache/sgcache_layers+redis://farm:6379/0", mode="cached") as s:
        shots: list[Entity] = s.find("Shot", [], ["code"])
        first: Optional[Entity] = s.find_one("Shot", [], ["code"])
        one: Optional[Entity] = s.get("Shot", shots[0]["id"])
        many: list[Optional[Entity]] = s.get("Shot", [shot["id"] for shot in shots])
        summary: Optional[dict[str, Any]] = s.summarize(
            "Shot", [], [{"field": "id", "type": "count"}]
        )
        fields: Optional[dict[str, dict[str, Any]]] = s.schema_field_read("Shot")
        types: Optional[dict[str, dict[str, Any]]] = s.schema_entity_read()
        schema: Optional[dict[str, dict[str, dict[str, Any]]]] = s.schema_read()
        print(first, one, many, summary, fields, types, schema)
        return [str(shot["code"]) for shot in shots if shot is not None]
"""

BAD = """
from sgcache_layers import Entity, Session


def report(session: Session) -> None:
    session.fnd("Shot", [], ["code"])
    always: Entity = session.get("Shot", 1)
    listed: Entity = session.get("Shot", [1, 2])
"""


def _mypy(script: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on *script* alone, outside the project's own configuration."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache_dir), script.name],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def mypy_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A mypy cache kept between runs when pytest's cache is on (it makes reruns quick)."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("sgcl-mypy")) if cache is not None else tmp_path / "mypy-cache"


def test_strict_mypy_passes_a_correct_tool_and_names_a_misspelt_method(
    tmp_path: Path, mypy_cache: Path
) -> None:
    pytest.importorskip("mypy")
    good = tmp_path / "good_tool.py"
    good.write_text(textwrap.dedent(GOOD))
    proc = _mypy(good, mypy_cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found in 1 source file" in proc.stdout

    bad = tmp_path / "bad_tool.py"
    bad.write_text(textwrap.dedent(BAD))
    proc = _mypy(bad, mypy_cache)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert 'bad_tool.py:6: error: "Session" has no attribute "fnd"; maybe "find"?' in out
    # mypy spells an optional "Entity | None" (newer) or "Optional[Entity]" (older).
    optional = r"(Entity \| None|Optional\[Entity\])"
    wrong = r"error: Incompatible types in assignment \(expression has type"
    entity = r'variable has type "Entity"\)'
    assert re.search(rf'^bad_tool.py:7: {wrong} "{optional}", {entity}', out, re.M), out
    assert re.search(rf'^bad_tool.py:8: {wrong} "list\[{optional}\]", {entity}', out, re.M), out
    assert "Found 3 errors in 1 file" in out
