// End-to-end test of the login page (deploy/web) in a real browser: Debian's
// Chromium, headless, driven by playwright-core (no browser download). Run
// by deploy/browser_test.go against authd, an echoing upstream and Caddy;
// it can also be run by hand against any gateway serving the page:
//
//   E2E_BASE_URL=http://127.0.0.1:8000 E2E_USER=alice E2E_PASSWORD=secret \
//   E2E_ROLE=web_user node deploy/e2e/browser.mjs
//
// Environment (or --name=value arguments: --base-url, --user, --password,
// --role, --out-dir, --chromium):
//   E2E_BASE_URL     the gateway, e.g. http://127.0.0.1:8000 (required)
//   E2E_USER         an existing user (required)
//   E2E_PASSWORD     their password (required)
//   E2E_ROLE         their role, checked in what the upstream received
//                    (optional: without it only a non-empty role is checked)
//   E2E_OUT_DIR      where the screenshots go (default: test-results/ at the
//                    repository root)
//   CHROMIUM_PATH    the browser (default /usr/bin/chromium)
//
// The protected route is /api/whoami, answered by an upstream that echoes
// the Authorization and X-Auth-User/X-Auth-Role it got (deploy/*_test.go).
// Every request the page makes must stay on the gateway's origin; any other
// is refused and fails the run. Exit status 0 means every step passed; on a
// failure the step and the reason are printed, a screenshot is saved as
// browser-e2e-failure.png, and the status is 1.

