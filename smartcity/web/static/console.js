// The operator console: camera wall, live incident feed, map, traffic chart.
import {
  api, el, svg, start, liveSocket, stateLabel, typeLabel, fmtTime, showError,
} from "./app.js";
import { t } from "./i18n.js";

// An HTTP/1.1 browser keeps at most 6 connections per host: an MJPEG stream holds one for
// good, so only the first MJPEG_MAX tiles stream; the others poll snapshot.jpg.
const MJPEG_MAX = 4;
const POLL_MS = 2000;
const FEED_STATES = "open,acknowledged";

const me = await start({ roles: ["viewer", "operator", "admin"] });
const canAct = me && (me.role === "operator" || me.role === "admin");
const incidents = new Map(); // id -> incident
const tiles = new Map(); // camera id -> {tile, badge}
let cameras = [];

function snapshotUrl(cam) {
  return `/api/v1/live/cameras/${encodeURIComponent(cam)}/snapshot.jpg?t=${Date.now()}`;
}

function poll(img, cam) {
  if (img.dataset.polling) return;
  img.dataset.polling = "1";
  const next = () => {
    if (!img.isConnected) return;
    const probe = new Image();
    probe.onload = () => { img.src = probe.src; img.closest(".tile")?.classList.remove("nopic"); setTimeout(next, POLL_MS); };
    probe.onerror = () => { img.closest(".tile")?.classList.add("nopic"); setTimeout(next, POLL_MS * 2); };
    probe.src = snapshotUrl(cam);
  };
  next();
}

function badge(state) {
  const s = state || "unknown";
  return el("span", { class: `badge state-${s}` }, stateLabel(s));
}

function setCameraState(cam, state) {
  const tile = tiles.get(cam);
  if (tile) tile.badge.replaceWith((tile.badge = badge(state)));
}

async function buildWall() {
  const wall = document.getElementById("wall");
  const [list, health] = await Promise.all([
    api("/api/v1/cameras"),
    api("/api/v1/system/health").catch(() => ({ cameras: {} })),
  ]);
  cameras = list.filter((c) => c.enabled);
  wall.style.setProperty("--cols", String(Math.max(1, Math.ceil(Math.sqrt(cameras.length)))));
  wall.replaceChildren();
  cameras.forEach((c, i) => {
    const img = el("img", { class: "live", alt: c.name, dataset: { camera: c.id } });
    const b = badge(health.cameras?.[c.id]?.state);
    const tile = el("figure", { class: "tile", dataset: { camera: c.id } },
      img,
      el("figcaption", {}, el("span", { class: "cam-name" }, c.name), b),
      el("span", { class: "nopic-text" }, t("console.no_picture")));
    tiles.set(c.id, { tile, badge: b });
    wall.append(tile);
    img.addEventListener("load", () => tile.classList.remove("nopic"));
    if (i < MJPEG_MAX) {
      img.addEventListener("error", () => poll(img, c.id), { once: true });
      img.src = `/api/v1/live/cameras/${encodeURIComponent(c.id)}/mjpeg`;
    } else {
      poll(img, c.id);
    }
  });
  // every camera that may have counts (a disabled one too), not the appliance's system camera
  const sel = document.getElementById("traffic-camera");
  const counted = list.filter((c) => !(c.url_redacted || "").startsWith("internal:"));
  sel.replaceChildren(...counted.map((c) => el("option", { value: c.id }, c.name)));
}

// ---- incident feed ----

function sevClass(s) { return `sev sev-${s}`; }

// The incidents service stores and publishes an incident first and asks for its evidence after:
// a fresh incident has no snapshot yet, so ask again (1, 2, 4, 8, 16 s) while the item is shown.
const THUMB_RETRIES = 5;
async function thumbnail(inc, img, attempt = 0) {
  if (attempt > 0 && !img.isConnected) return; // replaced or gone meanwhile
  try {
    const ev = await api(`/api/v1/incidents/${encodeURIComponent(inc.id)}/evidence`);
    const snap = ev.find((e) => e.kind === "snapshot");
    if (snap) { img.src = snap.url; img.hidden = false; return; }
  } catch (e) { /* not readable now: try again below */ }
  if (attempt < THUMB_RETRIES) setTimeout(() => thumbnail(inc, img, attempt + 1), 1000 * 2 ** attempt);
}

