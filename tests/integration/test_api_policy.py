"""Deny by default: the role x endpoint matrix, read from the OpenAPI spec.

EXPECTED below is the matrix written out by hand. The test fails when the spec has an operation
that is not in it (a new endpoint needs its rule here and in smartcity/api/policy.py), when an
entry has no operation, and when any role gets other than what the matrix says. Each call is
made for real; calls that are allowed are made with an id that does not exist or a body that
does not validate, so that they pass the guard without changing anything.
"""

from __future__ import annotations

import pytest

from smartcity.api.policy import PERMISSIONS, PUBLIC
from tests.support.api import ROLES, Api, password

V, O, M, A = "viewer", "operator", "maintenance", "admin"  # noqa: E741
ALL = {V, O, M, A}
EXPECTED: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): ALL,
    ("GET", "/api/v1/auth/me"): ALL,
    ("POST", "/api/v1/auth/password"): ALL,
    ("GET", "/api/v1/users"): {A},
    ("POST", "/api/v1/users"): {A},
    ("GET", "/api/v1/users/{user_id}"): {A},
    ("PATCH", "/api/v1/users/{user_id}"): {A},
    ("DELETE", "/api/v1/users/{user_id}"): {A},
    ("POST", "/api/v1/users/{user_id}/password"): {A},
    ("GET", "/api/v1/keys"): {A},
    ("POST", "/api/v1/keys"): {A},
    ("GET", "/api/v1/keys/scopes"): {A},
    ("DELETE", "/api/v1/keys/{key_id}"): {A},
    ("GET", "/api/v1/audit"): {A},
    ("GET", "/api/v1/audit/verify"): {A},
    ("GET", "/api/v1/cameras"): ALL,
    ("POST", "/api/v1/cameras"): {M, A},
    ("GET", "/api/v1/cameras/{camera_id}"): ALL,
    ("PATCH", "/api/v1/cameras/{camera_id}"): {M, A},
    ("DELETE", "/api/v1/cameras/{camera_id}"): {M, A},
    ("GET", "/api/v1/incidents"): {V, O, A},
    ("GET", "/api/v1/incidents/{incident_id}"): {V, O, A},
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge"): {O, A},
    ("POST", "/api/v1/incidents/{incident_id}/resolve"): {O, A},
    ("POST", "/api/v1/incidents/{incident_id}/dismiss"): {O, A},
    ("POST", "/api/v1/incidents/{incident_id}/assign"): {O, A},
    ("POST", "/api/v1/incidents/{incident_id}/notes"): {O, A},
    ("PUT", "/api/v1/incidents/{incident_id}/legal-hold"): {O, A},
    ("GET", "/api/v1/incidents/{incident_id}/evidence"): {V, O, A},
    ("GET", "/api/v1/incidents/{incident_id}/evidence/{evidence_id}"): {V, O, A},
    ("GET", "/api/v1/incidents/{incident_id}/export"): {O, A},
    ("GET", "/api/v1/live/cameras/{camera_id}/snapshot.jpg"): ALL,
    ("GET", "/api/v1/live/cameras/{camera_id}/mjpeg"): ALL,
    ("GET", "/api/v1/live/events"): ALL,
    ("GET", "/api/v1/traffic/{camera_id}"): ALL,
    ("GET", "/api/v1/system/health"): ALL,
    ("GET", "/api/v1/system/version"): ALL,
    ("GET", "/api/v1/system/backup"): {A},
    ("GET", "/api/v1/system/logs"): {M, A},
    ("GET", "/api/v1/system/models"): {M, A},
    ("GET", "/api/v1/system/resources"): {M, A},
    ("POST", "/api/v1/system/services/{service}/restart"): {A},
    ("GET", "/metrics"): {M, A},
    ("GET", "/api/v1/roadsafety/columns"): {V, O, A},
    ("POST", "/api/v1/roadsafety/crashes/import"): {A},
    ("GET", "/api/v1/roadsafety/crashes"): {V, O, A},
    ("GET", "/api/v1/roadsafety/crashes/sources"): {V, O, A},
    ("DELETE", "/api/v1/roadsafety/crashes/sources/{source}"): {A},
    ("GET", "/api/v1/roadsafety/hotspots"): {V, O, A},
    ("GET", "/api/v1/webhooks"): {A},
    ("POST", "/api/v1/webhooks"): {A},
    ("GET", "/api/v1/webhooks/{webhook_id}"): {A},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {A},
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): {A},
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): {A},
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): {A},
}
#: Operations whose real call would hang (streams) or end the caller's session: checked through
#: the guard alone, with the anonymous and denied cases still called for real.
NOT_CALLED_WHEN_ALLOWED = {
    ("GET", "/api/v1/live/events"),
    ("GET", "/api/v1/live/cameras/{camera_id}/mjpeg"),
    ("POST", "/api/v1/auth/logout"),
}
PARAMS = {"path": "openapi.json", "user_id": "999999", "key_id": "999999", "camera_id": "nope",
          "incident_id": "nope", "evidence_id": "999999", "webhook_id": "999999",
          "source": "nope", "service": "nope"}  # fmt: skip


