"""Incident lifecycle: findings -> store -> bus, de-duplication, merging, auto-resolve."""

from __future__ import annotations

import pytest

from smartcity.incidents.lifecycle import (
    SYSTEM_CAMERA,
    IncidentManager,
    LifecycleConfigError,
    LifecycleSettings,
)
from smartcity.incidents.types import Finding
from smartcity.store import Store

T0 = 1_790_000_000 * 10**9


def finding(rule="wrong_way", key="track:1", pts=0.0, closed=False, **kw):
    return Finding(
        rule=rule,
        cam="c1",
        key=key,
        pts=pts,
        t_ns=T0 + int(pts * 1e9),
        track_ids=kw.pop("track_ids", (1,)),
        closed=closed,
        **kw,
    )


@pytest.fixture
def store(tmp_path):
    s = Store.open(data_dir=tmp_path)
    s.cameras.add("c1", "Camera 1", "file:///clip.mp4")
    yield s
    s.close()


@pytest.fixture
def bus():
    return []


def make(store, bus, **settings):
    seen_in_store = []

    def publish(ev):
        # The store is written before the bus: the incident is there when it is published.
        seen_in_store.append(store.incidents.get(ev.id).state)
        bus.append(ev)

    m = IncidentManager(store, publish, LifecycleSettings(**settings))
    m.seen_in_store = seen_in_store
    return m


def test_open_then_updates_are_throttled(store, bus):
    m = make(store, bus, update_every_s=5)
    assert m.handle(finding(pts=0.0, details={"distance_m": 16.0})) == "opened"
    assert [(e.state, e.type, e.cam) for e in bus] == [("open", "wrong_way", "c1")]
    assert m.seen_in_store == ["open"]
    assert m.handle(finding(pts=1.0)) is None  # same track, within update_every_s
    assert m.handle(finding(pts=5.5)) == "updated"
    assert m.handle(finding(pts=6.0, track_ids=(1, 2))) == "updated"  # a new track: at once
    assert m.handle(finding(pts=6.5, severity="high")) == "updated"  # worse: at once
    (inc,) = store.incidents.list().items
    assert inc.count == 1 and inc.last_pts == 6.5 and inc.severity == "high"
    assert set(inc.track_ids) == {1, 2}
    assert [e.state for e in bus] == ["open", "update", "update", "update"]
    assert bus[-1].details["severity"] == "high"


def test_refiring_after_the_condition_ended_merges(store, bus):
    m = make(store, bus, cooldown_s=30)
    m.handle(finding(pts=0.0))
    assert m.handle(finding(pts=3.0, closed=True)) == "ended"
    assert m.handle(finding(pts=4.0, closed=True)) is None  # already ended
    assert m.handle(finding(pts=10.0)) == "merged"
    (inc,) = store.incidents.list().items
    assert inc.count == 2 and inc.state == "open"


def test_conditions_resolve_after_the_cooldown_unless_they_come_back(store, bus):
    m = make(store, bus, cooldown_s=20)
    f = dict(rule="congestion", key="lane:n0", track_ids=())
    m.handle(finding(pts=0.0, **f))
    m.handle(finding(pts=30.0, closed=True, **f))
    assert m.advance("c1", 45.0, T0) == []  # within the cool-down
    assert m.handle(finding(pts=46.0, **f)) == "merged"  # back within the cool-down
    m.handle(finding(pts=60.0, closed=True, **f))
    assert m.advance("c1", 79.0, T0) == []
    (rid,) = m.advance("c1", 81.0, T0 + 81 * 10**9)
    inc = store.incidents.get(rid)
    assert inc.state == "resolved" and inc.count == 2
    assert bus[-1].state == "closed" and bus[-1].id == rid
    # A new firing after resolution is a new incident.
    assert m.handle(finding(pts=200.0, **f)) == "opened"
    assert len(store.incidents.list().items) == 2


def test_events_are_not_auto_resolved(store, bus):
    m = make(store, bus, cooldown_s=10)
    m.handle(finding(pts=0.0))
    m.handle(finding(pts=1.0, closed=True))
    assert m.advance("c1", 100.0, T0) == []
    assert store.incidents.list().items[0].state == "open"  # waits for an operator


def test_a_dismissed_key_stays_quiet_for_the_cooldown(store, bus):
    m = make(store, bus, cooldown_s=30, update_every_s=1)
    m.handle(finding(pts=0.0))
    (inc,) = store.incidents.list().items
    store.incidents.dismiss(inc.id, actor="operator1", text="shadow")
    assert m.handle(finding(pts=5.0)) == "suppressed"
    assert m.handle(finding(pts=20.0)) == "suppressed"
    assert m.handle(finding(pts=40.0)) == "opened"
    states = sorted(i.state for i in store.incidents.list().items)
    assert states == ["dismissed", "open"]


def test_a_resolved_key_may_open_again_at_once(store, bus):
    m = make(store, bus, update_every_s=1)
    m.handle(finding(pts=0.0))
    store.incidents.resolve(store.incidents.list().items[0].id, actor="op")
    assert m.handle(finding(pts=2.0)) == "opened"


def test_a_restarted_service_joins_the_active_incident(store, bus):
    make(store, bus).handle(finding(pts=0.0))
    m2 = make(store, bus, update_every_s=1)
    assert m2.handle(finding(pts=10.0)) == "updated"
    assert len(store.incidents.list().items) == 1


def test_evidence_failure_never_stops_incidents(store, bus):
    def on_open(rec, f):
        raise RuntimeError("engine gone")

    m = IncidentManager(store, bus.append, on_open=on_open)
    assert m.handle(finding(pts=0.0)) == "opened"
    assert len(store.incidents.list().items) == 1


def test_system_incidents_belong_to_the_appliance(store, bus):
    m = make(store, bus, cooldown_s=0)
    assert m.raise_system("disk_full", "evidence disk full", T0) == "opened"
    assert m.raise_system("disk_full", "evidence disk full", T0 + 10**9) is None
    (inc,) = store.incidents.list(type="system").items
    assert inc.camera_id == SYSTEM_CAMERA and inc.details["message"] == "evidence disk full"
    assert not store.cameras.get(SYSTEM_CAMERA).enabled
    m.raise_system("disk_full", "", T0 + 2 * 10**9, closed=True)
    assert m.advance(SYSTEM_CAMERA, (T0 + 5 * 10**9) / 1e9, T0) == [inc.id]


def test_settings_from_mapping():
    s = LifecycleSettings.from_mapping({"cooldown_s": 30, "cooldowns": {"speeding": 120}})
    assert s.cooldown("speeding") == 120 and s.cooldown("wrong_way") == 30
    with pytest.raises(LifecycleConfigError, match="lifecycle.cooldwn: unknown field"):
        LifecycleSettings.from_mapping({"cooldwn": 1})
    with pytest.raises(LifecycleConfigError, match="lifecycle.cooldowns.crash"):
        LifecycleSettings.from_mapping({"cooldowns": {"crash": -1}})
