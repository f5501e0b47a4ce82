// A peer no one here wrote: the Node `ws` client, for bench/run. Same JSON lines as
// `wscengine bench feed|echo`. compression off (the engine's default).
//   node node_client.js feed URL N
//   node node_client.js echo URL N SIZE
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '../../tests/support/node/node_modules/ws'));

const [kind, url, countText, sizeText] = process.argv.slice(2);
const count = Number(countText);
const size = Number(sizeText || 64);
const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });
ws.on('error', (e) => { console.error('node_client: ' + e.message); process.exit(1); });

if (kind === 'feed') {
  let received = 0, bytes = 0, first = 0n;
  ws.on('message', (data) => {
    if (received === 0) first = process.hrtime.bigint();
    received += 1;
    bytes += data.length;
    if (received === count) {
      const secs = Number(process.hrtime.bigint() - first) / 1e9;
      console.log(JSON.stringify({ count, bytes, secs }));
      ws.close(1000);
    }
  });
} else {
  const payload = 'e'.repeat(size);
  const rtts = [];
  let t0 = 0n, start = 0n;
  ws.on('open', () => { start = process.hrtime.bigint(); t0 = start; ws.send(payload); });
  ws.on('message', () => {
    const now = process.hrtime.bigint();
    rtts.push(Number(now - t0) / 1000);
    if (rtts.length === count) {
      rtts.sort((a, b) => a - b);
      const pct = (p) => rtts[Math.min(rtts.length - 1, Math.ceil(p / 100 * rtts.length) - 1)];
      const secs = Number(now - start) / 1e9;
      console.log(JSON.stringify({ count, secs, p50_us: pct(50), p90_us: pct(90), p99_us: pct(99), max_us: rtts[rtts.length - 1] }));
      ws.close(1000);
      return;
    }
    t0 = process.hrtime.bigint();
    ws.send(payload);
  });
}
