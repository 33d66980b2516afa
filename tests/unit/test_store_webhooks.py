"""smartcity.store.webhooks: subscriptions and the delivery log, on SQLite and PostgreSQL."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_fixtures, used as arguments)

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from smartcity.store import InvalidInputError, InvalidTransitionError, NotFoundError, Store
from smartcity.store.accounts import KEEP
from smartcity.store.webhooks import (
    DeliveryRecord,
    UnknownDeliveryError,
    UnknownWebhookError,
    WebhookRecord,
    redact_url,
)
from tests.store_fixtures import db_url, pg_store, pg_url, store  # noqa: F401

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SECRET = "s3cret-s3cret-s3cret"
URL = "https://hooks.example.org/smartcity?x=1"


def _hook(store: Store, **kw: object) -> WebhookRecord:
    kw.setdefault("name", "ops")
    kw.setdefault("url", URL)
    kw.setdefault("secret", SECRET)
    kw.setdefault("events", ["incident.*"])
    return store.webhooks.add(**kw)  # type: ignore[arg-type]


def _due_ids(store: Store, now: datetime, limit: int = 100) -> list[int]:
    return [d.id for d in store.webhooks.due(now, limit)]


# ------------------------------------------------------------------ subscriptions


def test_add_get_list_round_trip(store: Store) -> None:
    a = _hook(
        store,
        name="Dispatch",
        events=["incident.wrong_way", "incident.*", "incident.*"],
        cameras=["cam2", "cam1", "cam2"],
        created_by="admin",
        at=T0.astimezone(timezone(timedelta(hours=2))),
    )
    b = _hook(store, name="all", url="http://10.0.0.9:8080/in", events=["*"])
    assert a.events == ("incident.*", "incident.wrong_way")  # sorted, without duplicates
    assert a.cameras == ("cam1", "cam2")
    assert a.enabled is True and a.created_by == "admin"
    assert a.created_at == T0 and a.created_at.tzinfo is not None
    assert b.cameras is None
    assert store.webhooks.get(a.id) == a
    assert [w.id for w in store.webhooks.list()] == [a.id, b.id]
    store.webhooks.update(b.id, enabled=False)
    assert [w.id for w in store.webhooks.list(enabled=True)] == [a.id]
    assert [w.id for w in store.webhooks.list(enabled=False)] == [b.id]


def test_secret_is_kept_but_never_in_repr(store: Store) -> None:
    w = _hook(store)
    assert w.secret == SECRET
    assert SECRET not in repr(w)
    assert SECRET not in repr(store.webhooks.list())


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.org/x", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("example.org/hook", "scheme"),
        ("http://", "no host"),
        ("https:///path", "no host"),
        ("http://example.org:99999/", "port"),
        ("http://exa mple.org/", "spaces"),
        ("http://example.org/\nX: y", "control"),
        ("https://example.org/#frag", "fragment"),
        ("", "non-empty"),
        ("https://example.org/" + "a" * 3000, "longer than"),
    ],
)
def test_bad_urls_are_refused(store: Store, url: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match="webhook url") as e:
        _hook(store, url=url)
    assert words in str(e.value)
    assert store.webhooks.list() == []


def test_credentials_never_in_url_errors() -> None:
    from smartcity.store.webhooks import validate_url

    with pytest.raises(InvalidInputError) as e:
        validate_url("ftp://bob:hunter2hunter2@example.org/x")
    assert "hunter2" not in str(e.value)
    assert (
        redact_url("https://bob:pw@example.org:8443/a?b=1") == "https://***@example.org:8443/a?b=1"
    )
    assert redact_url("https://example.org/a") == "https://example.org/a"


@pytest.mark.parametrize(
    "events",
    [[], "incident.*", ["incident.?"], ["Incident.opened"], ["incident..x"], [""], [".x"], [3]],
)
def test_bad_event_patterns_are_refused(store: Store, events: object) -> None:
    with pytest.raises(InvalidInputError, match="webhook events"):
        _hook(store, events=events)


def test_good_event_patterns(store: Store) -> None:
    w = _hook(store, events=["*", "health.*", "incident.changed", "camera.state", "*.closed"])
    assert w.events == ("*", "*.closed", "camera.state", "health.*", "incident.changed")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": ""}, "webhook name"),
        ({"name": "   "}, "webhook name"),
        ({"name": "x" * 129}, "webhook name"),
        ({"secret": "short"}, "webhook secret"),
        ({"secret": "x" * 129}, "webhook secret"),
        ({"secret": "sixteen-chars-or\nmore"}, "webhook secret"),
        ({"cameras": "cam1"}, "webhook cameras"),
        ({"cameras": ["cam1", ""]}, "webhook cameras"),
        ({"created_by": ""}, "created_by"),
        ({"at": datetime(2026, 3, 1, 8, 0)}, "naive datetime"),
    ],
)
def test_bad_fields_are_refused_and_named(store: Store, kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        _hook(store, **kw)


def test_name_of_128_characters_is_fine(store: Store) -> None:
    assert _hook(store, name="n" * 128).name == "n" * 128


def test_update_changes_only_what_is_given(store: Store) -> None:
    w = _hook(store, cameras=["cam1"])
    same = store.webhooks.update(w.id)
    assert same == w
    u = store.webhooks.update(
        w.id, name="renamed", url="http://127.0.0.1:9/x", events=["health.*"], secret="n" * 20
    )
    assert (u.name, u.url, u.events, u.secret) == (
        "renamed",
        "http://127.0.0.1:9/x",
        ("health.*",),
        "n" * 20,
    )
    assert u.cameras == ("cam1",) and u.enabled is True  # KEEP by default
    assert store.webhooks.update(w.id, cameras=KEEP).cameras == ("cam1",)
    assert store.webhooks.update(w.id, cameras=None).cameras is None
    assert store.webhooks.update(w.id, cameras=["b", "a"]).cameras == ("a", "b")
    assert store.webhooks.update(w.id, enabled=False).enabled is False
    assert store.webhooks.get(w.id).enabled is False
    with pytest.raises(InvalidInputError, match="webhook url"):
        store.webhooks.update(w.id, url="gopher://x")
    with pytest.raises(InvalidInputError, match="webhook events"):
        store.webhooks.update(w.id, events=[])
    assert store.webhooks.get(w.id).url == "http://127.0.0.1:9/x"  # nothing half-applied


def test_unknown_webhook(store: Store) -> None:
    for call in (
        lambda: store.webhooks.get(999),
        lambda: store.webhooks.update(999, name="x"),
        lambda: store.webhooks.delete(999),
        lambda: store.webhooks.enqueue(999, "e1", "incident.opened", {}),
        lambda: store.webhooks.list_deliveries(999),
    ):
        with pytest.raises(UnknownWebhookError, match="no webhook with id 999"):
            call()
    assert issubclass(UnknownWebhookError, NotFoundError)


def test_delete_removes_the_delivery_log(store: Store) -> None:
    a, b = _hook(store), _hook(store, name="b")
    da = store.webhooks.enqueue(a.id, "e1", "incident.opened", {"n": 1})
    db = store.webhooks.enqueue(b.id, "e1", "incident.opened", {"n": 1})
    store.webhooks.delete(a.id)
    with pytest.raises(UnknownWebhookError):
        store.webhooks.get(a.id)
    with pytest.raises(UnknownDeliveryError):
        store.webhooks.get_delivery(da.id)
    assert store.webhooks.get_delivery(db.id).webhook_id == b.id
    assert [w.id for w in store.webhooks.list()] == [b.id]


# ------------------------------------------------------------------ deliveries


def test_enqueue_makes_a_pending_delivery_due_at_once(store: Store) -> None:
    w = _hook(store)
    payload = {"incident": {"id": "abc", "score": 0.5, "tags": ["x"]}, "camera": "cam1"}
    d = store.webhooks.enqueue(w.id, "ev-1", "incident.opened", payload, at=T0)
    assert isinstance(d, DeliveryRecord)
    assert (d.webhook_id, d.event_id, d.event_type, d.payload) == (
        w.id,
        "ev-1",
        "incident.opened",
        payload,
    )
    assert (d.status, d.attempts, d.next_attempt_at, d.created_at) == ("pending", 0, T0, T0)
    assert (d.last_status_code, d.last_error, d.delivered_at) == (None, None, None)
    assert store.webhooks.get_delivery(d.id) == d
    assert _due_ids(store, T0) == [d.id]
    assert _due_ids(store, T0 - timedelta(microseconds=1)) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("", "incident.opened", {}), "event_id"),
        (("e" * 65, "incident.opened", {}), "event_id"),
        (("e1", "Incident opened", {}), "event_type"),
        (("e1", "incident.*", {}), "event_type"),
        (("e1", "incident.opened", [1, 2]), "JSON object"),
        (("e1", "incident.opened", {"x": float("nan")}), "not JSON"),
        (("e1", "incident.opened", {"x": object()}), "not JSON"),
    ],
)
def test_enqueue_refuses_bad_input(store: Store, args: tuple[object, ...], words: str) -> None:
    w = _hook(store)
    with pytest.raises(InvalidInputError, match=words):
        store.webhooks.enqueue(w.id, *args)  # type: ignore[arg-type]
    assert store.webhooks.list_deliveries(w.id) == []


def test_due_is_oldest_first_limited_and_skips_disabled_webhooks(store: Store) -> None:
    a, b = _hook(store), _hook(store, name="b")
    d1 = store.webhooks.enqueue(a.id, "e1", "incident.opened", {}, at=T0 + timedelta(seconds=2))
    d2 = store.webhooks.enqueue(b.id, "e2", "incident.opened", {}, at=T0)
    d3 = store.webhooks.enqueue(a.id, "e3", "incident.opened", {}, at=T0 + timedelta(seconds=1))
    d4 = store.webhooks.enqueue(a.id, "e4", "incident.opened", {}, at=T0 + timedelta(hours=1))
    now = T0 + timedelta(seconds=10)
    assert _due_ids(store, now) == [d2.id, d3.id, d1.id]
    assert _due_ids(store, now, limit=2) == [d2.id, d3.id]
    assert store.webhooks.next_due_at() == T0
    store.webhooks.update(b.id, enabled=False)  # paused: its deliveries wait
    assert _due_ids(store, now) == [d3.id, d1.id]
    assert store.webhooks.next_due_at() == T0 + timedelta(seconds=1)
    store.webhooks.update(b.id, enabled=True)
    assert _due_ids(store, now) == [d2.id, d3.id, d1.id]
    assert _due_ids(store, T0 + timedelta(hours=2)) == [d2.id, d3.id, d1.id, d4.id]
    with pytest.raises(InvalidInputError, match="limit"):
        store.webhooks.due(now, 0)
    with pytest.raises(InvalidInputError, match="naive"):
        store.webhooks.due(datetime(2026, 3, 1), 10)


def test_next_due_at_is_none_when_nothing_is_pending(store: Store) -> None:
    assert store.webhooks.next_due_at() is None
    w = _hook(store)
    d = store.webhooks.enqueue(w.id, "e1", "incident.opened", {}, at=T0)
    store.webhooks.mark_delivered(d.id, 200, at=T0)
    assert store.webhooks.next_due_at() is None


def test_claim_takes_a_due_delivery_once(store: Store) -> None:
    w = _hook(store)
    d = store.webhooks.enqueue(w.id, "e1", "incident.opened", {}, at=T0)
    lease = T0 + timedelta(minutes=1)
    got = store.webhooks.claim(d.id, until=lease, now=T0)
    assert got is not None and got.next_attempt_at == lease and got.attempts == 0
    assert store.webhooks.claim(d.id, until=lease, now=T0) is None  # taken
    assert _due_ids(store, T0 + timedelta(seconds=59)) == []
    assert _due_ids(store, lease) == [d.id]  # the taker died: due again after the lease
    assert store.webhooks.claim(d.id, until=lease + timedelta(minutes=1), now=lease) is not None
    assert store.webhooks.claim(999, until=lease, now=T0) is None


def test_delivered_after_failed_attempts(store: Store) -> None:
    w = _hook(store)
    d = store.webhooks.enqueue(w.id, "e1", "incident.opened", {}, at=T0)
    r1 = store.webhooks.mark_failed_attempt(d.id, 500, "HTTP 500: boom", T0 + timedelta(seconds=2))
    assert (r1.status, r1.attempts, r1.last_status_code, r1.last_error) == (
        "pending",
        1,
        500,
        "HTTP 500: boom",
    )
    assert r1.next_attempt_at == T0 + timedelta(seconds=2)
    r2 = store.webhooks.mark_failed_attempt(
        d.id, None, "ConnectError: refused", T0 + timedelta(seconds=6)
    )
    assert (r2.attempts, r2.last_status_code, r2.last_error) == (2, None, "ConnectError: refused")
    r3 = store.webhooks.mark_delivered(d.id, 204, at=T0 + timedelta(seconds=7))
    assert (r3.status, r3.attempts, r3.last_status_code, r3.last_error) == (
        "delivered",
        3,
        204,
        None,
    )
    assert r3.delivered_at == T0 + timedelta(seconds=7) and r3.next_attempt_at is None
    assert store.webhooks.get_delivery(d.id) == r3
    assert _due_ids(store, T0 + timedelta(days=1)) == []
    with pytest.raises(InvalidTransitionError, match="delivered, not pending"):
        store.webhooks.mark_failed_attempt(d.id, 500, "x", None)


def test_failed_for_good_without_next_attempt(store: Store) -> None:
    w = _hook(store)
    d = store.webhooks.enqueue(w.id, "e1", "incident.opened", {}, at=T0)
    r = store.webhooks.mark_failed_attempt(d.id, None, "x" * 5000, None)
    assert (r.status, r.attempts, r.next_attempt_at) == ("failed", 1, None)
    assert r.last_error is not None and len(r.last_error) == 2000
    assert _due_ids(store, T0 + timedelta(days=1)) == []
    with pytest.raises(InvalidTransitionError, match="failed, not pending"):
        store.webhooks.mark_delivered(d.id, 200)
    with pytest.raises(UnknownDeliveryError, match="no webhook delivery with id 999"):
        store.webhooks.mark_delivered(999, 200)
    with pytest.raises(InvalidInputError, match="next_attempt_at"):
        d2 = store.webhooks.enqueue(w.id, "e2", "incident.opened", {})
        store.webhooks.mark_failed_attempt(d2.id, 500, "x", datetime(2026, 3, 1))


def test_list_deliveries_pages_and_filters(store: Store) -> None:
    a, b = _hook(store), _hook(store, name="b")
    ids = [
        store.webhooks.enqueue(a.id, f"e{i}", "incident.opened", {"i": i}, at=T0).id
        for i in range(5)
    ]
    store.webhooks.enqueue(b.id, "other", "incident.opened", {}, at=T0)
    store.webhooks.mark_delivered(ids[1], 200)
    store.webhooks.mark_failed_attempt(ids[3], 410, "HTTP 410: gone", None)

    def page(**kw: object) -> list[int]:
        return [d.id for d in store.webhooks.list_deliveries(a.id, **kw)]  # type: ignore[arg-type]

    assert page() == ids
    assert page(limit=2) == ids[:2]
    assert page(limit=2, after_id=ids[1]) == ids[2:4]
    assert page(after_id=ids[4]) == []
    assert page(status="delivered") == [ids[1]]
    assert page(status="failed") == [ids[3]]
    assert page(status="pending") == [ids[0], ids[2], ids[4]]
    assert store.webhooks.counts(a.id) == {"pending": 3, "delivered": 1, "failed": 1}
    assert store.webhooks.counts() == {"pending": 4, "delivered": 1, "failed": 1}
    with pytest.raises(InvalidInputError, match="unknown delivery status"):
        page(status="sent")
    with pytest.raises(InvalidInputError, match="limit"):
        page(limit=1001)
