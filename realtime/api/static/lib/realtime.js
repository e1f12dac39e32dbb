// realtime: the JavaScript client (SPEC §4, §5, §5a).  No dependencies, no
// build step: an ES module for browsers and Node 18+.
//
// One Realtime object is one logical connection that outlives sockets: it
// keeps its token fresh in-band (token_expiring -> getToken -> refresh),
// reconnects after a network loss (backoff with jitter) or a 4001 (with a
// fresh token), resubscribes every channel with `since` = the last seq it
// delivered, and drops replayed duplicates by seq.  A 4003 (access
// withdrawn) or close() stops it for good.

import { webSocketTransport } from "./transports.js";

export { webSocketTransport, SUBPROTOCOL } from "./transports.js";

/** Close codes of SPEC §4 the client acts on. */
export const CloseCodes = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, TOKEN_EXPIRED: 4001, ACCESS_WITHDRAWN: 4003,
  RATE_LIMITED: 4008, SLOW_CONSUMER: 4009,
});

/** An error with the server's `code` (publish, subscribe, presence), or the
 *  client's own (`not_connected`, `connection_lost`, `timeout`, `closed`,
 *  `access_withdrawn`, `token_unavailable`). */
export class RealtimeError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
    Object.assign(this, extra);
  }
}

const DEFAULTS = {
  path: "/ws",
  minBackoff: 500,        // ms; doubles per failed attempt ...
  maxBackoff: 30000,      // ... up to this, times a random factor in [0.5, 1.5)
  connectTimeout: 10000,  // ms for the handshake and the welcome
  requestTimeout: 10000,  // ms a publish waits for a connection and its ack
  pingInterval: 25000,    // ms between {"type":"ping"} (0: never) ...
  pingTimeout: 10000,     // ... and how long a pong may take before we reconnect
  maxQueue: 1000,         // messages buffered per async iterator
};

/** Where a base URL (http[s]://host) or a relative path points the socket. */
function socketUrl(url, path) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError("not a ws:, wss:, http: or https: URL: " + url);
  if (u.pathname === "/" || u.pathname === "") u.pathname = path;
  return u.toString();
}

export class Realtime {
  /**
   * @param {string} url `wss://host/ws`, or the server's base `https://host`
   * @param {object} options `getToken` (required), `WebSocket`, `transport`
   *   and the timing knobs of DEFAULTS.
   */
  constructor(url, options = {}) {
    if (typeof options.getToken !== "function") throw new TypeError("options.getToken must be a function returning an access token");
    this.options = Object.assign({}, DEFAULTS, options);
    this.url = socketUrl(url, this.options.path);
    this.getToken = options.getToken;
    this.transport = options.transport || webSocketTransport({ WebSocket: options.WebSocket });
    this.state = "idle";          // idle, connecting, open, reconnecting, closed
    this.sub = null;
    this.expiresAt = 0;           // epoch seconds of the connection's deadline
    this.welcome = null;
    this.lastClose = null;        // {code, reason} of the last socket that closed
    this.closeReason = null;      // why the client stopped for good
    this.stats = { connects: 0, refreshes: 0, gaps: 0 };
    this._listeners = new Map();
    this._subs = new Map();       // channel -> Subscription
    this._pending = new Map();    // id -> {resolve, reject, timer}
    this._nextId = 1;
    this._conn = null;
    this._open = false;
    this._attempt = 0;
    this._tokenReason = "connect";
    this._timers = new Set();
    this._openWaiters = [];
    this._connectWaiters = [];
  }

  // ------------------------------------------------------------ events

