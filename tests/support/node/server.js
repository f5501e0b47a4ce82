// A peer no one here wrote: Node's `ws` as the server for integration tests.
// Prints its ws:// URL, then serves until killed. What a connection gets depends on
// its path:
//   /echo          echo every message with its type
//   /close/CODE    send "hello", then close with CODE and reason "bye from node"
//   /drop          send "hello", then drop the TCP connection (no close frame)
//   /binary        send 20 bytes 0..19 as a binary message, then echo
//   /header/NAME   send the value of request header NAME (or "<none>"), then echo
//   /extensions    send the Sec-WebSocket-Extensions it answered (or "<none>"), then echo
// With --deflate it accepts permessage-deflate (every parameter a client offers) and
// compresses every message, however short.
// Installed by scripts/setup-debian.sh (npm ci here); run with `node server.js`.
'use strict';
const { WebSocketServer } = require('ws');

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 1 << 24,
  perMessageDeflate: process.argv.includes('--deflate') ? { threshold: 0 } : false,
  handleProtocols: (protocols) => (protocols.size ? protocols.values().next().value : false),
});

server.on('listening', () => {
  console.log(`ws://127.0.0.1:${server.address().port}`);
});

// What the server answered in Sec-WebSocket-Extensions, per upgrade request.
const answeredExtensions = new WeakMap();
server.on('headers', (headers, request) => {
  const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
  if (line) answeredExtensions.set(request, line.slice(line.indexOf(':') + 1).trim());
});

server.on('connection', (ws, request) => {
  const path = request.url;
  const echo = () => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  if (path.startsWith('/close/')) {
    ws.send('hello');
    ws.close(Number(path.split('/')[2]), 'bye from node');
    return;
  }
  if (path === '/drop') {
    ws.send('hello', () => ws.terminate());
    return;
  }
  if (path === '/binary') {
    ws.send(Buffer.from([...Array(20).keys()]), { binary: true });
  } else if (path === '/extensions') {
    ws.send(answeredExtensions.get(request) || '<none>');
  } else if (path.startsWith('/header/')) {
    ws.send(request.headers[path.slice('/header/'.length).toLowerCase()] || '<none>');
  }
  echo();
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
