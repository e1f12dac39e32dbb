// OAuth 2 authorization code + PKCE (RFC 7636, S256 through WebCrypto) for
// single-page apps, against realtime's own /oauth2/* endpoints (SPEC §3).
//
// login() sends the browser to /oauth2/authorize; handleCallback() checks
// the answer (state, error, RFC 9207 iss) and trades the code for tokens;
// getToken() hands Realtime an access token, using the refresh token when
// the connection asks for a fresh one.  Where the refresh token lives is
// the app's choice (`storage`: sessionStorage by default, or any object
// with getItem/setItem/removeItem, e.g. one that keeps it in memory).

/** A sign-in or token failure.  `error` is the OAuth error code
 *  (access_denied, invalid_grant, state_mismatch, ...); `final` says a
 *  retry cannot help (sign in again). */
export class AuthError extends Error {
  constructor(error, message, extra = {}) {
    super(message);
    this.name = "AuthError";
    this.error = error;
    Object.assign(this, extra);
  }
}

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function webCrypto() {
  const c = globalThis.crypto;
  if (!c || !c.subtle) {
    throw new AuthError("no_webcrypto", "this page has no WebCrypto: open it over https:// or on localhost");
  }
  return c;
}

/** A random verifier of 43 characters and its S256 challenge. */
export async function createPkcePair() {
  const c = webCrypto();
  const verifier = b64url(c.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(await c.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  return { verifier, challenge };
}

/** The claims of a JWT, unverified (for exp and sub only; the server verifies). */
export function jwtClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
  } catch (e) {
    return {};
  }
}

export class PkceClient {
  /**
   * @param {object} o `clientId`, `redirectUri`, `scope`; optional
   *   `server` (base URL; default this page's origin), `storage` (refresh
   *   token), `flowStorage` (state and verifier during the redirect;
   *   sessionStorage), `storageKey`, `fetch`, `timeout` (ms),
   *   `navigate(url)` (default location.assign).
   */
  constructor(o) {
    if (!o || !o.clientId || !o.redirectUri) throw new TypeError("clientId and redirectUri are required");
    this.clientId = o.clientId;
    this.redirectUri = o.redirectUri;
    this.scope = o.scope || "";
    this.server = (o.server || (typeof location !== "undefined" ? location.origin : "")).replace(/\/+$/, "");
    this.storage = o.storage || globalThis.sessionStorage;
    this.flowStorage = o.flowStorage || globalThis.sessionStorage;
    this.key = o.storageKey || "realtime.refresh";
    this.flowKey = this.key + ".flow";
    this.fetch = o.fetch || globalThis.fetch.bind(globalThis);
    this.timeout = o.timeout || 15000;
    this.navigate = o.navigate || ((url) => location.assign(url));
    this.accessToken = null;
    this.expiresAt = 0;     // epoch seconds
    this.sub = null;
    this._refreshing = null;
  }

  /** Whether a refresh token is stored (a reload can sign in silently). */
  hasSession() {
    return !!this.storage.getItem(this.key);
  }

  /** Start the sign-in: remember state and verifier, go to /oauth2/authorize. */
  async login(extra = {}) {
    const { verifier, challenge } = await createPkcePair();
    const state = b64url(webCrypto().getRandomValues(new Uint8Array(16)));
    this.flowStorage.setItem(this.flowKey, JSON.stringify({ state, verifier, at: Date.now() }));
    const q = new URLSearchParams(Object.assign({
      response_type: "code", client_id: this.clientId, redirect_uri: this.redirectUri, scope: this.scope,
      state, code_challenge: challenge, code_challenge_method: "S256",
    }, extra));
    const url = this.server + "/oauth2/authorize?" + q.toString();
    this.navigate(url);
    return url;
  }

