// The SSE transport (SPEC §13) and the fallback rule against a real
// realtime server (support/server.js): the same client API over
// EventSource with a ticket.  Node 20 has no EventSource, so the tests pass
// support/eventsource.js (a small WHATWG-style one, never retrying by itself).

import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";

import { Realtime, RealtimeError, sseTransport, webSocketTransport, fallbackTransport } from "../realtime.js";
import { EventSource } from "../support/eventsource.js";
import { RealtimeServer, RedisServer, Relay, waitFor } from "../support/server.js";

async function server(t, options) {
  const s = await RealtimeServer.create(options);
  t.after(() => s.dispose());
  await s.start();
  return s;
}

/** An SSE client whose getToken runs the password grant; `tokens` keeps what it handed out. */
function client(t, url, srv, extra = {}) {
  const asked = [];
  const tokens = [];
  const rt = new Realtime(url, {
    transport: sseTransport({ EventSource }),
    minBackoff: 100,
    maxBackoff: 1000,
    async getToken(info) {
      asked.push(info.reason);
      const token = (await srv.passwordGrant()).access_token;
      tokens.push(token);
      return token;
    },
    ...extra,
  });
  t.after(() => rt.close());
  return { rt, asked, tokens };
}

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


test("SSE: connect, subscribe, publish with ack, presence, refusals with the WebSocket's codes", async (t) => {
  const srv = await server(t);
  const { rt } = client(t, srv.url, srv);
  const welcome = await rt.connect();
  assert.equal(welcome.type, "welcome");
  assert.equal(welcome.sub, "alice");
  assert.equal(typeof welcome.stream, "string", "a stream's welcome names the stream");

  const c = collector();
  const sub = await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  assert.deepEqual(await rt.publish("chat:lobby", { text: "hello" }), { seq: 1 });
  await srv.publish("chat:lobby", { text: "from the api" });
  await c.until((g) => g.length === 2);
  assert.deepEqual(c.got[0], { channel: "chat:lobby", seq: 1, from: "alice", data: { text: "hello" } });
  assert.equal(c.got[1].from, srv.client.id);

  assert.deepEqual((await sub.presence()).map((m) => [m.sub, m.connections]), [["alice", 1]]);

  await assert.rejects(rt.publish("admin:x", 1), (e) => e instanceof RealtimeError && e.code === "forbidden");
  await assert.rejects(rt.subscribe("admin:x"), (e) => e instanceof RealtimeError && e.code === "forbidden");
  assert.equal(rt.state, "open");
  // The refused channel left the stream as it was: still delivering.
  await rt.publish("chat:lobby", { text: "still" });
  await c.until((g) => texts(g).includes("still"));

  // A second channel reopens the stream with both, and history by since.
  const d = collector();
  await rt.subscribe("chat:other", { since: 0, onMessage: d.onMessage });
  await srv.publish("chat:other", { text: "other" });
  await rt.publish("chat:lobby", { text: "lobby again" });
  await d.until((g) => g.length === 1);
  await c.until((g) => texts(g).includes("lobby again"));
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2, 3, 4], "nothing repeated across the reopen");

  // Unsubscribe is answered at once (no request timeout), and the lobby's
  // messages stop while chat:other's still come.
  const t0 = Date.now();
  await sub.unsubscribe();
  assert.ok(Date.now() - t0 < 2000, "unsubscribe took " + (Date.now() - t0) + " ms");
  await rt.publish("chat:lobby", { text: "not for us" });
  await srv.publish("chat:other", { text: "other 2" });
  await d.until((g) => g.length === 2);
  assert.ok(!texts(c.got).includes("not for us"));
  rt.close();
  assert.equal(rt.state, "closed");
  assert.equal(rt.stats.connects, 1, "subscribes reopen the stream, not the connection");
});

