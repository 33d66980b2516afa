"""Draw a zone on a snapshot and see the rule fire (issue 8): maintenance draws a zone on cam1's
snapshot in the admin page's editor, ticks "person" as forbidden and saves it; the incidents
service, running for real on the stack's bus and store, reloads the camera on the API's
`config.changed` and opens a zone-intrusion incident for a person's tracks published inside the
zone, which the operator console, open in another browser, shows live.

The person walks the same spot before the save too: nothing fires then, so the incident is the
drawn zone's doing. Every wait has a deadline; nothing depends on how fast the machine is."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from smartcity.bus import ConfigChangedEvent, TracksEvent
from smartcity.incidents.config import load_incidents_config
from smartcity.incidents.service import IncidentsService
from tests.browser.support import Stack, login, shot, until, wait_js

pytestmark = pytest.mark.browser

#: the zone's corners as fractions of the 640x360 snapshot; the person stands at its middle
CORNERS = [(0.3, 0.3), (0.7, 0.3), (0.7, 0.9), (0.3, 0.9)]
FEET = (320.0, 216.0)  # (0.5, 0.6) of the picture: inside


@pytest.fixture
def incidents(stack: Stack, tmp_path: Path) -> Iterator[IncidentsService]:
    """`smartcity incidents` on a thread: the store's cameras (the API's), no file cameras, the
    snapshot evidence from the stack's stand-in evidence server."""
    config = tmp_path / "incidents.yaml"
    quiet = {"health": {"enabled": False}, "snapshot_every_s": 0}
    config.write_text(
        yaml.safe_dump({
            "data_dir": str(stack.data_dir),
            "evidence": {"snapshot": True, "clip": False},
            "cameras": [],
            "cameras_from_store": {"data_dir": str(stack.data_dir), "defaults": quiet},
        })
    )  # fmt: skip
    service = IncidentsService(
        load_incidents_config(config), str(stack.run_dir), config_path=config
    )
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # its subscription has reached the broker once a config.changed of the API's kind
        # makes it reload: from then on nothing published is lost
        def reloaded() -> bool:
            stack.pub.publish(ConfigChangedEvent(seq=0, t_ns=time.time_ns(), reason="api: test"))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not service.reloads:
                time.sleep(0.05)
            return bool(service.reloads)

        until(reloaded, "the incidents service to subscribe", timeout=20)
        yield service
    finally:
        stop.set()
        thread.join(10)
        service.close()


class Walker:
    """A person (track 5, class 0) standing with their feet at FEET, one frame each 0.2 s of
    stream time, published on the bus as the engine would."""

    def __init__(self, stack: Stack) -> None:
        self.pub = stack.pub
        self.frame = 0
        self.t0 = time.time_ns()  # stream time starts now: the incident's time is today's

    def walk(self, frames: int) -> None:
        x, y = FEET
        for _ in range(frames):
            pts = self.frame * 0.2
            self.pub.publish(
                TracksEvent(
                    cam="cam1", seq=0, frame=self.frame, pts=pts, t_ns=self.t0 + int(pts * 1e9),
                    w=640, h=360, track_id=np.array([5], np.int64),
                    class_id=np.array([0], np.int32), score=np.array([0.9], np.float32),
                    xyxy=np.array([[x - 20, y - 90, x + 20, y]], np.float32),
                )
            )  # fmt: skip
            self.frame += 1


