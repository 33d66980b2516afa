// Every user-visible string lives in strings/<lang>.json; pages name keys in data-i18n
// (text), data-i18n-placeholder, data-i18n-title. English is the fallback for a missing key.
let strings = {};
let fallback = {};

export const LANGS = ["en", "id"];

// ?lang=id chooses (and remembers) a language; else the remembered one; else the browser's
export function language() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked && LANGS.includes(asked)) localStorage.setItem("smartcity.lang", asked);
  const chosen = localStorage.getItem("smartcity.lang");
  if (chosen && LANGS.includes(chosen)) return chosen;
  const nav = (navigator.language || "en").slice(0, 2);
  return LANGS.includes(nav) ? nav : "en";
}

async function load(lang) {
  const r = await fetch(`/static/strings/${lang}.json`, { credentials: "same-origin" });
  return r.ok ? r.json() : {};
}

export async function init(lang = language()) {
  fallback = await load("en");
  strings = lang === "en" ? fallback : { ...fallback, ...(await load(lang)) };
  document.documentElement.lang = lang;
  apply(document);
}

export function t(key, vars = {}) {
  const s = strings[key] ?? fallback[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

export function has(key) {
  return key in strings || key in fallback;
}

export function apply(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]"))
    el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}
