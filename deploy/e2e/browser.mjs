// End-to-end test of the account page (deploy/web) in a real browser:
// Debian's Chromium, headless, driven by playwright-core (no browser
// download). Run by deploy/browser_test.go against authd (sign-up on), an
// echoing upstream and Caddy; it can also be run by hand against any
// gateway serving the page, with sign-up on and a mailbox (below):
//
//   E2E_BASE_URL=http://127.0.0.1:8000 E2E_USER=alice E2E_PASSWORD=secret \
//   E2E_MAILBOX=http://127.0.0.1:9000 node deploy/e2e/browser.mjs
//
// Environment (or --name=value arguments: --base-url, --user, --password,
// --role, --mailbox, --expect-mfa, --out-dir, --chromium):
//   E2E_BASE_URL     the gateway, e.g. http://127.0.0.1:8000 (required)
//   E2E_USER         an existing user without a second factor, for the
//                    checks with JavaScript off (required)
//   E2E_PASSWORD     their password (required)
//   E2E_ROLE         the role of users (theirs and sign-up's), checked in
//                    what the upstream received (optional)
//   E2E_MAILBOX      answers GET ?user=NAME with the user's latest password
//                    reset link, as a mail worker would mail it (required)
//   E2E_EXPECT_MFA   1: the server has /rpc/mfa_enroll and /rpc/mfa_verify,
//                    and the run sets up a TOTP factor and signs in with
//                    codes; 0 (default): the page must say it has none
//   E2E_OUT_DIR      where the screenshots go (default: test-results/ at
//                    the repository root)
//   CHROMIUM_PATH    the browser (default /usr/bin/chromium)
//
// The protected route /api/whoami is answered by an upstream that echoes
// the Authorization and X-Auth-User/X-Auth-Role it got (deploy/*_test.go).
// Every request the pages make must stay on the gateway's origin; any
// other is refused and fails the run. Exit status 0 means every step
// passed; on a failure the step and the reason are printed, a screenshot
// is saved as browser-e2e-failure.png, and the status is 1.

import { createHmac, randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
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
  mailbox: option("mailbox", "E2E_MAILBOX"),
  expectMFA: option("expect-mfa", "E2E_EXPECT_MFA", "0") === "1",
  outDir: path.resolve(option("out-dir", "E2E_OUT_DIR", path.join(here, "..", "..", "test-results"))),
  chromium: option("chromium", "CHROMIUM_PATH", "/usr/bin/chromium"),
};
const protectedPath = "/api/whoami";
// Base32 (RFC 4648), the alphabet of TOTP keys.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
// The whole run: Chromium starts in a second or two, each step takes
// milliseconds, and with a second factor the run waits up to 30 s for a
// fresh TOTP step. A hung step fails here rather than hanging the caller.
const overallTimeoutMs = 150_000;
const stepTimeoutMs = 10_000;

for (const [k, v] of Object.entries({ base: cfg.base, user: cfg.user, password: cfg.password, mailbox: cfg.mailbox })) {
  if (!v) fail(`missing ${k}: set E2E_BASE_URL, E2E_USER, E2E_PASSWORD and E2E_MAILBOX (see the top of ${path.relative(process.cwd(), fileURLToPath(import.meta.url))})`);
}
const origin = new URL(cfg.base).origin;

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (err) {
  fail(`cannot load playwright-core (${err.message}): run scripts/test-deps.sh`);
}

