// The admin page: health, cameras (add, edit, disable, delete), the zone/line/calibration
// editor drawn on a camera's live snapshot, users and API keys (admin only).
import { api, el, svg, start, stateLabel, fmtTime, fmtDuration, fmtBytes, showError, toast, ApiError } from "./app.js";
import { t } from "./i18n.js";

const HEALTH_MS = 3000;
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

async function refreshHealth() {
  const h = await api("/api/v1/system/health");
  const body = document.querySelector("#services tbody");
  body.replaceChildren(...Object.entries(h.services).map(([name, s]) => {
    const { state, ...rest } = s;
    const info = Object.entries(rest).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
    return el("tr", { dataset: { service: name } }, el("td", {}, name), el("td", {}, badge(state)), el("td", { class: "small" }, info));
  }));
  const d = h.disk || {};
  document.getElementById("disk").textContent = d.free_bytes != null
    ? t("admin.disk", { free: fmtBytes(d.free_bytes), total: fmtBytes(d.total_bytes) }) : "";
  const up = document.getElementById("uptime") || el("span", { id: "uptime" });
  up.textContent = " · " + t("admin.uptime", { uptime: fmtDuration(h.services.api?.uptime_s) });
  document.getElementById("version").append(up);
  for (const [cam, c] of Object.entries(h.cameras || {})) {
    const row = document.querySelector(`#cameras tr[data-camera="${CSS.escape(cam)}"]`);
    if (!row) continue;
    row.querySelector(".c-state").replaceChildren(badge(c.state));
    row.querySelector(".c-fps").textContent = c.source_fps != null ? Number(c.source_fps).toFixed(1) : "–";
    row.querySelector(".c-reconnects").textContent = c.reconnects ?? "–";
    row.querySelector(".c-error").textContent = c.last_error || "";
  }
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
      el("td", { class: "c-reconnects" }, "–"),
      el("td", { class: "c-error small" }, ""),
      el("td", {}, el("div", { class: "c-actions" },
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
      items.push(svg("polygon", { class: `shape ${kind}`, points: pts(z.polygon) }, svg("title", {}, `${kind}: ${z.name}`)));
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
    items.push(mode() === "zone"
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

async function editorSave() {
  const err = document.getElementById("editor-error");
  const msg = document.getElementById("editor-message");
  err.textContent = "";
  msg.textContent = "";
  const name = document.getElementById("editor-name").value.trim() || `${mode()}-1`;
  const m = mode(), p = editor.points;
  if ((m === "zone" && p.length < 3) || (m === "line" && p.length !== 2) || (m === "calibration" && p.length < 4)) {
    err.textContent = t("admin.editor_need");
    return;
  }
  try {
    const cam = await api(`/api/v1/cameras/${encodeURIComponent(editor.cam)}`);
    const g = structuredClone(cam.geometry || {});
    if (m === "zone") g.zones = [...(g.zones || []).filter((z) => z.name !== name), { name, polygon: p }];
    if (m === "line") g.lines = [...(g.lines || []).filter((l) => l.name !== name), { name, a: p[0], b: p[1], in: "left" }];
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
    drawEditor();
  });
  document.getElementById("editor-undo").addEventListener("click", () => { editor.points.pop(); editor.ground.length = Math.min(editor.ground.length, editor.points.length); drawEditor(); });
  document.getElementById("editor-clear").addEventListener("click", () => { editor.points = []; editor.ground = []; drawEditor(); });
  document.getElementById("editor-save").addEventListener("click", editorSave);
}

async function loadAccounts() {
  document.getElementById("users-panel").hidden = false;
  const [users, keys] = await Promise.all([api("/api/v1/users"), api("/api/v1/keys")]);
  document.querySelector("#users tbody").replaceChildren(...users.map((u) => el("tr", {},
    el("td", {}, u.username), el("td", {}, u.role), el("td", {}, u.enabled ? "✓" : "✗"),
    el("td", {}, u.cameras ? u.cameras.join(", ") : t("admin.all")))));
  document.querySelector("#keys tbody").replaceChildren(...keys.filter((k) => !k.revoked_at).map((k) => el("tr", {},
    el("td", {}, `${k.name} (${k.prefix})`), el("td", {}, k.user), el("td", { class: "small" }, k.scopes.join(", ")),
    el("td", {}, fmtTime(k.expires_at)))));
}

if (me) {
  document.getElementById("camera-form").addEventListener("submit", saveCamera);
  document.getElementById("cam-cancel").addEventListener("click", () => formMode(null));
  setupEditor();
  try {
    await showVersion();
    await loadCameras();
    if (cameras.length) await editorSelect(cameras[0].id);
    if (me.role === "admin") await loadAccounts();
  } catch (e) { showError(e); }
  setInterval(() => refreshHealth().catch(() => {}), HEALTH_MS);
  document.body.dataset.ready = "1";
}
