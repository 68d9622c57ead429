// An independent verifier for authd's tokens: panva's `jose` (npm), the
// library many Node.js services use, reading authd's published keys the way
// they do. Run by deploy/jose_test.go; by hand, against a running authd with
// AUTHD_SIGNING_KEYS_DIR, AUTHD_JWT_ISS and AUTHD_JWT_AUD set:
//
//   node deploy/e2e/jose-verify.mjs --base-url=http://127.0.0.1:3001 \
//     --token="$ACCESS_TOKEN" --alg=ES256 \
//     --issuer=https://authd.test --audience=postgrest
//
// It fetches <base>/.well-known/openid-configuration and checks its issuer
// and jwks_uri, then verifies the token with
//   jwtVerify(token, createRemoteJWKSet(new URL(base + "/.well-known/jwks.json")),
//             { issuer, audience, algorithms: [alg] })
// (the JWKS is fetched from the base URL: the issuer need not resolve here).
// Every JWKS it fetches must hold public keys only.
//
// Options (--name=value, or the environment variable):
//   --base-url     JOSE_BASE_URL   authd, e.g. http://127.0.0.1:3001 (required)
//   --token        JOSE_TOKEN      the access token (required unless --stdin)
//   --alg          JOSE_ALG        the one algorithm allowed (required)
//   --issuer       JOSE_ISSUER     the iss required (required)
//   --audience     JOSE_AUDIENCE   the aud required (required)
//   --cooldown-ms  JOSE_COOLDOWN_MS  createRemoteJWKSet's cooldownDuration:
//                  how soon a token with an unknown kid may refetch the JWKS
//                  (default jose's, 30 s)
//   --stdin        verify each line of standard input as a token, with one
//                  key set for the whole run (as a long-running service
//                  would), answering each with one JSON line:
//                  {"ok":true,"payload":…,"header":…,"jwks_fetches":N} or
//                  {"ok":false,"code":…,"message":…,"jwks_fetches":N}
//
// Exit status (without --stdin): 0 when the token verifies, its payload
// printed as JSON on standard output; 1 when jose rejects it, with
// "jose-verify: rejected: <jose error code>: <message>" on standard error;
// 2 for anything else (bad options, authd unreachable, a discovery document
// or key set that is wrong).

import { webcrypto } from "node:crypto";
import { createInterface } from "node:readline";

// jose 6 uses the Web Crypto API as the global `crypto`, which Node.js has
// from version 19 on. Node.js 18 (Debian bookworm's nodejs package) has the
// same API only as node:crypto's webcrypto: give it the global a Node 18
// service using jose sets up the same way. jose is imported after this (a
// static import would be evaluated first).
globalThis.crypto ??= webcrypto;
const { createRemoteJWKSet, customFetch, decodeProtectedHeader, errors, jwtVerify } = await import("jose");

const name = "jose-verify";
const overallTimeoutMs = 15_000; // single-token mode; every step takes milliseconds