// Launch flags known to work here; Playwright adds its own (automation,
// no first-run UI).
const flags = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let browser;
let page; // the page of the step running, for the failure screenshot
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

  await step("TOTP codes as RFC 6238 computes them", async () => {
    // RFC 6238 appendix B, SHA-1, at T = 59 s: 94287082 (8 digits).
    const code = totp(base32(Buffer.from("12345678901234567890")), 59_000);
    expect(code === "287082", `totp gives ${code} for the RFC's vector, want 287082`);
  });

  await step(`launch ${cfg.chromium}`, async () => {
    browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args: flags, timeout: 20_000 });
    return `Chromium ${browser.version()}`;
  });

  // A new user for this run, and their passwords as they change.
  const user = `e2e-${randomBytes(4).toString("hex")}`;
  const pw1 = `first ${randomBytes(6).toString("hex")} horse`;
  const pw2 = `second ${randomBytes(6).toString("hex")} staple`;
  const pw3 = `third ${randomBytes(6).toString("hex")} battery`;
  let mfa = null; // { secret, lastStep, recovery: [...] }

  const a = await newContext();
  page = a.page;

  await step(`open ${origin}/: sign in, sign up and reset are offered`, async () => {
    const res = await page.goto(origin + "/", { waitUntil: "load" });
    expect(res && res.status() === 200, `GET / answered ${res && res.status()}, want 200`);
    await ready(page);
    for (const h of ["Sign in", "Create an account", "Forgot your password?"]) {
      expect(await page.getByRole("heading", { name: h }).isVisible(), `no visible heading "${h}"`);
    }
    expect(!(await page.getByRole("heading", { name: "Change password" }).isVisible()), "Change password is shown to nobody signed in");
    expect((await tokenCookies(a.context)).length === 0, "token cookies before signing in");
    await shot(page, "01-start");
  });

  await step(`sign up as ${user}`, async () => {
    const form = page.locator("#signup");
    await form.getByLabel("New username").fill(user);
    await form.getByLabel("New password").fill(pw1);
    const text = await act(page, () => form.getByRole("button", { name: "Create account" }).click());
    expect(text === `Signed in as ${user}.`, `the page says ${JSON.stringify(text)}`);
    await signedInAs(page, user);
    await shot(page, "02-signed-up");
    return text;
  });

  await step("the tokens are HttpOnly cookies that page scripts cannot see", async () => {
    const seen = await page.evaluate(() => document.cookie);
    for (const name of ["access_token", "refresh_token"]) {
      expect(!seen.includes(name), `document.cookie shows ${name}: ${JSON.stringify(seen)}`);
    }
    const cookies = await tokenCookies(a.context);
    const where = cookies.map((c) => `${c.name}@${c.path}`);
    findCookie(cookies, "access_token", "/");
    findCookie(cookies, "refresh_token", "/rpc/refresh_token");
    findCookie(cookies, "refresh_token", "/rpc/logout");
    for (const c of cookies) expect(c.httpOnly, `${c.name} at ${c.path} is not HttpOnly`);
    return `browser has ${where.join(", ")}`;
  });

  if (cfg.expectMFA) {
    await step("set up a TOTP factor: QR code, key, first code, recovery codes", async () => {
      const res = page.waitForResponse((r) => new URL(r.url()).pathname === "/rpc/mfa_enroll");
      await act(page, () => page.getByRole("button", { name: "Set up an authenticator app" }).click());
      const enroll = await (await res).json();
      expect(/^otpauth:\/\/totp\//.test(enroll.uri || ""), `mfa_enroll uri ${JSON.stringify(enroll.uri)}`);
      const img = page.getByRole("img", { name: /QR code/ });
      const src = await img.getAttribute("src");
      expect(src && src.startsWith("data:image/png;base64,"), `the QR code's src is ${JSON.stringify((src || "").slice(0, 40))}`);
      expect(await img.evaluate((el) => el.complete && el.naturalWidth > 0), "the QR code image did not load");
      const secret = (await page.locator("#enroll-secret").textContent()).trim();
      expect(secret === enroll.secret, "the page does not show the key mfa_enroll answered");
      await shot(page, "03-mfa");
      const now = Date.now();
      const code = totp(secret, now);
      await page.getByLabel("Code from the app").fill(code);
      const text = await act(page, () => page.getByRole("button", { name: "Activate" }).click());
      expect(/Two-factor authentication is on/.test(text), `after the code the page says ${JSON.stringify(text)}`);
      const recovery = (await page.locator("#recovery-codes li").allTextContents()).map((s) => s.trim());
      expect(recovery.length >= 3, `recovery codes shown: ${recovery.length}, want at least 3`);
      mfa = { secret, lastStep: timeStep(now), recovery };
      await shot(page, "03b-mfa-on");
      return `${recovery.length} recovery codes`;
    });
  } else {
    await step("second factor: the page says the server has none (E2E_EXPECT_MFA=0)", async () => {
      const res = page.waitForResponse((r) => new URL(r.url()).pathname === "/rpc/mfa_enroll");
      const text = await act(page, () => page.getByRole("button", { name: "Set up an authenticator app" }).click());
      expect((await res).status() === 404, `mfa_enroll answered ${(await res).status()}, want 404 while E2E_EXPECT_MFA=0`);
      expect(/not available on this server/.test(text), `the page says ${JSON.stringify(text)}`);
      await shot(page, "03-mfa");
      return text;
    });
  }

  await step("sign out (this device): the cookies are gone", async () => {
    const text = await act(page, () => page.getByRole("button", { name: "Sign out", exact: true }).click());
    expect(/Signed out/.test(text), `the page says ${JSON.stringify(text)}`);
    expect((await tokenCookies(a.context)).length === 0, `after sign-out: ${names(await tokenCookies(a.context))}`);
    await signedOut(page);
    await shot(page, "04-signed-out");
  });

  await step("a wrong password is refused with a readable message", async () => {
    const text = await signIn(page, user, pw1 + "-wrong");
    expect(/Sign-in failed: Invalid user or password/.test(text), `the page says ${JSON.stringify(text)}`);
    expect(!text.includes("{"), `the page shows JSON: ${text}`);
    await shot(page, "05-wrong-password");
  });

  await step(`sign in at /?next=${protectedPath}${cfg.expectMFA ? " with a TOTP code" : ""}: on to the protected route`, async () => {
    await page.goto(`${origin}/?next=${encodeURIComponent(protectedPath)}`);
    await ready(page);
    await fillSignIn(page, user, pw1);
    let submit = page.locator("#signin").getByRole("button", { name: "Sign in" });
    if (cfg.expectMFA) {
      await act(page, () => submit.click());
      expect(await page.getByRole("heading", { name: "Enter your code" }).isVisible(), "no code step after the password");
      // A code is accepted once: wait for the step after the enrolment's
      // (up to 30 s, longer than a step's timeout: before waiting for the
      // navigation).
      const code = await freshCode(mfa);
      await page.getByLabel("Code", { exact: true }).fill(code);
      submit = page.getByRole("button", { name: "Verify" });
    }
    await Promise.all([page.waitForURL(origin + protectedPath), submit.click()]);
    const echo = JSON.parse(await page.locator("body").textContent());
    checkEcho(echo, user);
    await page.goto(origin + "/");
    await ready(page);
    await signedInAs(page, user);
    await shot(page, "06-signed-in");
    return `upstream saw X-Auth-User ${echo.x_auth_user}, X-Auth-Role ${echo.x_auth_role}`;
  });

  // A second browser (its own cookies), signed in as the same user.
  const b = await newContext();
  page = b.page;
  await step("a second browser at /?next=/\\evil.example signs in and stays on the site", async () => {
    await page.goto(`${origin}/?next=/\\evil.example`);
    await ready(page);
    // With a factor: the first browser used this step's code, so a
    // recovery code here.
    const text = await signIn(page, user, pw1, mfa && mfa.recovery.shift());
    expect(/Not following the link/.test(text), `the page says ${JSON.stringify(text)}`);
    expect(new URL(page.url()).origin === origin, `the browser went to ${page.url()}`);
    await signedInAs(page, user);
    expect((await page.locator("#sessions-list li").count()) === 2, "the second browser does not list two sessions");
    await shot(page, "07-next-refused");
    return text;
  });

  page = a.page;
  await step("change the password in the first browser", async () => {
    await page.reload();
    await ready(page);
    expect((await page.locator("#sessions-list li").count()) === 2, "the first browser does not list two sessions");
    const form = page.locator("#password");
    await form.getByLabel("Current password").fill(pw1);
    await form.getByLabel("New password").fill(pw2);
    const text = await act(page, () => form.getByRole("button", { name: "Change password" }).click());
    expect(/Password changed/.test(text), `the page says ${JSON.stringify(text)}`);
    await signedInAs(page, user);
    expect((await page.locator("#sessions-list li").count()) === 1, "other sessions are still listed after the change");
    await shot(page, "08-password-changed");
    return text;
  });

  page = b.page;
  await step("the second browser's session has ended", async () => {
    const status = await refreshStatus(page);
    expect(status === 401, `the second browser's refresh answered ${status}, want 401`);
    await page.reload();
    await ready(page);
    await signedOut(page);
    await shot(page, "09-other-session-ended");
  });

  page = a.page;
  let link;
  await step("sign out and ask for a reset link", async () => {
    await act(page, () => page.getByRole("button", { name: "Sign out", exact: true }).click());
    await signedOut(page);
    await page.locator("#forgot").getByLabel("Your username").fill(user);
    const text = await act(page, () => page.getByRole("button", { name: "Send a reset link" }).click());
    expect(/reset link is on its way/.test(text), `the page says ${JSON.stringify(text)}`);
    await shot(page, "10-reset-requested");
    const res = await fetch(`${cfg.mailbox}/?user=${encodeURIComponent(user)}`);
    link = await res.text();
    expect(res.status === 200 && link.startsWith(origin + "/reset?token="), `the mailbox answered ${res.status}: ${link}`);
    return text;
  });

  await step("follow the reset link and choose a new password", async () => {
    await page.goto(link);
    await ready(page);
    expect(!page.url().includes("token="), `the token stays in the address bar: ${page.url()}`);
    expect(await page.getByRole("heading", { name: "Choose a new password" }).isVisible(), "no reset form");
    await page.getByLabel("New password for the reset").fill(pw3);
    const text = await act(page, () => page.getByRole("button", { name: "Set password" }).click());
    expect(/password is set/.test(text), `the page says ${JSON.stringify(text)}`);
    await shot(page, "11-reset");
    return text;
  });

  await step("the old password is refused; the new one signs in", async () => {
    let text = await signIn(page, user, pw2);
    expect(/Invalid user or password/.test(text), `with the old password the page says ${JSON.stringify(text)}`);
    text = await signIn(page, user, pw3, mfa && mfa.recovery.shift());
    await signedInAs(page, user);
    await shot(page, "12-signed-in-after-reset");
    return text;
  });

  page = b.page;
  await step("the second browser signs in again; the first ends that session from its list", async () => {
    let text = await signIn(page, user, pw3, mfa && mfa.recovery.shift());
    await signedInAs(page, user);
    page = a.page;
    await page.reload();
    await ready(page);
    const other = page.locator("#sessions-list li").filter({ hasNotText: "this browser" });
    expect((await other.count()) === 1, `the first browser lists ${await other.count()} other sessions, want 1`);
    text = await act(page, () => other.getByRole("button", { name: /^End the session/ }).click());
    expect(/session has ended/.test(text), `the page says ${JSON.stringify(text)}`);
    expect((await page.locator("#sessions-list li").count()) === 1, "the ended session is still listed");
    page = b.page;
    const status = await refreshStatus(page);
    expect(status === 401, `the ended session's refresh answered ${status}, want 401`);
    return text;
  });

  // Without JavaScript: the forms post to authd, which redirects or
  // answers a page of its own.
  const c = await newContext({ javaScriptEnabled: false });
  page = c.page;
  await step("JavaScript off: a wrong password gets a readable page, not JSON", async () => {
    await page.goto(`${origin}/?next=${encodeURIComponent(protectedPath)}`);
    await fillSignIn(page, cfg.user, cfg.password + "-wrong");
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Sign in", exact: true }).click()]);
    expect(await page.getByRole("heading", { name: "Sign-in failed" }).isVisible(), "no Sign-in failed heading");
    const alert = (await page.getByRole("alert").textContent()).trim();
    expect(alert === "Invalid user or password", `the page says ${JSON.stringify(alert)}`);
    await shot(page, "13-nojs-error");
    return alert;
  });

  await step(`JavaScript off: back, sign in, on to ${protectedPath}`, async () => {
    await Promise.all([page.waitForNavigation(), page.getByRole("link", { name: "Back to the sign-in page" }).click()]);
    const back = new URL(page.url());
    expect(back.origin === origin && back.pathname === "/" && back.searchParams.get("next") === protectedPath, `back to ${page.url()}`);
    await fillSignIn(page, cfg.user, cfg.password);
    await Promise.all([page.waitForURL(origin + protectedPath), page.getByRole("button", { name: "Sign in", exact: true }).click()]);
    const echo = JSON.parse(await page.locator("body").textContent());
    checkEcho(echo, cfg.user);
    await page.goto(origin + "/");
    await shot(page, "14-nojs-signed-in");
    return `upstream saw X-Auth-User ${echo.x_auth_user}`;
  });

  await step("JavaScript off: sign out", async () => {
    expect((await tokenCookies(c.context)).length === 3, `before sign-out: ${names(await tokenCookies(c.context))}`);
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Sign out", exact: true }).click()]);
    expect(page.url() === origin + "/", `after sign-out the browser is at ${page.url()}`);
    expect((await tokenCookies(c.context)).length === 0, `after sign-out: ${names(await tokenCookies(c.context))}`);
    const res = await page.goto(origin + protectedPath);
    expect(res.status() === 401, `${protectedPath} after sign-out answered ${res.status()}, want 401`);
    await page.goto(origin + "/");
    await shot(page, "15-nojs-signed-out");
  });

  page = a.page;
  await step("screenshot", async () => {
    const file = path.join(cfg.outDir, "browser-e2e.png");
    await page.screenshot({ path: file, fullPage: true });
    return path.relative(process.cwd(), file);
  });

  expect(foreign.length === 0, `the pages asked for other origins: ${foreign.join(", ")}`);
}

