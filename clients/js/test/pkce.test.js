// PkceClient without a browser: WebCrypto S256, the authorize URL, the
// callback's checks, the code exchange and the refresh, with storage the
// app chooses.  (The whole flow through the real login and consent pages
// runs in Chromium: tests/api/test_demo_browser.py.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, webcrypto } from "node:crypto";

import { PkceClient, AuthError, createPkcePair } from "../pkce.js";

if (!globalThis.crypto) globalThis.crypto = webcrypto; // Node 18

class MemoryStorage {
  constructor() { this.map = new Map(); }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
}

function jwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${enc({ alg: "none" })}.${enc(claims)}.sig`;
}

/** A fake token endpoint: records each form it receives. */
function fakeServer(answers) {
  const seen = [];
  return {
    seen,
    async fetch(url, init) {
      const form = Object.fromEntries(new URLSearchParams(init.body || ""));
      seen.push({ url, form });
      const [status, body] = answers.shift();
      return { ok: status < 400, status, json: async () => body };
    },
  };
}

function setup(answers = []) {
  const server = fakeServer(answers);
  const storage = new MemoryStorage();
  const flowStorage = new MemoryStorage();
  const navigated = [];
  const pkce = new PkceClient({
    server: "https://rt.example", clientId: "spa", redirectUri: "https://app.example/cb", scope: "chat:read offline_access",
    storage, flowStorage, fetch: server.fetch, navigate: (u) => navigated.push(u),
  });
  return { pkce, server, storage, flowStorage, navigated };
}

test("createPkcePair: a 43-character verifier and its S256 challenge", async () => {
  const { verifier, challenge } = await createPkcePair();
  assert.match(verifier, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(challenge, createHash("sha256").update(verifier).digest("base64url"));
  assert.notEqual((await createPkcePair()).verifier, verifier);
});

test("login, callback, code exchange with the verifier, refresh into the chosen storage", async () => {
  const exp = Math.floor(Date.now() / 1000) + 300;
  const { pkce, server, storage, navigated } = setup([
    [200, { access_token: jwt({ sub: "alice", exp }), token_type: "Bearer", expires_in: 300, refresh_token: "rt-1" }],
    [200, { access_token: jwt({ sub: "alice", exp: exp + 1 }), token_type: "Bearer", expires_in: 300, refresh_token: "rt-2" }],
  ]);
  const url = new URL(await pkce.login());
  assert.equal(navigated[0], url.toString());
  assert.equal(url.origin + url.pathname, "https://rt.example/oauth2/authorize");
  const q = url.searchParams;
  assert.equal(q.get("response_type"), "code");
  assert.equal(q.get("code_challenge_method"), "S256");
  assert.equal(q.get("client_id"), "spa");
  assert.equal(q.get("redirect_uri"), "https://app.example/cb");

  const body = await pkce.handleCallback(`https://app.example/cb?code=c0de&state=${q.get("state")}`);
  assert.equal(body.refresh_token, "rt-1");
  const form = server.seen[0].form;
  assert.equal(server.seen[0].url, "https://rt.example/oauth2/token");
  assert.equal(form.grant_type, "authorization_code");
  assert.equal(form.code, "c0de");
  assert.equal(createHash("sha256").update(form.code_verifier).digest("base64url"), q.get("code_challenge"));
  assert.equal(storage.getItem("realtime.refresh"), "rt-1");
  assert.equal(pkce.sub, "alice");

  // A token with time left is reused on connect; a refresh is asked for by reason.
  assert.equal(await pkce.getToken({ reason: "connect" }), body.access_token);
  assert.equal(server.seen.length, 1);
  const fresh = await pkce.getToken({ reason: "expiring" });
  assert.notEqual(fresh, body.access_token);
  assert.deepEqual(server.seen[1].form, { client_id: "spa", grant_type: "refresh_token", refresh_token: "rt-1" });
  assert.equal(storage.getItem("realtime.refresh"), "rt-2", "the rotated refresh token replaces the old one");
});

test("the callback is refused when the state differs, on an error, or with no flow; single use", async () => {
  const { pkce } = setup();
  const state = new URL(await pkce.login()).searchParams.get("state");
  await assert.rejects(pkce.handleCallback(`https://app.example/cb?code=x&state=forged`),
    (e) => e instanceof AuthError && e.error === "state_mismatch" && e.final);
  // The flow was used up by the refused answer: the real one cannot follow.
  await assert.rejects(pkce.handleCallback(`https://app.example/cb?code=x&state=${state}`), (e) => e.error === "no_flow");

  const state2 = new URL(await pkce.login()).searchParams.get("state");
  await assert.rejects(pkce.handleCallback(`https://app.example/cb?error=access_denied&state=${state2}`),
    (e) => e.error === "access_denied");
});

test("a refused refresh is final and forgets the refresh token; a 5xx is not", async () => {
  const { pkce, storage } = setup([
    [503, { error: "temporarily_unavailable" }],
    [400, { error: "invalid_grant", error_description: "refresh token revoked" }],
  ]);
  storage.setItem("realtime.refresh", "rt-old");
  await assert.rejects(pkce.getToken({ reason: "expired" }), (e) => e.error === "temporarily_unavailable" && !e.final);
  assert.equal(storage.getItem("realtime.refresh"), "rt-old");
  await assert.rejects(pkce.getToken({ reason: "expired" }), (e) => e.error === "invalid_grant" && e.final);
  assert.equal(storage.getItem("realtime.refresh"), null);
  await assert.rejects(pkce.getToken(), (e) => e.error === "login_required" && e.final);
});