import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function option(flag, env, fallback) {
  const prefix = `--${flag}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(prefix));
  if (arg !== undefined) return arg.slice(prefix.length);
  const v = process.env[env];
  return v !== undefined && v !== "" ? v : fallback;
}

const cfg = {
  base: option("base-url", "E2E_BASE_URL"),
  user: option("user", "E2E_USER"),
  password: option("password", "E2E_PASSWORD"),
  role: option("role", "E2E_ROLE", ""),
  outDir: path.resolve(option("out-dir", "E2E_OUT_DIR", path.join(here, "..", "..", "test-results"))),
  chromium: option("chromium", "CHROMIUM_PATH", "/usr/bin/chromium"),
};
const protectedPath = "/api/whoami";
// The whole run; Chromium starts in a second or two, each step takes
// milliseconds. A hung step fails here rather than hanging the caller.
const overallTimeoutMs = 45_000;
const stepTimeoutMs = 10_000;

for (const [k, v] of Object.entries({ base: cfg.base, user: cfg.user, password: cfg.password })) {
  if (!v) fail(`missing ${k}: set E2E_BASE_URL, E2E_USER and E2E_PASSWORD (see the top of ${path.relative(process.cwd(), fileURLToPath(import.meta.url))})`);
}
const origin = new URL(cfg.base).origin;

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (err) {
  fail(`cannot load playwright-core (${err.message}): run scripts/test-deps.sh`);
}

// Launch flags known to work here; Playwright adds its own (automation,
// no first-run UI) and uses the fresh profile directory below.
const flags = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let context;
let page;
let profile;
let currentStep = "start";
let aborting = false;
const foreign = [];

const timer = setTimeout(() => {
  abort(new Error(`the run took longer than ${overallTimeoutMs / 1000}s`));
}, overallTimeoutMs);

try {
  await run();
  clearTimeout(timer);
  await cleanup();
  console.log("browser e2e: all steps passed");
} catch (err) {
  await abort(err);
}

async function run() {
  await mkdir(cfg.outDir, { recursive: true });
  profile = await mkdtemp(path.join(tmpdir(), "authd-e2e-chromium-"));

  await step(`launch ${cfg.chromium}`, async () => {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: cfg.chromium,
      headless: true,
      args: flags,
      viewport: { width: 900, height: 720 },
      locale: "en-US",
      timeout: 20_000,
    });
    context.setDefaultTimeout(stepTimeoutMs);
    const version = context.browser()?.version() ?? "?";
    // Only the gateway's origin: no CDN, and no traffic off this machine.
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith("data:") || new URL(url).origin === origin) return route.continue();
      foreign.push(url);
      return route.abort("blockedbyclient");
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (err) => console.log(`  page error: ${err.message}`));
    // Refusals the test asks for (401s) are logged by Chromium as "Failed
    // to load resource"; the steps check those answers themselves.
    page.on("console", (msg) => {
      if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
        console.log(`  console error: ${msg.text()}`);
      }
    });
    return `Chromium ${version}`;
  });

  await step(`open ${origin}/`, async () => {
    const res = await page.goto(origin + "/", { waitUntil: "load" });
    expect(res && res.status() === 200, `GET / answered ${res && res.status()}, want 200`);
    await page.getByRole("heading", { name: "Log in" }).waitFor();
    const cookies = await tokenCookies();
    expect(cookies.length === 0, `cookies before logging in: ${names(cookies)}`);
  });

  await step("a wrong password is refused, with authd's message", async () => {
    await fillLogin(cfg.user, cfg.password + "-wrong");
    const r = await act(() => page.getByRole("button", { name: "Log in" }).click(), "/rpc/login");
    expect(r.status === 401, `login answered ${r.status}, want 401`);
    expect(!r.ok && /Invalid user or password/.test(r.text), `the page shows ${JSON.stringify(r.text)}, want authd's message "Invalid user or password"`);
    return r.text;
  });

  await step("log in through the form", async () => {
    await fillLogin(cfg.user, cfg.password);
    const r = await act(() => page.getByLabel("Password").press("Enter"), "/rpc/login");
    expect(r.ok && r.status === 204, `login: the page shows ${r.status} ${JSON.stringify(r.text)}, want 204`);
    expect((await page.getByLabel("Password").inputValue()) === "", "the password field was not cleared after logging in");
    return r.text;
  });

  let access;
  await step("the tokens are HttpOnly cookies that page scripts cannot see", async () => {
    const seen = await page.evaluate(() => document.cookie);
    for (const name of ["access_token", "refresh_token"]) {
      expect(!seen.includes(name), `document.cookie shows ${name}: ${JSON.stringify(seen)}`);
    }
    const cookies = await tokenCookies();
    const where = cookies.map((c) => `${c.name}@${c.path}${c.httpOnly ? "" : " (NOT HttpOnly)"} SameSite=${c.sameSite}`);
    access = findCookie(cookies, "access_token", "/");
    findCookie(cookies, "refresh_token", "/rpc/refresh_token");
    findCookie(cookies, "refresh_token", "/rpc/logout");
    expect(cookies.length === 3, `want exactly 3 token cookies, got ${where.join(", ")}`);
    for (const c of cookies) expect(c.httpOnly, `${c.name} at ${c.path} is not HttpOnly`);
    await page.screenshot({ path: path.join(cfg.outDir, "browser-e2e-login.png"), fullPage: true });
    return `document.cookie=${JSON.stringify(seen)}; browser has ${where.join(", ")}`;
  });

  let firstToken;
  await step(`Who am I: ${protectedPath} passes the gateway with the user's token`, async () => {
    const r = await act(() => page.getByRole("button", { name: "Who am I" }).click(), protectedPath);
    expect(r.ok && r.status === 200, `${protectedPath} answered ${r.status}: ${r.text} ${r.body}`);
    firstToken = checkEcho(r.json);
    expect(firstToken === access.value, "the upstream's Bearer token is not the access_token cookie");
    expect(r.body.includes("Bearer eyJ"), `the page does not show the upstream's "Bearer …": ${r.body}`);
    expect(r.body.includes(r.json.x_auth_role), `the page does not show the role ${r.json.x_auth_role}`);
    expect(!r.body.includes(firstToken), "the page shows the whole access token");
    await page.screenshot({ path: path.join(cfg.outDir, "browser-e2e-whoami.png"), fullPage: true });
    return `upstream saw X-Auth-User ${r.json.x_auth_user}, X-Auth-Role ${r.json.x_auth_role}, Authorization Bearer ${firstToken.slice(0, 12)}…`;
  });

  await step("Who am I refuses a route on another origin, however it is spelt", async () => {
    // Each resolves, with the page's URL, to another host: fetch would
    // send the request there (the page's CSP would stop it, but the check
    // must not rely on that).
    const spellings = ["/\\evil.example/api/whoami", "//evil.example/api/whoami", "/\t/evil.example/api/whoami", "https://evil.example/api/whoami"];
    const status = page.locator("#status");
    for (const route of spellings) {
      const seq = Number(await status.getAttribute("data-seq"));
      await page.getByLabel("Protected route").fill(route);
      await page.getByRole("button", { name: "Who am I" }).click();
      await page.waitForFunction((n) => Number(document.getElementById("status").dataset.seq) > n, seq);
      const text = (await status.textContent()).trim();
      expect(/must be a path on this site/.test(text) && (await status.getAttribute("data-ok")) === "false",
        `route ${JSON.stringify(route)}: the page shows ${JSON.stringify(text)}, want "must be a path on this site"`);
    }
    await page.getByLabel("Protected route").fill(protectedPath);
    return `${spellings.length} spellings refused`;
  });

  await step("Refresh: a new access token in the cookie", async () => {
    const r = await act(() => page.getByRole("button", { name: "Refresh" }).click(), "/rpc/refresh_token");
    expect(r.ok && r.status === 204, `refresh answered ${r.status}: ${r.text}`);
    const cookies = await tokenCookies();
    const now = findCookie(cookies, "access_token", "/");
    expect(now.value !== access.value, "the access_token cookie did not change on refresh");
    expect(cookies.filter((c) => c.name === "refresh_token").length === 2, `after refresh: ${names(cookies)}`);
    access = now;
    return r.text;
  });

  await step(`Who am I after refresh: the upstream gets the new token`, async () => {
    const r = await act(() => page.getByRole("button", { name: "Who am I" }).click(), protectedPath);
    expect(r.ok && r.status === 200, `${protectedPath} answered ${r.status}: ${r.text}`);
    const token = checkEcho(r.json);
    expect(token !== firstToken, "the upstream still gets the first access token");
    expect(token === access.value, "the upstream's Bearer token is not the new access_token cookie");
  });

  await step("Log out: the cookies are gone", async () => {
    const r = await act(() => page.getByRole("button", { name: "Log out" }).click(), "/rpc/logout");
    expect(r.ok && r.status === 204, `logout answered ${r.status}: ${r.text}`);
    const cookies = await tokenCookies();
    expect(cookies.length === 0, `after logout the browser still has ${names(cookies)}`);
    return r.text;
  });

  await step(`Who am I after logout: ${protectedPath} is refused`, async () => {
    const r = await act(() => page.getByRole("button", { name: "Who am I" }).click(), protectedPath);
    expect(r.status === 401 && !r.ok, `${protectedPath} answered ${r.status} (${r.text}), want 401`);
    const challenge = r.headers["www-authenticate"] || "";
    expect(challenge.startsWith("Bearer"), `401 without a Bearer challenge (WWW-Authenticate ${JSON.stringify(challenge)})`);
    expect(r.body.includes("WWW-Authenticate: Bearer"), "the page does not show the Bearer challenge");
    return r.text;
  });

  await step("screenshot", async () => {
    const file = path.join(cfg.outDir, "browser-e2e.png");
    await page.screenshot({ path: file, fullPage: true });
    return path.relative(process.cwd(), file);
  });

  expect(foreign.length === 0, `the page asked for other origins: ${foreign.join(", ")}`);
}