function actionButtons(inc) {
  if (!canAct) return [];
  const act = (action, body) => async (ev) => {
    ev.stopPropagation();
    try {
      const r = await api(`/api/v1/incidents/${encodeURIComponent(inc.id)}/${action}`, { method: "POST", body });
      upsert(r);
      if (document.getElementById("detail").open) showDetail(inc.id);
    } catch (e) { showError(e); }
  };
  const out = [];
  if (inc.state === "open") out.push(el("button", { class: "act-acknowledge", onclick: act("acknowledge") }, t("console.acknowledge")));
  out.push(el("button", { class: "act-resolve", onclick: act("resolve") }, t("console.resolve")));
  out.push(el("button", { class: "act-dismiss", onclick: act("dismiss") }, t("console.dismiss")));
  out.push(el("button", {
    class: "act-assign",
    onclick: (ev) => {
      const who = prompt(t("console.assign_prompt"), inc.assigned_to || me.username);
      if (who === null) return;
      act("assign", { assignee: who.trim() || null })(ev);
    },
  }, t("console.assign")));
  out.push(el("button", {
    class: "act-note",
    onclick: (ev) => {
      const text = prompt(t("console.note_prompt"));
      if (text && text.trim()) act("notes", { text: text.trim() })(ev);
    },
  }, t("console.note")));
  return out;
}

function item(inc) {
  const img = el("img", { class: "thumb", alt: "", hidden: true });
  const li = el("li", { class: `incident state-${inc.state}`, dataset: { id: inc.id }, onclick: () => showDetail(inc.id) },
    img,
    el("div", { class: "inc-main" },
      el("div", { class: "inc-head" },
        el("span", { class: "inc-type" }, typeLabel(inc.type)),
        el("span", { class: sevClass(inc.severity) }, t(`severity.${inc.severity}`))),
      el("div", { class: "inc-meta" },
        el("span", { class: "inc-camera" }, t("console.camera", { camera: inc.camera_id })), " · ",
        el("time", { datetime: inc.opened_at }, fmtTime(inc.opened_at)), " · ",
        el("span", { class: "inc-state" }, stateLabel(inc.state)),
        inc.assigned_to ? [" · ", el("span", { class: "inc-assigned" }, t("console.assigned", { user: inc.assigned_to }))] : null),
      el("div", { class: "inc-actions" }, actionButtons(inc))));
  thumbnail(inc, img);
  return li;
}

function refreshEmpty() {
  document.getElementById("feed-empty").hidden = incidents.size > 0;
}

function upsert(inc, fresh = false) {
  const feed = document.getElementById("feed");
  const old = feed.querySelector(`li[data-id="${CSS.escape(inc.id)}"]`);
  if (!FEED_STATES.split(",").includes(inc.state)) {
    incidents.delete(inc.id);
    old?.remove();
    refreshEmpty();
    return;
  }
  const known = incidents.get(inc.id) || {};
  inc = { ...known, ...inc };
  incidents.set(inc.id, inc);
  const li = item(inc);
  if (old) old.replaceWith(li);
  else if (fresh) { feed.prepend(li); li.classList.add("new"); }
  else feed.append(li);
  refreshEmpty();
}

async function loadFeed() {
  const page = await api("/api/v1/incidents", { query: { state: FEED_STATES, limit: 100 } });
  for (const inc of page.items) upsert(inc);
  refreshEmpty();
}

function onLive(msg) {
  if (msg.type === "camera.state") { setCameraState(msg.camera, msg.data.state); return; }
  if (!msg.type.startsWith("incident.")) return;
  const kind = msg.type.split(".")[1];
  const data = kind === "changed" ? msg.data.incident : msg.data;
  if (!data || !data.id) return;
  const inc = { camera_id: msg.camera, ...data };
  if (!inc.camera_id && data.camera) inc.camera_id = data.camera;
  if (!inc.opened_at) inc.opened_at = msg.at;
  upsert(inc, kind === "opened");
}

