// Transports: how a Realtime client reaches the server (SPEC §4).
//
// A transport is a function `open({url, token, protocols})` that returns a
// connection object with `send(text)` and `close(code, reason)`, and that
// calls the handlers the client sets on it: `onopen()`, `onmessage(text)`,
// `onclose({code, reason, wasClean})`.  The client knows nothing else about
// the wire: the EventSource transport below (SPEC §13: a ticket, a GET
// stream for server messages and HTTP requests for client messages) speaks
// the same messages, and fallbackTransport moves from one to the next.

export const SUBPROTOCOL = "realtime.v1";

/**
 * The WebSocket transport: the token travels as the `bearer.<token>`
 * subprotocol beside `realtime.v1` (browsers cannot set headers), which
 * the server never echoes.
 *
 * @param {{WebSocket?: any}} [options] the constructor to use where there
 *   is no global one (Node 20: the `ws` package).
 */
export function webSocketTransport(options = {}) {
  const Ctor = options.WebSocket || globalThis.WebSocket;
  if (typeof Ctor !== "function") {
    // Not a throw here: a fallback list skips it (see fallbackTransport);
    // the Realtime constructor throws this message when it is the only one.
    return unavailable("websocket", "no WebSocket here: pass one, e.g. new Realtime(url, {WebSocket: (await import('ws')).WebSocket})");
  }
  function open({ url, token }) {
    const ws = new Ctor(url, [SUBPROTOCOL, "bearer." + token]);
    const conn = {
      onopen: null, onmessage: null, onclose: null,
      send(text) { ws.send(text); },
      close(code, reason) {
        try { ws.close(code, reason); } catch (e) { ws.close(); }
      },
    };
    let closed = false;
    ws.onopen = () => { if (conn.onopen) conn.onopen(); };
    ws.onmessage = (ev) => {
      // Text frames only (SPEC §4); `ws` hands binary frames over as a Buffer.
      if (typeof ev.data === "string" && conn.onmessage) conn.onmessage(ev.data);
    };
    ws.onerror = () => {}; // onclose follows and says what happened
    ws.onclose = (ev) => {
      if (closed) return;
      closed = true;
      if (conn.onclose) conn.onclose({ code: ev.code, reason: ev.reason || "", wasClean: !!ev.wasClean });
    };
    return conn;
  }
  open.kind = "websocket";
  open.available = true;
  return open;
}

// ------------------------------------------------------------------ SSE

/** `ws[s]://host/...` or `http[s]://host/...` -> `http[s]://host`. */
function httpOrigin(url) {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  return u.origin;
}

/** A stream's event id (`CHANNEL=SEQ,...`, names percent-encoded) -> Map. */
export function decodePositions(text) {
  const out = new Map();
  if (!text) return out;
  for (const part of text.split(",")) {
    const at = part.lastIndexOf("=");
    if (at <= 0) continue;
    const seq = Number(part.slice(at + 1));
    if (Number.isInteger(seq)) out.set(decodeURIComponent(part.slice(0, at)), seq);
  }
  return out;
}

/** Map -> `CHANNEL=SEQ,...` for `last_event_id`. */
export function encodePositions(positions) {
  return [...positions].map(([c, s]) => encodeURIComponent(c) + "=" + s).join(",");
}

/**
 * The Server-Sent Events transport (SPEC §13), the same messages as the
 * WebSocket one behind the same seam:
 *
 * - open: `POST /api/ticket` with the token, then
 *   `new EventSource(/sse?ticket=T&channel=...&last_event_id=...)`; the
 *   stream's `welcome` is handed to the client as the socket's would be;
 * - `subscribe` / `unsubscribe`: the channels of a stream are fixed in its
 *   URL, so the stream is reopened (new ticket) with the new list and
 *   `last_event_id` = the positions seen so far (plus `since` of the new
 *   channel); the old stream is closed once the new one has its welcome,
 *   so nothing falls between them (the client drops overlaps by seq).
 *   The `subscribe` is answered after the new stream's welcome (with
 *   `recovered` from its `recovered` event); when the new stream is
 *   refused, a `GET /sse` for the new channel alone with the bearer header
 *   finds the server's code (an EventSource cannot read a status);
 * - `publish` -> `POST /api/publish` (`{seq}` -> ack), `presence` ->
 *   `GET /api/presence`, `refresh` -> `POST /api/streams/ID/refresh`
 *   (-> `refreshed`), `ping` -> a local `pong` while the stream is open;
 * - `event: close` `{"code":N}` -> `onclose({code: N})`, so 4001, 4003,
 *   4009 and 1001 take the same paths as on WebSocket; a stream error ->
 *   `onclose({code: 1006})`.  EventSource's own reconnect is never used
 *   (it would reuse the spent ticket and get 401): the stream is closed on
 *   its first error and the client reconnects with its backoff and a new
 *   ticket.
 *
 * @param {{EventSource?: any, fetch?: Function, path?: string}} [options]
 *   `EventSource`: the constructor where there is no global one (Node);
 *   `path`: the stream's path (default `/sse`).
 */
