"""The query calls of a session, from arguments to an answer: ``find``, ``summarize``,
``text_search`` and the schema reads.

:class:`Reads` checks and normalises a call (``find`` plans are memoised by the repr of
plain arguments, so a repeated call costs a dict look-up), names its key and the types it
depends on, says how to ask ShotGrid and how a warmed snapshot may answer, and hands all of
that to :class:`~sgcache_layers.answers.Answers`, the one read path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from .answers import Policy
from .entity import Entity
from .events import SCHEMA_TYPE
from .fetching import find_rows
from .identity import copy_value, outbound
from .query import (
    FIND_ARGS,
    SUMMARIZE_ARGS,
    QueryError,
    call_digest,
    dependent_types,
    find_call,
    has_plain_repr,
    normalise_filters,
    summarize_call,
)
from .records import FORMAT_VERSION, Keys

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Reads"]

_Plan = tuple[str, list[str], dict[str, Any]]


class Reads:
    """The query half of *session* (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._plans: dict[str, _Plan] = {}

    def digest(self, call: Any) -> str:
        """The key digest of a normalised call (the session's key maker's, if it has one)."""
        key_maker = self.session.cache_key_maker
        if key_maker is None:
            return call_digest(call)
        return Keys.digest(key_maker.key(call))

    # -- find ------------------------------------------------------------------------

    def plan(self, args: tuple[Any, ...]) -> _Plan:
        """A checked ``find`` call: its key digest, fields and filters (memoised)."""
        try:
            signature: Optional[str] = repr(args)
        except Exception:  # an argument that cannot show itself: plan without the memo
            signature = None
        plan = self._plans.get(signature) if signature is not None else None
        if plan is None:
            call = find_call(*args)
            plan = (self.digest(call), call["fl"], call["f"])
            if signature is not None and has_plain_repr(args):
                if len(self._plans) > 4096:
                    self._plans.clear()
                self._plans[signature] = plan
        return plan

    def find(self, args: tuple[Any, ...], policy: Policy) -> list[Entity]:
        """``find`` with the arguments of ``Shotgun.find``, in order."""
        digest, fields, filters = self.plan(args)
        session = self.session
        answers = session._answers
        entity_type = args[0]
        found = answers.find_cached(digest, entity_type, policy)
        if found is not None:
            return found

        def deps() -> list[str]:
            return dependent_types(entity_type, fields, filters)

        def ask() -> list[dict[str, Any]]:
            requests = session._requests
            requests.count("find")
            if requests.closed:
                raise RuntimeError("this session is closed")
            given = dict(zip(FIND_ARGS, args))
            del given["entity_type"], given["filters"], given["fields"]
            return find_rows(
                session.shotgun, session._pages, entity_type, outbound(args[1]), fields, **given
            )

        local = None
        if session._snapshots.answers(policy):

            def local(policy: Policy) -> Optional[list[Entity]]:
                return session._snapshots.find(policy, dict(zip(FIND_ARGS, args)))

        return answers.find(digest, entity_type, deps, ask, policy, local)

    # -- values ----------------------------------------------------------------------

    def summarize(self, args: tuple[Any, ...], policy: Policy) -> Any:
        """``summarize`` with the arguments of ``Shotgun.summarize``, in order."""
        entity_type, filters, summary_fields, filter_operator, grouping, archived = args
        call, deps = summarize_call(*args)
        kwargs: dict[str, Any] = {}
        if filter_operator:
            kwargs["filter_operator"] = filter_operator
        if grouping:
            kwargs["grouping"] = [dict(g) for g in grouping]
        if not archived:
            kwargs["include_archived_projects"] = False
        sent = outbound(filters)
        fields = [dict(s) for s in summary_fields]
        session = self.session

        def ask() -> Any:
            return session._requests("summarize", entity_type, sent, fields, **kwargs)

        local = None
        if session._snapshots.answers(policy):
            given = dict(zip(SUMMARIZE_ARGS, args))

            def local(policy: Policy) -> Optional[tuple[Any]]:
                return session._snapshots.summarize(policy, given)

        return session._answers.value(
            "v", entity_type, self.digest(call), deps, ask, policy, copy_value, local
        )

    def text_search(
        self,
        text: str,
        entity_types: Mapping[str, Any],
        project_ids: Optional[Sequence[int]],
        limit: Optional[int],
        policy: Policy,
    ) -> Any:
        """``text_search``, cached over every type it searches (and Project)."""
        if not isinstance(text, str) or not isinstance(entity_types, Mapping) or not entity_types:
            raise QueryError("text_search needs the text and a dict of entity types to filters")
        groups = {str(t): normalise_filters(f or []) for t, f in entity_types.items()}
        projects = sorted(int(p) for p in project_ids) if project_ids else None
        call = {"m": "text_search", "q": text, "t": groups, "p": projects, "l": limit}
        deps = {"Project", *groups}
        for entity_type, group in groups.items():
            deps.update(dependent_types(entity_type, (), group))
        sent = {t: outbound(f or []) for t, f in entity_types.items()}
        requests = self.session._requests

        def ask() -> Any:
            return requests("text_search", text, sent, projects, limit)

        return self.session._answers.value(
            "v", "text_search", self.digest(call), sorted(deps), ask, policy, copy_value
        )

    def server_caps(self) -> None:
        """Give the client the site's capabilities (``info()``) from the cache.

        ``shotgun_api3`` asks the site for them before its first call in every process
        (and in every pooled copy that was made before): on a farm, one round trip per
        process.  They are public facts about the site's server, so they are kept under
        the site's shared part for :attr:`schema_max_age`, outside any epoch: the flush of
        a farm's first sync does not make every process ask again.  Of processes missing
        them at once, one asks (a fill lease); a client that already has them (made with
        ``connect=True``) stores them for the others.
        """
        session = self.session
        pool = session.shotgun
        prototype = getattr(pool, "prototype", None)
        if prototype is None:
            return
        from shotgun_api3.shotgun import ServerCapabilities

        caps = getattr(prototype, "_server_caps", None)
        known = getattr(caps, "server_info", None)
        policy = session._policy(session.schema_max_age)
        answers = session._answers
        key = session._keys.shared + "|caps"
        max_age = session.schema_max_age

        def check() -> Optional[dict[str, Any]]:
            store = answers._store()
            try:
                found = store.get_many([key]).get(key) if store is not None else None
            except Exception:  # a broken layer: ask, as on a miss
                return None
            if not isinstance(found, dict) or found.get("v") != FORMAT_VERSION:
                return None
            stamp, info = found.get("t"), found.get("info")
            if not isinstance(stamp, (int, float)) or not isinstance(info, dict):
                return None
            return info if stamp + max_age > time.time() else None

        def fill() -> dict[str, Any]:
            info = dict(known) if isinstance(known, dict) else session._requests("info")
            if policy.writes and isinstance(info, dict):
                answers.put({key: {"v": FORMAT_VERSION, "t": time.time(), "info": info}})
            return info

        if policy.offline:
            return
        info = check() if policy.reads and known is None else None
        if info is None:
            if policy.reads and policy.writes and known is None:
                info = answers.leases.run(key, fill, check)
            else:
                info = fill()
        if caps is None and isinstance(info, dict):
            pool.share("_server_caps", ServerCapabilities(prototype.config.server, info))

    def schema(
        self,
        method: str,
        args: tuple[Any, ...],
        project_entity: Optional[Mapping[str, Any]],
        policy: Policy,
    ) -> Any:
        """A schema read (``schema_read``, ``schema_entity_read``, ``schema_field_read``)."""
        project = None
        if project_entity is not None:
            project = {"type": project_entity["type"], "id": project_entity["id"]}
        call = {"m": method, "a": list(args), "p": project}
        call_args: list[Any] = list(args)
        while call_args and call_args[-1] is None:
            call_args.pop()
        session = self.session
        requests = session._requests

        def ask() -> Any:
            if project is not None:
                return requests(method, *call_args, project_entity=project)
            return requests(method, *call_args)

        local = None
        if session._snapshots.schema is not None:

            def local(policy: Policy) -> Optional[tuple[Any]]:
                return session._snapshots.schema_call(policy, method, args, project)

        return session._answers.value(
            "s", method, self.digest(call), [SCHEMA_TYPE], ask, policy, copy_value, local
        )
