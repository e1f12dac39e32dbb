// The Node `ws` peer for tools/bench: realtime's /ws contract on Node.
//
//   node peer_ws.js '{"pubkey": PEM-path, "issuer": URL, "http": "127.0.0.1:0",
//                     "https": "127.0.0.1:0", "cert": PEM-path}'
//
// Handshake: `Authorization: Bearer <JWT>` checked before the upgrade (RS256
// signature with node:crypto and the same public key, typ at+jwt, iss/aud,
// exp); else HTTP 401 + WWW-Authenticate. Then welcome; subscribe → ack;
// publish → the frame is built once as a Buffer and sent to each subscriber
// with ws.send (ws frames it per recipient), ack with seq when an id came.
// Prints `peer ws listening http=HOST:PORT https=HOST:PORT` on stderr.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const cfg = JSON.parse(process.argv[2]);
const publicKey = crypto.createPublicKey(fs.readFileSync(cfg.pubkey));
const issuer = cfg.issuer.replace(/\/$/, '');

function b64json(segment) { return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')); }

function verify(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('malformed');
  const header = b64json(parts[0]);
  if (header.alg !== 'RS256') throw new Error('alg');
  if (header.typ !== 'at+jwt' && header.typ !== 'application/at+jwt') throw new Error('typ');
  const ok = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey,
    Buffer.from(parts[2], 'base64url'));
  if (!ok) throw new Error('signature');
  const claims = b64json(parts[1]);
  for (const name of ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'scope']) {
    if (claims[name] === undefined) throw new Error(`missing ${name}`);
  }
  if (claims.iss !== issuer) throw new Error('iss');
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(issuer)) throw new Error('aud');
  const now = Date.now() / 1000;
  if (claims.exp + 5 < now) throw new Error('expired');
  return claims;
}

const channels = new Map(); // channel -> Set<ws>
const seqs = new Map();

function reject(socket) {
  socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error="invalid_token"\r\n'
    + 'Content-Length: 0\r\nConnection: close\r\n\r\n');
}

function attach(server) {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });
  server.on('upgrade', (req, socket, head) => {
    if (req.url.split('?')[0] !== '/ws') { reject(socket); return; }
    const auth = req.headers.authorization || '';
    let claims;
    try {
      if (!auth.startsWith('Bearer ')) throw new Error('no token');
      claims = verify(auth.slice(7).trim());
    } catch (err) { reject(socket); return; }
    wss.handleUpgrade(req, socket, head, (ws) => session(ws, claims));
  });
}

function session(ws, claims) {
  const scopes = new Set(String(claims.scope).split(' '));
  const mine = new Set();
  ws.send(JSON.stringify({ type: 'welcome', sub: claims.sub, expires_at: claims.exp }));
  ws.on('message', (raw) => {
    let msg;
    try { msg = JSON.parse(raw.toString()); } catch (err) {
      ws.send('{"type":"error","code":"bad_json","message":"invalid JSON"}'); return;
    }
    const id = msg.id;
    const channel = msg.channel;
    if (msg.type === 'publish') {
      if (!scopes.has('chat:write') || typeof channel !== 'string' || !channel.startsWith('chat:')) {
        ws.send(JSON.stringify({ type: 'error', id, code: 'forbidden', message: 'no' })); return;
      }
      const seq = (seqs.get(channel) || 0) + 1;
      seqs.set(channel, seq);
      const frame = Buffer.from(JSON.stringify({ type: 'message', channel, seq, from: claims.sub, data: msg.data }));
      const subs = channels.get(channel);
      if (subs) for (const peer of subs) if (peer.readyState === 1) peer.send(frame, { binary: false });
      if (id !== undefined) ws.send(JSON.stringify({ type: 'ack', id, seq }));
    } else if (msg.type === 'subscribe') {
      if (!scopes.has('chat:read') || typeof channel !== 'string' || !channel.startsWith('chat:')) {
        ws.send(JSON.stringify({ type: 'error', id, code: 'forbidden', message: 'no' })); return;
      }
      if (!channels.has(channel)) channels.set(channel, new Set());
      channels.get(channel).add(ws);
      mine.add(channel);
      ws.send(JSON.stringify({ type: 'ack', id }));
    } else if (msg.type === 'unsubscribe') {
      if (channels.has(channel)) channels.get(channel).delete(ws);
      mine.delete(channel);
      ws.send(JSON.stringify({ type: 'ack', id }));
    } else if (msg.type === 'ping') {
      ws.send('{"type":"pong"}');
    } else {
      ws.send(JSON.stringify({ type: 'error', id, code: 'unknown_type', message: String(msg.type) }));
    }
  });
  ws.on('close', () => { for (const channel of mine) channels.get(channel).delete(ws); });
  ws.on('error', () => {});
}

function listen(server, addr) {
  const i = addr.lastIndexOf(':');
  return new Promise((resolve) => server.listen(Number(addr.slice(i + 1)), addr.slice(0, i), 4096,
    () => resolve(`${server.address().address}:${server.address().port}`)));
}

(async () => {
  const bound = [];
  const plain = http.createServer((req, res) => { res.writeHead(404); res.end(); });
  attach(plain);
  bound.push(`http=${await listen(plain, cfg.http || '127.0.0.1:0')}`);
  if (cfg.https) {
    const pem = fs.readFileSync(cfg.cert);
    const tls = https.createServer({ cert: pem, key: fs.readFileSync(cfg.key || cfg.cert) },
      (req, res) => { res.writeHead(404); res.end(); });
    attach(tls);
    bound.push(`https=${await listen(tls, cfg.https)}`);
  }
  process.stderr.write(`peer ws listening ${bound.join(' ')}\n`);
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
})();
