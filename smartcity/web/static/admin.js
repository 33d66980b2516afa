// The admin page: health, cameras (add, edit, disable, delete), the zone/line/calibration
// editor drawn on a camera's live snapshot, users and API keys (admin only).
import { api, el, svg, start, stateLabel, fmtTime, fmtDuration, fmtBytes, showError, toast, ApiError } from "./app.js";
import { t, has } from "./i18n.js";

const HEALTH_MS = 3000;
const RESOURCES_MS = 5000;
const SYSTEM_CAMERA = "appliance"; // smartcity.incidents.lifecycle.SYSTEM_CAMERA
const me = await start({ roles: ["maintenance", "admin"] });
let cameras = [];
let editing = null; // camera id being edited in the form, or null to add

function badge(state) {
  const s = state || "unknown";
  return el("span", { class: `badge state-${s}` }, stateLabel(s));
}

function snapshotUrl(cam) {
  return `/api/v1/live/cameras/${encodeURIComponent(cam)}/snapshot.jpg?t=${Date.now()}`;
}

// ---- health ----

// services `smartcity run` supervises: an admin may restart them (through its control socket)
const SUPERVISED = ["engine", "incidents", "api"];

async function restartService(name) {
  if (!confirm(t("admin.confirm_restart", { service: name }))) return;
  try {
    await api(`/api/v1/system/services/${encodeURIComponent(name)}/restart`, { method: "POST" });
    toast(t("admin.restart_sent", { service: name }), "ok");
  } catch (e) { showError(e); }
}

async function refreshHealth() {
  const h = await api("/api/v1/system/health");
  const body = document.querySelector("#services tbody");
  body.replaceChildren(...Object.entries(h.services).map(([name, s]) => {
    const { state, ...rest } = s;
    const info = Object.entries(rest).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
    return el("tr", { dataset: { service: name } }, el("td", {}, name), el("td", {}, badge(state)), el("td", { class: "small" }, info),
      el("td", {}, me.role === "admin" && SUPERVISED.includes(name)
        ? el("button", { class: "s-restart", type: "button", onclick: () => restartService(name) }, t("admin.restart")) : null));
  }));
  if (me.role === "admin") {
    // the download is a plain link (the session cookie goes with it); PostgreSQL: pg_dump
    const pg = h.services.database?.dialect === "postgresql";
    document.getElementById("backup-row").hidden = false;
    document.getElementById("backup").hidden = pg;
    document.getElementById("backup-help").textContent = pg ? t("admin.backup_pg") : t("admin.backup_help");
  }
  const up = document.getElementById("uptime") || el("span", { id: "uptime" });
  up.textContent = " · " + t("admin.uptime", { uptime: fmtDuration(h.services.api?.uptime_s) });
  document.getElementById("version").append(up);
  for (const [cam, c] of Object.entries(h.cameras || {})) {
    const row = document.querySelector(`#cameras tr[data-camera="${CSS.escape(cam)}"]`);
    if (!row) continue;
    row.querySelector(".c-state").replaceChildren(badge(c.state));
    // frame rate, and how old the newest decoded frame is (the camera's lag as the engine sees it)
    const age = c.last_frame_age_s != null ? [el("div", { class: "small muted c-age" }, t("admin.frame_age", { s: Number(c.last_frame_age_s).toFixed(1) }))] : [];
    row.querySelector(".c-fps").replaceChildren(c.source_fps != null ? Number(c.source_fps).toFixed(1) : "–", ...age);
    // where the stream is decoded (cpu, nvdec) and, when the GPU was asked for but is not
    // decoding, the engine's reason
    const dec = c.decoder ? (has(`decoder.${c.decoder}`) ? t(`decoder.${c.decoder}`) : c.decoder) : "–";
    const note = c.hwaccel_note ? [el("div", { class: "small muted c-hwaccel-note" }, c.hwaccel_note)] : [];
    row.querySelector(".c-decoder").replaceChildren(dec, ...note);
    row.querySelector(".c-reconnects").textContent = c.reconnects ?? "–";
    row.querySelector(".c-error").textContent = c.last_error || "";
  }
}

// ---- the machine: CPU, memory, the data disk, uptime, GPUs (NVML) ----

function gauge(percent) {
  return el("meter", { class: "r-meter", min: 0, max: 100, low: 70, high: 90, optimum: 0, value: percent ?? 0 });
}