function option(flag, env, fallback) {
  const prefix = `--${flag}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(prefix));
  if (arg !== undefined) return arg.slice(prefix.length);
  const v = process.env[env];
  return v !== undefined && v !== "" ? v : fallback;
}

// setupError is a failure that is not jose rejecting the token (exit 2).
class SetupError extends Error {}

function die(status, msg) {
  process.stderr.write(`${name}: ${msg}\n`);
  process.exit(status);
}

const cfg = {
  base: option("base-url", "JOSE_BASE_URL"),
  token: option("token", "JOSE_TOKEN"),
  alg: option("alg", "JOSE_ALG"),
  issuer: option("issuer", "JOSE_ISSUER"),
  audience: option("audience", "JOSE_AUDIENCE"),
  cooldownMs: option("cooldown-ms", "JOSE_COOLDOWN_MS"),
  stdin: process.argv.slice(2).includes("--stdin"),
};
for (const [k, v] of Object.entries({ "base-url": cfg.base, alg: cfg.alg, issuer: cfg.issuer, audience: cfg.audience })) {
  if (!v) die(2, `missing --${k} (see the top of deploy/e2e/jose-verify.mjs)`);
}
if (!cfg.stdin && !cfg.token) die(2, "missing --token (or --stdin)");
const base = cfg.base.replace(/\/+$/, "");
const jwksOptions = {};
if (cfg.cooldownMs !== undefined) {
  const ms = Number(cfg.cooldownMs);
  if (!Number.isInteger(ms) || ms < 0) die(2, `--cooldown-ms=${cfg.cooldownMs}: want a non-negative integer`);
  jwksOptions.cooldownDuration = ms;
}

// Members of a JWK that only a private or symmetric key has (RFC 7518 §6).
const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

// jose fetches the key set through this: it counts the fetches (so that a
// caller sees jose refetch on a new kid) and refuses a set with private
// key material.
let jwksFetches = 0;
jwksOptions[customFetch] = async (url, init) => {
  jwksFetches++;
  const res = await fetch(url, init);
  if (res.status === 200) {
    let set;
    try {
      set = await res.clone().json();
    } catch (err) {
      throw new SetupError(`${url}: not JSON: ${err.message}`);
    }
    for (const jwk of set.keys ?? []) {
      const leaked = privateMembers.filter((m) => m in jwk);
      if (leaked.length) throw new SetupError(`${url}: key ${jwk.kid} has private members ${leaked.join(", ")}`);
      if (!jwk.kid) throw new SetupError(`${url}: a key without kid`);
    }
  }
  return res;
};

// The discovery document must point verifiers at the issuer's JWKS and list
// the algorithm the token is signed with.
async function checkDiscovery(tokenAlg) {
  const url = `${base}/.well-known/openid-configuration`;
  let res;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  } catch (err) {
    throw new SetupError(`GET ${url}: ${err.message}`);
  }
  if (res.status !== 200) throw new SetupError(`GET ${url}: ${res.status} ${res.statusText}`);
  const doc = await res.json().catch((err) => {
    throw new SetupError(`GET ${url}: not JSON: ${err.message}`);
  });
  if (doc.issuer !== cfg.issuer) throw new SetupError(`${url}: issuer ${JSON.stringify(doc.issuer)}, want ${JSON.stringify(cfg.issuer)}`);
  const wantJWKS = `${cfg.issuer.replace(/\/+$/, "")}/.well-known/jwks.json`;
  if (doc.jwks_uri !== wantJWKS) throw new SetupError(`${url}: jwks_uri ${JSON.stringify(doc.jwks_uri)}, want ${JSON.stringify(wantJWKS)}`);
  const algs = doc.id_token_signing_alg_values_supported;
  if (tokenAlg !== undefined && !(Array.isArray(algs) && algs.includes(tokenAlg))) {
    throw new SetupError(`${url}: id_token_signing_alg_values_supported ${JSON.stringify(algs)} lacks the token's ${tokenAlg}`);
  }
  return doc;
}

const JWKS = createRemoteJWKSet(new URL(base + "/.well-known/jwks.json"), jwksOptions);

async function verify(token) {
  const { payload, protectedHeader } = await jwtVerify(token, JWKS, {
    issuer: cfg.issuer,
    audience: cfg.audience,
    algorithms: [cfg.alg],
  });
  return { payload, header: protectedHeader };
}

// rejection describes jose refusing a token; anything else is rethrown.
function rejection(err) {
  if (err instanceof SetupError || err?.cause instanceof SetupError) throw err.cause ?? err;
  if (err instanceof errors.JOSEError && err.code !== "ERR_JWKS_TIMEOUT" && !/JSON Web Key Set HTTP response/.test(err.message)) {
    return { code: err.code, message: err.message };
  }
  throw err;
}

function tokenAlg(token) {
  try {
    return decodeProtectedHeader(token).alg;
  } catch {
    return undefined; // jwtVerify says what is wrong with it
  }
}

async function single() {
  await checkDiscovery(tokenAlg(cfg.token));
  let result;
  try {
    result = await verify(cfg.token);
  } catch (err) {
    const r = rejection(err);
    die(1, `rejected: ${r.code}: ${r.message}`);
  }
  process.stderr.write(`${name}: ok: ${result.header.alg} kid=${result.header.kid} (JWKS fetched ${jwksFetches}×)\n`);
  process.stdout.write(JSON.stringify(result.payload) + "\n");
}

async function lines() {
  await checkDiscovery(undefined);
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    const token = line.trim();
    if (!token) continue;
    let out;
    try {
      out = { ok: true, ...(await verify(token)) };
    } catch (err) {
      out = { ok: false, ...rejection(err) };
    }
    out.jwks_fetches = jwksFetches;
    process.stdout.write(JSON.stringify(out) + "\n");
  }
}

if (!cfg.stdin) {
  setTimeout(() => die(2, `no answer within ${overallTimeoutMs} ms`), overallTimeoutMs).unref();
}
try {
  await (cfg.stdin ? lines() : single());
} catch (err) {
  die(2, err instanceof SetupError ? err.message : `${err?.code ?? err?.name ?? "error"}: ${err?.message ?? err}`);
}
