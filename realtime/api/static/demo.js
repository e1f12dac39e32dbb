// realtime demo chat: the page around the client library (clients/js, served
// here as /demo/lib/*.js).  The library does the OAuth 2 authorization code
// + PKCE (S256) sign-in, keeps the socket alive across token expiry and
// reconnects with `since`; this file only draws what it reports.
// Plain JS modules, no build step, talks only to the origin that served it.

import { Realtime, PkceClient } from "./lib/realtime.js";

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
const WS_URL = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + WS_PATH;
sessionStorage.setItem("rt.demo.client_id", CLIENT_ID);

const $ = (id) => document.getElementById(id);
const ui = {
  who: $("who"), login: $("login"), logout: $("logout"), notice: $("notice"),
  conn: $("conn"), tokenLeft: $("token-left"), refreshes: $("refreshes"), connects: $("connects"),
  channel: $("channel"), joinForm: $("join-form"), messages: $("messages"),
  sendForm: $("send-form"), text: $("text"), send: $("send"),
  notifications: $("notifications"), noteChannel: $("note-channel"), log: $("log"),
};

// The refresh token lives in this tab's sessionStorage (the app's choice).
const auth = new PkceClient({ clientId: CLIENT_ID, redirectUri: REDIRECT_URI, scope: SCOPE, storageKey: "rt.demo.refresh" });
let rt = null;
let channel = params.get("channel") || "chat:lobby";
const subs = {}; // channel -> Subscription

