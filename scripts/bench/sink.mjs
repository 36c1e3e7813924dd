// The benchmark's destination, in a process of its own so that its memory and CPU are
// not counted as the command's: counts events, distinct uuids, events of each name and
// the most requests it held at once, answers 200. Told
// `{ record: FILE }`, it also appends every request to FILE (a JSON line of its url,
// content type and length, then the body) until `reset`, for the bench to replay.
import { closeSync, openSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import { gunzipSync } from 'node:zlib';

let record = null;
let uuids = new Set();
let events = 0;
let requests = 0;
let bytes = 0;
let names = {};
let open = 0;
let inflight = 0;
const server = createServer((req, res) => {
  open += 1;
  inflight = Math.max(inflight, open);
  res.on('finish', () => (open -= 1));
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    if (record !== null) {
      writeSync(record, `${JSON.stringify({ url: req.url, type: req.headers['content-type'] ?? '', bytes: raw.length })}\n`);
      writeSync(record, raw);
    }
    bytes += raw.length;
    requests += 1;
    const body = JSON.parse((raw[0] === 0x1f ? gunzipSync(raw) : raw).toString('utf8'));
    for (const e of body.batch) {
      uuids.add(e.uuid);
      events += 1;
      names[e.event] = (names[e.event] ?? 0) + 1;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":1}');
  });
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (m) => {
  if (m.record) {
    record = openSync(m.record, 'a');
    process.send('recording');
  }
  if (m === 'report') process.send({ events, distinct: uuids.size, requests, bytes, names, inflight });
  if (m === 'reset') {
    uuids = new Set();
    events = requests = bytes = inflight = 0;
    names = {};
    if (record !== null) closeSync(record);
    record = null;
    process.send('reset');
  }
  if (m === 'stop') server.close(() => process.exit(0));
});
