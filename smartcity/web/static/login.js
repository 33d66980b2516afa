import { api, ApiError } from "./app.js";
import { init, t } from "./i18n.js";

await init();
const form = document.getElementById("login-form");
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  err.textContent = "";
  try {
    const r = await api("/api/v1/auth/login", {
      method: "POST",
      body: { username: form.username.value, password: form.password.value },
    });
    location.assign(r.role === "maintenance" ? "/admin" : "/console");
  } catch (e) {
    err.textContent = t("login.failed", { detail: e instanceof ApiError ? e.detail : String(e) });
  }
});