  /** `state`, `token`, `error`, `close` (and `message`, `gap`, `join`, `leave`). Returns an unsubscribe function. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(...args); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }

  _setState(state, info = {}) {
    if (this.state === state && state !== "reconnecting") return;
    const previous = this.state;
    this.state = state;
    this._emit("state", state, Object.assign({ previous }, info));
  }

  _later(fn, ms) {
    const t = setTimeout(() => { this._timers.delete(t); fn(); }, ms);
    this._timers.add(t);
    return t;
  }

  _cancel(t) {
    clearTimeout(t);
    this._timers.delete(t);
  }

  // ------------------------------------------------------------ public API

  /** Open the connection; resolves with the server's `welcome`.  Retries
   *  transient failures; rejects only when the client stops for good. */
  connect() {
    if (this.state === "closed") return Promise.reject(this._closedError());
    if (this._open && this.welcome) return Promise.resolve(this.welcome);
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === "idle") this._dial();
    return p;
  }

  /** Join `channel`; resolves after the server's ack with a Subscription.
   *  `since`: replay kept messages after that seq first (0: all kept). */
  subscribe(channel, { since, onMessage } = {}) {
    if (this.state === "closed") return Promise.reject(this._closedError());
    if (typeof channel !== "string" || !channel) return Promise.reject(new TypeError("channel must be a non-empty string"));
    let sub = this._subs.get(channel);
    if (!sub) {
      sub = new Subscription(this, channel, since);
      this._subs.set(channel, sub);
    }
    if (onMessage) sub._handlers.add(onMessage);
    if (this._open) this._sendSubscribe(sub);
    else if (this.state === "idle") this._dial();
    return sub._ready;
  }

  /** Broadcast `data` to `channel`; resolves to `{seq}` on the ack, rejects
   *  with a RealtimeError carrying the server's `code`. */
  async publish(channel, data) {
    await this._whenOpen();
    const reply = await this._request({ type: "publish", channel, data });
    return { seq: reply.seq };
  }

  /** Stop for good: close the socket with 1000 and end every subscription. */
  close() {
    this._stop({ code: CloseCodes.NORMAL, reason: "closed by the client" }, null);
  }

  // ------------------------------------------------------------ connection

  async _dial() {
    if (this.state === "closed") return;
    this._setState("connecting", { attempt: this._attempt });
    let token;
    try {
      token = await this.getToken({ reason: this._tokenReason });
      if (typeof token !== "string" || !token) throw new Error("getToken() gave no token");
    } catch (e) {
      if (this.state === "closed") return;
      const err = new RealtimeError("token_unavailable", "cannot get an access token: " + (e && e.message),
        { cause: e, final: !!(e && e.final) });
      if (err.final) {
        // The app says no token will ever come (e.g. the refresh token was refused).
        this._stop({ code: null, reason: err.message }, err);
        return;
      }
      this._emit("error", err);
      this._scheduleReconnect({ code: null, reason: err.message }, false);
      return;
    }
    if (this.state === "closed") return;
    let conn;
    try {
      conn = this.transport({ url: this.url, token });
    } catch (e) {
      this._emit("error", new RealtimeError("transport", "cannot open the connection: " + e.message, { cause: e }));
      this._scheduleReconnect({ code: null, reason: e.message }, false);
      return;
    }
    this._conn = conn;
    this._open = false;
    let welcomed = false;
    const guard = this._later(() => {
      if (this._conn === conn && !welcomed) conn.close(4000, "no welcome in time");
    }, this.options.connectTimeout);
    conn.onmessage = (text) => {
      if (this._conn !== conn) return;
      let msg;
      try { msg = JSON.parse(text); } catch (e) { return; }
      if (!msg || typeof msg !== "object") return;
      if (!welcomed && msg.type === "welcome") {
        welcomed = true;
        this._cancel(guard);
        this._onWelcome(msg, token);
        return;
      }
      this._onMessage(msg, conn);
    };
    conn.onclose = (ev) => {
      this._cancel(guard);
      if (this._conn !== conn) return;
      this._conn = null;
      this._open = false;
      this._stopPing();
      this._onClosed(ev, welcomed);
    };
  }

  _onWelcome(msg, token) {
    this.welcome = msg;
    this.sub = msg.sub;
    this.expiresAt = msg.expires_at || 0;
    this._open = true;
    this._attempt = 0;
    this._tokenReason = "connect";
    this.stats.connects += 1;
    this._emit("token", { token, expiresAt: this.expiresAt, reason: "connect" });
    this._setState("open", { welcome: msg });
    for (const sub of this._subs.values()) if (sub.active) this._sendSubscribe(sub);
    this._startPing();
    for (const w of this._openWaiters.splice(0)) w.resolve();
    for (const w of this._connectWaiters.splice(0)) w.resolve(msg);
  }

  _onClosed(ev, welcomed) {
    const info = { code: ev.code, reason: ev.reason || "", wasClean: !!ev.wasClean };
    this.lastClose = { code: info.code, reason: info.reason };
    this._failPending(new RealtimeError("connection_lost", "the connection closed before the server answered"));
    if (this.state === "closed") return;
    if (ev.code === CloseCodes.ACCESS_WITHDRAWN) {
      const err = new RealtimeError("access_withdrawn",
        "the server withdrew access (4003" + (info.reason ? ": " + info.reason : "") + ")",
        { closeCode: ev.code, reason: info.reason });
      this._stop(info, err);
      return;
    }
    // A 4001, or a handshake the server refused (401/403 look like 1006
    // here), wants a fresh token; anything else reuses the app's current one.
    const needFresh = ev.code === CloseCodes.TOKEN_EXPIRED || (!welcomed && this._attempt > 0) || ev.code === 4000;
    this._scheduleReconnect(info, needFresh);
  }

  _scheduleReconnect(info, needFresh) {
    if (this.state === "closed") return;
    if (needFresh) this._tokenReason = info.code === CloseCodes.TOKEN_EXPIRED ? "expired" : "rejected";
    const o = this.options;
    // The first retry after a working connection goes at once (a 4001 or a
    // restart); later ones back off exponentially with jitter so a server
    // coming back is not hit by every client in the same instant.
    const base = this._attempt === 0 ? Math.min(o.minBackoff, 200) : Math.min(o.maxBackoff, o.minBackoff * 2 ** (this._attempt - 1));
    const delay = Math.round(base * (0.5 + Math.random()));
    this._attempt += 1;
    this._emit("close", Object.assign({ willReconnect: true, delay }, info));
    this._setState("reconnecting", Object.assign({ delay, attempt: this._attempt }, info));
    this._reconnectTimer = this._later(() => this._dial(), delay);
  }

  _stop(info, err) {
    if (this.state === "closed") return;
    this.closeReason = Object.assign({}, info, err ? { error: err } : {});
    const conn = this._conn;
    this._conn = null;
    this._open = false;
    this._stopPing();
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    if (conn) conn.close(CloseCodes.NORMAL, "client closed");
    const why = err || this._closedError();
    this._failPending(why);
    for (const w of this._openWaiters.splice(0)) w.reject(why);
    for (const w of this._connectWaiters.splice(0)) w.reject(why);
    for (const sub of this._subs.values()) { sub._end(err); sub._rejectReady(why); }
    this._subs.clear();
    this._setState("closed", Object.assign({}, info, err ? { error: err } : {}));
    this._emit("close", Object.assign({ willReconnect: false }, info, err ? { error: err } : {}));
    if (err) this._emit("error", err);
  }

  _closedError() {
    const r = this.closeReason;
    if (r && r.error) return r.error;
    return new RealtimeError("closed", "the client is closed");
  }

  // ------------------------------------------------------------ requests

  _send(obj) {
    if (!this._conn || !this._open) return false;
    this._conn.send(JSON.stringify(obj));
    return true;
  }

  _whenOpen() {
    if (this._open) return Promise.resolve();
    if (this.state === "closed") return Promise.reject(this._closedError());
    if (this.state === "idle") this._dial();
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this._openWaiters.push(waiter);
      this._later(() => {
        const i = this._openWaiters.indexOf(waiter);
        if (i >= 0) {
          this._openWaiters.splice(i, 1);
          reject(new RealtimeError("not_connected", "no connection within " + this.options.requestTimeout + " ms"));
        }
      }, this.options.requestTimeout);
    });
  }

  /** Send `obj` with a fresh id; resolves with the reply, rejects on `error`. */
  _request(obj, timeout = this.options.requestTimeout) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      if (!this._send(Object.assign({ id }, obj))) {
        reject(new RealtimeError("not_connected", "not connected"));
        return;
      }
      const timer = this._later(() => {
        this._pending.delete(id);
        reject(new RealtimeError("timeout", "no answer from the server within " + timeout + " ms"));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, kind: obj.type, channel: obj.channel });
    });
  }

  _failPending(err) {
    // A subscribe among them is sent again on the next connection.
    for (const p of this._pending.values()) {
      this._cancel(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  _sendSubscribe(sub) {
    const msg = { type: "subscribe", channel: sub.channel };
    const since = sub._since();
    if (since !== null) msg.since = since;
    const recovering = sub.lastSeq !== null;
    this._request(msg).then((ack) => {
      if (ack.recovered === false && recovering) {
        // The server no longer has everything after our position (it
        // restarted, or the outage outlived its history): say so, and
        // follow its numbering from here.
        this.stats.gaps += 1;
        sub.lastSeq = null;
        this._emit("gap", { channel: sub.channel, recovered: false });
      }
      sub._acked();
    }, (err) => {
      if (this.closeReason) { sub._rejectReady(err); return; }
      if (err.code === "connection_lost" || err.code === "not_connected" || err.code === "timeout") return;
      this._emit("error", err);
      this._subs.delete(sub.channel);
      sub._end(err);
      sub._rejectReady(err);
    });
  }

  // ------------------------------------------------------------ server messages

  _onMessage(msg, conn) {
    switch (msg.type) {
      case "message": this._deliver(msg); break;
      case "token_expiring": this._refreshInBand(conn, msg.expires_at); break;
      case "refreshed":
        this.expiresAt = msg.expires_at;
        this.stats.refreshes += 1;
        this._answer(msg);
        this._emit("token", { token: this._refreshToken, expiresAt: msg.expires_at, reason: "refresh" });
        break;
      case "ack": case "pong": case "presence": case "error":
        this._answer(msg); break;
      case "join": case "leave": {
        this._emit(msg.type, msg);
        break;
      }
      default: break;
    }
  }

  _answer(msg) {
    const p = msg.id !== undefined ? this._pending.get(msg.id) : undefined;
    if (!p) {
      if (msg.type === "error") this._emit("error", new RealtimeError(msg.code, msg.message || msg.code));
      return;
    }
    this._pending.delete(msg.id);
    this._cancel(p.timer);
    if (msg.type === "error") p.reject(new RealtimeError(msg.code, msg.message || msg.code, { channel: p.channel }));
    else p.resolve(msg);
  }

  _deliver(msg) {
    const sub = this._subs.get(msg.channel);
    if (!sub || typeof msg.seq !== "number") return;
    const last = sub.lastSeq;
    if (last !== null) {
      if (msg.seq <= last) return; // a replay overlapping what was delivered
      if (msg.seq > last + 1) {
        this.stats.gaps += 1;
        this._emit("gap", { channel: msg.channel, missing: msg.seq - last - 1 });
      }
    }
    sub.lastSeq = msg.seq;
    const out = { channel: msg.channel, seq: msg.seq, from: msg.from, data: msg.data };
    this._emit("message", out);
    sub._push(out);
  }

  async _refreshInBand(conn, expiresAt) {
    for (;;) {
      let token;
      try {
        token = await this.getToken({ reason: "expiring", expiresAt });
        if (typeof token !== "string" || !token) throw new Error("getToken() gave no token");
      } catch (e) {
        const err = new RealtimeError("token_unavailable", "cannot refresh the token: " + (e && e.message),
          { cause: e, final: !!(e && e.final) });
        if (err.final) { this._stop({ code: null, reason: err.message }, err); return; }
        this._emit("error", err);
        // Retry while the token lasts; past it the server's 4001 makes us reconnect.
        if (this._conn !== conn || expiresAt - Date.now() / 1000 < 2) return;
        await new Promise((r) => this._later(r, 1000));
        continue;
      }
      if (this._conn !== conn || !this._open) return;
      this._refreshToken = token;
      try {
        await this._request({ type: "refresh", token });
      } catch (e) {
        if (e.code === "connection_lost" || this._conn !== conn) return;
        // The server refused the new token: start over on a new socket.
        this._emit("error", e);
        conn.close(4000, "refresh refused");
      }
      return;
    }
  }

  _startPing() {
    if (!this.options.pingInterval) return;
    const conn = this._conn;
    this._pingTimer = this._later(async () => {
      if (this._conn !== conn) return;
      try {
        await this._request({ type: "ping" }, this.options.pingTimeout);
      } catch (e) {
        if (e.code === "timeout" && this._conn === conn) {
          // A server that stopped answering (a pulled cable): reconnect now.
          conn.close(4000, "no pong");
          if (this._conn === conn) {
            this._conn = null;
            this._open = false;
            this._onClosed({ code: 1006, reason: "no pong", wasClean: false }, true);
          }
        }
        return;
      }
      this._startPing();
    }, this.options.pingInterval);
  }

  _stopPing() {
    if (this._pingTimer) this._cancel(this._pingTimer);
    this._pingTimer = null;
  }
}

/** One channel the client is on; survives reconnects until unsubscribe(). */
export class Subscription {
  constructor(client, channel, since) {
    this.client = client;
    this.channel = channel;
    this.lastSeq = null;          // the last seq delivered (null: none yet)
    this.active = true;
    this._initialSince = typeof since === "number" ? since : null;
    this._handlers = new Set();
    this._queues = new Set();     // one per async iterator
    this._ready = new Promise((resolve, reject) => { this._resolveReady = resolve; this._rejectReady = reject; });
  }

  _since() {
    if (this.lastSeq !== null) return this.lastSeq;
    return this._initialSince;
  }

  _acked() {
    this._resolveReady(this);
  }

  _push(msg) {
    for (const fn of this._handlers) {
      try { fn(msg); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
    for (const q of this._queues) q.push(msg);
  }

  _end(err) {
    this.active = false;
    for (const q of this._queues) q.end(err);
    this._queues.clear();
  }

  /** Leave the channel; iterators end. */
  async unsubscribe() {
    if (!this.active) return;
    this._end(null);
    if (this.client._subs.get(this.channel) === this) this.client._subs.delete(this.channel);
    if (this.client._open) await this.client._request({ type: "unsubscribe", channel: this.channel }).catch(() => {});
  }

  /** Who is on the channel (SPEC §5a; the channel needs `presence = true`). */
  async presence() {
    await this.client._whenOpen();
    const reply = await this.client._request({ type: "presence", channel: this.channel });
    return reply.members;
  }

  [Symbol.asyncIterator]() {
    const max = this.client.options.maxQueue;
    const client = this.client;
    const buffer = [];
    let waiting = null;
    let done = !this.active;
    let failure = null;
    const queue = {
      push(msg) {
        if (waiting) { const w = waiting; waiting = null; w.resolve({ value: msg, done: false }); return; }
        buffer.push(msg);
        if (buffer.length > max) {
          buffer.shift();
          client._emit("error", new RealtimeError("queue_overflow", "an iterator fell more than " + max + " messages behind; the oldest was dropped"));
        }
      },
      end(err) {
        done = true;
        failure = err || null;
        if (waiting) {
          const w = waiting; waiting = null;
          if (failure) w.reject(failure); else w.resolve({ value: undefined, done: true });
        }
      },
    };
    this._queues.add(queue);
    const self = this;
    return {
      next() {
        if (buffer.length) return Promise.resolve({ value: buffer.shift(), done: false });
        if (done) return failure ? Promise.reject(failure) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => { waiting = { resolve, reject }; });
      },
      return() {
        self._queues.delete(queue);
        done = true;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() { return this; },
    };
  }
}

export { PkceClient, AuthError, createPkcePair, jwtClaims } from "./pkce.js";
