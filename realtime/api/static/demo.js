// realtime demo chat: OAuth 2 authorization code + PKCE (S256) in the
// browser, a WebSocket kept alive across token expiry, recovery with `since`.
// Plain JS, no build step, talks only to the origin that served it.
"use strict";

(() => {
  function sameOriginPath(p) {
    if (typeof p !== "string" || !p.startsWith("/") || p.startsWith("//")) return null;
    // A backslash is a slash to URL parsers; controls and spaces have no place in a path.
    return /[\\\s\u0000-\u001f\u007f]/.test(p) ? null : p;
  }

  const params = new URLSearchParams(location.search);
  const CLIENT_ID = params.get("client_id") || sessionStorage.getItem("rt.demo.client_id") || "demo";
  const REDIRECT_URI = location.origin + "/demo/callback";
  const SCOPE = "chat:read chat:write offline_access";
  // ?ws= may only name a path on this origin: "@other.host/" or "//other.host/"
  // would make scheme + "//" + location.host + WS_PATH point elsewhere and
  // send the bearer subprotocol there.  Anything else falls back to /ws.
  const WS_PATH = sameOriginPath(params.get("ws")) || "/ws";
  const HTTP_TIMEOUT_MS = 15000;
  const CONNECT_TIMEOUT_MS = 10000;
  const FLOW_KEY = "rt.demo.flow";        // {state, verifier, clientId} during the redirect
  const REFRESH_KEY = "rt.demo.refresh";  // the refresh token (this tab only)
  sessionStorage.setItem("rt.demo.client_id", CLIENT_ID);

  const $ = (id) => document.getElementById(id);
  const ui = {
    who: $("who"), login: $("login"), logout: $("logout"), notice: $("notice"),
    conn: $("conn"), tokenLeft: $("token-left"), refreshes: $("refreshes"), connects: $("connects"),
    channel: $("channel"), joinForm: $("join-form"), messages: $("messages"),
    sendForm: $("send-form"), text: $("text"), send: $("send"),
    notifications: $("notifications"), noteChannel: $("note-channel"), log: $("log"),
  };

  // Everything the page knows; exposed read-only as window.rtDemo for tests and curious users.
  const st = {
    accessToken: null, exp: 0, sub: null,
    ws: null, wsOpen: false, wantSocket: false,
    channel: params.get("channel") || "chat:lobby",
    lastSeq: {},          // channel -> last seq shown (null: unknown, take the next one)
    nextId: 1,
    pending: {},          // id -> what it was for
    refreshing: null,     // the promise of a running refresh
    attempt: 0,           // reconnect attempts since the last good connection
    reconnectTimer: null,
    refreshCount: 0, connectCount: 0, gaps: 0,
    lastClose: null,
  };
  window.rtDemo = {
    get state() {
      return {
        sub: st.sub, exp: st.exp, open: st.wsOpen, channel: st.channel,
        refreshes: st.refreshCount, connects: st.connectCount, gaps: st.gaps,
        lastSeq: Object.assign({}, st.lastSeq), lastClose: st.lastClose,
      };
    },
  };

  // ---------------------------------------------------------------- display

  function log(text) {
    const li = document.createElement("li");
    li.textContent = new Date().toLocaleTimeString() + " " + text;
    ui.log.appendChild(li);
    while (ui.log.children.length > 200) ui.log.removeChild(ui.log.firstChild);
  }

  function notice(text, isError) {
    ui.notice.textContent = text;
    ui.notice.hidden = !text;
    ui.notice.classList.toggle("error", !!isError);
    if (text) log((isError ? "error: " : "note: ") + text);
  }

  function setConn(state, text) {
    ui.conn.dataset.state = state;
    ui.conn.textContent = text || state;
    const open = state === "open";
    ui.text.disabled = !open;
    ui.send.disabled = !open;
  }

  function setSignedIn(signedIn) {
    ui.login.hidden = signedIn;
    ui.logout.hidden = !signedIn;
    ui.who.textContent = signedIn ? "signed in as " + (st.sub || "?") : "not signed in";
  }

  function tick() {
    if (!st.accessToken) {
      ui.tokenLeft.textContent = "no token";
      return;
    }
    const left = Math.round(st.exp - Date.now() / 1000);
    ui.tokenLeft.textContent = left > 0 ? "token expires in " + left + " s" : "token expired";
  }
  setInterval(tick, 1000);

  function showText(data) {
    if (data && typeof data === "object" && typeof data.text === "string") return data.text;
    return JSON.stringify(data);
  }

  function addLine(list, msg) {
    const li = document.createElement("li");
    li.dataset.seq = String(msg.seq);
    li.dataset.channel = msg.channel;
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = "#" + msg.seq;
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = msg.from + ":";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = showText(msg.data);
    li.append(seq, from, body);
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }

  function addSystem(list, text) {
    const li = document.createElement("li");
    li.className = "sys";
    li.textContent = text;
    list.appendChild(li);
  }

  // ------------------------------------------------------------ HTTP helpers

  function b64url(bytes) {
    let s = "";
    for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString(n) {
    return b64url(crypto.getRandomValues(new Uint8Array(n)));
  }

  function jwtClaims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) {
      return {};
    }
  }

  class HttpError extends Error {
    constructor(status, body) {
      super((body && (body.error_description || body.error)) || "HTTP " + status);
      this.status = status;
      this.body = body || {};
    }
  }

  // fetch with a deadline: nothing on this page waits forever.
  async function request(path, options) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), HTTP_TIMEOUT_MS);
    try {
      const resp = await fetch(path, Object.assign({ signal: ctrl.signal, cache: "no-store" }, options));
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      if (!resp.ok) throw new HttpError(resp.status, body);
      return body;
    } catch (e) {
      if (e instanceof HttpError) throw e;
      const err = new Error(e.name === "AbortError" ? "the server did not answer in time" : "the server cannot be reached");
      err.network = true;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  function tokenRequest(fields) {
    return request("/oauth2/token", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(Object.assign({ client_id: CLIENT_ID }, fields)).toString(),
    });
  }

  function takeTokens(body) {
    st.accessToken = body.access_token;
    const claims = jwtClaims(body.access_token);
    st.sub = claims.sub || st.sub;
    st.exp = claims.exp || (Date.now() / 1000 + (body.expires_in || 0));
    if (body.refresh_token) sessionStorage.setItem(REFRESH_KEY, body.refresh_token);
    setSignedIn(true);
    tick();
  }

  // ------------------------------------------------------------------ login

  async function startLogin() {
    if (!window.crypto || !crypto.subtle) {
      notice("This browser offers no WebCrypto here: open the page over https:// or on localhost / 127.0.0.1.", true);
      return;
    }
    const verifier = randomString(32); // 43 characters (RFC 7636 §4.1)
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = randomString(16);
    sessionStorage.setItem(FLOW_KEY, JSON.stringify({ state, verifier, clientId: CLIENT_ID, at: Date.now() }));
    const q = new URLSearchParams({
      response_type: "code", client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: SCOPE,
      state, code_challenge: challenge, code_challenge_method: "S256",
    });
    location.assign("/oauth2/authorize?" + q.toString());
  }

  const ERRORS = {
    access_denied: "You denied access, so the page has no token. Sign in again to allow it.",
    invalid_scope: "The demo app may not ask for these scopes; check the \"demo\" app in apps.toml.",
    unauthorized_client: "The demo app may not use the authorization code grant; check apps.toml.",
    login_required: "You are not signed in.",
    consent_required: "Consent is needed.",
    server_error: "The server failed while signing you in. Try again.",
    temporarily_unavailable: "The server is busy. Try again in a moment.",
  };

  async function finishLogin() {
    const q = new URLSearchParams(location.search);
    history.replaceState(null, "", "/demo/"); // the code leaves the address bar at once
    const raw = sessionStorage.getItem(FLOW_KEY);
    sessionStorage.removeItem(FLOW_KEY); // single use, whatever happens next
    let flow = null;
    try { flow = raw ? JSON.parse(raw) : null; } catch (e) { flow = null; }
    if (!flow) {
      notice("This sign-in answer does not belong to a sign-in started in this tab " +
             "(was the tab closed during the redirect?). Nothing was accepted: sign in again.", true);
      return false;
    }
    if (!q.get("state") || q.get("state") !== flow.state) {
      notice("The sign-in answer does not match the request (the state parameter differs). " +
             "It was rejected; sign in again.", true);
      return false;
    }
    const error = q.get("error");
    if (error) {
      const text = ERRORS[error] || ("Sign-in failed: " + error);
      const desc = q.get("error_description");
      notice(text + (desc && !ERRORS[error] ? " (" + desc + ")" : ""), true);
      return false;
    }
    const iss = q.get("iss");
    if (iss) {
      // RFC 9207: the answer must come from the server we sent the user to.
      try {
        const meta = await request("/.well-known/oauth-authorization-server", {});
        if (meta && meta.issuer && meta.issuer !== iss) {
          notice("The sign-in answer names another issuer (" + iss + "). It was rejected.", true);
          return false;
        }
      } catch (e) { /* metadata unavailable: the token exchange below decides */ }
    }
    const code = q.get("code");
    if (!code) {
      notice("The sign-in answer has no code. Sign in again.", true);
      return false;
    }
    try {
      takeTokens(await tokenRequest({
        grant_type: "authorization_code", code, redirect_uri: REDIRECT_URI, code_verifier: flow.verifier,
      }));
    } catch (e) {
      notice("The code could not be exchanged for a token: " + e.message + ". Sign in again.", true);
      return false;
    }
    notice("");
    log("signed in as " + st.sub);
    return true;
  }

  // ---------------------------------------------------------------- refresh

  // One refresh at a time; every caller shares it.
  function refreshTokens() {
    if (!st.refreshing) {
      st.refreshing = doRefresh().finally(() => { st.refreshing = null; });
    }
    return st.refreshing;
  }

  async function doRefresh() {
    const rt = sessionStorage.getItem(REFRESH_KEY);
    if (!rt) throw Object.assign(new Error("no refresh token"), { final: true });
    try {
      takeTokens(await tokenRequest({ grant_type: "refresh_token", refresh_token: rt }));
      log("new access token, expires at " + new Date(st.exp * 1000).toLocaleTimeString());
    } catch (e) {
      if (e instanceof HttpError && e.status >= 400 && e.status < 500) {
        sessionStorage.removeItem(REFRESH_KEY);
        e.final = true;
      }
      throw e;
    }
  }

  function sessionOver(why) {
    st.wantSocket = false;
    st.accessToken = null;
    sessionStorage.removeItem(REFRESH_KEY);
    clearTimeout(st.reconnectTimer);
    if (st.ws) st.ws.close(1000, "signed out");
    setSignedIn(false);
    setConn("closed", "closed");
    tick();
    notice(why, true);
  }

  // On token_expiring: refresh grant, then the new token in-band; the socket stays open.
  async function refreshInBand() {
    try {
      await refreshTokens();
    } catch (e) {
      if (e.final) {
        sessionOver("Your session has ended (" + e.message + "). Sign in again.");
      } else {
        notice("Could not refresh the token: " + e.message + ". Retrying…", true);
        // Retry in a few seconds while the token lasts; past exp the 4001 close reconnects.
        if (st.exp - Date.now() / 1000 > 2) setTimeout(refreshInBand, 2000);
      }
      return;
    }
    if (st.ws && st.wsOpen) send({ type: "refresh", token: st.accessToken }, "refresh");
  }

  // -------------------------------------------------------------- WebSocket

  function send(obj, purpose) {
    if (!st.ws || !st.wsOpen) return false;
    const id = st.nextId++;
    st.pending[id] = purpose || obj.type;
    st.ws.send(JSON.stringify(Object.assign({ id }, obj)));
    return true;
  }

  function subscribe(channel) {
    // since: the last seq shown, so a reconnect replays exactly what was missed;
    // 0 the first time, which also shows the channel's kept history.
    const last = st.lastSeq[channel];
    const msg = { type: "subscribe", channel };
    if (last !== null) msg.since = last === undefined ? 0 : last;
    send(msg, (last === undefined ? "history " : "subscribe ") + channel);
  }

  function connect() {
    clearTimeout(st.reconnectTimer);
    st.wantSocket = true;
    if (!st.accessToken) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(scheme + "//" + location.host + WS_PATH, ["realtime.v1", "bearer." + st.accessToken]);
    } catch (e) {
      notice("Cannot open the WebSocket: " + e.message, true);
      return;
    }
    st.ws = ws;
    st.wsOpen = false;
    setConn("connecting", "connecting…");
    const guard = setTimeout(() => { if (!st.wsOpen && st.ws === ws) ws.close(); }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(guard);
      if (st.ws !== ws) return;
      st.wsOpen = true;
      st.connectCount += 1;
      ui.connects.textContent = String(st.connectCount);
      setConn("open", "open");
      log("socket open");
    };
    ws.onmessage = (ev) => { if (st.ws === ws) onServerMessage(ev.data); };
    ws.onclose = (ev) => {
      clearTimeout(guard);
      if (st.ws !== ws) return;
      const wasOpen = st.wsOpen;
      st.ws = null;
      st.wsOpen = false;
      st.pending = {};
      st.lastClose = ev.code;
      onClosed(ev.code, ev.reason, wasOpen);
    };
  }

  function onClosed(code, reason, wasOpen) {
    log("socket closed " + code + (reason ? " (" + reason + ")" : ""));
    if (!st.wantSocket) {
      setConn("closed", "closed");
      return;
    }
    let why;
    let mustRefresh = false;
    if (code === 4001) {
      why = "The token expired before it was refreshed; getting a new one and reconnecting.";
      mustRefresh = true;
    } else if (code === 4003) {
      why = "The server withdrew access (token revoked, app or user changed); trying to sign in again silently.";
      mustRefresh = true;
    } else if (code === 1001) {
      why = "The server is restarting; reconnecting.";
    } else if (code === 4008) {
      why = "Too many messages too fast; reconnecting.";
    } else if (code === 4009) {
      why = "This page fell behind the stream; reconnecting.";
    } else if (!wasOpen) {
      // The handshake failed: the server is down, or refused the token (401/403 look alike here).
      why = "Cannot connect to the server; retrying.";
      mustRefresh = st.attempt > 0;
    } else {
      why = "The connection was lost; reconnecting.";
    }
    notice(why, false);
    scheduleReconnect(mustRefresh);
  }

  function scheduleReconnect(mustRefresh) {
    clearTimeout(st.reconnectTimer);
    const delay = st.attempt === 0 ? 200 : Math.min(10000, 500 * 2 ** (st.attempt - 1)) * (0.75 + Math.random() / 2);
    st.attempt += 1;
    setConn("waiting", "reconnecting in " + Math.ceil(delay / 1000) + " s");
    st.reconnectTimer = setTimeout(async () => {
      if (!st.wantSocket) return;
      const expiring = st.exp - Date.now() / 1000 < 5;
      if (mustRefresh || expiring || !st.accessToken) {
        setConn("waiting", "refreshing token…");
        try {
          await refreshTokens();
        } catch (e) {
          if (e.final) {
            sessionOver("Your session has ended (" + e.message + "). Sign in again.");
            return;
          }
          notice("The server cannot be reached (" + e.message + "); retrying.", true);
          scheduleReconnect(true);
          return;
        }
      }
      connect();
    }, delay);
  }

  function onServerMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (e) { log("unreadable message"); return; }
    switch (msg.type) {
      case "welcome":
        st.sub = msg.sub;
        st.attempt = 0;
        if (msg.expires_at) st.exp = msg.expires_at;
        setSignedIn(true);
        ui.noteChannel.textContent = "user:" + st.sub;
        if (st.connectCount > 1) notice("Reconnected.", false);
        else if (!ui.notice.classList.contains("error")) notice("");
        subscribe(st.channel);
        subscribe("user:" + st.sub);
        break;
      case "message":
        onChatMessage(msg);
        break;
      case "token_expiring":
        log("token_expiring: refreshing");
        refreshInBand();
        break;
      case "refreshed":
        st.exp = msg.expires_at;
        st.refreshCount += 1;
        ui.refreshes.textContent = String(st.refreshCount);
        log("refreshed in-band; socket still open");
        tick();
        break;
      case "ack":
        onAck(msg);
        break;
      case "error":
        onError(msg);
        break;
      case "join":
      case "leave":
        if (msg.channel === st.channel) addSystem(ui.messages, msg.sub + (msg.type === "join" ? " joined" : " left"));
        break;
      case "pong":
        break;
      default:
        log("unknown message type " + msg.type);
    }
  }

  function onChatMessage(msg) {
    const last = st.lastSeq[msg.channel];
    if (typeof last === "number") {
      if (msg.seq <= last) return; // already shown (a replay overlapping what we had)
      if (msg.seq > last + 1) {
        st.gaps += 1;
        addSystem(msg.channel === st.channel ? ui.messages : ui.notifications,
                  "(" + (msg.seq - last - 1) + " message(s) missing here)");
      }
    }
    st.lastSeq[msg.channel] = msg.seq;
    if (msg.channel === st.channel) addLine(ui.messages, msg);
    else if (msg.channel === "user:" + st.sub) addLine(ui.notifications, msg);
  }

  function onAck(msg) {
    const what = st.pending[msg.id];
    delete st.pending[msg.id];
    if (msg.recovered === false && what && what.startsWith("subscribe ")) {
      const channel = what.slice("subscribe ".length);
      // The server no longer has what came after our last seq (it restarted, or the
      // history is shorter than the outage): say so, and follow its numbering from here.
      st.lastSeq[channel] = null;
      st.gaps += 1;
      addSystem(channel === st.channel ? ui.messages : ui.notifications,
                "(the server could not replay everything missed while disconnected)");
      notice("Some messages on " + channel + " could not be recovered (the server restarted or its history is shorter than the outage).", false);
    }
  }

  function onError(msg) {
    const what = st.pending[msg.id];
    delete st.pending[msg.id];
    if (what === "refresh") {
      notice("The server refused the new token (" + msg.message + "); reconnecting.", true);
      if (st.ws) st.ws.close(4000, "refresh refused");
      return;
    }
    notice((what ? what + ": " : "") + msg.code + ": " + msg.message, true);
  }

  // --------------------------------------------------------------- controls

  ui.login.addEventListener("click", () => { startLogin(); });

  ui.logout.addEventListener("click", async () => {
    const rt = sessionStorage.getItem(REFRESH_KEY);
    sessionOver("");
    notice("Signed out.", false);
    if (rt) {
      try {
        await request("/oauth2/revoke", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ client_id: CLIENT_ID, token: rt, token_type_hint: "refresh_token" }).toString(),
        });
      } catch (e) { /* the token dies with its lifetime anyway */ }
    }
  });

  ui.sendForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = ui.text.value.trim();
    if (!text) return;
    if (!send({ type: "publish", channel: st.channel, data: { text } }, "publish")) {
      notice("Not connected: the message was not sent.", true);
      return;
    }
    ui.text.value = "";
  });

  ui.joinForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const channel = ui.channel.value.trim();
    if (!channel || channel === st.channel) return;
    if (st.wsOpen) send({ type: "unsubscribe", channel: st.channel });
    st.channel = channel;
    ui.messages.textContent = "";
    delete st.lastSeq[channel];
    if (st.wsOpen) subscribe(channel);
  });

  // ------------------------------------------------------------------ start

  async function main() {
    ui.channel.value = st.channel;
    setConn("idle", "idle");
    if (location.pathname === "/demo/callback") {
      if (await finishLogin()) connect();
      return;
    }
    if (sessionStorage.getItem(REFRESH_KEY)) {
      // A reload of this tab: the refresh token gets a fresh access token.
      st.wantSocket = true;
      try {
        await refreshTokens();
      } catch (e) {
        if (e.final) {
          sessionOver("Your previous session has ended (" + e.message + "). Sign in again.");
        } else {
          notice("The server cannot be reached (" + e.message + "); retrying.", true);
          scheduleReconnect(true);
        }
        return;
      }
      connect();
      return;
    }
    notice("Sign in to chat. (You need a user: `realtime user add NAME --scope chat:read --scope chat:write`.)", false);
  }

  main();
})();