async function showDetail(id) {
  const dlg = document.getElementById("detail");
  const body = document.getElementById("detail-body");
  try {
    const inc = await api(`/api/v1/incidents/${encodeURIComponent(id)}`);
    const snap = inc.evidence.find((e) => e.kind === "snapshot");
    const clip = inc.evidence.find((e) => e.kind === "clip");
    body.replaceChildren(
      el("h2", {}, `${typeLabel(inc.type)} · ${t("console.camera", { camera: inc.camera_id })}`),
      el("p", {}, el("span", { class: sevClass(inc.severity) }, t(`severity.${inc.severity}`)), " ",
        stateLabel(inc.state), " · ", t("console.opened", { time: fmtTime(inc.opened_at) })),
      el("div", { class: "detail-media" },
        snap ? el("img", { src: snap.url, alt: "" }) : null,
        clip ? el("video", { src: clip.url, controls: true, autoplay: true, muted: true, class: "clip" })
          : el("p", { class: "muted" }, t("console.no_clip"))),
      el("div", { class: "inc-actions" }, actionButtons(inc)),
      el("h3", {}, t("console.history")),
      el("ul", { class: "history" }, inc.events.map((e) =>
        el("li", {}, `${fmtTime(e.at)} ${e.kind}${e.actor ? " " + e.actor : ""}${e.text ? ": " + e.text : ""}`))));
    if (!dlg.open) dlg.showModal();
  } catch (e) { showError(e); }
}

// ---- map ----

function location(c) {
  const l = (c.geometry || {}).location;
  if (!l) return null;
  const lat = l.latitude ?? l.lat, lon = l.longitude ?? l.lon;
  return typeof lat === "number" && typeof lon === "number" ? [lon, lat] : null;
}

function rings(geom) {
  if (!geom) return [];
  if (geom.type === "Polygon") return [geom.coordinates[0]];
  if (geom.type === "MultiPolygon") return geom.coordinates.map((p) => p[0]);
  return [];
}

async function drawMap(cameraList) {
  const box = document.getElementById("map");
  let spots = { features: [] };
  try { spots = await api("/api/v1/roadsafety/hotspots", { query: { limit: 200 } }); } catch (e) { /* role without road safety */ }
  const cams = cameraList.map((c) => ({ c, p: location(c) })).filter((x) => x.p);
  const pts = cams.map((x) => x.p);
  for (const f of spots.features || []) {
    for (const r of rings(f.geometry)) pts.push(...r);
    if (f.geometry?.type === "Point") pts.push(f.geometry.coordinates);
  }
  if (!pts.length) { box.replaceChildren(el("p", { class: "muted" }, t("console.map_empty"))); return; }
  let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of pts) { minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y); }
  // equirectangular: x scaled by cos(latitude) at the centre; pad 0.002° around a single point
  const k = Math.cos(((minY + maxY) / 2) * Math.PI / 180);
  const pad = Math.max((maxY - minY) * 0.08, 0.002);
  minX -= pad / k; maxX += pad / k; minY -= pad; maxY += pad;
  const W = 1000, H = Math.max(200, Math.min(1000, Math.round(W * (maxY - minY) / ((maxX - minX) * k))));
  const px = ([x, y]) => [((x - minX) / (maxX - minX)) * W, ((maxY - y) / (maxY - minY)) * H];
  const maxScore = Math.max(1e-9, ...(spots.features || []).map((f) => f.properties?.score || 0));
  const layer = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "map-svg", role: "img" });
  layer.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  for (const f of spots.features || []) {
    const s = (f.properties?.score || 0) / maxScore;
    const fill = `rgb(${Math.round(200 + 55 * s)},${Math.round(200 * (1 - s))},40)`;
    const title = svg("title", {}, `#${f.properties?.rank ?? ""} ${f.properties?.road || f.id || ""} score ${f.properties?.score ?? ""}`);
    for (const r of rings(f.geometry)) {
      layer.append(svg("polygon", { class: "hotspot", points: r.map((p) => px(p).join(",")).join(" "), fill, "fill-opacity": 0.35 + 0.5 * s }, title.cloneNode(true)));
    }
    if (f.geometry?.type === "Point") {
      const [x, y] = px(f.geometry.coordinates);
      layer.append(svg("rect", { class: "hotspot", x: x - 8, y: y - 8, width: 16, height: 16, fill }, title));
    }
  }
  for (const { c, p } of cams) {
    const [x, y] = px(p);
    layer.append(svg("g", { class: "cam-marker", "data-camera": c.id, transform: `translate(${x},${y})` },
      svg("circle", { r: 9 }), svg("text", { x: 13, y: 5 }, c.name), svg("title", {}, c.name)));
  }
  box.replaceChildren(layer);
}