def _operations(api: Api) -> set[tuple[str, str]]:
    spec = api.client.get("/api/docs/openapi.json").json()
    ops = set()
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                ops.add((method.upper(), path))
    return ops


def test_every_operation_has_a_rule_and_the_matrix_is_complete(api: Api) -> None:
    ops = _operations(api)
    missing = sorted(ops - set(EXPECTED))
    assert not missing, f"operations without an entry in the matrix: {missing}"
    stale = sorted(set(EXPECTED) - ops)
    assert not stale, f"matrix entries without an operation: {stale}"
    # every route handler names a known permission
    for route in api.app.routes:
        for handler in getattr(route, "route_handlers", []):
            if set(getattr(handler, "http_methods", ())) == {"OPTIONS"}:
                continue  # Litestar's own OPTIONS answer (no data)
            perm = handler.opt.get("perm")
            assert perm == PUBLIC or perm in PERMISSIONS, (route.path, perm)


def _url(path: str) -> str:
    for k, v in PARAMS.items():
        path = path.replace("{" + k + "}", v)
    return path


@pytest.mark.parametrize("role", [*ROLES, "anonymous"])
def test_role_matrix(api: Api, role: str) -> None:
    headers = api.auth(role) if role != "anonymous" else {}
    wrong = []
    for (method, path), allowed in sorted(EXPECTED.items()):
        public = allowed == PUBLIC
        ok = public or (role != "anonymous" and role in allowed)
        if ok and (method, path) in NOT_CALLED_WHEN_ALLOWED:
            continue
        if public and path.endswith(("/login", "/token")):
            body: object = {"username": "viewer", "password": password("viewer")}
        else:
            body = [1, 2, 3]  # never a valid body: no allowed call changes anything
        kw = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
        r = api.client.request(method, _url(path), headers=headers, **kw)
        api.client.cookies.clear()  # a login sets the session cookie: keep the role pure
        if ok:
            good = r.status_code not in (401, 403)
        elif role == "anonymous":
            good = r.status_code == 401
        else:
            good = r.status_code == 403
        if not good:
            wrong.append(f"{role} {method} {path}: {r.status_code} {r.text[:80]}")
    assert not wrong, "\n".join(wrong)


def test_unlisted_route_is_denied_to_everyone() -> None:
    """A handler without opt["perm"] answers 403 even to an admin."""
    from litestar import get

    from smartcity.api.domain import route_handlers

    @get("/api/v1/forgotten", sync_to_thread=False)
    def forgotten() -> str:
        return "should never be served"

    import smartcity.api.domain as domain

    original = domain.route_handlers
    domain.route_handlers = lambda: [*original(), forgotten]  # type: ignore[assignment]
    try:
        import tempfile
        from pathlib import Path

        from tests.support.api import make_api

        with tempfile.TemporaryDirectory() as d:
            for a in make_api(Path(d)):
                assert a.client.get("/api/v1/forgotten", headers=a.auth("admin")).status_code == 403
                assert a.client.get("/api/v1/forgotten").status_code in (401, 403)
    finally:
        domain.route_handlers = original  # type: ignore[assignment]
    assert route_handlers is original
