// Transports: how a Realtime client reaches the server (SPEC §4).
//
// A transport is a function `open({url, token, protocols})` that returns a
// connection object with `send(text)` and `close(code, reason)`, and that
// calls the handlers the client sets on it: `onopen()`, `onmessage(text)`,
// `onclose({code, reason, wasClean})`.  The client knows nothing else about
// the wire, so an EventSource transport (SPEC §13: a ticket, a GET stream
// for server messages and POSTs for client messages) can be added beside
// this one without touching the client.

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
    throw new TypeError("no WebSocket here: pass one, e.g. new Realtime(url, {WebSocket: (await import('ws')).WebSocket})");
  }
  return function open({ url, token }) {
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
  };
}
