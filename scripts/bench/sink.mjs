// The benchmark's destination, in a process of its own so that its memory is not
// counted as the app's: counts events and distinct uuids, answers 200.
import { createServer } from 'node:http';
import { gunzipSync } from 'node:zlib';

const uuids = new Set();
let events = 0;
let requests = 0;
let bytes = 0;
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    bytes += raw.length;
    requests += 1;
    const body = JSON.parse((raw[0] === 0x1f ? gunzipSync(raw) : raw).toString('utf8'));
    for (const e of body.batch) {
      uuids.add(e.uuid);
      events += 1;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":1}');
  });
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (m) => {
  if (m === 'report') process.send({ events, distinct: uuids.size, requests, bytes });
  if (m === 'stop') server.close(() => process.exit(0));
});
