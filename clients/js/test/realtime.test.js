// The library against a real realtime server (support/server.js): connect,
// publish/ack, in-band refresh of 5-second tokens, reconnect after a 4001,
// a network loss and a server restart with nothing missed or repeated,
// and 4003 when the user is disabled.

import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";

import { Realtime, RealtimeError } from "../realtime.js";
import { RealtimeServer, RedisServer, Relay, waitFor } from "../support/server.js";

async function server(t, options) {
  const s = await RealtimeServer.create(options);
  t.after(() => s.dispose());
  await s.start();
  return s;
}

/** A client whose getToken runs the password grant and records why it was asked. */
function client(t, url, srv, extra = {}) {
  const asked = [];
  const rt = new Realtime(url, {
    WebSocket,
    minBackoff: 100,
    maxBackoff: 1000,
    async getToken(info) {
      asked.push(info.reason);
      return (await srv.passwordGrant()).access_token;
    },
    ...extra,
  });
  t.after(() => rt.close());
  return { rt, asked };
}

/** Collect a subscription's messages through onMessage. */
function collector() {
  const got = [];
  let wake = null;
  return {
    got,
    onMessage(m) { got.push(m); if (wake) wake(); },
    async until(pred, ms = 20000) {
      const end = Date.now() + ms;
      while (!pred(got)) {
        const left = end - Date.now();
        if (left <= 0) throw new Error("timed out; got " + JSON.stringify(got));
        await new Promise((ok) => { wake = ok; setTimeout(ok, left); });
      }
    },
  };
}

const texts = (got) => got.map((m) => m.data.text);

test("connect, subscribe, publish with ack, presence, async iteration, error codes", async (t) => {
  const srv = await server(t);
  const { rt } = client(t, srv.url, srv);
  const states = [];
  rt.on("state", (s) => states.push(s));
  const welcome = await rt.connect();
  assert.equal(welcome.type, "welcome");
  assert.equal(welcome.sub, "alice");
  assert.ok(welcome.expires_at > Date.now() / 1000);
  assert.deepEqual(states, ["connecting", "open"]);

  const c = collector();
  const sub = await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  const iter = sub[Symbol.asyncIterator]();
  const first = await rt.publish("chat:lobby", { text: "hello" });
  assert.deepEqual(first, { seq: 1 });
  assert.deepEqual(await rt.publish("chat:lobby", { text: "again" }), { seq: 2 });
  await c.until((g) => g.length === 2);
  assert.deepEqual(c.got[0], { channel: "chat:lobby", seq: 1, from: "alice", data: { text: "hello" } });
  assert.equal((await iter.next()).value.seq, 1);
  assert.equal((await iter.next()).value.data.text, "again");

  // A message from elsewhere (POST /api/publish by the app itself).
  await srv.publish("chat:lobby", { text: "from the api" });
  assert.equal((await iter.next()).value.from, srv.client.id);

  const members = await sub.presence();
  assert.deepEqual(members.map((m) => [m.sub, m.connections]), [["alice", 1]]);

  // Refusals carry the server's code; the connection stays up.
  await assert.rejects(rt.publish("admin:x", 1), (e) => e instanceof RealtimeError && e.code === "forbidden");
  await assert.rejects(rt.subscribe("admin:x"), (e) => e instanceof RealtimeError && e.code === "forbidden");
  await assert.rejects(rt.publish("", 1), (e) => e instanceof RealtimeError && typeof e.code === "string" && e.code !== "");
  assert.equal(rt.state, "open");

  // History: a second client asks for everything kept.
  const { rt: late } = client(t, srv.url, srv);
  const h = collector();
  await late.subscribe("chat:lobby", { since: 0, onMessage: h.onMessage });
  await h.until((g) => g.length === 3);
  assert.deepEqual(h.got.map((m) => m.seq), [1, 2, 3]);

  await sub.unsubscribe();
  assert.deepEqual(await iter.next(), { value: undefined, done: true });
  rt.close();
  assert.equal(rt.state, "closed");
  await assert.rejects(rt.publish("chat:lobby", 1), (e) => e.code === "closed");
});

test("5-second tokens are refreshed in-band before exp: one socket, no 4001", async (t) => {
  const srv = await server(t, { accessTtl: "5s", expiryWarning: "2s" });
  const { rt, asked } = client(t, srv.url, srv);
  const tokens = [];
  rt.on("token", (info) => tokens.push(info));
  const welcome = await rt.connect();
  const c = collector();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await waitFor(rt, "token", (info) => info.reason === "refresh" && rt.stats.refreshes >= 2, 20000);
  assert.equal(rt.stats.connects, 1);
  assert.equal(rt.lastClose, null, "the socket never closed");
  assert.ok(rt.expiresAt >= welcome.expires_at + 2, `deadline moved: ${welcome.expires_at} -> ${rt.expiresAt}`);
  // Past the first token's exp, the same socket still carries messages.
  assert.ok(Date.now() / 1000 > welcome.expires_at);
  await rt.publish("chat:lobby", { text: "still here" });
  await c.until((g) => texts(g).includes("still here"));
  assert.deepEqual(asked.slice(0, 3), ["connect", "expiring", "expiring"]);
  assert.deepEqual(tokens.map((x) => x.reason).slice(0, 3), ["connect", "refresh", "refresh"]);
});