// newContext is a fresh browser profile (its own cookies and storage) and
// a page in it, allowed to talk to the gateway's origin only.
async function newContext(opts = {}) {
  const context = await browser.newContext({ viewport: { width: 900, height: 720 }, locale: "en-US", ...opts });
  context.setDefaultTimeout(stepTimeoutMs);
  // Only the gateway's origin: no CDN, and no traffic off this machine.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("data:") || new URL(url).origin === origin) return route.continue();
    foreign.push(url);
    return route.abort("blockedbyclient");
  });
  const p = await context.newPage();
  p.on("pageerror", (err) => console.log(`  page error: ${err.message}`));
  // Refusals the test asks for (401s) are logged by Chromium as "Failed
  // to load resource"; the steps check those answers themselves.
  p.on("console", (msg) => {
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      console.log(`  console error: ${msg.text()}`);
    }
  });
  return { context, page: p };
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

// shot saves a screenshot of p as browser-e2e-NAME.png (browser_test.go
// checks the numbered ones).
async function shot(p, name) {
  await p.screenshot({ path: path.join(cfg.outDir, `browser-e2e-${name}.png`), fullPage: true });
}

// ready waits for the page's script to have asked authd what to show.
async function ready(p) {
  await p.waitForFunction(() => document.body.dataset.ready === "true");
}

