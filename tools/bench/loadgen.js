// Load generator for tools/bench/run.py (Node + ws). One scenario per process.
//
//   node loadgen.js '<json config>'
//
// Talks a line protocol with run.py:
//   stdout "MARK <name>"        run.py samples server/generator CPU and RSS here
//   stdout "MARKWAIT <name>"    same, then run.py writes one line on stdin to go on
//   stdout "RESULT <json>"      the scenario's figures; the process then exits
// Everything else goes to stderr.
//
// Scenarios (cfg.mode):
//   handshake  cfg.concurrency loops of: connect with a bearer token, wait for
//              the welcome, close (client close handshake), repeat; cfg.duration s
//   fanout     cfg.n subscribers of one channel (+1 that never reads when
//              cfg.stalled) and one publisher connection; phases:
//                prefill  (cfg.prefill_bytes > 0) big messages until the stalled
//                         reader's kernel buffers and the server's backlog fill
//                sat      saturated: keep cfg.inflight messages in flight, count
//                         deliveries for cfg.sat_duration s
//                lat      one message in flight; the publish time is in the
//                         message, each receiver computes now - t; cfg.lat_duration s
//   idle       open cfg.n authenticated connections, MARKWAIT idle, close all
'use strict';

const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const cfg = JSON.parse(process.argv[2]);
const WS_OPTS = {
  perMessageDeflate: false,
  skipUTF8Validation: true,
  rejectUnauthorized: false,
  handshakeTimeout: 20000,
  maxPayload: 4 << 20,
};

function mark(name, wait) {
  process.stdout.write(`${wait ? 'MARKWAIT' : 'MARK'} ${name}\n`);
  if (!wait) return Promise.resolve();
  return new Promise((resolve) => {
    const onData = () => { process.stdin.removeListener('data', onData); process.stdin.pause(); resolve(); };
    process.stdin.resume();
    process.stdin.on('data', onData);
  });
}

function result(obj) {
  process.stdout.write(`RESULT ${JSON.stringify(obj)}\n`, () => process.exit(0));
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function openAuthed(token, url = cfg.url) {
  // Resolves with the socket once the welcome arrived.
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ...WS_OPTS, headers: { Authorization: `Bearer ${token}` } });
    let done = false;
    ws.once('message', (data) => {
      done = true;
      const msg = JSON.parse(data.toString());
      if (msg.type !== 'welcome') { ws.terminate(); reject(new Error(`expected welcome, got ${data}`)); return; }
      resolve(ws);
    });
    ws.once('error', (err) => { if (!done) { done = true; reject(err); } });
    ws.once('close', (code) => { if (!done) { done = true; reject(new Error(`closed ${code} before welcome`)); } });
    ws.once('unexpected-response', (req, res) => {
      done = true; reject(new Error(`HTTP ${res.statusCode}`)); req.destroy();
    });
  });
}

function request(ws, obj) {
  // Send a message with an id and resolve with the ack (the next frame).
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.type === 'ack') resolve(msg); else reject(new Error(`expected ack, got ${data}`));
    });
    ws.send(JSON.stringify(obj));
  });
}