function orDash(v, fmt) { return v == null ? "–" : fmt(v); }

function gpuRow(g) {
  const pct = (v) => orDash(v, (x) => `${x} %`);
  return el("tr", { dataset: { gpu: String(g.index) } },
    el("td", {}, g.name, g.problems.length ? el("div", { class: "small muted" }, g.problems.join(" · ")) : null),
    el("td", { class: "g-util" }, g.utilization_percent != null ? gauge(g.utilization_percent) : null, " ", pct(g.utilization_percent)),
    el("td", { class: "g-memory" }, g.memory_total_bytes
      ? [gauge((100 * g.memory_used_bytes) / g.memory_total_bytes), " ", t("admin.gpu_memory_value", { used: fmtBytes(g.memory_used_bytes), total: fmtBytes(g.memory_total_bytes) })]
      : "–"),
    el("td", { class: "g-temp" }, orDash(g.temperature_c, (x) => `${x} °C`)),
    el("td", { class: "g-decoder" }, g.decoder_percent != null ? gauge(g.decoder_percent) : null, " ", pct(g.decoder_percent)));
}

async function refreshResources() {
  const err = document.getElementById("resources-error");
  let r;
  try {
    r = await api("/api/v1/system/resources");
    err.textContent = "";
  } catch (e) {
    err.textContent = t("app.error", { detail: e instanceof ApiError ? e.detail : String(e) });
    return;
  }
  const set = (figure, percent, ...text) => {
    const td = document.querySelector(`#resources tr[data-figure="${figure}"] .r-value`);
    td.replaceChildren(percent != null ? gauge(percent) : "", " ", ...text);
  };
  const c = r.cpu, m = r.memory, d = r.disk;
  set("cpu", c.percent, t("admin.cpu_value", {
    percent: c.percent.toFixed(0), cores: c.cores, load: c.load ? c.load.map((x) => x.toFixed(2)).join(" / ") : "–",
  }));
  set("memory", m.percent, t("admin.memory_value", { used: fmtBytes(m.used_bytes), total: fmtBytes(m.total_bytes), percent: m.percent.toFixed(0) }));
  if (d.error) set("disk", null, d.error);
  else set("disk", d.percent, t("admin.data_disk_value", { free: fmtBytes(d.free_bytes), total: fmtBytes(d.total_bytes), path: d.path }));
  set("uptime", null, fmtDuration(r.uptime_s));
  const none = document.getElementById("gpu-none");
  none.hidden = r.gpu.available;
  none.textContent = r.gpu.available ? "" : r.gpu.reason;
  const table = document.getElementById("gpus");
  table.hidden = !r.gpu.available;
  table.querySelector("tbody").replaceChildren(...r.gpu.devices.map(gpuRow));
}

async function showVersion() {
  const v = await api("/api/v1/system/version");
  const p = document.getElementById("version");
  p.replaceChildren(t("admin.version", { version: v.version, python: v.python }));
}

// ---- cameras ----

function formMode(cam) {
  editing = cam ? cam.id : null;
  const f = document.getElementById("camera-form");
  f.reset();
  document.getElementById("camera-error").textContent = "";
  document.getElementById("camera-form-title").textContent = cam ? `${t("admin.edit")}: ${cam.id}` : t("admin.add");
  document.getElementById("cam-url-label").textContent = cam ? t("admin.url_keep") : t("admin.url");
  f.id.disabled = !!cam;
  f.url.required = !cam;
  if (cam) {
    f.id.value = cam.id;
    f.name.value = cam.name;
    f.enabled.checked = cam.enabled;
    f.name.focus();
  }
}

async function saveCamera(ev) {
  ev.preventDefault();
  const f = ev.target;
  const err = document.getElementById("camera-error");
  err.textContent = "";
  try {
    if (editing) {
      const body = { name: f.name.value, enabled: f.enabled.checked };
      if (f.url.value) body.url = f.url.value;
      await api(`/api/v1/cameras/${encodeURIComponent(editing)}`, { method: "PATCH", body });
    } else {
      await api("/api/v1/cameras", { method: "POST", body: { id: f.id.value, name: f.name.value, url: f.url.value, enabled: f.enabled.checked } });
    }
    toast(t("admin.saved"), "ok");
    formMode(null);
    await loadCameras();
    loadLogs();
    loadModels().catch(showError);
  } catch (e) {
    err.textContent = t("app.error", { detail: e instanceof ApiError ? e.detail : String(e) });
  }
}

