// `npm run bench [-- --events N]`: speed and size of the app, measured side by side in
// one run on one generated corpus, each figure printed beside its target.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PluginHost } from '../tests/harness/host.mjs';
import { corpus } from '../tests/harness/source-events.mjs';
import { batches as plainBatches } from './bench/plain.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argument = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const E2E_EVENTS = argument('events', 1_000_000);
const THROUGHPUT_EVENTS = argument('throughput-events', 20_000);
const PAGE = 100; // events per exportEvents call, as the host's export hands them over
const KEY = 'phc_bench_destination';
const NOW = Date.parse('2026-11-20T12:00:00Z');

const rows = [];
const row = (what, figure, target, ok) => rows.push({ what, figure, target, verdict: ok === undefined ? '' : ok ? 'met' : 'NOT MET' });
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
const fmt = (n) => Math.round(n).toLocaleString('en-US');

/** The fastest of `rounds` timed runs (after one warm-up), in ms. */
function best(rounds, run) {
  run();
  let fastest = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    run();
    fastest = Math.min(fastest, performance.now() - t);
  }
  return fastest;
}

// --- 3. end to end, in a process of its own so that its peak memory is its own -----
if (process.argv.includes('--end-to-end')) {
  const sink = fork(join(root, 'scripts', 'bench', 'sink.mjs'));
  const { port } = await new Promise((resolve) => sink.once('message', resolve));
  // A million events over 30 days; fewer events over fewer days, so that the host's
  // export pages (10-minute windows) are as full as in the million-event run.
  const span = Math.max(86_400_000, Math.round((30 * 86_400_000 * E2E_EVENTS) / 1_000_000));
  const host = new PluginHost({
    bundlePath: join(root, 'dist', 'index.js'),
    clock: { now: NOW },
    fakeClock: false,
    source: corpus({ count: E2E_EVENTS, from: NOW - span, to: NOW - 60_000, seed: 5 }),
    config: { host: `http://127.0.0.1:${port}`, projectApiKey: KEY, posthogVersion: '1.30.0', startDate: new Date(NOW - span - 86_400_000).toISOString().slice(0, 10) },
  });
  await host.load();
  const t0 = performance.now();
  await host.runUntilExported(10_000);
  const seconds = (performance.now() - t0) / 1000;
  sink.send('report');
  const received = await new Promise((resolve) => sink.once('message', resolve));
  sink.send('stop');
  process.send({ seconds, rssMb: process.resourceUsage().maxRSS / 1024, received });
  process.exit(0);
}

// --- 1. throughput: transform + batch + serialise -------------------------------------
const glue = await import(join(root, 'target', 'bundle', 'core.js'));
glue.initSync({ module: readFileSync(join(root, 'target', 'bundle', 'core.opt.wasm')) });
const config = (gzip) => ({ host: 'http://127.0.0.1:9', projectApiKey: KEY, posthogVersion: '1.30.0', gzip, startDate: '2020-01-01' });
const source = corpus({ count: THROUGHPUT_EVENTS, from: NOW - 30 * 86_400_000, to: NOW - 60_000 });
const exported = Array.from({ length: source.count }, (_, i) => {
  const e = source.event(i);
  return { ...e, properties: { ...e.properties, $$is_historical_export_event: true } };
});
const pages = [];
for (let i = 0; i < exported.length; i += PAGE) pages.push(exported.slice(i, i + PAGE));
const corpusBytes = exported.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0);

const plainWasm = new glue.Migrator(config('OFF'), NOW, NOW);
const gzipWasm = new glue.Migrator(config('ON'), NOW, NOW);
const encoder = new TextEncoder();
// As js/index.js does it: the page in as bytes, each request out, its answer back.
const wasmRun = (m) => () => {
  const out = [];
  for (const page of pages) {
    const dispatch = m.exportHistorical(encoder.encode(JSON.stringify(page)), NOW, undefined, undefined).dispatch(undefined);
    const requests = [];
    for (let request = dispatch.nextRequest(); request; request = dispatch.nextRequest()) {
      requests.push(request);
      dispatch.answer(200, undefined, '', undefined, NOW);
    }
    dispatch.finish(NOW);
    out.push(requests);
  }
  return out;
};
const jsRun = () => pages.map((page) => plainBatches(page, { apiKey: KEY, maxEvents: 500, maxBytes: 1_800_000, now: NOW }));
// The floor: serialising the very batches the app sends, already transformed.
const transformed = wasmRun(plainWasm)().map((requests) => requests.map((r) => JSON.parse(r.body)));
const floorRun = () => transformed.map((requests) => requests.map((body) => JSON.stringify(body)));

