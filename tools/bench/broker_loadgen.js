// Load generator for tools/bench/broker_bench.py (Node + ws).
//
//   node broker_loadgen.js '<json config>'
//
// cfg.urls: node URLs; subscribers are spread round-robin over them, the
// cfg.pubs publishers use cfg.urls[0].  Phases:
//   sat  each publisher keeps cfg.inflight publishes unacknowledged; count deliveries at
//        the subscribers for cfg.sat_duration s
//   lat  one message in flight: publish (time in the message), wait until
//        every subscriber has it; per-receiver latency; cfg.lat_duration s
// Prints one line "RESULT <json>" and exits.
'use strict';

const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const cfg = JSON.parse(process.argv[2]);
const OPTS = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 20000 };

function open(url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ...OPTS, headers: { Authorization: `Bearer ${token}` } });
    ws.once('message', () => resolve(ws));
    ws.once('error', reject);
  });
}

function call(ws, msg) {
  return new Promise((resolve) => {
    const onMsg = (data) => {
      const m = JSON.parse(data.toString());
      if (m.id === msg.id) { ws.removeListener('message', onMsg); resolve(m); }
    };
    ws.on('message', onMsg);
    ws.send(JSON.stringify(msg));
  });
}

async function main() {
  const subs = [];
  for (let i = 0; i < cfg.n; i++) {
    const ws = await open(cfg.urls[i % cfg.urls.length], cfg.sub_token);
    const ack = await call(ws, { type: 'subscribe', id: 's', channel: cfg.channel });
    if (ack.type !== 'ack') throw new Error(JSON.stringify(ack));
    subs.push(ws);
  }
  const pubs = [];
  for (let i = 0; i < (cfg.pubs || 1); i++) pubs.push(await open(cfg.urls[0], cfg.pub_token));
  const pub = pubs[0];
  // Let every node report its subscribers before measuring.
  await new Promise((r) => setTimeout(r, 300));

  let delivered = 0;
  let latencies = null;
  let latWait = null;
  let latSeen = 0;
  for (const ws of subs) {
    ws.on('message', (data) => {
      delivered++;
      if (latencies !== null) {
        const m = JSON.parse(data.toString());
        if (m.type === 'message' && m.data && m.data.t !== undefined) {
          latencies.push(performance.now() - m.data.t);
          if (++latSeen === subs.length && latWait) { const w = latWait; latWait = null; w(); }
        }
      }
    });
  }

  // sat
  let stop = false;
  let seq = 0;
  let acked = 0;
  const pad = 'x'.repeat(cfg.pad || 60);
  for (const p of pubs) {
    p.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === 'ack') {
        acked++;
        if (!stop) p.send(JSON.stringify({ type: 'publish', id: ++seq, channel: cfg.channel, data: { p: pad } }));
      } else if (m.type === 'error') {
        process.stderr.write(`publish error ${data}\n`);
      }
    });
  }
  const t0 = performance.now();
  const d0 = delivered;
  for (const p of pubs) {
    for (let i = 0; i < cfg.inflight; i++) {
      p.send(JSON.stringify({ type: 'publish', id: ++seq, channel: cfg.channel, data: { p: pad } }));
    }
  }
  await new Promise((r) => setTimeout(r, cfg.sat_duration * 1000));
  const satDeliveries = delivered - d0;
  const satSecs = (performance.now() - t0) / 1000;
  const satPublishes = acked;
  stop = true;
  await new Promise((r) => setTimeout(r, 500)); // drain what is in flight

  // lat
  pub.removeAllListeners('message');
  latencies = [];
  const endAt = performance.now() + cfg.lat_duration * 1000;
  let rounds = 0;
  while (performance.now() < endAt) {
    latSeen = 0;
    const done = new Promise((r) => { latWait = r; });
    pub.send(JSON.stringify({ type: 'publish', channel: cfg.channel, data: { t: performance.now() } }));
    await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
    rounds++;
  }
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null;
  process.stdout.write(`RESULT ${JSON.stringify({
    deliveries_per_s: satDeliveries / satSecs,
    publishes_per_s: satPublishes / satSecs,
    lat_rounds: rounds,
    lat_p50_ms: pct(0.5),
    lat_p99_ms: pct(0.99),
  })}\n`, () => process.exit(0));
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
