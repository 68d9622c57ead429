// The account page's behaviour: JSON calls to authd with the browser's
// cookies (credentials: "same-origin"). The access and refresh tokens are
// HttpOnly cookies: nothing here can read them. The only thing stored is
// the name typed at sign-in, with the session it belongs to, so that the
// page can say whom it is signed in as (authd has no "who am I" call; the
// name is shown only while that same session is the current one).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const noticeEl = $("notice");
const nameKey = "authd.signedInAs";

// A reset link is /reset?token=…: the token is taken from the address bar
// at once, so that it stays out of the history and of any Referer.
let resetToken = params.get("token");
if (resetToken !== null) {
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? `?${params}` : ""));
}

// Whether sign-up is open (probeSignup).
let signupOpen = false;

// notice tells the user the outcome of what they did.
function notice(ok, text) {
  noticeEl.hidden = false;
  noticeEl.textContent = text;
  noticeEl.className = ok ? "ok" : "err";
  noticeEl.dataset.ok = String(ok);
  noticeEl.dataset.seq = String(Number(noticeEl.dataset.seq || 0) + 1);
}

// message is a human-readable account of a refusal: authd's PostgREST
// "message" (written for people: "Invalid user or password"), and when
// to try again if authd says (Retry-After on 429 and 503).
function message(r, what) {
  if (r.status === 0) return `${what}: the server could not be reached.`;
  let m = r.data && typeof r.data.message === "string" ? r.data.message : `${r.status} ${r.statusText}`;
  if (r.retryAfter) m += ` (try again in ${r.retryAfter} seconds)`;
  return `${what}: ${m}`;
}

// post sends one JSON call. A call that needs a signed-in user and is
// refused for its access token (expired: PGRST3xx) refreshes the session
// once and is sent again.
async function post(path, body, { session = false } = {}) {
  let r = await send(path, body);
  if (session && r.status === 401 && r.data && /^PGRST3/.test(r.data.code || "")) {
    if ((await send("/rpc/refresh_token")).ok) r = await send(path, body);
  }
  return r;
}

async function send(path, body) {
  const opts = {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  };
  try {
    const res = await fetch(path, opts);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { ok: res.ok, status: res.status, statusText: res.statusText, data, retryAfter: res.headers.get("Retry-After") };
  } catch {
    return { ok: false, status: 0, statusText: "", data: null };
  }
}

// busy disables a form's controls while its call runs.
async function busy(form, fn) {
  const controls = form.querySelectorAll("button, input");
  controls.forEach((c) => { c.disabled = true; });
  try {
    return await fn();
  } finally {
    controls.forEach((c) => { c.disabled = false; });
  }
}

function onSubmit(id, fn) {
  const form = $(id);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    // Read before busy() disables the fields: FormData skips disabled ones.
    const data = new FormData(form);
    busy(form, () => fn(data, ev.submitter));
  });
}

// safeNext returns the ?next= of this page if it is a path on this site,
// by authd's rules (server/form.go safeNext) and the browser's own URL
// parser, else null. A string test alone is fooled by /\evil.example (a
// URL reads a backslash as a slash) or a tab between two slashes.
function safeNext(next) {
  if (!next || next.length > 2048 || next[0] !== "/" || !/^[\x21-\x7e]+$/.test(next) || next.includes("\\")) return null;
  let decoded;
  try { decoded = decodeURIComponent(next); } catch { return null; }
  if (decoded.startsWith("//") || decoded.includes("\\")) return null;
  let url;
  try { url = new URL(next, location.origin); } catch { return null; }
  return url.origin === location.origin ? url.pathname + url.search + url.hash : null;
}

// done is a completed sign-in: on to ?next= if it is a path on this site.
async function done(user) {
  const next = params.get("next");
  if (next !== null) {
    const to = safeNext(next);
    if (to) {
      await remember(user);
      location.assign(to);
      return;
    }
    notice(false, `Signed in. Not following the link to "${next}": it is not a page of this site.`);
    await refreshView(user);
    return;
  }
  notice(true, `Signed in as ${user}.`);
  await refreshView(user);
}

