// The server of `wscengine bench connections` and `bench storm`: the Node `ws` server
// (event-driven, so one process holds tens of thousands of connections). Prints its URL.
// What a connection may send:
//   "broadcast"     one 64-byte message to every open connection;
//   "restart MS ID" drop every connection (no close frame: a crash), stop listening,
//                   listen again on the same port MS milliseconds later, and from then on
//                   note when each connection arrives; once per ID (a client that holds
//                   what it could not confirm sent may send it again after the drop);
//   "stats"         the answer is one JSON message about the connections since the last
//                   restart: {"accepted","first_ms","last_ms","peak_per_10ms",
//                   "peak_per_100ms","resumed"} (times from the moment it listened again;
//                   resumed: how many of them resumed a TLS session).
//   node scale_server.js [--deflate] [--tls CERT KEY]
//     --deflate: permessage-deflate on; --tls: wss:// with that certificate, the same
//     session-ticket keys across restarts (as servers that share them do), TLS 1.2 and 1.3.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const path = require('path');
const { WebSocketServer, WebSocket } = require(path.join(__dirname, '../../tests/support/node/node_modules/ws'));

const deflate = process.argv.includes('--deflate');
const tlsAt = process.argv.indexOf('--tls');
const tls = tlsAt < 0 ? null : {
  cert: fs.readFileSync(process.argv[tlsAt + 1]),
  key: fs.readFileSync(process.argv[tlsAt + 2]),
  ticketKeys: crypto.randomBytes(48),
};
const tick = 'x'.repeat(64);
let server = null;
let port = 0;
let relistened = 0n;  // process.hrtime.bigint() when listening again; 0: no restart yet
let arrivals = [];    // ms after `relistened`
let resumed = 0;      // of those, TLS sessions resumed
const restarts = new Set();  // the IDs of the restarts done
const sockets = new Set();

function peak(window) {
  let best = 0;
  for (let i = 0, j = 0; j < arrivals.length; j += 1) {
    while (arrivals[j] - arrivals[i] >= window) i += 1;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

function stats() {
  return JSON.stringify({
    accepted: arrivals.length,
    first_ms: arrivals.length ? arrivals[0] : 0,
    last_ms: arrivals.length ? arrivals[arrivals.length - 1] : 0,
    peak_per_10ms: peak(10),
    peak_per_100ms: peak(100),
    resumed,
  });
}

let secure = null;  // the HTTPS server under `server` with --tls

function listen(onListening) {
  const failed = (e) => {
    console.error('scale_server: ' + e.message);
    process.exit(1);
  };
  if (tls) {
    secure = https.createServer(tls);
    secure.on('error', failed);
    server = new WebSocketServer({ server: secure, perMessageDeflate: deflate });
    secure.listen(port, '127.0.0.1', 4096, () => {
      port = secure.address().port;
      onListening();
    });
  } else {
    server = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: deflate, backlog: 4096 });
    server.on('listening', () => {
      port = server.address().port;
      onListening();
    });
  }
  server.on('error', failed);
  server.on('connection', (ws, request) => {
    if (relistened !== 0n) {
      arrivals.push(Number(process.hrtime.bigint() - relistened) / 1e6);
      if (tls && request.socket.isSessionReused()) resumed += 1;
    }
    sockets.add(request.socket);
    request.socket.on('close', () => sockets.delete(request.socket));
    ws.on('message', (data) => {
      const text = data.toString();
      if (text === 'broadcast') {
        for (const client of server.clients) if (client.readyState === WebSocket.OPEN) client.send(tick);
      } else if (text.startsWith('restart ')) {
        const [downMs, id] = text.slice(8).split(' ');
        if (!restarts.has(id)) {
          restarts.add(id);
          restart(Number(downMs));
        }
      } else if (text === 'stats') {
        ws.send(stats());
      }
    });
    ws.on('error', () => {});
  });
}

function restart(downMs) {
  const old = server;
  old.close();
  if (secure) secure.close();
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  setTimeout(() => {
    arrivals = [];
    resumed = 0;
    listen(() => {
      relistened = process.hrtime.bigint();
    });
  }, downMs);
}

listen(() => console.log(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/`));