export function sseTransport(options = {}) {
  const ES = options.EventSource || globalThis.EventSource;
  // Called through a wrapper: a bare reference to window.fetch may not be invoked without its this.
  const doFetch = options.fetch || (typeof globalThis.fetch === "function" ? (...a) => globalThis.fetch(...a) : null);
  const path = options.path || "/sse";
  if (typeof ES !== "function" || typeof doFetch !== "function") {
    return unavailable("sse", "no EventSource here: pass one, e.g. sseTransport({EventSource})");
  }
  function open({ url, token }) {
    const origin = httpOrigin(url);
    let current = token;          // the token of the connection (moved by refresh)
    let stream = null;            // {es, id} of the live stream
    let streamId = null;
    let welcomed = false;
    let closed = false;
    let reopening = null;         // a promise while a new stream is being opened
    let dirty = false;            // the channel list changed while reopening
    let scheduled = false;        // a reopen is due at the next microtask
    const channels = new Map();   // channel -> since (number) or null
    const positions = new Map();  // channel -> last seq seen on this connection
    let waiting = [];             // subscribes answered at the next welcome

    const conn = {
      onopen: null, onmessage: null, onclose: null,
      // Later, as over a socket: the client files a request after sending it.
      send(text) { const msg = JSON.parse(text); queueMicrotask(() => handle(msg)); },
      // As a WebSocket's close(): onclose follows (later), with this code.
      close(code, reason) { finish({ code: code || 1000, reason: reason || "", wasClean: true }, true); },
    };

    const deliver = (obj) => { if (!closed && conn.onmessage) conn.onmessage(JSON.stringify(obj)); };

    function finish(ev, later = false) {
      if (closed) return;
      closed = true;
      if (stream) stream.es.close();
      stream = null;
      const fire = () => { if (conn.onclose) conn.onclose(Object.assign({ reason: "", wasClean: false }, ev)); };
      if (later) queueMicrotask(fire); else fire();
    }

    async function api(method, p, body) {
      const init = { method, headers: { authorization: "Bearer " + current } };
      if (body !== undefined) {
        init.headers["content-type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      const resp = await doFetch(origin + p, init);
      let answer = null;
      try { answer = await resp.json(); } catch (e) { answer = null; }
      return { ok: resp.ok, status: resp.status, body: answer || {} };
    }

    // The WebSocket's codes for the same refusals: a missing scope is `forbidden`.
    const failure = (id, r) => ({ type: "error", id,
      code: r.body.error === "insufficient_scope" ? "forbidden" : r.body.error || "http_" + r.status,
      message: r.body.error_description || r.body.error || "HTTP " + r.status });

    /** Why a stream for `channel` is refused: GET /sse with the bearer
     *  header (an EventSource cannot say); a stream that opens is dropped. */
    async function probe(channel) {
      const abort = new AbortController();
      const resp = await doFetch(origin + path + "?channel=" + encodeURIComponent(channel), {
        headers: { authorization: "Bearer " + current, accept: "text/event-stream" }, signal: abort.signal });
      if (resp.ok) { abort.abort(); return { ok: true, status: resp.status, body: {} }; }
      let body = {};
      try { body = await resp.json(); } catch (e) { body = {}; }
      return { ok: false, status: resp.status, body: body || {} };
    }

    /** Open a stream for the current channel list; resolves with it once welcomed. */
    async function openStream() {
      const t = await api("POST", "/api/ticket");
      if (!t.ok || typeof t.body.ticket !== "string") {
        throw Object.assign(new Error("ticket refused: " + t.status), { status: t.status });
      }
      const q = new URLSearchParams({ ticket: t.body.ticket });
      for (const c of channels.keys()) q.append("channel", c);
      const resume = new Map();
      for (const [c, since] of channels) {
        const seen = positions.get(c);
        const at = seen !== undefined ? seen : since;
        if (typeof at === "number") resume.set(c, at);
      }
      if (resume.size) q.set("last_event_id", encodePositions(resume));
      const es = new ES(origin + path + "?" + q.toString());
      const s = { es, welcome: null, recovered: null };
      return new Promise((resolve, reject) => {
        const on = (name, fn) => es.addEventListener(name, (ev) => {
          if (closed) return;
          let data = null;
          try { data = JSON.parse(ev.data); } catch (e) { return; }
          fn(data, ev);
        });
        const live = () => stream === s;
        on("welcome", (data, ev) => {
          s.welcome = data;
          for (const [c, seq] of decodePositions(ev.lastEventId)) if (!positions.has(c)) positions.set(c, seq);
          if (!resume.size) resolve(s);
        });
        on("recovered", (data) => { s.recovered = data.recovered; if (s.welcome) resolve(s); });
        on("message", (data) => {
          if (typeof data.seq === "number" && typeof data.channel === "string") {
            const last = positions.get(data.channel);
            if (last === undefined || data.seq > last) positions.set(data.channel, data.seq);
          }
          if (channels.has(data.channel)) deliver(data);
        });
        for (const name of ["token_expiring", "join", "leave", "unsubscribed"]) {
          on(name, (data) => { if (live()) deliver(Object.assign({ type: name }, data)); });
        }
        on("close", (data) => {
          es.close();
          if (live()) finish({ code: data.code, reason: data.reason || "" });
          else reject(Object.assign(new Error("stream closed " + data.code), { code: data.code }));
        });
        es.onerror = () => {
          // Never EventSource's own retry: it would reuse the spent ticket.
          es.close();
          if (live()) finish({ code: 1006, reason: "stream error" });
          else reject(new Error("stream error"));
        };
      });
    }

    async function start() {
      try {
        const s = await openStream();
        if (closed) { s.es.close(); return; }
        stream = s;
        streamId = s.welcome.stream;
        welcomed = true;
        if (conn.onopen) conn.onopen();
        deliver(Object.assign({ type: "welcome" }, s.welcome));
      } catch (e) {
        finish({ code: e.code || 1006, reason: e.message });
      }
    }

    /** Reopen with the current channel list; answer the waiting subscribes. */
    function reopen() {
      if (reopening) { dirty = true; return; }
      reopening = (async () => {
        do {
          dirty = false;
          const answering = waiting;
          waiting = [];
          let s;
          try {
            s = await openStream();
          } catch (e) {
            if (closed) return;
            if (e.code) { finish({ code: e.code, reason: e.message }); return; }
            // A refused channel, or the network: ask what is wrong with the new ones.
            let refused = false;
            for (const w of answering) {
              const r = await probe(w.channel).catch(() => null);
              if (r && !r.ok && r.status !== 401) {
                refused = true;
                channels.delete(w.channel);
                deliver(failure(w.id, r));
              } else waiting.push(w);
            }
            if (!refused) { finish({ code: 1006, reason: "cannot reopen the stream" }); return; }
            dirty = true;
            continue;
          }
          if (closed) { s.es.close(); return; }
          const old = stream;
          stream = s;
          streamId = s.welcome.stream;
          if (old) old.es.close();
          for (const w of answering) {
            const ack = { type: "ack", id: w.id };
            if (s.recovered !== null) ack.recovered = s.recovered;
            deliver(ack);
          }
          // The new stream's deadline is its ticket's token's; say so.
        } while (dirty && !closed);
      })().finally(() => { reopening = null; });
    }

    function schedule() {
      if (scheduled) return;
      scheduled = true;
      queueMicrotask(() => { scheduled = false; reopen(); });
    }

    function handle(msg) {
      if (closed || !welcomed) return;
      const id = msg.id;
      switch (msg.type) {
        case "subscribe":
          channels.set(msg.channel, typeof msg.since === "number" ? msg.since : null);
          if (typeof msg.since === "number") positions.delete(msg.channel);
          waiting.push({ id, channel: msg.channel });
          schedule(); // several subscribes in a row make one reopen
          break;
        case "unsubscribe":
          if (channels.delete(msg.channel)) { positions.delete(msg.channel); schedule(); }
          deliver({ type: "ack", id });
          break;
        case "publish":
          api("POST", "/api/publish", { channel: msg.channel, data: msg.data }).then(
            (r) => deliver(r.ok ? { type: "ack", id, seq: r.body.seq } : failure(id, r)),
            () => {});
          break;
        case "presence":
          api("GET", "/api/presence?channel=" + encodeURIComponent(msg.channel)).then(
            (r) => deliver(r.ok ? Object.assign({}, r.body, { type: "presence", id }) : failure(id, r)),
            () => {});
          break;
        case "refresh": {
          const before = current;
          current = msg.token;
          api("POST", "/api/streams/" + encodeURIComponent(streamId) + "/refresh", { token: msg.token }).then((r) => {
            if (r.ok) deliver({ type: "refreshed", id, expires_at: r.body.expires_at });
            else { current = before; deliver(failure(id, r)); }
          }, () => {});
          break;
        }
        case "ping":
          if (stream && stream.es.readyState === 1) deliver({ type: "pong", id });
          break;
        default:
          deliver({ type: "error", id, code: "unsupported", message: "not over SSE: " + msg.type });
      }
    }

    start();
    return conn;
  }
  open.kind = "sse";
  open.available = true;
  return open;
}

function isWelcome(text) {
  try { return JSON.parse(text).type === "welcome"; } catch (e) { return false; }
}

function unavailable(kind, message) {
  const open = () => { throw new TypeError(message); };
  open.kind = kind;
  open.available = false;
  open.reason = message;
  return open;
}

/**
 * The fallback rule: try `transports` in order, moving to the next when
 * one fails `after` times in a row without a welcome (default 2; after the
 * last, round to the first again), or at once when it is unavailable here
 * (no WebSocket constructor: it is left out).  Once a transport has had a
 * welcome the client stays on it for good (a later outage or restart does
 * not move it).
 *
 * @param {Array<Function>} transports e.g. `[webSocketTransport(), sseTransport()]`
 * @param {{after?: number, onSwitch?: (kind: string) => void}} [options]
 */
export function fallbackTransport(transports, options = {}) {
  const after = options.after || 2;
  const list = transports.filter((t) => t && t.available !== false);
  if (!list.length) {
    const why = transports.map((t) => t && t.reason).filter(Boolean).join("; ");
    throw new TypeError("no transport available here" + (why ? ": " + why : ""));
  }
  let index = 0;
  let failures = 0;
  let settled = false;
  function open(args) {
    const transport = list[index];
    const inner = transport(args);
    let welcomed = false;
    const conn = {
      onopen: null, onmessage: null, onclose: null,
      send(text) { inner.send(text); },
      close(code, reason) { inner.close(code, reason); },
    };
    inner.onopen = () => { if (conn.onopen) conn.onopen(); };
    inner.onmessage = (text) => {
      if (!welcomed && isWelcome(text)) {
        welcomed = true;
        failures = 0;
        settled = true;
      }
      if (conn.onmessage) conn.onmessage(text);
    };
    inner.onclose = (ev) => {
      if (!welcomed && !settled) {
        failures += 1;
        if (failures >= after && list.length > 1) {
          // Round again after the last: a server that was down at the first
          // connect is not taken for a proxy that refuses WebSockets for good.
          index = (index + 1) % list.length;
          failures = 0;
          if (options.onSwitch) options.onSwitch(list[index].kind);
        }
      }
      if (conn.onclose) conn.onclose(ev);
    };
    return conn;
  }
  open.kind = "fallback";
  open.available = true;
  Object.defineProperty(open, "current", { get: () => list[index].kind });
  return open;
}
