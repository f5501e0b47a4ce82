// The server of `wscengine bench connections` and `bench storm`: the Node `ws` server
// (event-driven, so one process holds tens of thousands of connections). Prints its URL.
// What a connection may send:
//   "broadcast"     one 64-byte message to every open connection;
//   "restart MS"    drop every connection (no close frame: a crash), stop listening,
//                   listen again on the same port MS milliseconds later, and from then on
//                   note when each connection arrives;
//   "stats"         the answer is one JSON message about the connections since the last
//                   restart: {"accepted","first_ms","last_ms","peak_per_10ms",
//                   "peak_per_100ms"} (times from the moment it listened again).
//   node scale_server.js [--deflate]   (--deflate: permessage-deflate on)
'use strict';
const path = require('path');
const { WebSocketServer, WebSocket } = require(path.join(__dirname, '../../tests/support/node/node_modules/ws'));

const deflate = process.argv.includes('--deflate');
const tick = 'x'.repeat(64);
let server = null;
let port = 0;
let relistened = 0n;  // process.hrtime.bigint() when listening again; 0: no restart yet
let arrivals = [];    // ms after `relistened`
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
  });
}

function listen(onListening) {
  server = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: deflate, backlog: 4096 });
  server.on('listening', () => {
    port = server.address().port;
    onListening();
  });
  server.on('error', (e) => {
    console.error('scale_server: ' + e.message);
    process.exit(1);
  });
  server.on('connection', (ws, request) => {
    if (relistened !== 0n) arrivals.push(Number(process.hrtime.bigint() - relistened) / 1e6);
    sockets.add(request.socket);
    request.socket.on('close', () => sockets.delete(request.socket));
    ws.on('message', (data) => {
      const text = data.toString();
      if (text === 'broadcast') {
        for (const client of server.clients) if (client.readyState === WebSocket.OPEN) client.send(tick);
      } else if (text.startsWith('restart ')) {
        restart(Number(text.slice(8)));
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
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  setTimeout(() => {
    arrivals = [];
    listen(() => {
      relistened = process.hrtime.bigint();
    });
  }, downMs);
}

listen(() => console.log(`ws://127.0.0.1:${port}/`));