// step runs one named check and prints its outcome.
async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  const detail = await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)${detail ? `: ${detail}` : ""}`);
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function fillLogin(user, password) {
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
}

// act does what the user does (a click, a key), then waits for both the
// network response to pathname and the page's account of it (#status,
// whose data-seq counts outcomes), and returns both.
async function act(doIt, pathname) {
  const status = page.locator("#status");
  const seq = Number(await status.getAttribute("data-seq"));
  const [res] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === pathname && r.request().resourceType() === "fetch"),
    doIt(),
  ]);
  await page.waitForFunction(
    (n) => Number(document.getElementById("status").dataset.seq) > n && !document.getElementById("status").hasAttribute("aria-busy"),
    seq,
  );
  const text = (await status.textContent()).trim();
  const shown = Number(await status.getAttribute("data-status"));
  expect(shown === res.status(), `the page shows status ${shown}, the network ${res.status()}`);
  const raw = await res.text();
  let json = null;
  try { json = raw ? JSON.parse(raw) : null; } catch { /* not JSON */ }
  return {
    status: res.status(),
    headers: res.headers(),
    json,
    ok: (await status.getAttribute("data-ok")) === "true",
    text,
    body: (await page.locator("#body").textContent()) || "",
  };
}

// checkEcho checks what the upstream received (its JSON echo) and returns
// the Bearer token.
function checkEcho(e) {
  expect(e && typeof e === "object", `the upstream's answer is not JSON: ${JSON.stringify(e)}`);
  const auth = e.authorization || "";
  expect(auth.startsWith("Bearer "), `the upstream got Authorization ${JSON.stringify(auth)}, want Bearer <jwt>`);
  const token = auth.slice("Bearer ".length);
  const parts = token.split(".");
  expect(parts.length === 3, `the upstream's Bearer token is not a JWT: ${token.slice(0, 20)}…`);
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  expect(e.x_auth_user === cfg.user, `the upstream got X-Auth-User ${JSON.stringify(e.x_auth_user)}, want ${JSON.stringify(cfg.user)}`);
  if (cfg.role) {
    expect(e.x_auth_role === cfg.role, `the upstream got X-Auth-Role ${JSON.stringify(e.x_auth_role)}, want ${JSON.stringify(cfg.role)}`);
    expect(claims.role === cfg.role, `the token's role claim is ${JSON.stringify(claims.role)}, want ${JSON.stringify(cfg.role)}`);
  } else {
    expect(e.x_auth_role && claims.role === e.x_auth_role, `the upstream got X-Auth-Role ${JSON.stringify(e.x_auth_role)} and a token for role ${JSON.stringify(claims.role)}`);
  }
  return token;
}