async function loadCameras() {
  cameras = await api("/api/v1/cameras");
  const body = document.querySelector("#cameras tbody");
  body.replaceChildren(...cameras.map((c) => {
    const img = el("img", { class: "cam-thumb", alt: "", src: snapshotUrl(c.id) });
    const none = el("span", { class: "muted small", hidden: true }, t("console.no_picture"));
    img.addEventListener("error", () => { img.hidden = true; none.hidden = false; });
    const act = (label, cls, fn) => el("button", { class: cls, type: "button", onclick: async () => {
      try { await fn(); await loadCameras(); } catch (e) { showError(e); }
    } }, label);
    return el("tr", { dataset: { camera: c.id }, class: c.enabled ? "" : "disabled" },
      el("td", {}, img, none),
      el("td", { class: "c-id" }, c.id),
      el("td", { class: "c-name" }, c.name),
      el("td", { class: "c-url small" }, c.url_redacted),
      el("td", { class: "c-state" }, badge(c.enabled ? "unknown" : "disabled")),
      el("td", { class: "c-fps" }, "–"),
      el("td", { class: "c-decoder" }, "–"),
      el("td", { class: "c-reconnects" }, "–"),
      el("td", { class: "c-error small" }, ""),
      // The appliance's own camera (system incidents) is neither disabled nor deleted: the API refuses.
      el("td", {}, c.id === SYSTEM_CAMERA ? el("div", { class: "c-actions small" }, t("admin.system_camera")) : el("div", { class: "c-actions" },
        el("button", { class: "c-edit", type: "button", onclick: () => formMode(c) }, t("admin.edit")),
        act(c.enabled ? t("admin.disable") : t("admin.enable"), "c-toggle", () =>
          api(`/api/v1/cameras/${encodeURIComponent(c.id)}`, { method: "PATCH", body: { enabled: !c.enabled } })),
        act(t("admin.delete"), "c-delete", async () => {
          if (confirm(t("admin.confirm_delete", { camera: c.id }))) await api(`/api/v1/cameras/${encodeURIComponent(c.id)}`, { method: "DELETE" });
        }),
        el("button", { class: "c-geometry", type: "button", onclick: () => { editorSelect(c.id); document.getElementById("editor-stage").scrollIntoView(); } }, t("admin.geometry")))));
  }));
  const sel = document.getElementById("editor-camera");
  const keep = sel.value;
  sel.replaceChildren(...cameras.map((c) => el("option", { value: c.id }, `${c.id} · ${c.name}`)));
  if (keep && cameras.some((c) => c.id === keep)) sel.value = keep;
  refreshHealth().catch(() => {});
}

// ---- geometry editor ----

const editor = { cam: null, geometry: {}, points: [], ground: [], w: 0, h: 0 };

async function editorSelect(cam) {
  const sel = document.getElementById("editor-camera");
  sel.value = cam;
  editor.cam = cam;
  editor.points = [];
  editor.ground = [];
  document.getElementById("editor-error").textContent = "";
  document.getElementById("editor-message").textContent = "";
  const c = await api(`/api/v1/cameras/${encodeURIComponent(cam)}`);
  editor.geometry = c.geometry || {};
  const img = document.getElementById("editor-img");
  img.hidden = false;
  img.src = snapshotUrl(cam);
}

function toImage(ev) {
  const box = document.getElementById("editor-svg").getBoundingClientRect();
  return [Math.round(((ev.clientX - box.left) / box.width) * editor.w), Math.round(((ev.clientY - box.top) / box.height) * editor.h)];
}

function mode() { return document.getElementById("editor-mode").value; }