async function fillSignIn(p, user, password) {
  const form = p.locator("#signin");
  await form.getByLabel("Username", { exact: true }).fill(user);
  await form.getByLabel("Password", { exact: true }).fill(password);
}

// signIn signs in through the page's form, giving code (a TOTP or recovery
// code) at the second step if there is one, and returns what the page
// says in the end.
async function signIn(p, user, password, code) {
  await fillSignIn(p, user, password);
  const text = await act(p, () => p.locator("#signin").getByRole("button", { name: "Sign in" }).click());
  if (!code) return text;
  await p.getByLabel("Code", { exact: true }).fill(code);
  return act(p, () => p.getByRole("button", { name: "Verify" }).click());
}

// refreshStatus is the status of a refresh with p's cookies.
async function refreshStatus(p) {
  return p.evaluate(async () => (await fetch("/rpc/refresh_token", { method: "POST", credentials: "same-origin" })).status);
}

// act does what the user does (a click), then waits for the page's account
// of it (#notice, whose data-seq counts outcomes) and returns its text.
async function act(p, doIt) {
  const notice = p.locator("#notice");
  const seq = Number(await notice.getAttribute("data-seq"));
  await doIt();
  await p.waitForFunction((n) => Number(document.getElementById("notice").dataset.seq) > n, seq);
  // The page's view follows the outcome; wait until no form is busy.
  await p.waitForFunction(() => !document.querySelector("button:disabled, input:disabled"));
  return (await notice.textContent()).trim();
}

