// Several worker threads, as plugin servers run them: one VM of the app each, storage
// and jobs shared, each job (the host's export pages included) on whichever thread
// picks it up, the minute task on one thread at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { messages, migration } from './harness/scenario.mjs';
import { asLive, sampleEvents } from './harness/source-events.mjs';

const DAY = 86_400_000;

for (const seed of [1, 7, 42]) {
  test(`two threads, jobs landing on either (seed ${seed}): the history completes with every event exactly once`, async (t) => {
    const { destination, host, sourceEvents } = await migration({ threads: 2, seed, history: 120, span: 6 * DAY, config: { batchSize: '10' } });
    t.after(() => destination.close());
    await host.load();
    await host.runUntilExported();
    const uuids = destination.events().map(({ event }) => event.uuid);
    assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)), messages(host));
    assert.equal(uuids.length, sourceEvents.length);
    assert.deepEqual(host.hostErrors, []);
  });
}

test('an export stopped early by a thread with old bounds is started again and completes', async (t) => {
  const { destination, host, sourceEvents } = await migration({ threads: 2, seed: 3, history: 60, span: 4 * DAY });
  t.after(() => destination.close());
  await host.load();
  // Thread 1 last ran an export that ended long before this one does.
  host.threads[1].exportBounds = { max: Date.parse('2026-11-02T00:00:00Z'), min: Date.parse('2026-11-01T00:00:00Z') };
  await host.runUntilExported();
  const uuids = destination.events().map(({ event }) => event.uuid);
  assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)), messages(host));
  assert.deepEqual(host.hostErrors, []);
});

test('live events on a thread that never runs the minute task arrive within 20 s', async (t) => {
  const { destination, host, clock } = await migration({ threads: 2, withJobs: false, config: { batchSize: '100' } });
  t.after(() => destination.close());
  await host.load();
  const [, quiet] = host.threads;
  const live = sampleEvents({ count: 3, from: clock.now, to: clock.now + 1000, seed: 8 }).map((e) => asLive(e, clock.now));
  const sentAt = clock.now;
  for (const event of live) await host.ingest(event, quiet);
  // The minute task runs on the other thread only; this one gets nothing more but its
  // own export buffer's timer.
  for (let second = 0; second < 60 && destination.events().length < live.length; second++) {
    await host.runEveryMinute(host.threads[0]);
    await host.advance(1000);
  }
  assert.deepEqual(destination.events().map(({ event }) => event.uuid), live.map((e) => e.uuid));
  const arrived = destination.requests.length && clock.now - sentAt;
  assert.ok(arrived <= 20_000, `arrived after ${arrived / 1000} s`);
});