function drawEditor() {
  const layer = document.getElementById("editor-svg");
  layer.setAttribute("viewBox", `0 0 ${editor.w} ${editor.h}`);
  const pts = (p) => p.map((q) => q.join(",")).join(" ");
  const items = [];
  const g = editor.geometry;
  for (const kind of ["zones", "lanes", "no_stopping", "waiting_areas", "carriageways", "crossings"]) {
    for (const z of g[kind] || []) {
      if (!z.polygon) continue;
      const rule = z.forbidden?.length ? ` (${z.forbidden.join(", ")})` : "";
      items.push(svg("polygon", { class: `shape ${kind}`, points: pts(z.polygon) }, svg("title", {}, `${kind}: ${z.name}${rule}`)));
      items.push(svg("text", { class: "shape-label", x: z.polygon[0][0] + 4, y: z.polygon[0][1] - 4 }, z.name));
    }
  }
  for (const l of g.lines || []) {
    if (!l.a) continue;
    items.push(svg("line", { class: "shape lines", x1: l.a[0], y1: l.a[1], x2: l.b[0], y2: l.b[1] }));
    items.push(svg("text", { class: "shape-label", x: l.a[0] + 4, y: l.a[1] - 4 }, l.name));
  }
  for (const p of g.calibration?.points || []) {
    if (p.image) items.push(svg("circle", { class: "calib-point saved", cx: p.image[0], cy: p.image[1], r: 5 }));
  }
  const cur = editor.points;
  if (cur.length > 1) {
    items.push(mode() === "zone" || mode() === "lane"
      ? svg("polygon", { class: "drawing", points: pts(cur) })
      : mode() === "line" ? svg("polyline", { class: "drawing", points: pts(cur) }) : null);
  }
  cur.forEach((p, i) => {
    items.push(svg("circle", { class: "drawing-point", cx: p[0], cy: p[1], r: 6 }));
    if (mode() === "calibration" && editor.ground[i]) {
      items.push(svg("text", { class: "shape-label", x: p[0] + 8, y: p[1] - 8 }, editor.ground[i].join(", ")));
    }
  });
  layer.replaceChildren(...items.filter(Boolean));
  document.getElementById("editor-count").textContent = t("admin.editor_points", { n: cur.length });
}

function editorClick(ev) {
  if (!editor.cam || !editor.w) return;
  const p = toImage(ev);
  if (mode() === "line" && editor.points.length >= 2) editor.points = [];
  if (mode() === "calibration") {
    const answer = prompt(t("admin.editor_ground_prompt"), "0,0");
    if (answer === null) return;
    const g = answer.split(/[ ,;]+/).map(Number);
    if (g.length !== 2 || g.some((x) => !Number.isFinite(x))) return;
    editor.ground.push(g);
  }
  editor.points.push(p);
  drawEditor();
}