async function signedInAs(p, user) {
  await p.waitForFunction(() => document.getElementById("who").dataset.signedIn === "true");
  const who = (await p.locator("#who").textContent()).trim();
  expect(who === `Signed in as ${user}.`, `the page says ${JSON.stringify(who)}, want "Signed in as ${user}."`);
  expect(await p.getByRole("heading", { name: "Change password" }).isVisible(), "no Change password once signed in");
}

async function signedOut(p) {
  await p.waitForFunction(() => document.getElementById("who").dataset.signedIn === "false");
  expect(await p.getByRole("heading", { name: "Sign in", exact: true }).isVisible(), "no Sign in heading once signed out");
}

// checkEcho checks what the upstream received (its JSON echo).
function checkEcho(e, user) {
  expect(e && typeof e === "object", `the upstream's answer is not JSON: ${JSON.stringify(e)}`);
  const auth = e.authorization || "";
  expect(auth.startsWith("Bearer "), `the upstream got Authorization ${JSON.stringify(auth)}, want Bearer <jwt>`);
  const parts = auth.slice("Bearer ".length).split(".");
  expect(parts.length === 3, "the upstream's Bearer token is not a JWT");
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  expect(e.x_auth_user === user, `the upstream got X-Auth-User ${JSON.stringify(e.x_auth_user)}, want ${JSON.stringify(user)}`);
  if (cfg.role) {
    expect(e.x_auth_role === cfg.role && claims.role === cfg.role, `the upstream got X-Auth-Role ${JSON.stringify(e.x_auth_role)}, role claim ${JSON.stringify(claims.role)}, want ${JSON.stringify(cfg.role)}`);
  }
}