  /** Finish the sign-in from the redirect's URL (default: this page's).
   *  Resolves with the token response; rejects with an AuthError. */
  async handleCallback(url = location.href) {
    const q = new URL(url).searchParams;
    const raw = this.flowStorage.getItem(this.flowKey);
    this.flowStorage.removeItem(this.flowKey); // single use, whatever happens next
    let flow = null;
    try { flow = raw ? JSON.parse(raw) : null; } catch (e) { flow = null; }
    if (!flow) throw new AuthError("no_flow", "this answer does not belong to a sign-in started here", { final: true });
    if (!q.get("state") || q.get("state") !== flow.state) {
      throw new AuthError("state_mismatch", "the answer's state parameter differs from the request's", { final: true });
    }
    const error = q.get("error");
    if (error) throw new AuthError(error, q.get("error_description") || error, { final: true });
    const iss = q.get("iss");
    if (iss) {
      // RFC 9207: the answer must come from the server we sent the user to.
      let meta = null;
      try { meta = await this._request("/.well-known/oauth-authorization-server", { method: "GET" }); } catch (e) { meta = null; }
      if (meta && meta.issuer && meta.issuer !== iss) {
        throw new AuthError("issuer_mismatch", "the answer names another issuer: " + iss, { final: true });
      }
    }
    const code = q.get("code");
    if (!code) throw new AuthError("invalid_request", "the answer has no code", { final: true });
    const body = await this._token({
      grant_type: "authorization_code", code, redirect_uri: this.redirectUri, code_verifier: flow.verifier,
    });
    return body;
  }

  /** An access token for Realtime's getToken: the current one, or a new one
   *  from the refresh token when it is near expiry or the connection asks
   *  (`reason` expiring, expired or rejected). */
  async getToken(info = {}) {
    const fresh = info.reason === "expiring" || info.reason === "expired" || info.reason === "rejected";
    if (!fresh && this.accessToken && this.expiresAt - Date.now() / 1000 > 5) return this.accessToken;
    await this.refresh();
    return this.accessToken;
  }

  /** Use the refresh token (one refresh at a time; callers share it). */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async _refresh() {
    const rt = this.storage.getItem(this.key);
    if (!rt) throw new AuthError("login_required", "no refresh token: sign in", { final: true });
    try {
      return await this._token({ grant_type: "refresh_token", refresh_token: rt });
    } catch (e) {
      if (e.final) this.storage.removeItem(this.key);
      throw e;
    }
  }

  /** Forget the tokens and revoke the refresh token (RFC 7009). */
  async logout() {
    const rt = this.storage.getItem(this.key);
    this.storage.removeItem(this.key);
    this.accessToken = null;
    this.expiresAt = 0;
    if (!rt) return;
    try {
      await this._request("/oauth2/revoke", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ client_id: this.clientId, token: rt, token_type_hint: "refresh_token" }).toString(),
      });
    } catch (e) { /* it dies with its lifetime anyway */ }
  }

  async _token(fields) {
    const body = await this._request("/oauth2/token", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(Object.assign({ client_id: this.clientId }, fields)).toString(),
    });
    this.accessToken = body.access_token;
    const claims = jwtClaims(body.access_token);
    this.sub = claims.sub || this.sub;
    this.expiresAt = claims.exp || (Date.now() / 1000 + (body.expires_in || 0));
    if (body.refresh_token) this.storage.setItem(this.key, body.refresh_token);
    return body;
  }

  // fetch with a deadline; 4xx answers are final (sign in again), the rest may pass.
  async _request(path, options) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), this.timeout);
    let resp;
    try {
      resp = await this.fetch(this.server + path, Object.assign({ signal: ctrl.signal, cache: "no-store" }, options));
    } catch (e) {
      throw new AuthError("network", e.name === "AbortError" ? "the server did not answer in time" : "the server cannot be reached");
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const code = (body && body.error) || "http_" + resp.status;
      throw new AuthError(code, (body && (body.error_description || body.error)) || "HTTP " + resp.status,
        { status: resp.status, final: resp.status >= 400 && resp.status < 500 && resp.status !== 429 });
    }
    return body;
  }
}
