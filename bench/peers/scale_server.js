// The server of `wscengine bench connections`: the Node `ws` server (event-driven, so one
// process holds tens of thousands of connections). Prints its URL; when any connection
// sends "broadcast", sends one 64-byte message to every open connection.
'use strict';
const path = require('path');
const { WebSocketServer, WebSocket } = require(path.join(__dirname, '../../tests/support/node/node_modules/ws'));

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, backlog: 4096 });
const tick = 'x'.repeat(64);
server.on('listening', () => console.log(`ws://127.0.0.1:${server.address().port}/`));
server.on('connection', (ws) => {
  ws.on('message', (data) => {
    if (data.toString() !== 'broadcast') return;
    for (const client of server.clients) if (client.readyState === WebSocket.OPEN) client.send(tick);
  });
  ws.on('error', () => {});
});