// image -> ground homography by least squares (h33 = 1) and its reprojection error, as the
// incidents service reports it (metres)
function fitHomography(img, gnd) {
  const n = img.length;
  const A = [], b = [];
  for (let i = 0; i < n; i++) {
    const [x, y] = img[i], [X, Y] = gnd[i];
    A.push([x, y, 1, 0, 0, 0, -x * X, -y * X]); b.push(X);
    A.push([0, 0, 0, x, y, 1, -x * Y, -y * Y]); b.push(Y);
  }
  const M = Array.from({ length: 8 }, (_, r) => [...Array.from({ length: 8 }, (_, c) => A.reduce((s, row) => s + row[r] * row[c], 0)), A.reduce((s, row, k) => s + row[r] * b[k], 0)]);
  for (let c = 0; c < 8; c++) {
    let p = c;
    for (let r = c + 1; r < 8; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    if (Math.abs(M[c][c]) < 1e-12) return null;
    for (let r = 0; r < 8; r++) {
      if (r === c) continue;
      const f = M[r][c] / M[c][c];
      for (let k = c; k < 9; k++) M[r][k] -= f * M[c][k];
    }
  }
  const h = M.map((row, i) => row[8] / row[i]);
  const errs = img.map(([x, y], i) => {
    const w = h[6] * x + h[7] * y + 1;
    const X = (h[0] * x + h[1] * y + h[2]) / w, Y = (h[3] * x + h[4] * y + h[5]) / w;
    return Math.hypot(X - gnd[i][0], Y - gnd[i][1]);
  });
  return { rms: Math.sqrt(errs.reduce((s, e) => s + e * e, 0) / n), max: Math.max(...errs) };
}

// the zone's intrusion rule: the classes it forbids and the dwell before it fires (the API
// checks both with the incidents service's parser and names the field it refuses)
function zoneRule() {
  const rule = {};
  const forbidden = [...document.querySelectorAll("#editor-forbidden input:checked")].map((i) => i.value);
  if (forbidden.length) rule.forbidden = forbidden;
  const dwell = document.getElementById("editor-dwell").value.trim();
  if (dwell !== "" && Number(dwell) !== 0) rule.min_dwell_s = Number(dwell);
  return rule;
}

// the lane's allowed direction (an image vector, y down) and its speed limit, if any
function laneRule() {
  const rule = { direction: document.getElementById("editor-direction").value.split(",").map(Number) };
  const limit = document.getElementById("editor-limit").value.trim();
  if (limit !== "") rule.speed_limit_kmh = Number(limit);
  return rule;
}

// Removes the item of the name in the name field from the current mode's list and saves.
async function editorDelete() {
  const err = document.getElementById("editor-error");
  const msg = document.getElementById("editor-message");
  err.textContent = "";
  msg.textContent = "";
  const kind = { zone: "zones", line: "lines", lane: "lanes" }[mode()];
  const name = document.getElementById("editor-name").value.trim();
  if (!kind || !editor.cam) return;
  try {
    const cam = await api(`/api/v1/cameras/${encodeURIComponent(editor.cam)}`);
    const g = structuredClone(cam.geometry || {});
    const before = g[kind] || [];
    if (!before.some((z) => z.name === name)) {
      err.textContent = t("admin.editor_no_item", { kind: mode(), name });
      return;
    }
    g[kind] = before.filter((z) => z.name !== name);
    if (!g[kind].length) delete g[kind];
    const saved = await api(`/api/v1/cameras/${encodeURIComponent(editor.cam)}`, { method: "PATCH", body: { geometry: g } });
    editor.geometry = saved.geometry || g;
    msg.textContent = t("admin.editor_deleted", { name });
    drawEditor();
  } catch (e) {
    err.textContent = t("app.error", { detail: e instanceof ApiError ? e.detail : String(e) });
  }
}

async function editorSave() {
  const err = document.getElementById("editor-error");
  const msg = document.getElementById("editor-message");
  err.textContent = "";
  msg.textContent = "";
  const name = document.getElementById("editor-name").value.trim() || `${mode()}-1`;
  const m = mode(), p = editor.points;
  if (((m === "zone" || m === "lane") && p.length < 3) || (m === "line" && p.length !== 2) || (m === "calibration" && p.length < 4)) {
    err.textContent = t("admin.editor_need");
    return;
  }
  try {
    const cam = await api(`/api/v1/cameras/${encodeURIComponent(editor.cam)}`);
    const g = structuredClone(cam.geometry || {});
    if (m === "zone") g.zones = [...(g.zones || []).filter((z) => z.name !== name), { name, polygon: p, ...zoneRule() }];
    if (m === "line") g.lines = [...(g.lines || []).filter((l) => l.name !== name), { name, a: p[0], b: p[1], in: "left" }];
    if (m === "lane") g.lanes = [...(g.lanes || []).filter((l) => l.name !== name), { name, polygon: p, ...laneRule() }];
    let fit = null;
    if (m === "calibration") {
      g.calibration = { ...(g.calibration || {}), points: p.map((q, i) => ({ image: q, ground: editor.ground[i] })) };
      delete g.calibration.homography;
      fit = fitHomography(p, editor.ground);
    }
    const saved = await api(`/api/v1/cameras/${encodeURIComponent(editor.cam)}`, { method: "PATCH", body: { geometry: g } });
    editor.geometry = saved.geometry || g;
    editor.points = [];
    editor.ground = [];
    msg.textContent = t("admin.saved") + (fit ? " " + t("admin.reprojection", { rms: fit.rms.toFixed(2), max: fit.max.toFixed(2) }) : "");
    drawEditor();
  } catch (e) {
    err.textContent = t("app.error", { detail: e instanceof ApiError ? e.detail : String(e) });
    if (m === "calibration") {
      const fit = fitHomography(p, editor.ground);
      if (fit) msg.textContent = t("admin.reprojection", { rms: fit.rms.toFixed(2), max: fit.max.toFixed(2) });
    }
  }
}

function setupEditor() {
  const img = document.getElementById("editor-img");
  img.addEventListener("load", () => {
    editor.w = img.naturalWidth;
    editor.h = img.naturalHeight;
    document.getElementById("editor-stage").classList.remove("nopic");
    drawEditor();
  });
  img.addEventListener("error", () => {
    editor.w = 0;
    document.getElementById("editor-stage").classList.add("nopic");
    document.getElementById("editor-message").textContent = t("admin.no_snapshot");
  });
  document.getElementById("editor-svg").addEventListener("click", editorClick);
  document.getElementById("editor-camera").addEventListener("change", (e) => editorSelect(e.target.value).catch(showError));
  document.getElementById("editor-mode").addEventListener("change", () => {
    editor.points = []; editor.ground = [];
    const name = document.getElementById("editor-name");
    name.value = `${mode()}-1`;
    document.getElementById("editor-zone-rule").hidden = mode() !== "zone";
    document.getElementById("editor-lane-rule").hidden = mode() !== "lane";
    document.getElementById("editor-delete").hidden = mode() === "calibration";
    drawEditor();
  });
  document.getElementById("editor-undo").addEventListener("click", () => { editor.points.pop(); editor.ground.length = Math.min(editor.ground.length, editor.points.length); drawEditor(); });
  document.getElementById("editor-clear").addEventListener("click", () => { editor.points = []; editor.ground = []; drawEditor(); });
  document.getElementById("editor-save").addEventListener("click", editorSave);
  document.getElementById("editor-delete").addEventListener("click", editorDelete);
}

// ---- models and backends ----

async function loadModels() {
  const r = await api("/api/v1/system/models");
  document.getElementById("models-engine").textContent = t("admin.models_engine", {
    model: r.engine_model || t("state.unknown"), backend: r.engine_backend || t("state.unknown"),
    auto: r.backend_auto || "–", root: r.models_root });
  document.querySelector("#models tbody").replaceChildren(...r.models.map((m) => {
    const sha = m.sha256_ok === true ? el("span", { class: "badge state-ok" }, t("admin.model_sha_ok"))
      : m.sha256_ok === false ? el("span", { class: "badge state-error" }, t("admin.model_sha_bad")) : "–";
    return el("tr", { dataset: { model: m.name }, class: m.problem ? "model-problem" : "" },
      el("td", {}, m.name, m.description ? el("div", { class: "muted small" }, m.description) : null,
        m.problem ? el("div", { class: "error small" }, m.problem) : null),
      el("td", {}, m.in_use ? "✓" : ""),
      el("td", {}, m.input_width ? `${m.input_width}x${m.input_height} ${m.dtype}, ${t("admin.model_batch", { n: m.max_batch })}` : "–"),
      el("td", {}, m.format || "–"),
      el("td", { class: "small" }, m.class_map ? Object.entries(m.class_map).map(([k, v]) => (k === v ? k : `${k}→${v}`)).join(", ") : "–"),
      el("td", {}, m.file_size != null ? fmtBytes(m.file_size) : "–"),
      el("td", { class: "m-sha" }, sha));
  }));
  document.querySelector("#backends tbody").replaceChildren(...r.backends.map((b) => el("tr", { dataset: { backend: b.name } },
    el("td", {}, b.name, b.name === r.backend_auto ? el("span", { class: "muted small" }, ` (${t("admin.backend_auto")})`) : null),
    el("td", {}, b.available ? "✓" : "✗"),
    el("td", { class: "small" }, b.reason))));
  document.getElementById("models-problems").textContent = r.problems.join(" · ");
}

// ---- logs ----

const LOGS_MS = 5000;

function logQuery() {
  const q = { level: document.getElementById("logs-level").value, limit: document.getElementById("logs-limit").value };
  for (const [name, id] of [["service", "logs-service"], ["camera", "logs-camera"], ["text", "logs-text"]]) {
    const v = document.getElementById(id).value.trim();
    if (v) q[name] = v;
  }
  return q;
}

async function loadLogs() {
  const status = document.getElementById("logs-status");
  const body = document.querySelector("#logs tbody");
  let tail;
  try {
    tail = await api("/api/v1/system/logs", { query: logQuery() });
  } catch (e) {
    body.replaceChildren();
    status.textContent = errorText(e);
    status.classList.add("error");
    return;
  }
  status.classList.remove("error");
  status.textContent = t("admin.logs_status", { n: tail.records.length, file: tail.file })
    + (tail.skipped ? " " + t("admin.logs_skipped", { n: tail.skipped }) : "");
  // newest first; every field is the file's text (untrusted), so text nodes only
  body.replaceChildren(...tail.records.slice().reverse().map((r) => el("tr", { class: `log-${r.level}` },
    el("td", { class: "small nowrap" }, fmtTime(r.ts)),
    el("td", {}, r.service),
    el("td", {}, el("span", { class: `badge lvl-${r.level}` }, t(`level.${r.level}`))),
    el("td", {}, r.camera || ""),
    el("td", { class: "log-msg" }, r.msg))));
}

function setupLogs() {
  const form = document.getElementById("logs-form");
  form.addEventListener("submit", (ev) => { ev.preventDefault(); loadLogs(); });
  for (const id of ["logs-service", "logs-level", "logs-limit"]) {
    document.getElementById(id).addEventListener("change", () => loadLogs());
  }
  setInterval(() => {
    if (document.getElementById("logs-follow").checked && !document.hidden) loadLogs();
  }, LOGS_MS);
}

// ---- users and API keys (admin) ----

const ROLES = ["viewer", "operator", "maintenance", "admin"];
const PW_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
let users = [];
let keyScopes = { scopes: [], roles: {} };

// a random password (20 characters, about 116 bits) for a user or a reset left empty
function newPassword(n = 20) {
  return Array.from(crypto.getRandomValues(new Uint32Array(n)), (x) => PW_CHARS[x % PW_CHARS.length]).join("");
}

function cameraList(text) {
  const list = text.split(/[\s,]+/).filter(Boolean);
  return list.length ? list : null;
}

function errorText(e) {
  return t("app.error", { detail: e instanceof ApiError ? e.detail : String(e) });
}

// a password or key shown once: kept in the page until "Done", never fetched again
function showSecret(label, value) {
  document.getElementById("secret-label").textContent = label;
  document.getElementById("secret-value").textContent = value;
  const box = document.getElementById("secret-box");
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function hideSecret() {
  document.getElementById("secret-box").hidden = true;
  document.getElementById("secret-value").textContent = "";
}

async function accountAction(fn) {
  try { await fn(); } catch (e) { showError(e); }
  await loadAccounts().catch(showError);
}

async function resetPassword(u) {
  const typed = prompt(t("admin.password_prompt", { user: u.username }), "");
  if (typed === null) return;
  const pw = typed || newPassword();
  await api(`/api/v1/users/${u.id}/password`, { method: "POST", body: { new_password: pw } });
  if (typed) toast(t("admin.password_set", { user: u.username }), "ok");
  else showSecret(t("admin.secret_password", { user: u.username }), pw);
}

function userRow(u) {
  const self = u.username === me.username; // no locking oneself out from here
  const path = `/api/v1/users/${u.id}`;
  const role = el("select", { class: "u-role", disabled: self,
    onchange: (e) => accountAction(() => api(path, { method: "PATCH", body: { role: e.target.value } })) },
  ...ROLES.map((r) => el("option", { value: r, selected: r === u.role }, t(`role.${r}`))));
  return el("tr", { dataset: { user: u.username }, class: u.enabled ? "" : "disabled" },
    el("td", {}, u.username, self ? el("span", { class: "muted small" }, ` (${t("admin.you")})`) : null),
    el("td", {}, role),
    el("td", { class: "u-enabled" }, u.enabled ? "✓" : "✗"),
    el("td", {}, u.cameras ? u.cameras.join(", ") : t("admin.all")),
    el("td", {}, el("div", { class: "c-actions" },
      el("button", { class: "u-toggle", type: "button", disabled: self,
        onclick: () => accountAction(() => api(path, { method: "PATCH", body: { enabled: !u.enabled } })) },
      u.enabled ? t("admin.disable") : t("admin.enable")),
      el("button", { class: "u-password", type: "button", onclick: () => accountAction(() => resetPassword(u)) },
        t("admin.reset_password")),
      el("button", { class: "u-delete", type: "button", disabled: self, onclick: () => accountAction(async () => {
        if (confirm(t("admin.confirm_delete_user", { user: u.username }))) await api(path, { method: "DELETE" });
      }) }, t("admin.delete")))));
}

function keyRow(k) {
  return el("tr", { dataset: { key: k.prefix } },
    el("td", {}, `${k.name} (${k.prefix})`),
    el("td", {}, k.user),
    el("td", { class: "small" }, k.scopes.join(", ")),
    el("td", {}, k.cameras ? k.cameras.join(", ") : t("admin.all")),
    el("td", {}, k.expires_at ? fmtTime(k.expires_at) : t("admin.never")),
    el("td", {}, fmtTime(k.last_used_at)),
    el("td", {}, el("button", { class: "k-revoke", type: "button", onclick: () => accountAction(async () => {
      if (confirm(t("admin.confirm_revoke", { name: k.name }))) await api(`/api/v1/keys/${k.id}`, { method: "DELETE" });
    }) }, t("admin.revoke"))));
}

// the scope boxes: those the chosen user's role can hand to a key; the ticks are kept
function renderScopes() {
  const box = document.getElementById("key-scopes");
  const ticked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  const owner = users.find((u) => u.username === document.getElementById("key-user").value);
  const allowed = new Set(owner ? keyScopes.roles[owner.role] || [] : []);
  box.replaceChildren(box.querySelector("legend"), ...keyScopes.scopes.map((s) =>
    el("label", { class: "check" },
      el("input", { type: "checkbox", value: s, checked: ticked.has(s) && allowed.has(s), disabled: !allowed.has(s) }), ` ${s}`)));
}

async function loadAccounts() {
  document.getElementById("users-panel").hidden = false;
  let keys;
  [users, keys, keyScopes] = await Promise.all([api("/api/v1/users"), api("/api/v1/keys"), api("/api/v1/keys/scopes")]);
  document.querySelector("#users tbody").replaceChildren(...users.map(userRow));
  document.querySelector("#keys tbody").replaceChildren(...keys.filter((k) => !k.revoked_at).map(keyRow));
  const sel = document.getElementById("key-user");
  const keep = sel.value || me.username;
  sel.replaceChildren(...users.filter((u) => u.enabled).map((u) => el("option", { value: u.username }, `${u.username} (${t(`role.${u.role}`)})`)));
  sel.value = users.some((u) => u.username === keep && u.enabled) ? keep : me.username;
  renderScopes();
}

async function createUser(ev) {
  ev.preventDefault();
  const f = ev.target;
  const err = document.getElementById("user-error");
  err.textContent = "";
  const typed = document.getElementById("user-password").value;
  const pw = typed || newPassword();
  try {
    const u = await api("/api/v1/users", { method: "POST", body: {
      username: document.getElementById("user-name").value.trim(),
      role: document.getElementById("user-role").value,
      cameras: cameraList(document.getElementById("user-cameras").value),
      password: pw,
    } });
    f.reset();
    if (typed) toast(t("admin.user_created", { user: u.username }), "ok");
    else showSecret(t("admin.secret_password", { user: u.username }), pw);
    await loadAccounts();
  } catch (e) { err.textContent = errorText(e); }
}

async function createKey(ev) {
  ev.preventDefault();
  const f = ev.target;
  const err = document.getElementById("key-error");
  err.textContent = "";
  const scopes = [...document.querySelectorAll("#key-scopes input:checked")].map((i) => i.value);
  if (!scopes.length) { err.textContent = t("admin.key_need_scope"); return; }
  const days = document.getElementById("key-days").value;
  try {
    const made = await api("/api/v1/keys", { method: "POST", body: {
      name: document.getElementById("key-name").value.trim(),
      username: document.getElementById("key-user").value,
      scopes,
      cameras: cameraList(document.getElementById("key-cameras").value),
      expires_in_days: days === "" ? null : Number(days),
    } });
    const owner = document.getElementById("key-user").value;
    f.reset();
    document.getElementById("key-user").value = owner;
    showSecret(t("admin.secret_key", { name: made.api_key.name }), made.key);
    await loadAccounts();
  } catch (e) { err.textContent = errorText(e); }
}

function setupAccounts() {
  document.getElementById("user-form").addEventListener("submit", createUser);
  document.getElementById("key-form").addEventListener("submit", createKey);
  document.getElementById("key-user").addEventListener("change", renderScopes);
  document.getElementById("secret-done").addEventListener("click", hideSecret);
}

if (me) {
  document.getElementById("camera-form").addEventListener("submit", saveCamera);
  document.getElementById("cam-cancel").addEventListener("click", () => formMode(null));
  setupEditor();
  setupLogs();
  try {
    await showVersion();
    await loadCameras();
    loadLogs();
    loadModels().catch(showError);
    if (cameras.length) await editorSelect(cameras[0].id);
    if (me.role === "admin") {
      setupAccounts();
      await loadAccounts();
    }
  } catch (e) { showError(e); }
  refreshResources();
  setInterval(() => refreshHealth().catch(() => {}), HEALTH_MS);
  setInterval(refreshResources, RESOURCES_MS);
  document.body.dataset.ready = "1";
}