test("after a 4001 it reconnects with a fresh token and replays what it missed", async (t) => {
  const srv = await server(t, { accessTtl: "4s", expiryWarning: "2s" });
  let refuse = true;
  const { rt, asked } = client(t, srv.url, srv);
  const getToken = rt.getToken;
  // The in-band refresh fails (the token service is down) until the
  // server closes with 4001 at exp: every attempt, since the client
  // retries while the token lasts.
  rt.getToken = async (info) => {
    if (info.reason === "expiring" && refuse) {
      asked.push("expiring(refused)");
      throw new Error("token service unavailable");
    }
    return getToken(info);
  };
  const c = collector();
  // Listen before connecting: on a loaded machine the 4-second token may
  // run out before the publish below is acknowledged.
  const closed = waitFor(rt, "close", (info) => info.code === 4001, 20000);
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await rt.publish("chat:lobby", { text: "one" });
  const [info] = await closed;
  refuse = false;
  assert.equal(info.willReconnect, true);
  // While it is away: a message it can only get by `since` replay.
  await srv.publish("chat:lobby", { text: "while expired" });
  await waitFor(rt, "state", (s) => s === "open");
  await rt.publish("chat:lobby", { text: "after" });
  await c.until((g) => texts(g).includes("after"));
  assert.deepEqual(texts(c.got), ["one", "while expired", "after"]);
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2, 3]);
  assert.ok(asked.includes("expired"), "the reconnect asked for a fresh token: " + asked);
  assert.equal(rt.stats.gaps, 0);
});

test("a network loss: backoff with jitter, then resubscribe with since, no gap, no duplicate", async (t) => {
  const srv = await server(t);
  const relay = await Relay.start(srv.port);
  t.after(() => relay.close());
  const { rt } = client(t, relay.url, srv, {
    // Tokens come straight from the server; only the socket goes through the relay.
  });
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await rt.publish("chat:lobby", { text: "before" });
  await c.until((g) => g.length === 1);

  const delays = [];
  rt.on("state", (s, info) => { if (s === "reconnecting") delays.push(info.delay); });
  relay.refuse();
  relay.cut();
  await waitFor(rt, "close", (info) => info.code === 1006 || info.code === 1005);
  await srv.publish("chat:lobby", { text: "during the outage 1" });
  await srv.publish("chat:lobby", { text: "during the outage 2" });
  // Let a few attempts fail, so the backoff grows.
  await waitFor(rt, "state", (s, info) => s === "reconnecting" && info.attempt >= 4, 20000);
  relay.accept();
  await waitFor(rt, "state", (s) => s === "open", 20000);
  await rt.publish("chat:lobby", { text: "after" });
  await c.until((g) => texts(g).includes("after"));
  assert.deepEqual(texts(c.got), ["before", "during the outage 1", "during the outage 2", "after"]);
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2, 3, 4]);
  assert.equal(rt.stats.gaps, 0);
  assert.equal(rt.stats.connects, 2);
  // Exponential with jitter: later waits are longer than the first (100 ms base).
  assert.ok(delays.length >= 4, "delays: " + delays);
  assert.ok(delays[3] > delays[0], "delays: " + delays);
  assert.ok(delays.every((d) => d >= 0 && d <= 1500), "delays: " + delays);
});

test("a server restart: the client comes back by itself and nothing published meanwhile is lost (Redis)", async (t) => {
  const redis = await RedisServer.start();
  t.after(() => redis.stop());
  const a = await server(t, { broker: redis.url });
  // A second node of the same cluster takes the publishes while `a` is down.
  const b = await RealtimeServer.create({ broker: redis.url, share: a });
  t.after(() => b.dispose());
  await b.start();
  const { rt } = client(t, a.url, a);
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await rt.publish("chat:lobby", { text: "before" });
  await c.until((g) => g.length === 1);

  const going = waitFor(rt, "close", (info) => info.code === 1001);
  await a.stop();
  await going;
  await b.publish("chat:lobby", { text: "while a was down" });
  await a.start(); // same port, same state dir
  await waitFor(rt, "state", (s) => s === "open", 30000);
  await rt.publish("chat:lobby", { text: "after the restart" });
  await c.until((g) => texts(g).includes("after the restart"));
  assert.deepEqual(texts(c.got), ["before", "while a was down", "after the restart"]);
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2, 3]);
  assert.equal(rt.stats.gaps, 0);
});

