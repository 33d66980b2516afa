// The pages' API client: the session cookie (HttpOnly, sent by the browser) and, on changes,
// the X-CSRF-Token header from the smartcity_csrf cookie. A 401 goes back to /login.
import { init, t, has } from "./i18n.js";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return null;
}

export async function api(path, { method = "GET", body, query } = {}) {
  const headers = { Accept: "application/json" };
  if (UNSAFE.has(method)) headers["X-CSRF-Token"] = cookie("smartcity_csrf") || "";
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let url = path;
  if (query) url += "?" + new URLSearchParams(query).toString();
  const r = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  if (r.status === 401 && !path.endsWith("/auth/login")) {
    location.assign("/login");
    return new Promise(() => {}); // the page is leaving: nothing after this runs
  }
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || r.statusText);
  return data;
}

// el("div", {class: "x", onclick: f}, "text", child): DOM without innerHTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function stateLabel(state) {
  return has(`state.${state}`) ? t(`state.${state}`) : state || t("state.unknown");
}

export function typeLabel(type) {
  return has(`incident.${type}`) ? t(`incident.${type}`) : type.replaceAll("_", " ");
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

export function fmtDuration(s) {
  s = Math.round(s || 0);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

export function fmtBytes(n) {
  if (n == null) return "?";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function toast(message, kind = "error") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = el("div", { class: `toast ${kind}`, role: "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 3000);
}

export function showError(e) {
  toast(t("app.error", { detail: e instanceof ApiError ? e.detail : String(e) }));
}

// the incident types of the rules (smartcity/incidents/rules), for the SSE fallback
export const INCIDENT_TYPES = [
  "congestion", "crash", "crowd", "line_crossing", "loitering", "pedestrian_on_carriageway",
  "speeding", "stopped_vehicle", "wrong_way", "zone_intrusion", "camera_health", "system",
];

// The live feed: the WebSocket, or the server-sent events fallback when the WebSocket cannot
// be opened at all (a proxy without upgrades); reconnects with backoff. onEvent(msg) per event.
export function liveSocket(types, onEvent, onStatus = () => {}) {
  let delay = 1000;
  let ws = null;
  let sse = null;
  let stopped = false;
  let wsWorked = false;
  let wsFailures = 0;
  const q = `types=${encodeURIComponent(types)}`;
  function openSse() {
    sse = new EventSource(`/api/v1/live/events?${q}`);
    sse.onopen = () => onStatus(true);
    sse.onerror = () => onStatus(sse.readyState === EventSource.OPEN);
    const handler = (m) => {
      try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); }
    };
    sse.onmessage = handler;
    // SSE names each event by its full type (incident.opened.<type>): listen to each
    for (const kind of ["opened", "updated", "closed", "changed"]) {
      for (const type of INCIDENT_TYPES) sse.addEventListener(`incident.${kind}.${type}`, handler);
    }
    sse.addEventListener("camera.state", handler);
  }
  function openWs() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${proto}://${location.host}/api/v1/live/ws?${q}`);
    ws.onopen = () => { delay = 1000; wsWorked = true; onStatus(true); };
    ws.onmessage = (m) => {
      try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); }
    };
    ws.onclose = () => {
      onStatus(false);
      if (stopped) return;
      if (!wsWorked && ++wsFailures >= 2) { openSse(); return; }
      setTimeout(openWs, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  openWs();
  return { close() { stopped = true; ws?.close(); sse?.close(); } };
}

// Common page start: strings, the user (or /login), the header.
export async function start({ roles }) {
  await init();
  const me = await api("/api/v1/auth/me");
  document.getElementById("user").textContent = t("app.user", { user: me.username, role: me.role });
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("/api/v1/auth/logout", { method: "POST" }); } finally { location.assign("/login"); }
  });
  for (const a of document.querySelectorAll("[data-role-link]")) {
    a.hidden = !a.dataset.roleLink.split(",").includes(me.role);
  }
  if (roles && !roles.includes(me.role)) {
    document.querySelector("main").replaceChildren(el("p", { class: "forbidden" }, t("app.forbidden", { role: me.role })));
    return null;
  }
  return me;
}
