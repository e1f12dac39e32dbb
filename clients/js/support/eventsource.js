// A small EventSource for the tests (Node 20 has none): the parts of the
// WHATWG one the library uses.  GET with `Accept: text/event-stream`;
// `open`, named events with `data` and `lastEventId`, `error`; a response
// that is not a 200 event stream fires `error` and ends (CLOSED), as in
// browsers.  A stream that breaks fires `error` in CONNECTING, where a
// browser would retry by itself; the library closes it there instead, so
// this one never retries.

export class EventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url) {
    this.url = String(url);
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this._listeners = new Map();
    this._abort = new AbortController();
    this._lastEventId = "";
    this._run();
  }

  addEventListener(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
  }

  removeEventListener(name, fn) {
    const set = this._listeners.get(name);
    if (set) set.delete(fn);
  }

  close() {
    this.readyState = 2;
    this._abort.abort();
  }

  _dispatch(name, ev) {
    if (this.readyState === 2 && name !== "error") return;
    const handler = this["on" + name];
    if (typeof handler === "function") handler.call(this, ev);
    for (const fn of [...(this._listeners.get(name) || [])]) fn.call(this, ev);
  }

  _fail(fatal) {
    if (this.readyState === 2) return;
    this.readyState = fatal ? 2 : 0;
    this._abort.abort();
    this._dispatch("error", { type: "error" });
  }

  async _run() {
    let resp;
    try {
      resp = await fetch(this.url, { headers: { accept: "text/event-stream" }, signal: this._abort.signal, cache: "no-store" });
    } catch (e) {
      this._fail(false);
      return;
    }
    if (this.readyState === 2) return;
    if (resp.status !== 200 || !/^text\/event-stream/.test(resp.headers.get("content-type") || "")) {
      resp.body && resp.body.cancel().catch(() => {});
      this._fail(true);
      return;
    }
    this.readyState = 1;
    this._dispatch("open", { type: "open" });
    const decoder = new TextDecoder();
    let buf = "";
    let event = "";
    let data = [];
    try {
      for await (const chunk of resp.body) {
        if (this.readyState === 2) return;
        buf += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
          if (line === "") {
            if (data.length) {
              const name = event || "message";
              this._dispatch(name, { type: name, data: data.join("\n"), lastEventId: this._lastEventId, origin: new URL(this.url).origin });
            }
            event = "";
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
          else if (field === "id" && !value.includes("\0")) this._lastEventId = value;
        }
        if (this.readyState === 2) return;
      }
    } catch (e) {
      // aborted by close(), or the network broke
    }
    this._fail(false);
  }
}