// Exposed read-only as window.rtDemo for tests and curious users.
window.rtDemo = {
  get state() {
    const lastSeq = {};
    for (const [c, s] of Object.entries(subs)) lastSeq[c] = s.lastSeq;
    return {
      sub: rt ? rt.sub : auth.sub, exp: auth.expiresAt, open: !!rt && rt.state === "open", channel,
      refreshes: rt ? rt.stats.refreshes : 0, connects: rt ? rt.stats.connects : 0, gaps: rt ? rt.stats.gaps : 0,
      lastSeq, lastClose: rt && rt.lastClose ? rt.lastClose.code : null,
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
  const sub = (rt && rt.sub) || auth.sub;
  ui.who.textContent = signedIn ? "signed in as " + (sub || "?") : "not signed in";
}

function tick() {
  if (!auth.accessToken) {
    ui.tokenLeft.textContent = "no token";
    return;
  }
  const left = Math.round(auth.expiresAt - Date.now() / 1000);
  ui.tokenLeft.textContent = left > 0 ? "token expires in " + left + " s" : "token expired";
}
setInterval(tick, 1000);

function showText(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function listFor(name) {
  return name === channel ? ui.messages : ui.notifications;
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

// ------------------------------------------------------------------ login

const ERRORS = {
  access_denied: "You denied access, so the page has no token. Sign in again to allow it.",
  invalid_scope: "The demo app may not ask for these scopes; check the \"demo\" app in apps.toml.",
  unauthorized_client: "The demo app may not use the authorization code grant; check apps.toml.",
  login_required: "You are not signed in.",
  consent_required: "Consent is needed.",
  server_error: "The server failed while signing you in. Try again.",
  temporarily_unavailable: "The server is busy. Try again in a moment.",
  no_flow: "This sign-in answer does not belong to a sign-in started in this tab " +
           "(was the tab closed during the redirect?). Nothing was accepted: sign in again.",
  state_mismatch: "The sign-in answer does not match the request (the state parameter differs). " +
                  "It was rejected; sign in again.",
  issuer_mismatch: "The sign-in answer names another issuer. It was rejected.",
  no_webcrypto: "This browser offers no WebCrypto here: open the page over https:// or on localhost / 127.0.0.1.",
};

async function finishLogin() {
  const answer = location.href;
  history.replaceState(null, "", "/demo/"); // the code leaves the address bar at once
  try {
    await auth.handleCallback(answer);
  } catch (e) {
    const known = ERRORS[e.error];
    if (known) notice(known, true);
    else if (e.status) notice("The code could not be exchanged for a token: " + e.message + ". Sign in again.", true);
    else notice("Sign-in failed: " + (e.error || e.message) + (e.message && e.message !== e.error ? " (" + e.message + ")" : ""), true);
    return false;
  }
  notice("");
  setSignedIn(true);
  tick();
  log("signed in as " + auth.sub);
  return true;
}

// ------------------------------------------------------------ the client

const CLOSES = {
  4001: "The token expired before it was refreshed; getting a new one and reconnecting.",
  1001: "The server is restarting; reconnecting.",
  4008: "Too many messages too fast; reconnecting.",
  4009: "This page fell behind the stream; reconnecting.",
};

function onMessage(msg) {
  if (msg.channel === channel) addLine(ui.messages, msg);
  else if (rt && msg.channel === "user:" + rt.sub) addLine(ui.notifications, msg);
}

async function join(name) {
  // since 0 the first time: show the channel's kept history; the library
  // resubscribes with the last seq it delivered after every reconnect.
  try {
    subs[name] = await rt.subscribe(name, { since: 0, onMessage });
  } catch (e) {
    if (rt && rt.state !== "closed") notice(name + ": " + e.code + ": " + e.message, true);
  }
}

function sessionOver(why) {
  if (rt) rt.close();
  rt = null;
  setSignedIn(false);
  setConn("closed", "closed");
  tick();
  notice(why, true);
}

function start() {
  const client = new Realtime(WS_URL, { getToken: (info) => auth.getToken(info) });
  rt = client;
  client.on("state", (state, info) => {
    if (rt !== client) return;
    if (state === "connecting") setConn("connecting", "connecting…");
    else if (state === "reconnecting") setConn("waiting", "reconnecting in " + Math.ceil(info.delay / 1000) + " s");
    else if (state === "open") {
      ui.connects.textContent = String(client.stats.connects);
      setConn("open", "open");
      setSignedIn(true);
      ui.noteChannel.textContent = "user:" + client.sub;
      log("socket open");
      if (client.stats.connects > 1) notice("Reconnected.", false);
      else if (!ui.notice.classList.contains("error")) notice("");
    } else if (state === "closed" && info.error) {
      // 4003, or the refresh token was refused: the session is over.
      const e = info.error;
      sessionOver(e.code === "access_withdrawn"
        ? "The server withdrew access (" + (info.reason || "4003") + "). Sign in again."
        : "Your session has ended (" + e.message + "). Sign in again.");
    }
  });
  client.on("token", (info) => {
    tick();
    if (info.reason === "refresh") {
      ui.refreshes.textContent = String(client.stats.refreshes);
      log("refreshed in-band; socket still open");
    }
  });
  client.on("close", (info) => {
    log("socket closed " + info.code + (info.reason ? " (" + info.reason + ")" : ""));
    if (!info.willReconnect) return;
    notice(CLOSES[info.code] || (info.code === 1006 && client.stats.connects === 0
      ? "Cannot connect to the server; retrying." : "The connection was lost; reconnecting."), false);
  });
  client.on("error", (e) => log("error: " + (e.code ? e.code + ": " : "") + e.message));
  client.on("gap", (info) => {
    if (info.recovered === false) {
      // The server no longer has what came after our last seq (it restarted, or
      // its history is shorter than the outage): say so, and follow it from here.
      addSystem(listFor(info.channel), "(the server could not replay everything missed while disconnected)");
      notice("Some messages on " + info.channel + " could not be recovered " +
             "(the server restarted or its history is shorter than the outage).", false);
    } else {
      addSystem(listFor(info.channel), "(" + info.missing + " message(s) missing here)");
    }
  });
  for (const type of ["join", "leave"]) {
    client.on(type, (ev) => { if (ev.channel === channel) addSystem(ui.messages, ev.sub + (type === "join" ? " joined" : " left")); });
  }
  client.connect().then((welcome) => {
    join(channel);
    join("user:" + welcome.sub);
  }, () => { /* the closed state above said why */ });
}

// --------------------------------------------------------------- controls

ui.login.addEventListener("click", () => {
  auth.login().catch((e) => notice(ERRORS[e.error] || e.message, true));
});

ui.logout.addEventListener("click", async () => {
  sessionOver("");
  notice("Signed out.", false);
  await auth.logout();
});

ui.sendForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  if (!rt || rt.state !== "open") {
    notice("Not connected: the message was not sent.", true);
    return;
  }
  ui.text.value = "";
  rt.publish(channel, { text }).catch((e) => notice("publish: " + e.code + ": " + e.message, true));
});

ui.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = ui.channel.value.trim();
  if (!name || name === channel) return;
  if (subs[channel]) subs[channel].unsubscribe();
  delete subs[channel];
  channel = name;
  ui.messages.textContent = "";
  if (rt) join(channel);
});

// ------------------------------------------------------------------ start

async function main() {
  ui.channel.value = channel;
  setConn("idle", "idle");
  if (location.pathname === "/demo/callback") {
    if (await finishLogin()) start();
    return;
  }
  if (auth.hasSession()) {
    // A reload of this tab: the refresh token gets a fresh access token.
    start();
    return;
  }
  notice("Sign in to chat. (You need a user: `realtime user add NAME --scope chat:read --scope chat:write`.)", false);
}

main();
