"""Warmed snapshots: every row of some entity types in one scope, and their records.

A :class:`Snapshot` holds the rows (live and retired, exactly as ``shotgun_api3`` returned
them) of some entity types in one *scope*: a project (its sequences, shots, tasks...) or
the whole site (projects, steps, users: the types without a ``project`` field).  With them
it keeps what answering needs: each type's fields, the field types of its schema, the time
and generations each type was confirmed at, and the event-log position it is current to.

It is stored as one head record (kind ``w``) and chunk records (kind ``c``), each holding
at most :data:`CHUNK_ROWS` rows of one type.  Chunk keys are new for every chunk written,
and a head names its chunks, so a reader that reads a head then its chunks never mixes
two warms; a warm that changes a few rows rewrites only the chunks holding them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from .records import FORMAT_VERSION

__all__ = ["CHUNK_ROWS", "HEAD_NAME", "SITE_SCOPE", "Chunk", "Snapshot", "Table"]

#: Most rows one chunk record holds.
CHUNK_ROWS = 1000
#: The scope of the types that are not per project.
SITE_SCOPE = "site"
#: The name part of head keys (``w|Snapshot|<scope>``).
HEAD_NAME = "Snapshot"

Row = dict[str, Any]


@dataclass
class Chunk:
    """One chunk record: its key's last part, the ids it holds, live or retired."""

    rest: str
    ids: list[int]
    retired: bool
    dirty: bool = False


@dataclass
class Table:
    """The rows of one entity type in a snapshot, and what they were confirmed against."""

    entity_type: str
    fields: list[str]
    #: Generation names the rows depend on: the type and the types its links may name.
    deps: list[str]
    stamp: float
    gens: dict[str, str]
    live: dict[int, Row] = field(default_factory=dict)
    retired: dict[int, Row] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    #: Every warmed field was asked for (a schema change re-reads the field list).
    all_fields: bool = True
    _ordered: dict[bool, list[Row]] = field(default_factory=dict, repr=False)
    _where: Optional[dict[int, Chunk]] = field(default=None, repr=False)

    def rows(self, retired: bool = False) -> list[Row]:
        """Live (or retired) rows in id order (kept until the table changes)."""
        found = self._ordered.get(retired)
        if found is None:
            table = self.retired if retired else self.live
            found = self._ordered[retired] = [table[i] for i in sorted(table)]
        return found

    def row(self, entity_id: int) -> Optional[Row]:
        """The row of *entity_id*, live or retired."""
        found = self.live.get(entity_id)
        return found if found is not None else self.retired.get(entity_id)

    def _chunk_of(self, entity_id: int) -> Optional[Chunk]:
        if self._where is None:
            self._where = {i: chunk for chunk in self.chunks for i in chunk.ids}
        return self._where.get(entity_id)

    def drop(self, entity_id: int) -> None:
        """Forget a row (it left the scope or the site)."""
        chunk = self._chunk_of(entity_id)
        if chunk is not None:
            chunk.ids.remove(entity_id)
            chunk.dirty = True
            assert self._where is not None
            del self._where[entity_id]
        self.live.pop(entity_id, None)
        self.retired.pop(entity_id, None)
        self._ordered.clear()

    def put(self, row: Row, retired: bool = False) -> None:
        """Add or replace a row (moving it between live and retired as needed)."""
        entity_id = row["id"]
        chunk = self._chunk_of(entity_id)
        if chunk is not None and chunk.retired != retired:
            self.drop(entity_id)
            chunk = None
        if chunk is None:
            chunk = next((c for c in reversed(self.chunks) if c.retired == retired), None)
            if chunk is None or len(chunk.ids) >= CHUNK_ROWS:
                chunk = Chunk("", [], retired)
                self.chunks.append(chunk)
            chunk.ids.append(entity_id)
            assert self._where is not None
            self._where[entity_id] = chunk
        chunk.dirty = True
        (self.retired if retired else self.live)[entity_id] = row
        self._ordered.clear()

    def copy(self) -> Table:
        """A table to change without touching this one (rows are shared: never mutated)."""
        return Table(
            self.entity_type,
            list(self.fields),
            list(self.deps),
            self.stamp,
            dict(self.gens),
            dict(self.live),
            dict(self.retired),
            [Chunk(c.rest, list(c.ids), c.retired, c.dirty) for c in self.chunks],
            self.all_fields,
        )

    def replace(self, live: Iterable[Row], retired: Iterable[Row]) -> list[str]:
        """Hold exactly these rows (a full fetch); returns the chunk rests it no longer uses."""
        gone = [chunk.rest for chunk in self.chunks if chunk.rest]
        self.live, self.retired, self.chunks = {}, {}, []
        self._where = {}
        self._ordered.clear()
        for rows, flag in ((live, False), (retired, True)):
            for row in rows:
                self.put(row, flag)
        return gone