def test_a_zone_drawn_on_the_snapshot_makes_the_rule_fire(
    new_page: Callable[[], Any], stack: Stack, incidents: IncidentsService
) -> None:
    t0 = time.monotonic()
    service = incidents
    assert "cam1" in service.rules and not service.rules["cam1"].geometry.zones
    walker = Walker(stack)
    # before the zone: the person is seen, nothing fires
    seen = service.counters.tracks_messages
    walker.walk(5)
    until(lambda: service.counters.tracks_messages == seen + 5, "the first tracks to arrive")
    assert not stack.store.incidents.list(camera_id="cam1").items

    # the operator's console is open (its live feed connected) in a browser of its own
    console = new_page()
    login(console, stack.url, "operator")
    assert console.url.endswith("/console")
    wait_js(console, "document.querySelectorAll('#feed li').length === 0")

    # maintenance draws the zone on cam1's snapshot, forbids people in it and saves
    admin = new_page()
    login(admin, stack.url, "maintenance")
    admin.select_option("#editor-camera", "cam1")
    wait_js(
        admin, "document.querySelector('#editor-svg').getAttribute('viewBox') === '0 0 640 360'"
    )
    assert admin.is_visible("#editor-forbidden")
    svg = admin.locator("#editor-svg")
    box = svg.bounding_box()
    for fx, fy in CORNERS:
        svg.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    admin.fill("#editor-name", "plaza")
    admin.check('#editor-forbidden input[value="person"]')
    n = len(service.reloads)
    admin.click("#editor-save")
    wait_js(admin, "document.querySelector('#editor-message').textContent.startsWith('Saved')")
    (zone,) = stack.store.cameras.get("cam1").geometry["zones"]
    assert zone["name"] == "plaza" and zone["forbidden"] == ["person"], zone
    assert "min_dwell_s" not in zone
    shot(admin, "admin-zone-rule")

    # the API's config.changed reaches the service: cam1 gets new rules with the zone
    until(lambda: any("cam1" in r.replaced for r in service.reloads[n:]), "cam1's reload")
    assert [z.name for z in service.rules["cam1"].geometry.zones] == ["plaza"]
    walker.walk(5)
    until(lambda: bool(stack.store.incidents.list(camera_id="cam1").items), "the incident")
    (inc,) = stack.store.incidents.list(camera_id="cam1").items
    assert inc.type == "zone_intrusion" and inc.state == "open", inc
    assert inc.details["zone"] == "plaza" and inc.details["class"] == "person", inc.details

    # the operator sees it arrive without a reload
    item = console.locator(f'#feed li[data-id="{inc.id}"]')
    item.wait_for(timeout=15_000)
    text = item.inner_text()
    assert "Zone intrusion" in text and "cam1" in text and "high" in text, text
    # its snapshot, asked for once the incident was stored, comes into the item by itself
    until(lambda: any(e.kind == "snapshot" for e in stack.store.evidence.list(inc.id)),
          "the incident's snapshot", timeout=20)  # fmt: skip
    wait_js(console, f"document.querySelector('#feed li[data-id=\"{inc.id}\"] img.thumb')"
            "?.naturalWidth > 0", timeout=20)  # fmt: skip
    shot(console, "console-zone-intrusion")
    assert service.counters.store_errors == 0, service.counters.last_error
    print(f"zone rule test: {time.monotonic() - t0:.1f} s")


def test_a_zone_rule_the_api_refuses_shows_its_message(page: Any, stack: Stack) -> None:
    """A negative dwell: the API checks the zone with the incidents service's parser and its
    message names the field; nothing is stored."""
    login(page, stack.url, "maintenance")
    page.select_option("#editor-camera", "cam2")
    wait_js(page, "document.querySelector('#editor-svg').getAttribute('viewBox') === '0 0 640 360'")
    svg = page.locator("#editor-svg")
    for x, y in [(50, 50), (150, 50), (150, 150)]:
        svg.click(position={"x": x, "y": y})
    page.check('#editor-forbidden input[value="car"]')
    page.fill("#editor-dwell", "-2")
    page.click("#editor-save")
    wait_js(page, "document.querySelector('#editor-error').textContent.includes('min_dwell_s')")
    assert "zones" not in (stack.store.cameras.get("cam2").geometry or {})
    # the rule's fields are for zones only
    page.select_option("#editor-mode", "line")
    assert not page.is_visible("#editor-zone-rule")
