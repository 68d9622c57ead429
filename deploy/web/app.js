// The login page's behaviour: JSON calls to authd and to a protected route,
// with the browser's cookies (credentials: "same-origin"). The access and
// refresh tokens are HttpOnly cookies: nothing here can read them, and
// nothing here stores anything.
"use strict";

const $ = (id) => document.getElementById(id);
const statusEl = $("status");
const bodyEl = $("body");
const buttons = () => document.querySelectorAll("button");

// What a success means, per action; a failure shows the server's message.
const done = {
  login: "Logged in",
  whoami: "The protected route answered",
  refresh: "Session refreshed",
  logout: "Logged out",
};

// JWTs in a response (the demo upstream echoes the Authorization it got)
// are shortened on screen: screenshots and onlookers need not see them.
function shorten(text) {
  return text.replace(/\beyJ[\w-]*\.[\w-]+\.[\w-]+/g, (t) => t.slice(0, 12) + "…");
}

function show(action, ok, status, summary, body) {
  statusEl.dataset.status = String(status);
  statusEl.textContent = (ok ? "✓ " : "✗ ") + summary;
  statusEl.className = ok ? "ok" : "err";
  statusEl.dataset.action = action;
  statusEl.dataset.ok = String(ok);
  statusEl.dataset.seq = String(Number(statusEl.dataset.seq || 0) + 1);
  bodyEl.textContent = body ? shorten(body) : "";
  bodyEl.hidden = !body;
}

// call sends one request and shows its outcome: the status, and for a
// failure PostgREST's error "message" (authd answers in PostgREST's shape).
async function call(action, method, path, json) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (json !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(json);
  }
  const what = `${method} ${path}`;
  buttons().forEach((b) => { b.disabled = true; });
  statusEl.setAttribute("aria-busy", "true");
  try {
    const res = await fetch(path, opts);
    const text = await res.text();
    const code = `${res.status} ${res.statusText}`.trim();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    let body = data !== null ? JSON.stringify(data, null, 2) : text;
    if (res.ok) {
      show(action, true, res.status, `${done[action]} — ${what} → ${code}`, body);
      return true;
    }
    const message = data && typeof data.message === "string" ? data.message : "";
    const challenge = res.headers.get("WWW-Authenticate");
    if (challenge) body = `WWW-Authenticate: ${challenge}\n\n${body}`;
    const retry = res.headers.get("Retry-After");
    if (retry) body = `Retry-After: ${retry}\n${body}`;
    show(action, false, res.status, `${what} → ${code}` + (message ? `: ${message}` : ""), body);
    return false;
  } catch (err) {
    show(action, false, 0, `${what} failed: ${err.message || err}`, "");
    return false;
  } finally {
    statusEl.removeAttribute("aria-busy");
    buttons().forEach((b) => { b.disabled = false; });
  }
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const ok = await call("login", "POST", "/rpc/login", { user_: form.get("user_"), pass: form.get("pass") });
  if (ok) $("pass").value = "";
});

// sameOrigin is path resolved against this page's origin, or null when it
// names another origin (or does not parse).
function sameOrigin(path) {
  if (!path.startsWith("/")) return null;
  let url;
  try {
    url = new URL(path, location.origin);
  } catch {
    return null;
  }
  return url.origin === location.origin ? url : null;
}

$("whoami").addEventListener("click", () => {
  const path = $("route").value.trim();
  // A path on this origin only: the cookies are not meant for anyone else.
  // The browser's own URL parser decides, as fetch will: a string test is
  // fooled by /\evil.example (URL reads a backslash as a slash) or by a
  // tab between the slashes (URL drops tabs), both another host.
  const url = sameOrigin(path);
  if (!url) {
    show("whoami", false, 0, `Protected route must be a path on this site, like /api/whoami (got "${path}")`, "");
    return;
  }
  call("whoami", "GET", url.pathname + url.search);
});

$("refresh").addEventListener("click", () => call("refresh", "POST", "/rpc/refresh_token"));
$("logout").addEventListener("click", () => call("logout", "POST", "/rpc/logout"));
