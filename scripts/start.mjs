// `npm start`: a whole migration on this machine. A source PostHog (the test harness,
// which loads the plugin file as PostHog's plugin server does) with a generated
// history and live traffic, the built app, and a local capture server as destination.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PluginHost } from '../tests/harness/host.mjs';
import { startCaptureServer } from '../tests/harness/capture-server.mjs';
import { asLive, sampleEvents } from '../tests/harness/source-events.mjs';
import { sourceHash, stampOf } from './sources.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundlePath = join(root, 'dist', 'index.js');

/** A whole number from the environment, or a clear refusal. */
function count(name, fallback, least, most) {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!(n >= least && n <= most)) {
    console.error(`${name}="${text}" is not accepted: write a whole number from ${least} to ${most}, e.g. ${name}=${fallback}.`);
    process.exit(2);
  }
  return n;
}
const HISTORY = count('HISTORY_EVENTS', 2000, 1, 1_000_000);
const LIVE = count('LIVE_EVENTS', 300, 0, 100_000);
const version = (process.env.SOURCE_VERSION || '1.30').trim();
if (!['1.29', '1.30'].includes(version)) {
  console.error(`SOURCE_VERSION="${process.env.SOURCE_VERSION}" is not accepted: write 1.29 (a source whose export has no uuids) or 1.30.`);
  process.exit(2);
}
const SHAPE = version;

if (stampOf(readFileSync(bundlePath, 'utf8')) !== sourceHash(root)) {
  console.log('The plugin file is older than its sources: building it first.');
  execFileSync('node', [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });
}

const destination = await startCaptureServer();
const now = Date.now();
const history = sampleEvents({ count: HISTORY, from: now - 30 * 86_400_000, to: now - 60_000, seed: 2024 });
const host = new PluginHost({
  bundlePath,
  clock: { now },
  sourceShape: SHAPE,
  sourceEvents: history,
  config: {
    host: destination.url,
    projectApiKey: 'phc_demo_destination_key',
    startDate: new Date(now - 31 * 86_400_000).toISOString().slice(0, 10),
    posthogVersion: SHAPE === '1.29' ? '1.29.0' : '1.30.0',
    debug: 'OFF',
  },
});

const started = Date.now();
console.log(`Source: a PostHog ${SHAPE === '1.29' ? '<= 1.29' : '>= 1.30'} with ${HISTORY} past events; ${LIVE} more arrive live.`);
console.log(`Destination: a capture server at ${destination.url}\n`);
await host.load();
const minutes = await host.runUntilExported();
const live = sampleEvents({ count: LIVE, from: host.clock.now, to: host.clock.now + 60_000, seed: 77 });
for (const event of live) {
  await host.ingest(asLive(event, host.clock.now));
  await host.advance(200);
}
await host.runEveryMinute();
await host.teardown();

console.log('Plugin log:');
for (const { level, message } of host.logs) console.log(`  ${level.padEnd(5)} ${message}`);

const received = destination.events();
const requests = destination.requests;
const byName = new Map();
for (const { event, request } of received) {
  const row = byName.get(event.event) || { history: 0, live: 0 };
  row[request.json.historical_migration ? 'history' : 'live'] += 1;
  byName.set(event.event, row);
}
console.log('\nReceived by the destination:');
console.log(`  ${'event'.padEnd(20)} ${'history'.padStart(8)} ${'live'.padStart(6)}`);
for (const [name, row] of [...byName].sort()) console.log(`  ${name.padEnd(20)} ${String(row.history).padStart(8)} ${String(row.live).padStart(6)}`);

const uuids = received.map(({ event }) => event.uuid);
const expected = history.length + live.length;
const refused = requests.filter((r) => r.status !== 200).length;
const wire = requests.reduce((n, r) => n + r.bytes, 0);
const plain = requests.reduce((n, r) => n + Buffer.byteLength(r.text || ''), 0);
const historyRequests = requests.filter((r) => r.json && r.json.historical_migration).length;
const windows = Math.ceil((history.length ? Date.parse(history[history.length - 1].timestamp) - Date.parse(history[0].timestamp) : 0) / 600_000) || 1;
console.log(`\n  ${received.length} of ${expected} events arrived, ${new Set(uuids).size} distinct uuids, in ${requests.length} requests (${refused} refused).`);
console.log(
  `  The history came in ${host.exportCalls} pages of the source's export, which reads 10-minute windows, at most` +
    ` 100 events a page, as PostHog's plugin server does: ${history.length} events over 30 days are about` +
    ` ${(history.length / windows).toFixed(1)} per window. The app sends each page as it comes, so its` +
    ` ${historyRequests} requests of history carry ${(history.length / Math.max(1, historyRequests)).toFixed(1)} events on average;` +
    ` the ${requests.length - historyRequests} requests of live events carry up to 500, or what 10 s gathered.`,
);
console.log(`  ${(wire / 1024).toFixed(0)} KB on the wire, gzip of ${(plain / 1024).toFixed(0)} KB of JSON.`);
console.log(
  `  On the harness's clock, which runs the export's pages back to back and the app's minute task once a` +
    ` simulated minute, the history took ${minutes + 1} minutes; this run took ${((Date.now() - started) / 1000).toFixed(1)} s.`,
);
const sample = received.find(({ event }) => event.event === '$autocapture');
if (sample) console.log(`\nAn autocapture event as the destination received it:\n${JSON.stringify(sample.event, null, 2)}`);
await destination.close();
if (received.length !== expected || new Set(uuids).size !== expected) {
  console.error('\nNot every event arrived exactly once.');
  process.exitCode = 1;
}