// ---- traffic chart ----

const LOS_COLOURS = { A: "#2e7d32", B: "#66bb6a", C: "#c0ca33", D: "#fbc02d", E: "#f57c00", F: "#d32f2f" };

async function drawTraffic(cam) {
  const box = document.getElementById("traffic");
  if (!cam) return;
  let data;
  try { data = await api(`/api/v1/traffic/${encodeURIComponent(cam)}`, { query: { period: "15m" } }); } catch (e) { showError(e); return; }
  // one count per bucket: the counting lines (else the lanes), both directions, all classes
  const bins = new Map(); // start -> {count, los}
  const hasAll = data.buckets.some((b) => b.cls === "all");
  const kind = data.buckets.some((b) => b.source_kind === "line") ? "line" : "lane";
  for (const b of data.buckets) {
    if ((hasAll && b.cls !== "all") || b.source_kind !== kind) continue;
    const bin = bins.get(b.start) || { count: 0, los: null };
    bin.count += b.count;
    if (b.los && (!bin.los || b.los > bin.los)) bin.los = b.los;
    bins.set(b.start, bin);
  }
  const rows = [...bins.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  if (!rows.length) { box.replaceChildren(el("p", { class: "muted" }, t("console.traffic_empty"))); return; }
  const W = 1000, H = 260, left = 40, bottom = 24;
  const max = Math.max(1, ...rows.map(([, v]) => v.count));
  const bw = (W - left) / rows.length;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
  chart.append(svg("text", { x: 0, y: 12, class: "axis" }, String(max)), svg("text", { x: 0, y: H - bottom, class: "axis" }, "0"));
  rows.forEach(([start, v], i) => {
    const h = ((H - bottom - 16) * v.count) / max;
    chart.append(svg("rect", {
      x: left + i * bw + 1, y: H - bottom - h, width: Math.max(1, bw - 2), height: h,
      fill: LOS_COLOURS[v.los] || "#4fc3f7", class: "bar",
    }, svg("title", {}, `${fmtTime(start)}: ${v.count}${v.los ? " · " + t("console.los", { los: v.los }) : ""}`)));
    if (i % Math.max(1, Math.ceil(rows.length / 8)) === 0) {
      chart.append(svg("text", { x: left + i * bw, y: H - 6, class: "axis" }, new Date(start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  box.replaceChildren(chart);
}

if (me) {
  const status = document.getElementById("live-status");
  liveSocket("incident.*,camera.state", onLive, (up) => {
    status.className = `live ${up ? "on" : "off"}`;
    status.textContent = up ? t("app.live") : t("app.offline");
  });
  try {
    await buildWall();
    await loadFeed();
  } catch (e) { showError(e); }
  const all = await api("/api/v1/cameras").catch(() => []);
  drawMap(all).catch(showError);
  const sel = document.getElementById("traffic-camera");
  sel.addEventListener("change", () => drawTraffic(sel.value));
  drawTraffic(sel.value);
  setInterval(() => api("/api/v1/system/health").then((h) => {
    for (const [cam, v] of Object.entries(h.cameras || {})) setCameraState(cam, v.state);
  }).catch(() => {}), 10000);
  document.body.dataset.ready = "1";
}
