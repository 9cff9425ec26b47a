"""Demo ShotGrid schema and a deterministic production generator for tests and demos.

The schema is written here in a compact table and expanded to exactly the format
``schema_read()`` / ``schema_entity_read()`` return on a site.  :func:`generate_production`
fills a store with a realistic production (projects, sequences, shots, assets, steps,
tasks, versions, users) straight into memory, without HTTP and without event-log rows:
seeded data is "history before the log starts", so the first event a test sees is one it
caused.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import random
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

Schema = Dict[str, Dict[str, Any]]

#: Status lists used by the demo schema.
ENTITY_STATUSES = ["wtg", "rdy", "ip", "cmpt", "fin", "hld", "omt"]
TASK_STATUSES = ["wtg", "rdy", "ip", "rev", "fin", "hld", "omt"]
VERSION_STATUSES = ["na", "rev", "vwd", "apr", "rej"]
USER_STATUSES = ["act", "dis"]
ASSET_TYPES = ["Character", "Prop", "Environment", "Vehicle", "FX", "Matte Painting"]

_USERS = ("HumanUser", "ApiUser")
_SUMMARY_DEFAULT = {
    "number": "sum",
    "float": "sum",
    "duration": "sum",
    "date": "latest",
    "status_list": "status_list",
}

# field spec: (name, data_type, display name, extra properties)
FieldSpec = Tuple[str, str, str, Dict[str, Any]]


def _f(name: str, data_type: str, display: str, **props: Any) -> FieldSpec:
    return (name, data_type, display, props)


def _common(project: bool = True) -> List[FieldSpec]:
    fields = [
        _f("id", "number", "Id", editable=False),
        _f("created_at", "date_time", "Date Created", editable=False),
        _f("updated_at", "date_time", "Date Updated", editable=False),
        _f("created_by", "entity", "Created by", valid_types=list(_USERS), editable=False),
        _f("updated_by", "entity", "Updated by", valid_types=list(_USERS), editable=False),
        _f("cached_display_name", "text", "Cached Display Name", editable=False),
    ]
    if project:
        fields.append(_f("project", "entity", "Project", valid_types=["Project"]))
    return fields


def _status(values: Sequence[str], default: str) -> Dict[str, Any]:
    return {"valid_values": list(values), "default_value": default}


def _event_log_fields() -> List[FieldSpec]:
    return [
        _f("id", "number", "Id", editable=False),
        _f("event_type", "text", "Event Type"),
        _f("attribute_name", "text", "Attribute Name"),
        _f("meta", "serializable", "Meta Data", editable=False),
        _f("entity", "entity", "Link", valid_types=[]),
        _f("project", "entity", "Project", valid_types=["Project"]),
        _f("user", "entity", "Created by", valid_types=list(_USERS)),
        _f("created_at", "date_time", "Date Created", editable=False),
        _f("description", "text", "Description"),
        _f("session_uuid", "uuid", "Session Id"),
        _f("cached_display_name", "text", "Cached Display Name", editable=False),
    ]


_ENTITIES: Dict[str, Tuple[str, List[FieldSpec]]] = {
    "Project": (
        "Project",
        _common(project=False)
        + [
            _f("name", "text", "Project Name", mandatory=True),
            _f("sg_description", "text", "Description"),
            _f(
                "sg_status",
                "list",
                "Status",
                valid_values=["Active", "Bidding", "Demo", "Lost"],
                default_value="Active",
            ),
            _f(
                "sg_type",
                "list",
                "Type",
                valid_values=["Feature", "Episodic", "Commercial", "Game"],
            ),
            _f("archived", "checkbox", "Archived", default_value=False),
            _f("is_template", "checkbox", "Template", default_value=False),
            _f("start_date", "date", "Start Date"),
            _f("end_date", "date", "End Date"),
            _f("tank_name", "text", "Tank Name"),
            _f("users", "multi_entity", "Users", valid_types=["HumanUser"]),
        ],
    ),
    "Sequence": (
        "Sequence",
        _common()
        + [
            _f("code", "text", "Sequence Name", mandatory=True),
            _f("description", "text", "Description"),
            _f("sg_status_list", "status_list", "Status", **_status(ENTITY_STATUSES, "wtg")),
            _f("shots", "multi_entity", "Shots", valid_types=["Shot"]),
            _f("assets", "multi_entity", "Assets", valid_types=["Asset"]),
            _f("tasks", "multi_entity", "Tasks", valid_types=["Task"]),
        ],
    ),
    "Shot": (
        "Shot",
        _common()
        + [
            _f("code", "text", "Shot Code", mandatory=True),
            _f("description", "text", "Description"),
            _f("sg_status_list", "status_list", "Status", **_status(ENTITY_STATUSES, "wtg")),
            _f("sg_sequence", "entity", "Sequence", valid_types=["Sequence"]),
            _f("assets", "multi_entity", "Assets", valid_types=["Asset"]),
            _f("tasks", "multi_entity", "Tasks", valid_types=["Task"]),
            _f("sg_cut_in", "number", "Cut In"),
            _f("sg_cut_out", "number", "Cut Out"),
            _f("sg_cut_duration", "number", "Cut Duration"),
            _f("sg_frame_rate", "float", "Frame Rate"),
            _f(
                "sg_shot_type",
                "list",
                "Type",
                valid_values=["Hero", "Standard", "Insert", "Plate Only"],
            ),
            _f("sg_vfx", "checkbox", "VFX", default_value=True),
            _f("image", "image", "Thumbnail"),
        ],
    ),
    "Asset": (
        "Asset",
        _common()
        + [
            _f("code", "text", "Asset Name", mandatory=True),
            _f("description", "text", "Description"),
            _f("sg_status_list", "status_list", "Status", **_status(ENTITY_STATUSES, "wtg")),
            _f("sg_asset_type", "list", "Type", valid_values=list(ASSET_TYPES)),
            _f("shots", "multi_entity", "Shots", valid_types=["Shot"]),
            _f("sequences", "multi_entity", "Sequences", valid_types=["Sequence"]),
            _f("parents", "multi_entity", "Parent Assets", valid_types=["Asset"]),
            _f("assets", "multi_entity", "Sub Assets", valid_types=["Asset"]),
            _f("tasks", "multi_entity", "Tasks", valid_types=["Task"]),
            _f("image", "image", "Thumbnail"),
        ],
    ),
    "Step": (
        "Pipeline Step",
        _common(project=False)
        + [
            _f("code", "text", "Step Name", mandatory=True),
            _f("short_name", "text", "Short Name"),
            _f("description", "text", "Description"),
            _f("entity_type", "entity_type", "Entity Type"),
            _f("list_order", "number", "Order"),
            _f("color", "color", "Color"),
        ],
    ),
    "Task": (
        "Task",
        _common()
        + [
            _f("content", "text", "Task Name", mandatory=True),
            _f("entity", "entity", "Link", valid_types=["Shot", "Asset", "Sequence", "Project"]),
            _f("step", "entity", "Pipeline Step", valid_types=["Step"]),
            _f("sg_status_list", "status_list", "Status", **_status(TASK_STATUSES, "wtg")),
            _f("task_assignees", "multi_entity", "Assigned To", valid_types=["HumanUser", "Group"]),
            _f("start_date", "date", "Start Date"),
            _f("due_date", "date", "Due Date"),
            _f("duration", "duration", "Duration"),
            _f("est_in_mins", "duration", "Bid"),
            _f("sg_priority_1", "list", "Priority", valid_values=["1", "2", "3", "4"]),
            _f("milestone", "checkbox", "Milestone", default_value=False),
            _f("sg_description", "text", "Description"),
        ],
    ),
    "Version": (
        "Version",
        _common()
        + [
            _f("code", "text", "Version Name", mandatory=True),
            _f("description", "text", "Description"),
            _f("sg_status_list", "status_list", "Status", **_status(VERSION_STATUSES, "na")),
            _f("entity", "entity", "Link", valid_types=["Shot", "Asset", "Sequence"]),
            _f("sg_task", "entity", "Task", valid_types=["Task"]),
            _f("user", "entity", "Artist", valid_types=["HumanUser", "ApiUser"]),
            _f("sg_path_to_movie", "text", "Path to Movie"),
            _f("sg_path_to_frames", "text", "Path to Frames"),
            _f("sg_first_frame", "number", "First Frame"),
            _f("sg_last_frame", "number", "Last Frame"),
            _f("frame_count", "number", "Frame Count"),
            _f("sg_uploaded_movie_frame_rate", "float", "Uploaded Movie Frame Rate"),
            _f("published_files", "multi_entity", "Published Files", valid_types=["PublishedFile"]),
            _f("image", "image", "Thumbnail"),
        ],
    ),
    "PublishedFile": (
        "Published File",
        _common()
        + [
            _f("code", "text", "Published File Name", mandatory=True),
            _f("name", "text", "Name"),
            _f("description", "text", "Description"),
            _f("sg_status_list", "status_list", "Status", **_status(["wtg", "ip", "cmpt"], "cmpt")),
            _f("entity", "entity", "Link", valid_types=["Shot", "Asset", "Sequence"]),
            _f("task", "entity", "Task", valid_types=["Task"]),
            _f("version", "entity", "Version", valid_types=["Version"]),
            _f("version_number", "number", "Version Number"),
            _f("path_cache", "text", "Path Cache"),
            _f(
                "published_file_type",
                "list",
                "Published File Type",
                valid_values=[
                    "Maya Scene",
                    "Nuke Script",
                    "Alembic Cache",
                    "Rendered Image",
                    "Texture",
                ],
            ),
        ],
    ),
    "Note": (
        "Note",
        _common()
        + [
            _f("subject", "text", "Subject"),
            _f("content", "text", "Body"),
            _f("sg_status_list", "status_list", "Status", **_status(["opn", "clsd"], "opn")),
            _f(
                "note_links",
                "multi_entity",
                "Links",
                valid_types=["Shot", "Asset", "Sequence", "Version"],
            ),
            _f("tasks", "multi_entity", "Tasks", valid_types=["Task"]),
            _f("user", "entity", "Author", valid_types=["HumanUser", "ApiUser"]),
            _f("addressings_to", "multi_entity", "To", valid_types=["HumanUser", "Group"]),
        ],
    ),
    "HumanUser": (
        "Person",
        _common(project=False)
        + [
            _f("name", "text", "Name"),
            _f("firstname", "text", "First Name"),
            _f("lastname", "text", "Last Name"),
            _f("login", "text", "Login", mandatory=True),
            _f("email", "text", "Email"),
            _f("sg_status_list", "status_list", "Status", **_status(USER_STATUSES, "act")),
            _f("department", "text", "Department"),
            _f("projects", "multi_entity", "Projects", valid_types=["Project"]),
            _f("image", "image", "Thumbnail"),
        ],
    ),
    "ApiUser": (
        "Script",
        _common(project=False)
        + [
            _f("firstname", "text", "Script Name", mandatory=True),
            _f("lastname", "text", "Version"),
            _f("description", "text", "Description"),
            _f("email", "text", "Email"),
            _f("generate_event_log_entries", "checkbox", "Generate Events", default_value=True),
        ],
    ),
    "Group": (
        "Group",
        _common(project=False)
        + [
            _f("code", "text", "Group Name", mandatory=True),
            _f("users", "multi_entity", "Users", valid_types=["HumanUser"]),
        ],
    ),
    "EventLogEntry": ("Event Log Entry", _event_log_fields()),
}


def field_definition(entity_type: str, spec: FieldSpec) -> Dict[str, Any]:
    """Expand one field spec into the ``schema_read`` field format."""
    name, data_type, display, extra = spec
    extra = dict(extra)
    editable = extra.pop("editable", True)
    mandatory = extra.pop("mandatory", False)
    props: Dict[str, Any] = {
        "default_value": {"editable": False, "value": extra.pop("default_value", None)},
        "summary_default": {"editable": True, "value": _SUMMARY_DEFAULT.get(data_type, "none")},
    }
    if data_type in ("entity", "multi_entity"):
        props["valid_types"] = {"editable": True, "value": list(extra.pop("valid_types", []))}
    if data_type in ("list", "status_list"):
        props["valid_values"] = {"editable": True, "value": list(extra.pop("valid_values", []))}
    for key, value in extra.items():
        props[key] = {"editable": True, "value": value}
    if data_type == "status_list":
        props["default_value"]["editable"] = True
    return {
        "data_type": {"editable": False, "value": data_type},
        "description": {"editable": True, "value": ""},
        "editable": {"editable": False, "value": editable},
        "entity_type": {"editable": False, "value": entity_type},
        "mandatory": {"editable": False, "value": mandatory},
        "name": {"editable": True, "value": display},
        "properties": props,
        "unique": {"editable": False, "value": name == "login"},
    }


def demo_schema() -> Tuple[Schema, Schema]:
    """A fresh ``(schema, schema_entity)`` pair for the demo site."""
    schema: Schema = {}
    schema_entity: Schema = {}
    for entity_type, (display, specs) in _ENTITIES.items():
        schema[entity_type] = {spec[0]: field_definition(entity_type, spec) for spec in specs}
        schema_entity[entity_type] = {
            "name": {"editable": False, "value": display},
            "visible": {"editable": False, "value": True},
        }
    return schema, schema_entity


def ensure_required_entities(schema: Schema, schema_entity: Schema) -> Tuple[Schema, Schema]:
    """Add what the server needs if a schema lacks it: EventLogEntry, ApiUser, HumanUser.

    Works in place and returns the pair; existing definitions are left alone.
    """
    needed = {
        "EventLogEntry": _ENTITIES["EventLogEntry"],
        "ApiUser": _ENTITIES["ApiUser"],
        "HumanUser": _ENTITIES["HumanUser"],
    }
    for entity_type, (display, specs) in needed.items():
        fields = schema.setdefault(entity_type, {})
        for spec in specs:
            if spec[0] not in fields:
                fields[spec[0]] = field_definition(entity_type, spec)
        schema_entity.setdefault(entity_type, {"name": {"editable": False, "value": display}})
    return schema, schema_entity


PathLike = Union[str, "os.PathLike[str]"]


def load_schema(path: PathLike, entity_path: Optional[PathLike] = None) -> Tuple[Schema, Schema]:
    """Read a ``(schema, schema_entity)`` pair from JSON.

    ``path`` is either a directory holding ``schema.json`` and ``schema_entity.json`` or the
    schema file itself (then ``entity_path`` names the other file).  EventLogEntry, ApiUser
    and HumanUser are added if absent (see :func:`ensure_required_entities`).
    """
    if os.path.isdir(path):
        schema_file = os.path.join(path, "schema.json")
        entity_file = os.path.join(path, "schema_entity.json")
    else:
        schema_file = os.fspath(path)
        if entity_path is None:
            raise ValueError("entity_path is required when path is a file")
        entity_file = os.fspath(entity_path)
    with open(schema_file, encoding="utf-8") as fh:
        schema = json.load(fh)
    with open(entity_file, encoding="utf-8") as fh:
        schema_entity = json.load(fh)
    return ensure_required_entities(schema, schema_entity)


# ---------------------------------------------------------------------------------- generator

#: (code, short name, entity type, task names) for the eight demo pipeline steps.
STEPS: List[Tuple[str, str, str, List[str]]] = [
    ("Layout", "LAY", "Shot", ["layout", "camera"]),
    ("Animation", "ANM", "Shot", ["blocking", "animation", "polish"]),
    ("FX", "FX", "Shot", ["fx", "sim"]),
    ("Lighting", "LGT", "Shot", ["lighting", "lookdev_shot"]),
    ("Comp", "CMP", "Shot", ["comp", "roto", "paint"]),
    ("Model", "MOD", "Asset", ["model", "sculpt"]),
    ("Rig", "RIG", "Asset", ["rig", "facial_rig"]),
    ("Surface", "SRF", "Asset", ["surfacing", "textures"]),
]

_FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Luca",
    "Maya",
    "Nils",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tomas",
    "Uma",
    "Viktor",
    "Wen",
    "Xavier",
    "Yara",
    "Zoe",
]
_LAST = [
    "Abbott",
    "Berg",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Horvat",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
]
_ASSET_WORDS = [
    "hero",
    "tree",
    "car",
    "lamp",
    "rock",
    "city",
    "robot",
    "dragon",
    "boat",
    "tower",
    "crate",
    "forest",
    "bridge",
    "sword",
    "house",
    "drone",
    "cloud",
    "river",
    "horse",
    "tent",
]
_EPOCH = _dt.datetime(2024, 1, 8, 9, 0, 0, tzinfo=_dt.timezone.utc)


def _scaled(base: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(base * scale)))


_DEMO_TYPES: Dict[str, Dict[str, str]] = {}


def _demo_types() -> Dict[str, Dict[str, str]]:
    if not _DEMO_TYPES:
        for entity_type, fields in demo_schema()[0].items():
            _DEMO_TYPES[entity_type] = {k: v["data_type"]["value"] for k, v in fields.items()}
    return _DEMO_TYPES


class _Target:
    """Where generated rows go: a store directly, or a client through ``batch``."""

    def __init__(self, target: Any) -> None:
        store = getattr(target, "store", None)
        if store is not None and hasattr(store, "bulk_insert"):
            target = store
        self.store = target if hasattr(target, "bulk_insert") else None
        self.client = target if self.store is None else None
        if self.client is not None and not hasattr(self.client, "batch"):
            raise TypeError(
                "generate_production() needs a ShotgridServer, a SiteStore or a Shotgun client"
            )

    def clean(self, entity_type: str, row: Mapping[str, Any]) -> Dict[str, Any]:
        """Drop fields the target schema lacks or types differently (e.g. a site's own schema)."""
        if self.store is None:
            return dict(row)
        fields = self.store.schema.get(entity_type, {})
        demo = _demo_types().get(entity_type, {})
        kept = {}
        for key, value in row.items():
            definition = fields.get(key)
            if definition is None or definition["data_type"]["value"] != demo.get(key):
                continue
            valid = definition["properties"].get("valid_values", {}).get("value")
            if valid and value not in valid:
                continue
            targets = definition["properties"].get("valid_types", {}).get("value")
            if targets and value:
                items = value if isinstance(value, list) else [value]
                if any(item["type"] not in targets for item in items):
                    continue
            kept[key] = value
        return kept

    def insert(
        self,
        entity_type: str,
        rows: Sequence[Mapping[str, Any]],
        user: Optional[Dict[str, Any]] = None,
    ) -> List[int]:
        if not rows:
            return []
        if self.store is not None and entity_type not in self.store.schema:
            return []
        rows = [self.clean(entity_type, r) for r in rows]
        if self.store is not None:
            with self.store.lock:
                return list(self.store.bulk_insert(entity_type, rows, user=user))
        ids: List[int] = []
        for start in range(0, len(rows), 200):
            chunk = rows[start : start + 200]
            requests = [
                {"request_type": "create", "entity_type": entity_type, "data": dict(r)}
                for r in chunk
            ]
            ids.extend(result["id"] for result in self.client.batch(requests))  # type: ignore[union-attr]
        return ids


def generate_production(
    target: Any,
    scale: float = 1.0,
    seed: int = 0,
) -> Dict[str, List[Dict[str, Any]]]:
    """Fill a site with a deterministic production and return the created links by type.

    ``target`` is a :class:`ShotgridServer`, a :class:`SiteStore` (both written directly in
    memory, no event-log rows: the seeded history predates the log) or any Shotgun-like
    client with ``batch`` (slow path over the API, which does log events).  At ``scale=1.0``:
    2 projects, 20 sequences, 500 shots, 100 assets, 8 steps, ~5,000 tasks, ~2,000 versions,
    ~600 published files, 20 users; ``scale=0.05`` gives a handful of each.  The same
    ``(scale, seed)`` always gives the same rows, ids and timestamps on an empty site.
    """
    if scale <= 0:
        raise ValueError("scale must be > 0")
    rng = random.Random(seed)
    out = _Target(target)
    made: Dict[str, List[Dict[str, Any]]] = {}

    def when(days: float) -> _dt.datetime:
        return _EPOCH + _dt.timedelta(seconds=int(days * 86400))

    def links(entity_type: str, ids: Sequence[int]) -> List[Dict[str, Any]]:
        result = [{"type": entity_type, "id": i} for i in ids]
        made.setdefault(entity_type, []).extend(result)
        return result

    # People first: everything else is created by someone.
    n_users = _scaled(20, scale, minimum=3)
    user_rows = []
    for i in range(n_users):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7) % len(_LAST)]
        login = f"{first.lower()}.{last.lower()}" + (
            str(i // len(_FIRST)) if i >= len(_FIRST) else ""
        )
        user_rows.append(
            {
                "firstname": first,
                "lastname": last,
                "name": f"{first} {last}",
                "login": login,
                "email": f"{login}@example.com",
                "sg_status_list": "act" if i % 9 != 8 else "dis",
                "department": ["anim", "lighting", "comp", "fx", "modeling", "production"][i % 6],
                "created_at": when(-30 + i * 0.1),
            }
        )
    users = links("HumanUser", out.insert("HumanUser", user_rows))
    admin = users[0]

    projects = links(
        "Project",
        out.insert(
            "Project",
            [
                {
                    "name": name,
                    "sg_description": desc,
                    "sg_status": "Active",
                    "sg_type": kind,
                    "start_date": start,
                    "end_date": end,
                    "tank_name": tank,
                    "users": users,
                    "created_at": when(-20 + i),
                }
                for i, (name, desc, kind, start, end, tank) in enumerate(
                    [
                        (
                            "Big Buck Rabbit",
                            "Feature film, 120 min",
                            "Feature",
                            "2024-01-08",
                            "2025-06-30",
                            "bbr",
                        ),
                        (
                            "Night Shift",
                            "Episodic, season 1",
                            "Episodic",
                            "2024-02-01",
                            "2024-12-20",
                            "nsh",
                        ),
                    ]
                )
            ],
            user=admin,
        ),
    )

    step_rows = [
        {
            "code": code,
            "short_name": short,
            "entity_type": etype,
            "list_order": i + 1,
            "color": f"{(i * 40) % 256},{(i * 90) % 256},{(i * 150) % 256}",
            "description": f"{code} department",
            "created_at": when(-19),
        }
        for i, (code, short, etype, _) in enumerate(STEPS)
    ]
    steps = links("Step", out.insert("Step", step_rows, user=admin))
    shot_steps = [(steps[i], STEPS[i][3]) for i in range(len(STEPS)) if STEPS[i][2] == "Shot"]
    asset_steps = [(steps[i], STEPS[i][3]) for i in range(len(STEPS)) if STEPS[i][2] == "Asset"]

    n_seq = _scaled(20, scale)
    seq_rows = []
    seq_project = []
    for i in range(n_seq):
        project = projects[i % len(projects)]
        seq_project.append(project)
        seq_rows.append(
            {
                "code": f"SQ{(i + 1) * 10:03d}",
                "project": project,
                "description": f"Sequence {i + 1}",
                "sg_status_list": rng.choice(["ip", "ip", "rdy", "wtg", "fin"]),
                "created_at": when(-18 + i * 0.05),
            }
        )
    sequences = links("Sequence", out.insert("Sequence", seq_rows, user=admin))

    n_assets = _scaled(100, scale, minimum=2)
    asset_rows = []
    asset_project = []
    for i in range(n_assets):
        project = projects[i % len(projects)]
        asset_project.append(project)
        word = _ASSET_WORDS[i % len(_ASSET_WORDS)]
        asset_rows.append(
            {
                "code": f"{word}{i // len(_ASSET_WORDS) + 1:02d}",
                "project": project,
                "sg_asset_type": ASSET_TYPES[rng.randrange(len(ASSET_TYPES))],
                "sg_status_list": rng.choice(ENTITY_STATUSES[:5]),
                "description": f"The {word}",
                "created_at": when(-15 + i * 0.02),
                "created_by": users[i % len(users)],
            }
        )
    assets = links("Asset", out.insert("Asset", asset_rows, user=admin))
    assets_by_project: Dict[int, List[Dict[str, Any]]] = {}
    for asset, project in zip(assets, asset_project):
        assets_by_project.setdefault(project["id"], []).append(asset)

    n_shots = _scaled(500, scale, minimum=2)
    shot_rows = []
    shot_project = []
    for i in range(n_shots):
        seq_index = i * n_seq // n_shots
        project = seq_project[seq_index]
        shot_project.append(project)
        cut_in = 1001
        length = rng.randrange(24, 240)
        pool = assets_by_project.get(project["id"], [])
        chosen = rng.sample(pool, k=min(len(pool), rng.randrange(0, 4))) if pool else []
        shot_rows.append(
            {
                "code": f"{seq_rows[seq_index]['code']}_{(i + 1) * 10:04d}",
                "project": project,
                "sg_sequence": sequences[seq_index],
                "sg_cut_in": cut_in,
                "sg_cut_out": cut_in + length - 1,
                "sg_cut_duration": length,
                "sg_frame_rate": 24.0 if project is projects[0] else 25.0,
                "sg_status_list": rng.choice(ENTITY_STATUSES),
                "assets": chosen,
                "sg_shot_type": rng.choice(["Hero", "Standard", "Standard", "Insert"]),
                "description": f"Shot {i + 1} of sequence {seq_index + 1}",
                "created_at": when(-14 + i * 0.01),
                "created_by": users[i % len(users)],
            }
        )
    shots = links("Shot", out.insert("Shot", shot_rows, user=admin))

    # Tasks: per entity and step, 1-3 tasks (about 9 per shot, 5 per asset).
    task_rows: List[Dict[str, Any]] = []
    task_meta: List[Tuple[Dict[str, Any], Dict[str, Any], str]] = []
    for owners, owner_projects, step_list in (
        (shots, shot_project, shot_steps),
        (assets, asset_project, asset_steps),
    ):
        for owner, project in zip(owners, owner_projects):
            for step, names in step_list:
                for name in names[: rng.choice([1, 1, 2, 2, 2, 3])]:
                    start = -10 + rng.random() * 60
                    assignees = [users[rng.randrange(len(users))]] if rng.random() < 0.85 else []
                    task_rows.append(
                        {
                            "content": name,
                            "entity": owner,
                            "step": step,
                            "project": project,
                            "sg_status_list": rng.choice(TASK_STATUSES),
                            "task_assignees": assignees,
                            "start_date": when(start).strftime("%Y-%m-%d"),
                            "due_date": when(start + rng.randrange(3, 30)).strftime("%Y-%m-%d"),
                            "duration": rng.randrange(1, 20) * 480,
                            "est_in_mins": rng.randrange(1, 40) * 60,
                            "sg_priority_1": rng.choice(["1", "2", "2", "3", "3", "4"]),
                            "milestone": rng.random() < 0.05,
                            "created_at": when(-9 + len(task_rows) * 0.001),
                        }
                    )
                    task_meta.append((owner, project, name))
    tasks = links("Task", out.insert("Task", task_rows, user=admin))

    # Versions for about 40% of tasks, sometimes several.
    version_rows: List[Dict[str, Any]] = []
    for task, (owner, project, name), row in zip(tasks, task_meta, task_rows):
        if rng.random() >= 0.26:
            continue
        owner_code = _code_of(owner, shot_rows, asset_rows, shots, assets)
        for number in range(1, rng.choice([1, 1, 1, 2, 2, 3]) + 1):
            code = f"{owner_code}_{name}_v{number:03d}"
            first_frame = 1001
            last_frame = first_frame + rng.randrange(24, 200)
            folder = f"/mnt/proj/{project['id']}/{owner_code}/{name}"
            version_rows.append(
                {
                    "code": code,
                    "entity": owner,
                    "sg_task": task,
                    "project": project,
                    "user": row["task_assignees"][0] if row["task_assignees"] else admin,
                    "sg_status_list": rng.choice(VERSION_STATUSES),
                    "sg_path_to_movie": f"{folder}/{code}.mov",
                    "sg_path_to_frames": f"{folder}/{code}.%04d.exr",
                    "sg_first_frame": first_frame,
                    "sg_last_frame": last_frame,
                    "frame_count": last_frame - first_frame + 1,
                    "sg_uploaded_movie_frame_rate": 24.0,
                    "description": f"{name} take {number}",
                    "created_at": when(-5 + len(version_rows) * 0.02),
                }
            )
    versions = links("Version", out.insert("Version", version_rows, user=admin))

    # Published files for about a third of the versions.
    publish_rows = []
    for version, vrow in zip(versions, version_rows):
        if rng.random() >= 0.3:
            continue
        publish_rows.append(
            {
                "code": vrow["code"] + ".ma",
                "name": vrow["code"].rsplit("_v", 1)[0],
                "entity": vrow["entity"],
                "task": vrow["sg_task"],
                "version": version,
                "project": vrow["project"],
                "version_number": int(vrow["code"].rsplit("_v", 1)[1]),
                "path_cache": vrow["sg_path_to_movie"].replace(".mov", ".ma"),
                "published_file_type": rng.choice(
                    ["Maya Scene", "Alembic Cache", "Rendered Image"]
                ),
                "created_at": vrow["created_at"],
            }
        )
    links("PublishedFile", out.insert("PublishedFile", publish_rows, user=admin))
    return made


def _code_of(
    owner: Mapping[str, Any],
    shot_rows: Sequence[Mapping[str, Any]],
    asset_rows: Sequence[Mapping[str, Any]],
    shots: Sequence[Mapping[str, Any]],
    assets: Sequence[Mapping[str, Any]],
) -> str:
    rows, links = (shot_rows, shots) if owner["type"] == "Shot" else (asset_rows, assets)
    index = owner["id"] - links[0]["id"]
    if 0 <= index < len(rows) and links[index]["id"] == owner["id"]:
        return str(rows[index]["code"])
    for row, link in zip(rows, links):
        if link["id"] == owner["id"]:
            return str(row["code"])
    return f"{owner['type']}{owner['id']}"


def copy_schema(pair: Tuple[Schema, Schema]) -> Tuple[Schema, Schema]:
    """Deep copy of a ``(schema, schema_entity)`` pair."""
    return copy.deepcopy(pair[0]), copy.deepcopy(pair[1])