async function tokenCookies(context) {
  return (await context.cookies()).filter((c) => /^(__Host-)?(access|refresh)_token$/.test(c.name));
}

function findCookie(cookies, name, p) {
  const c = cookies.find((c) => c.name === name && c.path === p);
  expect(c && c.value, `no ${name} cookie at path ${p}; the browser has ${names(cookies) || "none"}`);
  return c;
}

function names(cookies) {
  return cookies.map((c) => `${c.name}@${c.path}`).join(", ");
}

// TOTP (RFC 6238): HMAC-SHA1, 30-second steps, 6 digits.
function timeStep(ms) {
  return Math.floor(ms / 1000 / 30);
}

function totp(secret, ms) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(timeStep(ms)));
  const h = createHmac("sha1", unbase32(secret)).update(counter).digest();
  const off = h[h.length - 1] & 0x0f;
  return String((h.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

// freshCode waits for a 30-second step after the last one used (a code is
// accepted once) and returns its code.
async function freshCode(m) {
  let now = Date.now();
  if (timeStep(now) <= m.lastStep) {
    const wait = (m.lastStep + 1) * 30_000 - now + 200;
    console.log(`     waiting ${Math.round(wait / 1000)} s for the next TOTP step`);
    await new Promise((r) => setTimeout(r, wait));
    now = Date.now();
  }
  m.lastStep = timeStep(now);
  return totp(m.secret, now);
}

function unbase32(s) {
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, "").toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`the key is not base32: ${JSON.stringify(s)}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function base32(buf) {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = undefined;
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
    const shown = await page.locator("#notice").textContent({ timeout: 1_000 }).catch(() => null);
    if (shown) console.error(`     the page says: ${shown.trim()}`);
  }
  if (foreign.length) console.error(`     requests to other origins (refused): ${foreign.join(", ")}`);
  await cleanup();
  process.exit(1);
}

function fail(msg) {
  console.error(`FAIL ${msg}`);
  process.exit(1);
}