const tWasm = best(3, wasmRun(plainWasm));
const tGzip = best(3, wasmRun(gzipWasm));
const tJs = best(3, jsRun);
const tFloor = best(3, floorRun);
const rate = (ms) => `${fmt(THROUGHPUT_EVENTS / (ms / 1000))} events/s`;
console.log(`Corpus: ${fmt(THROUGHPUT_EVENTS)} events, ${kb(corpusBytes / THROUGHPUT_EVENTS)} on average, in pages of ${PAGE}.`);
row('floor: JSON.stringify of the same batches', rate(tFloor), '', undefined);
row('wasm path as the shim uses it (gzip off)', `${rate(tWasm)}, ${(tWasm / tFloor).toFixed(2)}x the floor`, '<= 1.6x the floor', tWasm <= 1.6 * tFloor);
row('plain-JS implementation of the same rules', `${rate(tJs)}, ${(tJs / tFloor).toFixed(2)}x the floor`, 'wasm faster', tWasm < tJs);
row('wasm path with gzip (the default)', `${rate(tGzip)}, ${(tGzip / tFloor).toFixed(2)}x the floor`, '', undefined);

// --- 4. bytes on the wire ------------------------------------------------------------------
const wire = (m) => wasmRun(m)().flat().reduce((n, r) => n + (r.encoding === 'gzip-base64' ? Buffer.from(r.body, 'base64').length : Buffer.byteLength(r.body)), 0);
const plainWire = wire(plainWasm);
const gzipWire = wire(gzipWasm);
row('bytes on the wire, gzip vs plain', `${kb(gzipWire)} vs ${kb(plainWire)} (${((100 * gzipWire) / plainWire).toFixed(1)}%)`, '<= 25%', gzipWire <= 0.25 * plainWire);

// --- 2. size, load and setup ---------------------------------------------------------------
const bundle = readFileSync(join(root, 'dist', 'index.js'));
row('bundle size (dist/index.js)', `${kb(bundle.length)} (${kb(gzipSync(bundle).length)} gzipped)`, '<= 200 KB', bundle.length <= 200 * 1024);
const loads = [];
for (let i = 0; i < 6; i++) {
  const host = new PluginHost({ bundlePath: join(root, 'dist', 'index.js'), config: config('ON'), fakeClock: false });
  await host.load();
  loads.push(host.timings);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const warm = loads.slice(1);
const evalSetup = median(warm.map((t) => t.evaluateMs + t.setupMs));
row('load: evaluate the file + setupPlugin (median)', `${evalSetup.toFixed(1)} ms`, '<= 50 ms', evalSetup <= 50);
row("load: the host's Babel pass over the file (median)", `${median(warm.map((t) => t.transpileMs)).toFixed(0)} ms`, '(host cost)', undefined);

const child = fork(fileURLToPath(import.meta.url), ['--end-to-end', '--events', String(E2E_EVENTS)]);
const { seconds, rssMb, received: report } = await new Promise((resolve) => child.once('message', resolve));
const scaled = (seconds * 1_000_000) / E2E_EVENTS;
row(`end to end: ${fmt(E2E_EVENTS)} events through the bundle in the harness`, `${seconds.toFixed(1)} s, ${fmt(E2E_EVENTS / seconds)} events/s${E2E_EVENTS === 1_000_000 ? '' : ` (${scaled.toFixed(0)} s per million)`}`, '1M in <= 60 s', scaled <= 60);
row('end to end: peak RSS of the plugin server (harness) process', `${rssMb.toFixed(0)} MB`, '<= 300 MB', rssMb <= 300);
row('end to end: events received / distinct uuids', `${fmt(report.events)} / ${fmt(report.distinct)} in ${fmt(report.requests)} requests`, `${fmt(E2E_EVENTS)} each`, report.distinct === E2E_EVENTS && report.events === E2E_EVENTS);

const width = Math.max(...rows.map((r) => r.what.length));
const fw = Math.max(...rows.map((r) => r.figure.length));
console.log('');
for (const r of rows) console.log(`${r.what.padEnd(width)}  ${r.figure.padEnd(fw)}  ${r.target.padEnd(18)} ${r.verdict}`);