async function tokenCookies() {
  return (await context.cookies()).filter((c) => c.name === "access_token" || c.name === "refresh_token");
}

function findCookie(cookies, name, p) {
  const c = cookies.find((c) => c.name === name && c.path === p);
  expect(c && c.value, `no ${name} cookie at path ${p}; the browser has ${names(cookies) || "none"}`);
  return c;
}

function names(cookies) {
  return cookies.map((c) => `${c.name}@${c.path}`).join(", ");
}

async function cleanup() {
  if (context) await context.close().catch(() => {});
  context = undefined;
  if (profile) await rm(profile, { recursive: true, force: true }).catch(() => {});
}

async function abort(err) {
  if (aborting) return;
  aborting = true;
  clearTimeout(timer);
  // Playwright colours its call logs; a CI log wants plain text.
  const msg = String(err && err.message ? err.message : err).replace(/\x1b\[[0-9;]*m/g, "");
  console.error(`FAIL ${currentStep}: ${msg}`);
  if (page) {
    const file = path.join(cfg.outDir, "browser-e2e-failure.png");
    await page.screenshot({ path: file, fullPage: true, timeout: 5_000 }).then(
      () => console.error(`     screenshot of the page: ${file}`),
      () => {},
    );
    const shown = await page.locator("#status").textContent({ timeout: 1_000 }).catch(() => null);
    if (shown) console.error(`     the page shows: ${shown.trim()}`);
  }
  if (foreign.length) console.error(`     requests to other origins (refused): ${foreign.join(", ")}`);
  await cleanup();
  process.exit(1);
}

function fail(msg) {
  console.error(`FAIL ${msg}`);
  process.exit(1);
}
