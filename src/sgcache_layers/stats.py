"""What a session counts: requests by method, cache hits and misses by layer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .cache import LayeredCache

__all__ = ["SessionStats"]


@dataclass
class SessionStats:
    """Counters a session keeps: requests by method, cache hits and misses by layer.

    ``hits`` and ``misses`` count answers looked up in the cache: ``query`` for ``find``,
    ``summarize`` and schema answers, ``cache`` for entities' own records.  A ``get``
    answered by an entity already in memory is not counted.
    """

    requests: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    stale_served: int = 0
    syncs: int = 0
    flushes: int = 0
    cache: Optional[LayeredCache] = field(default=None, repr=False, compare=False)
    store: Optional[Callable[[], Optional[LayeredCache]]] = field(
        default=None, repr=False, compare=False
    )

    @property
    def layers(self) -> list[dict[str, Any]]:
        """Hits, misses and errors of each layer of ``session.cache``.

        Records read from the layers after memory directly count there.
        """
        if self.cache is None:
            return []
        rows: list[dict[str, Any]] = [dict(s) for s in self.cache.stats()]
        store = self.store() if self.store is not None else None
        if store is not None:
            for row, extra in zip(rows[1:], store.stats()):
                for name in ("hits", "misses", "errors"):
                    row[name] += extra[name]  # type: ignore[literal-required,unused-ignore]
        return rows

    @property
    def request_count(self) -> int:
        """Total number of ShotGrid requests made."""
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of every counter, for printing or JSON."""
        return {
            "requests": dict(self.requests),
            "hits": dict(self.hits),
            "misses": dict(self.misses),
            "stale_served": self.stale_served,
            "syncs": self.syncs,
            "flushes": self.flushes,
            "layers": self.layers,
        }
