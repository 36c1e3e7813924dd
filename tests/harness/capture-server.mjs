// The destination: a real HTTP server on loopback that records every request as
// capture would read it (gzip bodies decoded) and answers as capture does: 400 for the
// whole request when one event is malformed, 401 without a token, else 200, unless a
// test scripts other answers.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function captureAnswer(json) {
  if (!json || typeof json !== 'object') return { status: 400, body: { error: 'malformed JSON' } };
  if (!json.api_key && !json.token) return { status: 401, body: { error: 'no token' } };
  if (!Array.isArray(json.batch) || json.batch.length === 0) return { status: 400, body: { error: 'empty batch' } };
  for (const e of json.batch) {
    const distinct = e.distinct_id ?? (e.properties && e.properties.distinct_id);
    if (!e.event || distinct === undefined || distinct === null || distinct === '') return { status: 400, body: { error: 'bad event' } };
    if (e.uuid !== undefined && !UUID.test(e.uuid)) return { status: 400, body: { error: 'bad uuid' } };
    if (e.properties && (e.properties.token || e.properties.$token)) return { status: 400, body: { error: 'several tokens' } };
  }
  return { status: 200, body: { status: 1 } };
}
import { createServer } from 'node:http';
import { gunzipSync } from 'node:zlib';

export async function startCaptureServer() {
  const requests = [];
  const scripted = [];
  let fault = null;
  // Capture closes the socket of a request over its size limit while the client is
  // still uploading it.
  let uploadLimit = Infinity;
  const server = createServer((req, res) => {
    const chunks = [];
    let received = 0;
    req.on('data', (c) => {
      chunks.push(c);
      received += c.length;
      if (received > uploadLimit && !req.socket.destroyed) {
        requests.push({ method: req.method, path: req.url, bytes: received, status: 'cut' });
        req.socket.destroy();
      }
    });
    req.on('end', () => {
      if (received > uploadLimit) return;
      const raw = Buffer.concat(chunks);
      const url = new URL(req.url, 'http://loopback');
      const gzipped = raw[0] === 0x1f && raw[1] === 0x8b;
      let text = null;
      let json = null;
      try {
        text = (gzipped ? gunzipSync(raw) : raw).toString('utf8');
        json = JSON.parse(text);
      } catch {
        // recorded as is: a test asserts on it
      }
      const record = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, gzipped, bytes: raw.length, text, json };
      requests.push(record);
      const answer = (scripted.length && scripted.shift()) || (fault && fault(record)) || captureAnswer(json);
      if (answer.drop) {
        record.status = 'dropped';
        req.socket.destroy();
        return;
      }
      record.status = answer.status;
      const respond = () => {
        res.writeHead(answer.status, { 'Content-Type': 'application/json', ...(answer.headers || {}) });
        // `raw`: a body as it is (empty, an HTML page, bytes that are not UTF-8).
        res.end(answer.raw !== undefined ? answer.raw : JSON.stringify(answer.body ?? {}));
      };
      if (answer.delayMs) setTimeout(respond, answer.delayMs);
      else respond();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Answers for the next requests, in order, before falling back to 200. */
    script: (...answers) => scripted.push(...answers),
    /**
     * A fault for every request from now on: `(record) => answer | undefined`, where an
     * answer is `{status, headers?, body?, delayMs?}` or `{drop: true}` to cut the
     * connection without a word; `undefined` lets capture answer.
     */
    inject: (handler) => {
      fault = handler;
    },
    /** Cuts the connection of any request whose body grows past `bytes`. */
    limitUpload: (bytes) => {
      uploadLimit = bytes;
    },
    /** Events the destination accepted (answered 2xx), each with its request. */
    events: () =>
      requests
        .filter((r) => typeof r.status === 'number' && r.status >= 200 && r.status < 300)
        .flatMap((r) => r.json.batch.map((event) => ({ event, request: r }))),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
