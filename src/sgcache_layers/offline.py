"""Working without ShotGrid: warm a project once, then answer new reads of it locally.

:class:`Snapshots` is the session's offline part.  It is consulted when a read finds no
usable cached answer: in ``offline`` mode always, and in ``cached`` mode when the session
was made with ``snapshots=True`` (for warmed types whose snapshot is fresh by the one
freshness rule).  It answers with ShotGrid's own filter semantics
(:mod:`sgcache_layers.filters`), or returns ``None`` when the call touches anything it does
not hold - never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from .answers import Policy
from .entity import Entity

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Snapshots"]


class Snapshots:
    """Warmed projects of one session, and the reads they can answer."""

    def __init__(self, session: Session, schema: Any = None, in_cached_mode: bool = False) -> None:
        self.session = session
        self.schema = schema
        #: Whether a cached-mode miss may be answered from a fresh snapshot too.
        self.in_cached_mode = in_cached_mode

    def answers(self, policy: Policy) -> bool:
        """Whether snapshots may answer a read made under *policy*."""
        return policy.offline or (self.in_cached_mode and policy.mode == "cached")

    def warm(
        self,
        project: Any,
        entity_types: Optional[Sequence[str]] = None,
        fields: Optional[Mapping[str, Sequence[str]]] = None,
        *,
        progress: Optional[bool] = None,
    ) -> dict[str, Any]:
        """Fetch a project's entities and keep them as a snapshot; returns a report."""
        raise NotImplementedError("warming a project is not available yet")

    def find(self, policy: Policy, call: Mapping[str, Any]) -> Optional[list[Entity]]:
        """A ``find`` answered from snapshots (*call* holds ``find``'s arguments by name)."""
        return None

    def summarize(self, policy: Policy, call: Mapping[str, Any]) -> Optional[tuple[Any]]:
        """A ``summarize`` answered from snapshots, as ``(value,)``."""
        return None

    def schema_call(
        self, policy: Policy, method: str, args: Sequence[Any], project: Any
    ) -> Optional[tuple[Any]]:
        """A schema read answered from the schema the session was given, as ``(value,)``."""
        return None
