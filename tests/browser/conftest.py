"""Fixtures of the browser tests: the served stack (one per module), Chromium (one per session),
a page per test that fails on a Content-Security-Policy violation or a script error."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smartcity.bus import Broker, Publisher
from smartcity.bus.sockets import publisher_endpoint
from tests.browser.support import ARGS, LOCATIONS, FakePipeline, Stack, chromium, seed
from tests.support.api import make_served


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from smartcity.bus.evidence import evidence_endpoint
    from smartcity.engine.evidence import EvidenceServer

    run_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))  # ipc:// paths stay short
    tmp = Path(tempfile.mkdtemp(prefix="sc-browser-"))
    broker = Broker(run_dir).start()
    pub = Publisher(publisher_endpoint(run_dir))
    server = EvidenceServer(FakePipeline(), evidence_endpoint(run_dir)).start()
    served = make_served(tmp, run_dir=str(run_dir), mjpeg_fps=4.0, login_per_minute=1000)
    try:
        srv, store = next(served)
        for cam, (lat, lon) in LOCATIONS.items():
            store.cameras.update(cam, geometry={"location": {"latitude": lat, "longitude": lon}})
        seed(store)
        yield Stack(url=srv.url, store=store, pub=pub, data_dir=tmp / "data", run_dir=run_dir)
    finally:
        next(served, None)
        server.stop()
        pub.close()
        broker.stop()
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for the browser tests, stopped when they are done: Playwright's sync API
    keeps an asyncio loop running in the main thread while it is open, and every later test
    that calls asyncio.run() would fail ("cannot be called from a running event loop")."""
    from playwright.sync_api import Error, sync_playwright

    exe = chromium()
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        except Error as e:
            pytest.fail(f"Chromium at {exe} does not start: {e}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Pages in browser contexts of their own (one user each: their own cookies), 1920x1080;
    each fails the test on a Content-Security-Policy violation or a script error."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make() -> Any:
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-US")
        contexts.append(ctx)
        pg = ctx.new_page()
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        return pg

    try:
        yield make
    finally:
        for ctx in contexts:
            ctx.close()
    # a page script that fails or a picture the CSP blocks shows up as a console error
    assert not [p for p in problems if "Content Security Policy" in p or "page error" in p], (
        problems
    )


@pytest.fixture
def page(new_page: Callable[[], Any]) -> Any:
    return new_page()
