"""Reading event-log rows into invalidations (pure functions, no server)."""

from __future__ import annotations

from sgcache_layers.events import SCHEMA_TYPE, changes_from_events, has_gap


def event(event_id: int, event_type: str, **extra: object) -> dict[str, object]:
    return {"id": event_id, "event_type": event_type, **extra}


def test_data_events_name_their_type_and_entity() -> None:
    changes = changes_from_events(
        [
            event(11, "Shotgun_Shot_Change", entity={"type": "Shot", "id": 5}),
            event(12, "Shotgun_CustomEntity01_New", entity={"type": "CustomEntity01", "id": 2}),
            event(13, "Shotgun_Task_Retirement", meta={"entity_id": 9, "entity_type": "Task"}),
        ]
    )
    assert changes.types == {"Shot", "CustomEntity01", "Task"}
    assert changes.entities == {("Shot", 5), ("CustomEntity01", 2), ("Task", 9)}
    assert changes.last_id == 13
    assert SCHEMA_TYPE not in changes.types


def test_link_changes_touch_both_sides() -> None:
    changes = changes_from_events(
        [
            event(
                20,
                "Shotgun_Task_Change",
                entity={"type": "Task", "id": 1},
                meta={
                    "old_value": {"type": "Shot", "id": 3},
                    "new_value": {"type": "Shot", "id": 4},
                    "added": [{"type": "HumanUser", "id": 7}],
                },
            )
        ]
    )
    assert changes.types == {"Task", "Shot", "HumanUser"}
    assert {("Shot", 3), ("Shot", 4), ("HumanUser", 7)} <= changes.entities


def test_schema_events_are_exact() -> None:
    assert changes_from_events([event(1, "Shotgun_DisplayColumn_New")]).types == {SCHEMA_TYPE}
    assert changes_from_events([event(2, "Shotgun_DisplayColumn_Change")]).types == {SCHEMA_TYPE}
    custom = changes_from_events([event(3, "Shotgun_CustomEntity05_Change")])
    assert custom.types == {"CustomEntity05"}


def test_other_events_are_ignored() -> None:
    changes = changes_from_events(
        [event(1, "Shotgun_User_Login"), event(2, "Toolkit_App_Startup"), event(3, "")]
    )
    assert changes.types == set() and changes.last_id == 3


def test_gaps() -> None:
    assert not has_gap(10, [event(11, "x"), event(12, "x")])
    assert has_gap(10, [event(12, "x")])
    assert has_gap(10, [event(11, "x"), event(13, "x")])
    assert not has_gap(10, [])
