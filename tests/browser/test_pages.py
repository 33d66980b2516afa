"""The pages without a browser: served with their security headers, public shells (the data
stays behind the API's permissions), every string key a page or script names is in
strings/en.json, and every translation has the same keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.api import Api

WEB = Path(__file__).resolve().parents[2] / "smartcity" / "web"
STRINGS = WEB / "static" / "strings"


@pytest.mark.parametrize("page", ["/login", "/console", "/admin"])
def test_pages_are_shells_with_security_headers(api: Api, page: str) -> None:
    r = api.client.get(page)  # no login needed: the page holds no data
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                 "img-src 'self'", "connect-src 'self' ws://testserver.local wss://testserver.local",
                 "frame-ancestors 'none'"):  # fmt: skip
        assert part in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text and "http" not in r.text.replace("http://www.w3.org", "")


def test_a_strange_host_header_is_not_copied_into_the_policy(api: Api) -> None:
    r = api.client.get("/console", headers={"Host": "x;script-src:*"})
    assert r.status_code == 200, r.text
    csp = r.headers["content-security-policy"]
    assert "connect-src 'self';" in csp and "*" not in csp


def test_root_redirects_and_static_files(api: Api) -> None:
    r = api.client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/console"
    r = api.client.get("/static/app.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert api.client.get("/static/../templates/console.html").status_code == 404
    # the data is not public: the API answers 401 without a login
    assert api.client.get("/api/v1/cameras").status_code == 401


def test_pages_stay_out_of_the_api_spec(api: Api) -> None:
    paths = api.client.get("/api/docs/openapi.json").json()["paths"]
    assert not [p for p in paths if p in ("/", "/login", "/console", "/admin")]
    assert not [p for p in paths if p.startswith("/static")]


def test_every_string_is_in_one_place() -> None:
    en = json.loads((STRINGS / "en.json").read_text())
    used: set[str] = set()
    for f in (WEB / "templates").glob("*.html"):
        used |= set(re.findall(r'data-i18n(?:-placeholder|-title)?="([^"]+)"', f.read_text()))
    for f in (WEB / "static").glob("*.js"):
        used |= set(re.findall(r'\bt\("([a-z_.]+)"', f.read_text()))
    assert used - set(en) == set(), "keys missing from strings/en.json"
    for f in STRINGS.glob("*.json"):
        other = json.loads(f.read_text())
        assert set(other) == set(en), f"{f.name}: keys differ from en.json"
        for k, v in other.items():  # the same {placeholders}
            assert set(re.findall(r"\{\w+\}", v)) == set(re.findall(r"\{\w+\}", en[k])), (f, k)