test("a restart of a server without a broker: the lost history is reported, new messages are not taken for duplicates", async (t) => {
  const srv = await server(t);
  const { rt } = client(t, srv.url, srv);
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  for (const text of ["one", "two", "three"]) await rt.publish("chat:lobby", { text });
  await c.until((g) => g.length === 3);
  const gap = waitFor(rt, "gap", (info) => info.recovered === false, 30000);
  await srv.stop();
  await srv.start();
  await gap;
  // The new process numbers from 1 again: seq 1 is new, not a replay.
  assert.deepEqual(await rt.publish("chat:lobby", { text: "new one" }), { seq: 1 });
  await c.until((g) => texts(g).includes("new one"));
  assert.deepEqual(texts(c.got), ["one", "two", "three", "new one"]);
});

test("4003 when the user is disabled: the client stops and says why", async (t) => {
  const srv = await server(t);
  const { rt, asked } = client(t, srv.url, srv);
  await rt.connect();
  const sub = await rt.subscribe("chat:lobby");
  const iter = sub[Symbol.asyncIterator]();
  const pending = iter.next();
  const closed = waitFor(rt, "close", (info) => !info.willReconnect);
  srv.cli("user", "disable", "alice"); // signals the running server to reload
  const [info] = await closed;
  assert.equal(info.code, 4003);
  assert.equal(rt.state, "closed");
  assert.equal(rt.closeReason.code, 4003);
  assert.equal(rt.closeReason.error.code, "access_withdrawn");
  assert.match(rt.closeReason.error.message, /withdrew access \(4003/);
  await assert.rejects(pending, (e) => e.code === "access_withdrawn" && e.closeCode === 4003);
  await assert.rejects(rt.publish("chat:lobby", 1), (e) => e.code === "access_withdrawn");
  await assert.rejects(rt.connect(), (e) => e.code === "access_withdrawn");
  assert.deepEqual(asked, ["connect"], "no reconnect after 4003");
});

test("a refresh the server refuses (another sub): a new socket with a fresh token, nothing lost", async (t) => {
  const srv = await server(t, { accessTtl: "5s", expiryWarning: "3s" });
  let swapped = false;
  const { rt, asked } = client(t, srv.url, srv);
  const getToken = rt.getToken;
  rt.getToken = async (info) => {
    if (info.reason === "expiring" && !swapped) {
      swapped = true;
      return srv.appToken(); // valid, but for another sub: the server must refuse it in-band
    }
    return getToken(info);
  };
  const errors = [];
  rt.on("error", (e) => errors.push(e.code));
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await waitFor(rt, "state", (s) => s === "open" && rt.stats.connects === 2, 20000);
  await rt.publish("chat:lobby", { text: "on the new socket" });
  await c.until((g) => texts(g).includes("on the new socket"));
  assert.ok(errors.length >= 1, "the refusal was reported: " + errors);
  assert.ok(asked.includes("rejected"), "asked: " + asked);
  assert.equal(rt.lastClose.code, 4000);
});

test("getToken failing for good stops the client with that reason; close() stops it too", async () => {
  const rt = new Realtime("ws://127.0.0.1:9/ws", {
    WebSocket,
    getToken: async () => { throw Object.assign(new Error("refresh token revoked"), { final: true }); },
  });
  const states = [];
  rt.on("state", (s, info) => states.push([s, info.error && info.error.code]));
  await assert.rejects(rt.connect(), (e) => e.code === "token_unavailable" && e.final && /refresh token revoked/.test(e.message));
  assert.deepEqual(states, [["connecting", undefined], ["closed", "token_unavailable"]]);

  let calls = 0;
  const other = new Realtime("ws://127.0.0.1:9/ws", { WebSocket, getToken: () => { calls += 1; return "t"; }, minBackoff: 10 });
  const pending = other.connect();
  other.close();
  await assert.rejects(pending, (e) => e.code === "closed");
  assert.equal(other.state, "closed");
  assert.ok(calls <= 1);
});

test("a silent dead connection (no pong) is noticed and replaced, with recovery", async (t) => {
  const srv = await server(t);
  const relay = await Relay.start(srv.port);
  t.after(() => relay.close());
  const { rt } = client(t, relay.url, srv, { pingInterval: 300, pingTimeout: 500 });
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await rt.publish("chat:lobby", { text: "before" });
  await c.until((g) => g.length === 1);
  relay.freeze();
  await srv.publish("chat:lobby", { text: "sent into the void" });
  const [info] = await waitFor(rt, "close", () => true, 10000);
  assert.equal(info.reason, "no pong");
  assert.equal(info.willReconnect, true);
  await waitFor(rt, "state", (s) => s === "open", 20000);
  await c.until((g) => texts(g).includes("sent into the void"));
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2]);
});