test("SSE: 5-second tokens are refreshed through the stream's refresh endpoint: one connection, no 4001", async (t) => {
  const srv = await server(t, { accessTtl: "5s", expiryWarning: "2s" });
  const { rt, asked } = client(t, srv.url, srv);
  const welcome = await rt.connect();
  const c = collector();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await waitFor(rt, "token", (info) => info.reason === "refresh" && rt.stats.refreshes >= 2, 20000);
  assert.equal(rt.stats.connects, 1);
  assert.equal(rt.lastClose, null, "the stream never closed");
  assert.ok(rt.expiresAt >= welcome.expires_at + 2, `deadline moved: ${welcome.expires_at} -> ${rt.expiresAt}`);
  assert.ok(Date.now() / 1000 > welcome.expires_at, "past the first token's exp");
  await srv.publish("chat:lobby", { text: "still here" });
  await c.until((g) => texts(g).includes("still here"));
  assert.deepEqual(asked.slice(0, 3), ["connect", "expiring", "expiring"]);
});

test("SSE: a network cut: a new stream with a new ticket and last_event_id, no gap, no duplicate", async (t) => {
  const srv = await server(t);
  const relay = await Relay.start(srv.port);
  t.after(() => relay.close());
  const { rt } = client(t, relay.url, srv);
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await rt.publish("chat:lobby", { text: "before" });
  await c.until((g) => g.length === 1);

  relay.refuse();
  relay.cut();
  await waitFor(rt, "close", (info) => info.code === 1006);
  await srv.publish("chat:lobby", { text: "during the outage 1" });
  await srv.publish("chat:lobby", { text: "during the outage 2" });
  await waitFor(rt, "state", (s, info) => s === "reconnecting" && info.attempt >= 2, 20000);
  relay.accept();
  await waitFor(rt, "state", (s) => s === "open", 20000);
  await rt.publish("chat:lobby", { text: "after" });
  await c.until((g) => texts(g).includes("after"));
  assert.deepEqual(texts(c.got), ["before", "during the outage 1", "during the outage 2", "after"]);
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2, 3, 4]);
  assert.equal(rt.stats.gaps, 0);
  assert.equal(rt.stats.connects, 2);
});

test("SSE: a server restart: the client comes back by itself and nothing published meanwhile is lost (Redis)", async (t) => {
  const redis = await RedisServer.start();
  t.after(() => redis.stop());
  const a = await server(t, { broker: redis.url });
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
  await going; // event: close {"code":1001}, as a WebSocket's close frame
  await b.publish("chat:lobby", { text: "while a was down" });
  await a.start();
  await waitFor(rt, "state", (s) => s === "open", 30000);
  await rt.publish("chat:lobby", { text: "after the restart" });
  await c.until((g) => texts(g).includes("after the restart"));
  assert.deepEqual(texts(c.got), ["before", "while a was down", "after the restart"]);
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2, 3]);
  assert.equal(rt.stats.gaps, 0);
});

test("SSE: 4003 when the user is disabled: the client stops and says why", async (t) => {
  const srv = await server(t);
  const { rt, asked } = client(t, srv.url, srv);
  await rt.connect();
  await rt.subscribe("chat:lobby");
  const closed = waitFor(rt, "close", (info) => !info.willReconnect);
  srv.cli("user", "disable", "alice");
  const [info] = await closed;
  assert.equal(info.code, 4003);
  assert.equal(rt.state, "closed");
  assert.equal(rt.closeReason.error.code, "access_withdrawn");
  await assert.rejects(rt.publish("chat:lobby", 1), (e) => e.code === "access_withdrawn");
  assert.deepEqual(asked, ["connect"], "no reconnect after 4003");
});

test("SSE: 4003 when the stream's token is revoked (RFC 7009)", async (t) => {
  const srv = await server(t);
  const { rt, tokens } = client(t, srv.url, srv);
  await rt.connect();
  await rt.subscribe("chat:lobby");
  const closed = waitFor(rt, "close", (info) => !info.willReconnect);
  const resp = await fetch(srv.url + "/oauth2/revoke", {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: "Basic " + Buffer.from(`${srv.client.id}:${srv.client.secret}`).toString("base64"),
    },
    body: new URLSearchParams({ token: tokens[tokens.length - 1], token_type_hint: "access_token" }).toString(),
  });
  assert.equal(resp.status, 200);
  const [info] = await closed;
  assert.equal(info.code, 4003);
  assert.equal(rt.closeReason.error.code, "access_withdrawn");
});

