"""The web pages: /login, /console (operators), /admin (maintenance, admin) and /static/.

The pages are shells without data: every figure, picture and incident comes from the API with
the session cookie (and X-CSRF-Token on changes), where the API's own permissions apply. So the
pages and their static files are public; each names the permission `public` (deny by default
still holds: tests/integration/test_api_policy.py requires every handler to name one).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from litestar import Controller, MediaType, Response, get
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from smartcity.api.domain.common import AnyRequest
from smartcity.api.policy import PUBLIC

WEB = Path(__file__).resolve().parents[3] / "web"
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"
PAGES = ("login", "console", "admin")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


def security_headers(host: str | None) -> dict[str, str]:
    """Scripts, styles, pictures, video and connections from this origin only (the live feed's
    WebSocket included); no framing; no referrer."""
    ws = ""
    if host and _HOST.match(host):
        ws = f" ws://{host} wss://{host}"
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src 'self'{ws}; font-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


@functools.cache
def _page(name: str) -> bytes:
    return (TEMPLATES / f"{name}.html").read_bytes()


def _html(request: AnyRequest, name: str) -> Response[bytes]:
    return Response(
        _page(name),
        media_type=MediaType.HTML,
        headers=security_headers(request.headers.get("host")),
    )


class WebController(Controller):
    path = "/"
    include_in_schema = False
    opt = {"perm": PUBLIC}

    @get("/", opt={"perm": PUBLIC}, include_in_schema=False)
    async def root(self) -> Redirect:
        return Redirect(path="/console")

    @get("/login", opt={"perm": PUBLIC}, include_in_schema=False)
    async def login(self, request: AnyRequest) -> Response[bytes]:
        return _html(request, "login")

    @get("/console", opt={"perm": PUBLIC}, include_in_schema=False)
    async def console(self, request: AnyRequest) -> Response[bytes]:
        return _html(request, "console")

    @get("/admin", opt={"perm": PUBLIC}, include_in_schema=False)
    async def admin(self, request: AnyRequest) -> Response[bytes]:
        return _html(request, "admin")


def _static_headers(response: Any) -> Any:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


def static_router() -> Any:
    """/static/...: the pages' scripts, styles and strings (committed; nothing from a CDN)."""
    return create_static_files_router(
        path="/static",
        directories=[STATIC],
        opt={"perm": PUBLIC},
        include_in_schema=False,
        after_request=_static_headers,
        name="web-static",
    )
