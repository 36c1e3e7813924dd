// A migration set up for a test: a source with a history, the built app in the
// harness, and a capture server on loopback.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PluginHost } from './host.mjs';
import { startCaptureServer } from './capture-server.mjs';
import { sampleEvents } from './source-events.mjs';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bundlePath = join(root, 'dist', 'index.js');
export const DAY = 86_400_000;
export const KEY = 'phc_destination_key';

export async function migration({ shape = '1.30', config = {}, history = 40, span = 5 * DAY, withJobs = true, storage, taskTimeoutSeconds, pageLatencyMs, fetchLatencyMs, threads, seed, events } = {}) {
  const destination = await startCaptureServer();
  const clock = { now: Date.parse('2026-11-20T12:00:00Z') };
  const sourceEvents = events || sampleEvents({ count: history, from: clock.now - span, to: clock.now - 60_000 });
  const host = new PluginHost({
    bundlePath,
    clock,
    sourceShape: shape,
    sourceEvents,
    withJobs,
    storage,
    taskTimeoutSeconds,
    pageLatencyMs,
    fetchLatencyMs,
    threads,
    seed,
    config: {
      host: destination.url,
      projectApiKey: KEY,
      posthogVersion: shape === '1.29' ? '1.29.0' : '1.30.0',
      startDate: '2026-11-01',
      debug: 'OFF',
      ...config,
    },
  });
  return { destination, host, sourceEvents, clock };
}

export const messages = (host) => host.logs.map((l) => `${l.level}: ${l.message}`).join('\n');