test("SSE: a refresh the server refuses (another sub): a new stream with a fresh token, nothing lost", async (t) => {
  const srv = await server(t, { accessTtl: "5s", expiryWarning: "3s" });
  let swapped = false;
  const { rt, asked } = client(t, srv.url, srv);
  const getToken = rt.getToken;
  rt.getToken = async (info) => {
    if (info.reason === "expiring" && !swapped) {
      swapped = true;
      return srv.appToken(); // valid, but another sub: the refresh endpoint answers 403
    }
    return getToken(info);
  };
  const errors = [];
  rt.on("error", (e) => errors.push(e.code));
  const c = collector();
  await rt.connect();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  await rt.publish("chat:lobby", { text: "on the first stream" });
  await waitFor(rt, "state", (s) => s === "open" && rt.stats.connects === 2, 20000);
  await rt.publish("chat:lobby", { text: "on the new stream" });
  await c.until((g) => texts(g).includes("on the new stream"));
  assert.deepEqual(c.got.map((m) => m.seq), [1, 2]);
  assert.ok(errors.includes("invalid_token"), "the refusal was reported: " + errors);
  assert.ok(asked.includes("rejected"), "asked: " + asked);
  assert.equal(rt.lastClose.code, 4000);
});

test("fallback: WebSocket upgrades refused by a proxy -> after 2 failures the client is on SSE and delivers", async (t) => {
  const srv = await server(t);
  const relay = await Relay.start(srv.port);
  t.after(() => relay.close());
  relay.blockUpgrades();
  const switched = [];
  const transport = fallbackTransport([webSocketTransport({ WebSocket }), sseTransport({ EventSource })],
    { after: 2, onSwitch: (kind) => switched.push(kind) });
  const { rt } = client(t, relay.url, srv, { transport });
  const closes = [];
  rt.on("close", (info) => closes.push(info.code));
  const welcome = await rt.connect();
  assert.equal(typeof welcome.stream, "string", "the welcome came from an SSE stream");
  assert.equal(transport.current, "sse");
  assert.deepEqual(switched, ["sse"]);
  assert.equal(relay.upgradesRefused, 2, "two WebSocket handshakes were refused first");
  assert.equal(closes.length, 2);

  const c = collector();
  await rt.subscribe("chat:lobby", { onMessage: c.onMessage });
  assert.deepEqual(await rt.publish("chat:lobby", { text: "over sse" }), { seq: 1 });
  await srv.publish("chat:lobby", { text: "from the api" });
  await c.until((g) => g.length === 2);
  assert.deepEqual(texts(c.got), ["over sse", "from the api"]);

  // A later network loss stays on SSE (no WebSocket attempt again).
  relay.cut();
  await waitFor(rt, "state", (s) => s === "open" && rt.stats.connects === 2, 20000);
  assert.equal(relay.upgradesRefused, 2);
});

test("fallback: the `transports` option; where there is no WebSocket, SSE at once", async (t) => {
  const srv = await server(t);
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket; // a runtime without WebSocket (Node 20 has none anyway)
  t.after(() => { if (saved) globalThis.WebSocket = saved; });
  const ws = webSocketTransport();
  assert.equal(ws.available, false);
  assert.throws(() => new Realtime(srv.url, { getToken: () => "x" }), /no WebSocket here/);
  const { rt, asked } = client(t, srv.url, srv, { transport: undefined, transports: [ws, sseTransport({ EventSource })] });
  const welcome = await rt.connect();
  assert.equal(typeof welcome.stream, "string");
  assert.deepEqual(asked, ["connect"], "no failed attempt first");
  assert.equal(rt.lastClose, null);
  assert.equal(rt.transport.current, "sse");
});
