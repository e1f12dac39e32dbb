// The realtime admin console: sign in with PKCE as an app holding
// realtime:admin, then read the server API every two seconds.  No
// framework, no build step, nothing from another origin (see the CSP).
"use strict";
(function () {
  const CLIENT_ID = document.body.dataset.clientId;
  const SCOPE = "realtime:admin";
  const REDIRECT_URI = location.origin + "/admin/callback";
  const FLOW_KEY = "rt.admin.flow";
  const TOKEN_KEY = "rt.admin.token";
  const POLL_MS = 2000;
  const HISTORY = 60; // points in the chart: two minutes
  const $ = (id) => document.getElementById(id);
  const st = { token: null, exp: 0, sub: null, timer: null, last: null, points: [], filter: "" };

  function notice(text, isError) {
    const el = $("notice");
    el.textContent = text;
    el.hidden = !text;
    el.classList.toggle("error", !!isError);
  }

  function b64url(bytes) {
    let s = "";
    new Uint8Array(bytes).forEach((b) => { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString(n) {
    const a = new Uint8Array(n);
    crypto.getRandomValues(a);
    return b64url(a);
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part));
    } catch (e) { return {}; }
  }

  class HttpError extends Error {
    constructor(status, body) {
      super((body && (body.error_description || body.error)) || ("HTTP " + status));
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { authorization: "Bearer " + st.token };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    let parsed = null;
    try { parsed = JSON.parse(text); } catch (e) { parsed = text; }
    if (!resp.ok) throw new HttpError(resp.status, parsed);
    return parsed;
  }

  // ------------------------------------------------------------------ sign in

  async function startLogin() {
    if (!window.crypto || !crypto.subtle) {
      notice("This browser offers no WebCrypto here: open the console over https:// or on 127.0.0.1.", true);
      return;
    }
    const verifier = randomString(32);
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = randomString(16);
    sessionStorage.setItem(FLOW_KEY, JSON.stringify({ state, verifier }));
    const q = new URLSearchParams({
      response_type: "code", client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: SCOPE,
      state, code_challenge: challenge, code_challenge_method: "S256",
    });
    location.assign("/oauth2/authorize?" + q.toString());
  }

  async function finishLogin() {
    const q = new URLSearchParams(location.search);
    history.replaceState(null, "", "/admin/");
    const raw = sessionStorage.getItem(FLOW_KEY);
    sessionStorage.removeItem(FLOW_KEY);
    let flow = null;
    try { flow = raw ? JSON.parse(raw) : null; } catch (e) { flow = null; }
    if (!flow || q.get("state") !== flow.state) {
      notice("This sign-in answer does not match a sign-in started here; it was rejected. Sign in again.", true);
      return;
    }
    if (q.get("error")) {
      notice("Sign-in failed: " + q.get("error") + (q.get("error_description") ? " (" + q.get("error_description") + ")" : ""), true);
      return;
    }
    const form = new URLSearchParams({
      grant_type: "authorization_code", code: q.get("code") || "", redirect_uri: REDIRECT_URI,
      code_verifier: flow.verifier, client_id: CLIENT_ID,
    });
    const resp = await fetch("/oauth2/token", {
      method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form.toString(),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      notice("The code could not be exchanged for a token: " + (body.error_description || body.error || resp.status), true);
      return;
    }
    if (!(body.scope || "").split(" ").includes(SCOPE)) {
      notice("Signed in, but the token does not hold " + SCOPE + ": this user or app may not administer the server.", true);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
  }

  function adopt() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return false;
    const c = claims(token);
    if (!c.exp || c.exp * 1000 <= Date.now()) {
      sessionStorage.removeItem(TOKEN_KEY);
      return false;
    }
    st.token = token;
    st.exp = c.exp;
    st.sub = c.sub;
    return true;
  }

  function signedIn(yes) {
    $("login").hidden = yes;
    $("logout").hidden = !yes;
    $("who").textContent = yes ? "signed in as " + st.sub : "not signed in";
  }

  function signOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    st.token = null;
    clearTimeout(st.timer);
    signedIn(false);
    notice(why || "Signed out.", !!why);
  }

  // ------------------------------------------------------------------ views

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fill(tableId, rows, build) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren();
    rows.forEach((item) => {
      const tr = document.createElement("tr");
      build(tr, item);
      body.appendChild(tr);
    });
  }

  function button(label, title, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "danger";
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  async function disconnect(conn) {
    if (!confirm("Disconnect " + conn.sub + " (" + conn.id + ") with 4003?")) return;
    try {
      const r = await api("POST", "/api/disconnect", { id: conn.id, reason: "disconnected by an administrator" });
      notice("Disconnected " + r.disconnected + " connection(s).");
    } catch (e) { notice("Disconnect failed: " + e.message, true); }
    refresh();
  }

  async function revoke(conn) {
    if (!confirm("Revoke every token of " + conn.sub + " issued until now, on every app, and close its connections?")) return;
    try {
      const r = await api("POST", "/api/revoke", { sub: conn.sub });
      notice("Revoked " + r.revoked_families + " refresh token famil" + (r.revoked_families === 1 ? "y" : "ies") +
             "; closed " + r.closed + " connection(s).");
    } catch (e) { notice("Revoke failed: " + e.message, true); }
    refresh();
  }

  function uptime(s) {
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + m + "m " + Math.floor(s % 60) + "s";
  }

  function metricValue(text, name) {
    const line = text.split("\n").find((l) => l.startsWith(name + " "));
    return line ? Number(line.split(" ")[1]) : null;
  }

  function drawChart() {
    const canvas = $("chart");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 24;
    ctx.clearRect(0, 0, w, h);
    const pts = st.points;
    const max = Math.max(1, ...pts.map((p) => Math.max(p.pub, p.del)));
    ctx.strokeStyle = "#ddd";
    ctx.fillStyle = "#888";
    ctx.font = "11px sans-serif";
    ctx.beginPath();
    ctx.moveTo(pad, h - pad); ctx.lineTo(w - 4, h - pad);
    ctx.moveTo(pad, 6); ctx.lineTo(pad, h - pad);
    ctx.stroke();
    ctx.fillText(max.toFixed(max < 10 ? 1 : 0) + "/s", 2, 14);
    ctx.fillText("0", 10, h - pad);
    [["pub", "#2463c9"], ["del", "#d9822b"]].forEach(([key, color]) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      pts.forEach((p, i) => {
        const x = pad + (i * (w - pad - 6)) / Math.max(1, HISTORY - 1);
        const y = h - pad - (p[key] / max) * (h - pad - 10);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
  }

  async function rates() {
    try {
      const resp = await fetch("/metrics", { headers: { authorization: "Bearer " + st.token }, cache: "no-store" });
      if (!resp.ok) return;
      const text = await resp.text();
      const now = { t: Date.now(), pub: metricValue(text, "realtime_publishes_total"),
                    del: metricValue(text, "realtime_deliveries_total") };
      if (st.last && now.pub !== null) {
        const dt = Math.max(0.001, (now.t - st.last.t) / 1000);
        const point = { pub: Math.max(0, (now.pub - st.last.pub) / dt), del: Math.max(0, (now.del - st.last.del) / dt) };
        st.points.push(point);
        if (st.points.length > HISTORY) st.points.shift();
        $("publish-rate").textContent = point.pub.toFixed(1);
        $("delivery-rate").textContent = point.del.toFixed(1);
        drawChart();
      }
      st.last = now;
    } catch (e) { /* rates are optional ([metrics] scope may exclude this token) */ }
  }

  async function refresh() {
    clearTimeout(st.timer);
    if (!st.token) return;
    if (st.exp * 1000 <= Date.now()) {
      signOut("The token expired. Sign in again.");
      return;
    }
    try {
      const q = new URLSearchParams({ limit: "500" });
      if (st.filter) q.set("sub", st.filter);
      const [info, conns, chans] = await Promise.all([
        api("GET", "/api/info"), api("GET", "/api/connections?" + q.toString()), api("GET", "/api/channels"),
      ]);
      $("version").textContent = info.version;
      $("total-connections").textContent = info.nodes.reduce((n, x) => n + x.connections, 0);
      fill("nodes", info.nodes, (tr, n) => {
        cell(tr, n.node + (n.node === info.node ? " (this)" : ""), "mono");
        cell(tr, String(n.connections));
        cell(tr, uptime(n.uptime_s));
      });
      fill("channels", chans.channels, (tr, c) => {
        cell(tr, c.channel, "mono"); cell(tr, String(c.subscribers)); cell(tr, String(c.top_seq));
      });
      $("partial").hidden = !(conns.partial || info.partial || chans.partial);
      fill("connections", conns.connections, (tr, c) => {
        tr.dataset.sub = c.sub;
        tr.dataset.id = c.id;
        cell(tr, c.id, "mono"); cell(tr, c.sub); cell(tr, c.client_id); cell(tr, c.node, "mono");
        cell(tr, c.remote, "mono");
        cell(tr, new Date(c.connected_at * 1000).toLocaleTimeString());
        cell(tr, c.channels.join(", "));
        const actions = cell(tr, "");
        actions.appendChild(button("Disconnect", "close this connection with 4003", () => disconnect(c)));
        actions.appendChild(button("Revoke", "revoke every token of " + c.sub, () => revoke(c)));
      });
      $("updated").textContent = new Date().toLocaleTimeString();
      await rates();
    } catch (e) {
      if (e instanceof HttpError && (e.status === 401 || e.status === 403)) {
        signOut(e.status === 401 ? "The token was refused (" + e.message + "). Sign in again." :
                "This token may not use the server API (" + SCOPE + " is needed).");
        return;
      }
      notice("Could not read the server: " + e.message, true);
    }
    st.timer = setTimeout(refresh, POLL_MS);
  }

  // ------------------------------------------------------------------ start

  $("login").addEventListener("click", startLogin);
  $("logout").addEventListener("click", () => signOut(""));
  $("filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    st.filter = $("filter-sub").value.trim();
    refresh();
  });

  (async function main() {
    if (location.pathname === "/admin/callback") await finishLogin();
    if (adopt()) {
      signedIn(true);
      refresh();
    } else {
      signedIn(false);
      if (!$("notice").textContent) notice("Sign in with an account that holds " + SCOPE + ".");
    }
  })();
})();