async function pool(count, concurrency, fn) {
  // Run fn(i) for i in [0, count) with at most `concurrency` at once.
  const out = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      out[i] = await fn(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return out;
}

async function retrying(fn, tries = 5) {
  for (let attempt = 1; ; attempt++) {
    try { return await fn(); } catch (err) {
      if (attempt >= tries) throw err;
      await sleep(50 * attempt);
    }
  }
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}


// ---------------------------------------------------------------------------
// A lean WebSocket client for the receiving side (subscribers, idle sockets):
// a raw TCP/TLS socket, the RFC 6455 upgrade written by hand (with the bearer
// header), and a minimal frame parser. Per delivered frame it does a header
// read and a callback, so 1000 receivers cost the generator far less than the
// `ws` library's stream machinery would (which then dominated the latency).
const net = require('net');
const tls = require('tls');
const crypto = require('crypto');

class RawWS {
  constructor(token, url = cfg.url) {
    this.token = token;
    this.url = url;
    this.onFrame = null; // (opcode, payload Buffer) for data frames after the upgrade
    this.closeCode = null;
    this.onClose = null;
    this._pending = null;
    this._upgraded = false;
    this._head = '';
  }

  open() {
    const u = new URL(this.url);
    const port = Number(u.port || (u.protocol === 'wss:' ? 443 : 80));
    return new Promise((resolve, reject) => {
      const secure = u.protocol === 'wss:';
      const sock = secure
        ? tls.connect({ host: u.hostname, port, rejectUnauthorized: false, servername: 'localhost' })
        : net.connect({ host: u.hostname, port });
      this.sock = sock;
      sock.setNoDelay(true);
      const key = crypto.randomBytes(16).toString('base64');
      const timer = setTimeout(() => { sock.destroy(); reject(new Error('handshake timeout')); }, 20000);
      let welcomed = false;
      sock.once(secure ? 'secureConnect' : 'connect', () => {
        sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n`
          + `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`
          + `Authorization: Bearer ${this.token}\r\n\r\n`);
      });
      this.onFrame = (opcode, payload) => {
        clearTimeout(timer);
        welcomed = true;
        this.onFrame = null;
        if (payload.toString('latin1', 0, 17) !== '{"type":"welcome"') { reject(new Error(`no welcome: ${payload}`)); return; }
        resolve(this);
      };
      sock.on('data', (chunk) => this._data(chunk, reject));
      sock.on('error', (err) => { clearTimeout(timer); if (!welcomed) reject(err); });
      sock.on('close', () => {
        clearTimeout(timer);
        if (!welcomed) reject(new Error(`closed before welcome (${this._head.split('\r\n')[0]})`));
        if (this.closeCode === null) this.closeCode = 1006;
        if (this.onClose) this.onClose(this.closeCode);
      });
    });
  }

  _data(chunk, reject) {
    if (!this._upgraded) {
      this._head += chunk.toString('latin1');
      const end = this._head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = this._head.slice(0, this._head.indexOf('\r\n'));
      if (!/^HTTP\/1\.1 101 /.test(status)) { reject(new Error(status)); this.sock.destroy(); return; }
      this._upgraded = true;
      chunk = Buffer.from(this._head.slice(end + 4), 'latin1');
      if (!chunk.length) return;
    }
    let buf = this._pending ? Buffer.concat([this._pending, chunk]) : chunk;
    this._pending = null;
    let off = 0;
    const total = buf.length;
    while (total - off >= 2) {
      const b0 = buf[off]; let len = buf[off + 1] & 0x7f; let hdr = 2;
      if (len === 126) { if (total - off < 4) break; len = buf.readUInt16BE(off + 2); hdr = 4; }
      else if (len === 127) { if (total - off < 10) break; len = Number(buf.readBigUInt64BE(off + 2)); hdr = 10; }
      if (total - off < hdr + len) break;
      const opcode = b0 & 0x0f;
      const payload = buf.subarray(off + hdr, off + hdr + len);
      off += hdr + len;
      if (opcode === 8) {
        this.closeCode = len >= 2 ? payload.readUInt16BE(0) : 1005;
        this._sendFrame(8, payload.subarray(0, 2));
        this.sock.end();
      } else if (opcode === 9) {
        this._sendFrame(10, payload);
      } else if (opcode !== 10 && this.onFrame) {
        this.onFrame(opcode, payload);
      }
    }
    if (off < total) this._pending = Buffer.from(buf.subarray(off));
  }

  _sendFrame(opcode, payload) {
    const len = payload.length;
    const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const frame = Buffer.allocUnsafe(hdr + 4 + len);
    frame[0] = 0x80 | opcode;
    if (hdr === 2) frame[1] = 0x80 | len;
    else if (hdr === 4) { frame[1] = 0x80 | 126; frame.writeUInt16BE(len, 2); }
    else { frame[1] = 0x80 | 127; frame.writeBigUInt64BE(BigInt(len), 2); }
    const mask = crypto.randomBytes(4);
    mask.copy(frame, hdr);
    for (let i = 0; i < len; i++) frame[hdr + 4 + i] = payload[i] ^ mask[i & 3];
    if (!this.sock.destroyed) this.sock.write(frame);
  }

  send(text) { this._sendFrame(1, Buffer.from(text)); }

  request(obj) {
    // Send with an id and resolve with the ack (the next frame).
    return new Promise((resolve, reject) => {
      this.onFrame = (opcode, payload) => {
        this.onFrame = null;
        const msg = JSON.parse(payload.toString());
        if (msg.type === 'ack') resolve(msg); else reject(new Error(`expected ack, got ${payload}`));
      };
      this.send(JSON.stringify(obj));
    });
  }

  pause() { this.sock.pause(); }
  resume() { this.sock.resume(); }
  terminate() { this.onClose = null; this.sock.destroy(); }
  get isOpen() { return this._upgraded && !this.sock.destroyed && this.closeCode === null; }
}

async function openRaw(token, url) { return new RawWS(token, url).open(); }

// ---------------------------------------------------------------------------

async function handshake() {
  const tokens = cfg.tokens;
  const deadlineMs = cfg.duration * 1000;
  let ok = 0; let errors = 0; let firstError = null;
  const lat = [];
  let stop = false;
  await mark('hs_start');
  const t0 = performance.now();
  async function loop(i) {
    const token = tokens[i % tokens.length];
    while (!stop) {
      const started = performance.now();
      try {
        await new Promise((resolve, reject) => {
          const ws = new WebSocket(cfg.url, { ...WS_OPTS, headers: { Authorization: `Bearer ${token}` } });
          let welcomed = false;
          ws.once('message', (data) => {
            if (data.toString().startsWith('{"type":"welcome"')) { welcomed = true; ws.close(1000); } else { ws.terminate(); }
          });
          ws.once('close', () => (welcomed ? resolve() : reject(new Error('closed before welcome'))));
          ws.once('error', (err) => { ws.terminate(); reject(err); });
          ws.once('unexpected-response', (req, res) => { req.destroy(); reject(new Error(`HTTP ${res.statusCode}`)); });
        });
        ok++;
        lat.push(performance.now() - started);
      } catch (err) {
        errors++;
        if (!firstError) firstError = String(err && err.message || err);
        await sleep(5);
      }
    }
  }
  const timer = setTimeout(() => { stop = true; }, deadlineMs);
  const loops = Array.from({ length: cfg.concurrency }, (_, i) => loop(i));
  await sleep(deadlineMs);
  // Count what finished inside the window; stragglers finish after the mark.
  const elapsed = (performance.now() - t0) / 1000;
  const okInWindow = ok;
  await mark('hs_end');
  await Promise.all(loops);
  clearTimeout(timer);
  lat.sort((a, b) => a - b);
  result({ mode: 'handshake', ok: okInWindow, errors, first_error: firstError, seconds: elapsed,
    per_s: okInWindow / elapsed, p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99) });
}

// ---------------------------------------------------------------------------

async function fanout() {
  const n = cfg.n;
  const channel = cfg.channel || 'chat:bench';
  const stallChannel = cfg.stall_channel || 'chat:stall';
  const token = cfg.token;
  const pad = 'x'.repeat(cfg.pad === undefined ? 4 : cfg.pad);
  const setupStart = performance.now();
  const subUrls = cfg.sub_urls || [cfg.url];
  const pubUrls = cfg.pub_urls || [cfg.url];

  const subs = await pool(n, cfg.connect_concurrency || 100, async (i) => retrying(async () => {
    const ws = await openRaw(token, subUrls[i % subUrls.length]);
    await ws.request({ type: 'subscribe', channel, id: i + 1 });
    return ws;
  }));
  let stalled = null;
  if (cfg.stalled) {
    stalled = await openRaw(token);
    await stalled.request({ type: 'subscribe', channel, id: 0 });
    await stalled.request({ type: 'subscribe', channel: stallChannel, id: -1 });
    stalled.pause(); // never reads again
  }
  // cfg.pubs publishers on their own sockets (multipub); the first one is `pub`
  const pubs = [];
  for (let i = 0; i < (cfg.pubs || 1); i++) pubs.push(await openAuthed(token, pubUrls[i % pubUrls.length]));
  const pub = pubs[0];
  if (cfg.settle_ms) await sleep(cfg.settle_ms);
  const setupSeconds = (performance.now() - setupStart) / 1000;

  let publisherErrors = 0; let lastError = null;
  for (const p of pubs) {
    p.on('message', (data) => {
      const text = data.toString();
      if (!text.startsWith('{"type":"ack"')) { publisherErrors++; lastError = text.slice(0, 200); }
    });
  }
  let closedDuring = 0; const closeCodes = {};
  const onClose = (code) => { closedDuring++; closeCodes[code] = (closeCodes[code] || 0) + 1; };
  for (const ws of subs) ws.onClose = onClose;
  let stalledClose = null;
  if (stalled) stalled.onClose = (code) => { stalledClose = code; };

  // One handler per subscriber, switched by phase.
  let phase = 'idle';
  let delivered = 0; // deliveries counted in the current phase
  let published = 0;
  let bytesIn = 0;
  let onDelivery = null; // phase hook
  const latencies = [];
  // multipub: publisher i keeps `inflight` messages in flight, each until every
  // subscriber has it, counted from its own deliveries ("i" and "s" in the data)
  const multi = !!cfg.pubs;
  const pubSent = new Array(pubs.length).fill(0);
  const pubDone = new Array(pubs.length).fill(0);
  const slots = new Array(pubs.length * (cfg.inflight || 4)).fill(0);
  let topUp = null; // (i) => publish while publisher i has room, during sat
  const onFrame = (opcode, data) => {
    delivered++;
    bytesIn += data.length;
    if (multi && phase === 'sat') {
      const at = data.indexOf('"i":');
      const sat = data.indexOf('"s":');
      if (at >= 0 && sat >= 0) {
        const i = parseInt(data.toString('latin1', at + 4, at + 12), 10);
        const s = parseInt(data.toString('latin1', sat + 4, sat + 24), 10);
        const k = cfg.inflight || 4;
        if (i >= 0 && i < pubs.length && s < pubSent[i] && s >= pubSent[i] - k && ++slots[i * k + (s % k)] === n) {
          pubDone[i]++;
          if (topUp) topUp(i);
        }
      }
    }
    if (phase === 'lat') {
      // {"type":"message",...,"data":{"t":<ms>,"p":"..."}}: the publish time
      const at = data.indexOf('"t":');
      latencies.push(performance.now() - parseFloat(data.toString('latin1', at + 4, at + 24)));
    }
    if (onDelivery) onDelivery();
  };
  for (const ws of subs) ws.onFrame = onFrame;
  const out = { mode: 'fanout', n, stalled: !!cfg.stalled, setup_seconds: setupSeconds };

  function publish(bigPad, i = published % pubs.length) {
    published++;
    const s = pubSent[i]++;
    if (multi && phase === 'sat') slots[i * (cfg.inflight || 4) + (s % (cfg.inflight || 4))] = 0;
    pubs[i].send(`{"type":"publish","channel":"${channel}","data":{"t":${performance.now().toFixed(3)},"i":${i},"s":${s},"p":"${bigPad || pad}"}}`);
  }

  async function latPhase(name) {
    phase = 'lat'; delivered = 0; published = 0;
    latencies.length = 0;
    let timeouts = 0;
    await mark(`${name}_start`);
    const t0 = performance.now();
    const end = t0 + cfg.lat_duration * 1000;
    const maxMessages = cfg.lat_max_messages || 1e9;
    while (performance.now() < end && published < maxMessages) {
      const target = (published + 1) * n;
      await new Promise((resolve) => {
        const timer = setTimeout(() => { timeouts++; resolve(); }, 5000);
        onDelivery = () => { if (delivered >= target) { clearTimeout(timer); resolve(); } };
        publish();
      });
      delivered = Math.max(delivered, published * n); // resync after a timeout
      if (cfg.lat_gap_ms) await sleep(cfg.lat_gap_ms);
    }
    onDelivery = null;
    phase = 'idle';
    const elapsed = (performance.now() - t0) / 1000;
    await mark(`${name}_end`);
    const sorted = Float64Array.from(latencies).sort();
    return { messages: published, samples: sorted.length, seconds: elapsed, timeouts,
      p50_ms: percentile(sorted, 50), p90_ms: percentile(sorted, 90), p99_ms: percentile(sorted, 99),
      max_ms: sorted.length ? sorted[sorted.length - 1] : null,
      messages_per_s: published / elapsed };
  }

  function publishTo(ch, body) {
    pub.send(`{"type":"publish","channel":"${ch}","data":{"t":${performance.now().toFixed(3)},"p":"${body}"}}`);
  }

  // -- lat_base (with a stalled subscriber): one message in flight before its buffers fill
  if (cfg.stalled && cfg.lat_duration > 0) {
    out.lat_base = await latPhase('lat_base');
  }

  // -- prefill: only the never-reading subscriber is on the stall channel; fill
  // its kernel buffers and the server's backlog for it, then wait for the
  // publisher's socket to drain and the server to work through it.
  if (cfg.stalled && cfg.prefill_bytes > 0) {
    const big = 'y'.repeat(cfg.prefill_message_bytes || 32768);
    const count = Math.ceil(cfg.prefill_bytes / big.length);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      publishTo(stallChannel, big);
      while (pub.bufferedAmount > 256 * 1024) await sleep(1);
    }
    while (pub.bufferedAmount > 0) await sleep(5);
    await sleep(cfg.prefill_settle_ms || 1000);
    out.prefill = { messages: count, bytes: count * big.length, seconds: (performance.now() - t0) / 1000,
      stalled_closed_by_then: stalledClose };
  }

  // -- sat: a few messages in flight, count deliveries
  if (cfg.sat_duration > 0) {
    const inflight = cfg.inflight || 4;
    phase = 'sat'; delivered = 0; published = 0; bytesIn = 0;
    let running = true;
    if (multi) {
      topUp = (i) => { while (running && pubSent[i] - pubDone[i] < inflight) publish(undefined, i); };
    } else {
      onDelivery = () => {
        if (running) while (published - delivered / n < inflight) publish();
      };
    }
    await mark('sat_start');
    const t0 = performance.now();
    if (multi) for (let i = 0; i < pubs.length; i++) topUp(i);
    else for (let i = 0; i < inflight; i++) publish();
    await sleep(cfg.sat_duration * 1000);
    const elapsed = (performance.now() - t0) / 1000;
    const got = delivered;
    const bytes = bytesIn;
    running = false;
    await mark('sat_end');
    // drain what is in flight before the next phase
    const target = published * n;
    const drainStart = performance.now();
    while (delivered < target && performance.now() - drainStart < 10000) await sleep(10);
    onDelivery = null;
    out.sat = { deliveries: got, seconds: elapsed, per_s: got / elapsed, messages_per_s: got / n / elapsed,
      frame_bytes: got ? bytes / got : null, inflight, undelivered_after_drain: Math.max(0, target - delivered) };
  }

  // -- lat: one message in flight
  if (cfg.lat_duration > 0) out.lat = await latPhase('lat');

  out.publisher_errors = publisherErrors;
  out.publisher_last_error = lastError;
  out.subscriber_closes = closedDuring;
  out.subscriber_close_codes = closeCodes;
  if (stalled) {
    // Let the socket read again so a close frame (4009) sent by the server shows up.
    stalled.resume();
    await sleep(300);
    out.stalled_close_code = stalledClose;
  }
  for (const ws of subs) ws.terminate();
  if (stalled) stalled.terminate();
  for (const p of pubs) p.terminate();
  result({ ...out, pubs: pubs.length });
}

// ---------------------------------------------------------------------------

async function idle() {
  const t0 = performance.now();
  let failures = 0; let firstError = null;
  const conns = await pool(cfg.n, cfg.connect_concurrency || 100, async (i) => {
    try { return await retrying(() => openRaw(cfg.tokens[i % cfg.tokens.length]), 8); } catch (err) {
      failures++; if (!firstError) firstError = String(err && err.message || err); return null;
    }
  });
  const setup = (performance.now() - t0) / 1000;
  let closedEarly = 0;
  for (const ws of conns) if (ws) ws.onClose = () => { closedEarly++; };
  await sleep(cfg.settle_ms || 1000);
  await mark('idle', true);
  const open = conns.filter((ws) => ws && ws.isOpen).length;
  for (const ws of conns) if (ws) ws.terminate();
  result({ mode: 'idle', n: cfg.n, open, failures, first_error: firstError, closed_early: closedEarly,
    setup_seconds: setup });
}

const modes = { handshake, fanout, idle };
modes[cfg.mode]().catch((err) => {
  process.stderr.write(`loadgen ${cfg.mode} failed: ${err && err.stack || err}\n`);
  process.stdout.write(`RESULT ${JSON.stringify({ mode: cfg.mode, error: String(err && err.message || err) })}\n`,
    () => process.exit(2));
});