@dataclass
class Snapshot:
    """The warmed types of one scope (see the module doc)."""

    scope: str
    project: Optional[dict[str, Any]]
    position: int
    holes: dict[int, float]
    tables: dict[str, Table]
    #: ``{type: {field: data type}}`` of every field of the warmed types.
    schema: dict[str, dict[str, str]]
    revision: str = ""
    #: The epoch of the namespace the records were read from or written to.
    epoch: str = ""
    #: What the last warm was asked for (``{"types": ..., "fields": ...}``), for projects.
    request: Optional[dict[str, Any]] = None
    #: Rows per page of the site (``find(limit=, page=)`` pages by it).
    per_page: int = 500

    def copy(self) -> Snapshot:
        """A snapshot to change (a warm) while readers keep using this one."""
        return Snapshot(
            self.scope,
            self.project,
            self.position,
            dict(self.holes),
            {name: table.copy() for name, table in self.tables.items()},
            {name: dict(fields) for name, fields in self.schema.items()},
            self.revision,
            self.epoch,
            self.request,
            self.per_page,
        )

    # -- records ---------------------------------------------------------------------

    def head(self) -> dict[str, Any]:
        """The head record (call after :meth:`chunk_records`, which names new chunks)."""
        types = {
            entity_type: {
                "f": table.fields,
                "d": table.deps,
                "t": table.stamp,
                "g": table.gens,
                "a": table.all_fields,
                "c": [[c.rest, c.retired, len(c.ids)] for c in table.chunks if c.ids],
            }
            for entity_type, table in self.tables.items()
        }
        stamps = [table.stamp for table in self.tables.values()]
        return {
            "v": FORMAT_VERSION,
            "k": "w",
            "t": min(stamps) if stamps else 0.0,
            "g": {},
            "S": self.scope,
            "P": self.project,
            "e": self.position,
            "h": {str(i): t for i, t in self.holes.items()},
            "n": self.revision,
            "ty": types,
            "sc": self.schema,
            "q": self.request,
            "pp": self.per_page,
        }

    def chunk_records(
        self,
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[str, str]]]:
        """``({(type, rest): record}, [(type, rest) no longer used])`` for the chunks
        changed since they were written.

        Each changed chunk gets a new rest (so readers of the old head still find theirs);
        a new revision names this state.
        """
        self.revision = secrets.token_hex(6)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        gone: list[tuple[str, str]] = []
        for entity_type, table in self.tables.items():
            kept: list[Chunk] = []
            for number, chunk in enumerate(table.chunks):
                if not chunk.dirty and chunk.rest:
                    kept.append(chunk)
                    continue
                if chunk.rest:
                    gone.append((entity_type, chunk.rest))
                if not chunk.ids:
                    continue
                chunk.rest = f"{self.scope}.{self.revision}.{number}"
                chunk.dirty = False
                source = table.retired if chunk.retired else table.live
                out[(entity_type, chunk.rest)] = {
                    "v": FORMAT_VERSION,
                    "k": "c",
                    "t": table.stamp,
                    "g": {},
                    "T": entity_type,
                    "R": chunk.retired,
                    "r": [source[i] for i in chunk.ids],
                }
                kept.append(chunk)
            table.chunks = kept
            table._where = None
        return out, gone

    @classmethod
    def from_records(
        cls,
        head: Mapping[str, Any],
        chunks: Mapping[tuple[str, str], Mapping[str, Any]],
        epoch: str,
    ) -> Optional[Snapshot]:
        """The snapshot a head and its chunks (by type and rest) hold; ``None`` if any is
        missing."""
        tables: dict[str, Table] = {}
        for entity_type, info in head["ty"].items():
            table = Table(
                entity_type,
                list(info["f"]),
                list(info["d"]),
                float(info["t"]),
                dict(info["g"]),
                all_fields=bool(info.get("a", True)),
            )
            for rest, retired, count in info["c"]:
                record = chunks.get((entity_type, rest))
                if record is None or record.get("T") != entity_type or len(record["r"]) != count:
                    return None
                target = table.retired if retired else table.live
                ids = []
                for row in record["r"]:
                    target[row["id"]] = row
                    ids.append(row["id"])
                table.chunks.append(Chunk(rest, ids, bool(retired)))
            tables[entity_type] = table
        holes = {int(i): float(t) for i, t in head.get("h", {}).items()}
        return cls(
            scope=head["S"],
            project=head["P"],
            position=int(head["e"]),
            holes=holes,
            tables=tables,
            schema={t: dict(f) for t, f in head["sc"].items()},
            revision=str(head["n"]),
            epoch=epoch,
            request=head.get("q") if isinstance(head.get("q"), dict) else None,
            per_page=int(head.get("pp") or 500),
        )

    @staticmethod
    def chunk_rests(head: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(type, rest)`` of the chunk records a head names."""
        return [(name, entry[0]) for name, info in head["ty"].items() for entry in info["c"]]
