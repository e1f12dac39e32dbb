// A real realtime server for the library's tests: `python -m realtime serve`
// in a subprocess, with a temp config on 127.0.0.1:0; the bound port comes
// from its log line `listening http=127.0.0.1:PORT`.  Apps and users are
// made with the real operator commands (`realtime app add`, `user add`),
// tokens with the real password and client_credentials grants.
//
// The Python comes from $REALTIME_PYTHON (the pytest wrapper sets it), else
// the repository's .venv, else python3 on PATH.  Nothing here skips: a
// missing Python or redis-server fails with what to install.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..", "..", "..");
export const PASSWORD = "alice-password-1234";

export function python() {
  if (process.env.REALTIME_PYTHON) return process.env.REALTIME_PYTHON;
  const venv = join(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

function run(args, { input, cwd } = {}) {
  const done = spawnSync(python(), ["-m", "realtime", ...args], { input, cwd, encoding: "utf8", timeout: 60000 });
  if (done.error) throw new Error(`cannot run ${python()} -m realtime (set REALTIME_PYTHON, or pip install -e . in ${REPO}/.venv): ${done.error.message}`);
  if (done.status !== 0) throw new Error(`realtime ${args.join(" ")} failed (${done.status}):\n${done.stdout}${done.stderr}`);
  return done.stdout + done.stderr;
}

/** A free loopback port (for redis-server, which cannot report one). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

/** Wait (bounded) for a line matching `re` from a child's output stream. */
function waitForLine(lines, emitter, re, ms, what) {
  return new Promise((ok, fail) => {
    const found = lines.find((l) => re.test(l));
    if (found) { ok(found); return; }
    const timer = setTimeout(() => { cleanup(); fail(new Error(`${what}: no line matching ${re} within ${ms} ms:\n${lines.slice(-30).join("\n")}`)); }, ms);
    const onLine = (l) => { if (re.test(l)) { cleanup(); ok(l); } };
    const onExit = (code) => { cleanup(); fail(new Error(`${what} exited (${code}) before ${re}:\n${lines.slice(-30).join("\n")}`)); };
    const cleanup = () => { clearTimeout(timer); emitter.off("line", onLine); emitter.off("exit", onExit); };
    emitter.on("line", onLine);
    emitter.on("exit", onExit);
  });
}

function collect(child, lines) {
  let buf = "";
  const feed = (chunk) => {
    buf += chunk;
    const parts = buf.split("\n");
    buf = parts.pop();
    for (const l of parts) { lines.push(l); child.emit("line", l); }
  };
  child.stdout.setEncoding("utf8").on("data", feed);
  child.stderr.setEncoding("utf8").on("data", feed);
}

export class RedisServer {
  static async start() {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "rt-js-redis-"));
    const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir, "--logfile", "", "--daemonize", "no"], { stdio: ["ignore", "pipe", "pipe"] });
    const lines = [];
    const failed = new Promise((_, fail) => child.once("error", (e) => fail(new Error(
      `redis-server cannot start (${e.message}): install the Debian package redis-server (tools/test.sh does it)`))));
    collect(child, lines);
    child.once("exit", (code) => child.emit("exit", code));
    await Promise.race([failed, waitForLine(lines, child, /Ready to accept connections/, 20000, "redis-server")]);
    const r = new RedisServer();
    Object.assign(r, { port, dir, child, url: `redis://127.0.0.1:${port}/0` });
    return r;
  }

  async stop() {
    if (this.child.exitCode === null) {
      const exited = new Promise((ok) => this.child.once("exit", ok));
      this.child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One server directory (config, apps, users, state) and its process.
 * `start()` again after `stop()` is a restart on the same port and state.
 */
export class RealtimeServer {
  /** `share`: another RealtimeServer whose apps and users this node copies
   *  (a second node of one cluster, with its own state dir). */
  static async create({ accessTtl = "60s", expiryWarning = "2s", broker = null, share = null } = {}) {
    const s = new RealtimeServer();
    s.dir = mkdtempSync(join(tmpdir(), "rt-js-"));
    s.conf = join(s.dir, "conf", "realtime.toml");
    mkdirSync(join(s.dir, "conf"));
    writeFileSync(s.conf, [
      "[server]", 'http = "127.0.0.1:0"', 'https = ""', 'state_dir = "../var"', 'public_url = "http://127.0.0.1"',
      'shutdown_grace = "2s"', "",
      "[oauth]", 'apps = "apps.toml"', 'users = "users.json"', `access_token_ttl = "${accessTtl}"`, "",
      "[websocket]", `expiry_warning = "${expiryWarning}"`, 'ping_interval = "5s"', 'pong_timeout = "5s"', "",
      ...(broker ? ["[broker]", `url = "${broker}"`, ""] : []),
      "[[channel]]", 'pattern = "chat:*"', 'subscribe_scope = "chat:read"', 'publish_scope = "chat:write"',
      "history = 100", "presence = true", "",
      "[[channel]]", 'pattern = "admin:*"', 'subscribe_scope = "admin"', 'publish_scope = "admin"', "",
    ].join("\n"));
    if (share) {
      s.client = share.client;
      for (const f of ["apps.toml", "users.json"]) writeFileSync(join(s.dir, "conf", f), readFileSync(join(share.dir, "conf", f)));
      return s;
    }
    writeFileSync(join(s.dir, "conf", "apps.toml"), "");
    writeFileSync(join(s.dir, "conf", "users.json"), '{"users": []}\n');
    const out = run(["app", "add", "Chat", "-c", s.conf, "--grant", "password", "client_credentials", "refresh_token",
      "--scope", "chat:read", "chat:write"]);
    s.client = {
      id: /client_id: (\S+)/.exec(out)[1],
      secret: /client_secret: (\S+)/.exec(out)[1],
    };
    run(["user", "add", "alice", "-c", s.conf, "--password-stdin", "--scope", "chat:read", "chat:write"], { input: PASSWORD + "\n" });
    return s;
  }

  /** Start `realtime serve`; the first start binds :0, later ones the same port. */
  async start() {
    const args = ["-m", "realtime", "serve", "-c", this.conf];
    if (this.port) args.push("--http", `127.0.0.1:${this.port}`);
    const child = spawn(python(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } });
    this.lines = [];
    this.child = child;
    child.once("exit", (code) => child.emit("exit", code));
    collect(child, this.lines);
    const line = await waitForLine(this.lines, child, /listening .*http=127\.0\.0\.1:(\d+)/, 30000, "realtime serve");
    this.port = Number(/http=127\.0\.0\.1:(\d+)/.exec(line)[1]);
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  /** SIGTERM (every socket gets 1001) and wait for the exit. */
  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((ok) => this.child.once("exit", ok));
    this.child.kill("SIGTERM");
    await exited;
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Run an operator command against this server's config. */
  cli(...args) {
    return run([...args, "-c", this.conf]);
  }

  async tokenRequest(fields) {
    const resp = await fetch(this.url + "/oauth2/token", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: "Basic " + Buffer.from(`${this.client.id}:${this.client.secret}`).toString("base64"),
      },
      body: new URLSearchParams(fields).toString(),
    });
    const body = await resp.json();
    if (!resp.ok) throw Object.assign(new Error(`token endpoint: ${resp.status} ${JSON.stringify(body)}`), { status: resp.status, body });
    return body;
  }

  /** alice's tokens by the password grant. */
  passwordGrant(user = "alice", password = PASSWORD) {
    return this.tokenRequest({ grant_type: "password", username: user, password, scope: "chat:read chat:write" });
  }

  /** The app's own token (sub = client_id) by the client_credentials grant. */
  async appToken() {
    return (await this.tokenRequest({ grant_type: "client_credentials", scope: "chat:read chat:write" })).access_token;
  }

  /** POST /api/publish with the app's token; resolves with {delivered, seq}. */
  async publish(channel, data, token) {
    const resp = await fetch(this.url + "/api/publish", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer " + (token || await this.appToken()) },
      body: JSON.stringify({ channel, data }),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(`/api/publish: ${resp.status} ${JSON.stringify(body)}`);
    return body;
  }
}

/**
 * A TCP relay in front of a server, to cut the network under a live
 * socket: `cut()` destroys every relayed connection (the client sees 1006,
 * no close frame), `freeze()` silences them without a close, `refuse()` / `accept()` turn new connections away or
 * let them through.
 */
export class Relay {
  static async start(targetPort) {
    const r = new Relay();
    r.sockets = new Set();
    r.refusing = false;
    r.server = createServer((c) => {
      if (r.refusing) { c.destroy(); return; }
      const s = tcpConnect(targetPort, "127.0.0.1");
      for (const x of [c, s]) { r.sockets.add(x); x.on("close", () => r.sockets.delete(x)); x.on("error", () => {}); }
      c.pipe(s); s.pipe(c);
      c.on("close", () => s.destroy()); s.on("close", () => c.destroy());
    });
    await new Promise((ok) => r.server.listen(0, "127.0.0.1", ok));
    r.port = r.server.address().port;
    r.url = `http://127.0.0.1:${r.port}`;
    return r;
  }

  cut() { for (const s of this.sockets) s.destroy(); }
  /** A pulled cable: live connections stay open but carry nothing more. */
  freeze() {
    for (const s of this.sockets) { s.unpipe(); s.removeAllListeners("data"); s.on("data", () => {}); }
  }
  refuse() { this.refusing = true; }
  accept() { this.refusing = false; }
  close() { this.cut(); return new Promise((ok) => this.server.close(ok)); }
}

/** Resolve when `client` emits `event` with args passing `test` (bounded). */
export function waitFor(client, event, test = () => true, ms = 20000) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { off(); fail(new Error(`no ${event} event within ${ms} ms`)); }, ms);
    const off = client.on(event, (...args) => { if (test(...args)) { clearTimeout(timer); off(); ok(args); } });
  });
}