// remember keeps the name typed at sign-in with the current session.
async function remember(user) {
  const r = await post("/rpc/sessions", {}, { session: true });
  const current = r.ok && Array.isArray(r.data) ? r.data.find((s) => s.current) : null;
  if (user && current) localStorage.setItem(nameKey, JSON.stringify({ user, session: current.id }));
}

// refreshView asks authd for the sessions, which also says whether this
// browser is signed in, and shows the sections that fit.
async function refreshView(user) {
  const r = await post("/rpc/sessions", {}, { session: true });
  const signedIn = r.ok && Array.isArray(r.data);
  const current = signedIn ? r.data.find((s) => s.current) : null;
  if (signedIn && user && current) localStorage.setItem(nameKey, JSON.stringify({ user, session: current.id }));
  if (!signedIn) localStorage.removeItem(nameKey);
  let name = null;
  try {
    const saved = JSON.parse(localStorage.getItem(nameKey) || "null");
    if (saved && current && saved.session === current.id) name = saved.user;
  } catch { /* nothing usable stored */ }

  $("who").textContent = signedIn ? (name ? `Signed in as ${name}.` : "Signed in.") : "Sign in to continue.";
  $("who").dataset.user = name || "";
  $("who").dataset.signedIn = String(signedIn);
  document.title = (signedIn ? "Your account" : "Sign in") + " — authd";
  const resetting = resetToken !== null;
  $("signin").hidden = signedIn || resetting;
  $("mfa").hidden = true;
  $("signout").hidden = !signedIn;
  $("password").hidden = !signedIn;
  $("sessions").hidden = !signedIn;
  $("enroll").hidden = !signedIn;
  $("signup").hidden = signedIn || resetting || !signupOpen;
  $("forgot").hidden = signedIn || resetting;
  $("reset").hidden = !resetting;
  if (signedIn) listSessions(r.data);
}

function listSessions(rows) {
  const list = $("sessions-list");
  list.replaceChildren();
  for (const s of rows) {
    const li = document.createElement("li");
    li.dataset.session = s.id;
    const since = new Date(s.created_at).toLocaleString();
    const where = [s.user_agent ? browserName(s.user_agent) : "unknown browser", s.ip].filter(Boolean).join(", ");
    li.append(`${where} — since ${since}${s.current ? " (this browser)" : ""} `);
    if (!s.current) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "End";
      b.setAttribute("aria-label", `End the session of ${where}, since ${since}`);
      b.addEventListener("click", () => endSession(s.id, b));
      li.append(b);
    }
    list.append(li);
  }
}

function browserName(ua) {
  const m = /(Firefox|Edg|Chrome|Safari|curl)\/[\d.]+/.exec(ua);
  return m ? m[0] : ua.slice(0, 40);
}

async function endSession(id, button) {
  button.disabled = true;
  const r = await post("/rpc/revoke_session", { session_id: id }, { session: true });
  if (r.ok) notice(true, "That session has ended.");
  else notice(false, message(r, "Could not end the session"));
  await refreshView();
}

// Sign-in, with a second step when the account has a second factor.
let pendingUser = null;
onSubmit("signin-form", async (form) => {
  const user = form.get("user_");
  const r = await post("/rpc/login", { user_: user, pass: form.get("pass") });
  if (!r.ok) {
    notice(false, message(r, "Sign-in failed"));
    return;
  }
  $("signin-pass").value = "";
  if (r.data && r.data.mfa_required) {
    pendingUser = user;
    $("signin").hidden = true;
    $("signup").hidden = true;
    $("forgot").hidden = true;
    $("mfa").hidden = false;
    notice(true, "Password accepted. Now the code from your authenticator app.");
    $("mfa-code").focus();
    return;
  }
  await done(user);
});

onSubmit("mfa-form", async (form) => {
  const code = String(form.get("code")).trim();
  // Six digits are a code from the app; anything else a recovery code.
  const body = /^\d{6}$/.test(code) ? { code } : { recovery_code: code };
  const r = await post("/rpc/mfa_verify", body);
  $("mfa-code").value = "";
  if (!r.ok) {
    notice(false, message(r, "The code was not accepted"));
    return;
  }
  await done(pendingUser);
});

