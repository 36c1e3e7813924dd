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
const HISTORY = Number(process.env.HISTORY_EVENTS || 2000);
const LIVE = Number(process.env.LIVE_EVENTS || 300);
const SHAPE = process.env.SOURCE_VERSION === '1.29' ? '1.29' : '1.30';

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
console.log(`\n  ${received.length} of ${expected} events arrived, ${new Set(uuids).size} distinct uuids, in ${requests.length} requests (${refused} refused).`);
console.log(`  ${(wire / 1024).toFixed(0)} KB on the wire, gzip of ${(plain / 1024).toFixed(0)} KB of JSON.`);
console.log(`  The history took ${minutes + 1} minutes of the source's scheduler; this run took ${((Date.now() - started) / 1000).toFixed(1)} s.`);
const sample = received.find(({ event }) => event.event === '$autocapture');
if (sample) console.log(`\nAn autocapture event as the destination received it:\n${JSON.stringify(sample.event, null, 2)}`);
await destination.close();
if (received.length !== expected || new Set(uuids).size !== expected) {
  console.error('\nNot every event arrived exactly once.');
  process.exitCode = 1;
}
