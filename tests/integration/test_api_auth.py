"""API authentication: logins (cookie + CSRF, bearer), lock-out, rate limits, password changes,
API keys (scoped, expiring, revocable, rate-limited), the first admin, the audit trail."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime, timedelta

from smartcity.api.cli import bootstrap_admin
from smartcity.api.security import verify_password
from smartcity.store import Store
from tests.support.api import Api, make_api, password

LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"


def test_anonymous_is_refused_everywhere_but_login_and_docs(api: Api) -> None:
    for path in ("/api/v1/cameras", "/api/v1/incidents", "/metrics", "/api/v1/users",
                 "/api/v1/system/health", "/api/v1/audit"):  # fmt: skip
        r = api.client.get(path)
        assert r.status_code == 401, (path, r.status_code)
    assert api.client.get("/api/docs/openapi.json").status_code == 200


def test_cookie_session_needs_csrf_for_changes(api: Api) -> None:
    r = api.client.post(LOGIN, json={"username": "admin", "password": password("admin")})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    assert "token" not in r.json() or r.json()["token"] is None
    set_cookie = r.headers.get_list("set-cookie")
    session = next(c for c in set_cookie if c.startswith("smartcity_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
    # reads work with the cookie alone
    assert api.client.get("/api/v1/cameras").status_code == 200
    body = {"id": "cam9", "name": "n", "url": "rtsp://10.0.0.9/s"}
    r = api.client.post("/api/v1/cameras", json=body)
    assert r.status_code == 403 and "CSRF" in r.text
    r = api.client.post("/api/v1/cameras", json=body, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    r = api.client.post("/api/v1/cameras", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    # a cookie value is not a bearer token
    cookie = session.split(";")[0].split("=", 1)[1]
    api.client.cookies.clear()
    r = api.client.get("/api/v1/cameras", headers={"Authorization": f"Bearer {cookie}"})
    assert r.status_code == 401


def test_bad_password_locks_the_account_after_five(api: Api) -> None:
    for _ in range(5):
        r = api.client.post(TOKEN, json={"username": "viewer", "password": "wrong-password!"})
        assert r.status_code == 401
    # now even the right password is refused, with the same message
    r = api.client.post(TOKEN, json={"username": "viewer", "password": password("viewer")})
    assert r.status_code == 401
    assert "locked" in r.json()["detail"]
    u = api.store.users.by_name("viewer")
    assert u is not None and u.locked_until is not None
    rows = api.store.audit.list(action="login")
    assert [r.outcome for r in rows][-6:] == ["failed"] * 5 + ["denied"]
    # unknown users get the same answer
    r = api.client.post(TOKEN, json={"username": "nobody", "password": "whatever-123"})
    assert r.status_code == 401 and r.json()["detail"] == (
        "invalid username or password, or the account is locked"
    )


def test_login_rate_limit_per_address(tmp_path) -> None:
    for a in make_api(tmp_path, login_per_minute=3):
        codes = [
            a.client.post(TOKEN, json={"username": "x", "password": "y"}).status_code
            for _ in range(5)
        ]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]
        r = a.client.post(TOKEN, json={"username": "x", "password": "y"})
        assert "retry-after" in {k.lower() for k in r.headers}


def test_password_change_refuses_older_tokens(api: Api) -> None:
    old = api.auth("operator")
    second = api.client.post(
        TOKEN, json={"username": "operator", "password": password("operator")}
    ).json()["token"]
    r = api.client.post(
        "/api/v1/auth/password",
        json={"current_password": "not-it-at-all", "new_password": "a-new-password-42"},
        headers=old,
    )
    assert r.status_code == 403
    r = api.client.post(
        "/api/v1/auth/password",
        json={"current_password": password("operator"), "new_password": "short"},
        headers=old,
    )
    assert r.status_code == 400 and "too short" in r.text
    r = api.client.post(
        "/api/v1/auth/password",
        json={"current_password": password("operator"), "new_password": "a-new-password-42"},
        headers=old,
    )
    assert r.status_code == 200, r.text
    for h in (old, {"Authorization": f"Bearer {second}"}):
        assert api.client.get("/api/v1/incidents", headers=h).status_code == 401
    r = api.client.post(TOKEN, json={"username": "operator", "password": "a-new-password-42"})
    assert r.status_code == 200
    assert (
        api.client.get(
            "/api/v1/incidents", headers={"Authorization": f"Bearer {r.json()['token']}"}
        ).status_code
        == 200
    )


def test_logout_ends_the_token(api: Api) -> None:
    h = api.auth("viewer")
    assert api.client.post("/api/v1/auth/logout", headers=h).status_code == 200
    assert api.client.get("/api/v1/cameras", headers=h).status_code == 401


def test_disabled_user_is_refused_at_once(api: Api) -> None:
    h = api.auth("viewer")
    assert api.client.get("/api/v1/cameras", headers=h).status_code == 200
    uid = api.store.users.by_name("viewer").id  # type: ignore[union-attr]
    r = api.client.patch(f"/api/v1/users/{uid}", json={"enabled": False}, headers=api.auth("admin"))
    assert r.status_code == 200
    assert api.client.get("/api/v1/cameras", headers=h).status_code == 401


def _key(api: Api, **body) -> tuple[str, dict]:
    r = api.client.post("/api/v1/keys", json=body, headers=api.auth("admin"))
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["api_key"]


def test_api_key_scopes_expiry_revocation(api: Api) -> None:
    key, rec = _key(api, name="vms", scopes=["incidents:read"], username="operator")
    assert key.startswith("sck_") and rec["prefix"] in key
    stored = api.store.api_keys.get(rec["id"])
    assert key not in repr(stored)
    h = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/api/v1/incidents", headers=h).status_code == 200
    assert api.client.get("/api/v1/incidents", headers={"X-API-Key": key}).status_code == 200
    # outside its scopes, though the user (operator) could
    assert api.client.get("/api/v1/cameras", headers=h).status_code == 403
    iid = api.incident()
    assert api.client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=h).status_code == 403
    # keys never manage the account
    assert api.client.post("/api/v1/auth/logout", headers=h).status_code == 403
    # the list never shows the key
    listed = api.client.get("/api/v1/keys", headers=api.auth("admin")).text
    assert key not in listed and rec["prefix"] in listed
    # revoked: refused at once
    assert (
        api.client.delete(f"/api/v1/keys/{rec['id']}", headers=api.auth("admin")).status_code == 204
    )
    assert api.client.get("/api/v1/incidents", headers=h).status_code == 401
    # expired
    key2, rec2 = _key(api, name="old", scopes=["incidents:read"], username="operator")
    api.store.api_keys.revoke  # noqa: B018 - just checking the attribute exists
    from sqlalchemy import update

    from smartcity.store import models as m

    with api.store.write() as s:
        s.execute(
            update(m.ApiKey)
            .where(m.ApiKey.id == rec2["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    api.app.state.authenticator.forget()
    assert api.client.get("/api/v1/incidents", headers={"X-API-Key": key2}).status_code == 401


def test_api_key_cannot_exceed_its_users_role(api: Api) -> None:
    r = api.client.post(
        "/api/v1/keys",
        json={"name": "x", "scopes": ["webhooks:write"], "username": "viewer"},
        headers=api.auth("admin"),
    )
    assert r.status_code == 400 and "cannot hold" in r.text
    r = api.client.post(
        "/api/v1/keys", json={"name": "x", "scopes": ["nonsense:read"]}, headers=api.auth("admin")
    )
    assert r.status_code == 400 and "unknown scopes" in r.text


def test_api_key_rate_limit(api: Api) -> None:
    key, _ = _key(api, name="fast", scopes=["cameras:read"], username="viewer", rate_per_min=5)
    h = {"X-API-Key": key}
    codes = [api.client.get("/api/v1/cameras", headers=h).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]


def test_key_restricted_to_cameras(api: Api) -> None:
    key, _ = _key(api, name="c2", scopes=["cameras:read"], username="viewer", cameras=["cam2"])
    ids = [c["id"] for c in api.client.get("/api/v1/cameras", headers={"X-API-Key": key}).json()]
    assert ids == ["cam2"]


def test_first_start_creates_admin_with_printed_password(tmp_path) -> None:
    st = Store.open(data_dir=tmp_path)
    try:
        pw = bootstrap_admin(st)
        assert pw is not None and len(pw) >= 16
        u = st.users.by_name("admin")
        assert u is not None and u.role == "admin" and verify_password(u.password_hash, pw)
        assert pw not in u.password_hash
        assert bootstrap_admin(st) is None  # only when there is no user
    finally:
        st.close()


def _cli(monkeypatch, capsys, args: list[str], stdin: str = "") -> tuple[int, str, str]:
    from smartcity.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_users_cli_create_and_audit_verify(tmp_path, monkeypatch, capsys) -> None:
    d = str(tmp_path)
    rc, _, err = _cli(
        monkeypatch,
        capsys,
        ["users", "create", "alice", "--role", "operator", "--password-stdin", "--data-dir", d],
        "alice-password-1\n",
    )
    assert rc == 0, err
    rc, _, err = _cli(
        monkeypatch,
        capsys,
        ["users", "create", "bob", "--role", "operator", "--password-stdin", "--data-dir", d],
        "short\n",
    )
    assert rc == 2 and "too short" in err
    rc, out, _ = _cli(monkeypatch, capsys, ["users", "list", "--data-dir", d])
    assert "alice" in out and "operator" in out and "bob" not in out
    rc, out, err = _cli(monkeypatch, capsys, ["audit", "verify", "--data-dir", d])
    assert rc == 0 and "intact: 1 rows" in out, out + err
    # tamper with the row: verify must fail and name it
    st = Store.open(data_dir=tmp_path)
    with st.write() as s:
        from sqlalchemy import update

        from smartcity.store import models as m

        s.execute(update(m.AuditLog).values(target="mallory"))
    st.close()
    rc, out, _ = _cli(monkeypatch, capsys, ["audit", "verify", "--data-dir", d])
    assert rc == 1 and "audit row 1" in out