onSubmit("signout-form", async (_form, submitter) => {
  const scope = submitter && submitter.value === "global" ? "global" : "local";
  const r = await post("/rpc/logout", { scope });
  localStorage.removeItem(nameKey);
  if (r.ok) notice(true, scope === "global" ? "Signed out everywhere." : "Signed out.");
  else notice(false, message(r, "Sign-out failed"));
  await refreshView();
});

onSubmit("password-form", async (form) => {
  const r = await post("/rpc/change_password", { pass: form.get("pass"), new_pass: form.get("new_pass") }, { session: true });
  $("password-current").value = "";
  $("password-new").value = "";
  if (r.ok) notice(true, "Password changed. Your other sessions have ended.");
  else notice(false, message(r, "The password was not changed"));
  await refreshView();
});

$("enroll-start").addEventListener("click", async () => {
  const r = await post("/rpc/mfa_enroll", {}, { session: true });
  if (r.status === 404) {
    notice(false, "Two-factor authentication is not available on this server.");
    return;
  }
  if (r.status === 409) {
    notice(false, "An authenticator app is already set up for this account.");
    return;
  }
  if (!r.ok || !r.data) {
    notice(false, message(r, "Could not start the setup"));
    return;
  }
  const qr = String(r.data.qr_code || "");
  // Only an image carried in the answer itself, never a URL to fetch.
  if (qr.startsWith("data:image/png;base64,")) $("enroll-qr").src = qr;
  $("enroll-qr").hidden = !qr.startsWith("data:image/png;base64,");
  $("enroll-secret").textContent = String(r.data.secret || "");
  $("enroll-setup").hidden = false;
  $("enroll-done").hidden = true;
  notice(true, "Scan the code, then enter the code the app shows.");
  $("enroll-code").focus();
});

onSubmit("enroll-form", async (form) => {
  const r = await post("/rpc/mfa_verify", { code: String(form.get("code")).trim() }, { session: true });
  $("enroll-code").value = "";
  if (!r.ok) {
    notice(false, message(r, "The code was not accepted"));
    return;
  }
  const list = $("recovery-codes");
  list.replaceChildren();
  for (const c of (r.data && r.data.recovery_codes) || []) {
    const li = document.createElement("li");
    li.textContent = c;
    list.append(li);
  }
  $("enroll-setup").hidden = true;
  $("enroll-qr").removeAttribute("src");
  $("enroll-done").hidden = false;
  notice(true, "Two-factor authentication is on.");
});

onSubmit("signup-form", async (form) => {
  const user = form.get("user_");
  const r = await post("/rpc/signup", { user_: user, pass: form.get("pass") });
  $("signup-pass").value = "";
  if (r.status === 404) {
    notice(false, "Sign-up is not open on this site.");
    return;
  }
  if (!r.ok) {
    notice(false, message(r, "The account was not created"));
    return;
  }
  await done(user);
});

onSubmit("forgot-form", async (form) => {
  const r = await post("/rpc/request_password_reset", { user_: form.get("user_") });
  if (r.ok) notice(true, "If that account exists, a reset link is on its way to its owner.");
  else notice(false, message(r, "Could not ask for a reset"));
});

onSubmit("reset-form", async (form) => {
  const r = await post("/rpc/reset_password", { token: resetToken, new_pass: form.get("new_pass") });
  $("reset-pass").value = "";
  if (!r.ok) {
    notice(false, r.status === 401 ? "This reset link is no longer valid: ask for a new one." : message(r, "The password was not set"));
    return;
  }
  resetToken = null;
  notice(true, "Your password is set. Sign in with it.");
  await refreshView();
});

// Sign-up is open when authd has the function: POST /rpc/signup with no
// arguments then names the ones it wants (PGRST202 with a hint); while it
// is off the function does not exist and there is no hint.
async function probeSignup() {
  const r = await send("/rpc/signup", {});
  signupOpen = r.status === 404 && r.data && typeof r.data.hint === "string";
}

start();
async function start() {
  await probeSignup();
  await refreshView();
  document.body.dataset.ready = "true";
}
