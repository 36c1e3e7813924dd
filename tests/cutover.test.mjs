// The cut-over, exactly once: events that reach the source while the app loads on
// both worker threads, and old events that arrive live while the history runs. With a
// source before PostHog 1.30 the history's copy of an event has a uuid of its own, so
// the destination would keep both copies: each event must go by one path only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { messages, migration } from './harness/scenario.mjs';
import { sampleEvents } from './harness/source-events.mjs';

const DAY = 86_400_000;
const key = (e) => `${e.event}|${e.distinct_id}|${new Date(e.timestamp).toISOString()}`;

/** Each source event arrived exactly once, whichever path brought it. */
function assertEachOnce(destination, events, host) {
  const counts = new Map();
  for (const { event } of destination.events()) counts.set(key(event), (counts.get(key(event)) || 0) + 1);
  const wrong = events.map(key).filter((k) => counts.get(k) !== 1).map((k) => `${k}: ${counts.get(k) || 0} times`);
  assert.deepEqual(wrong, [], messages(host));
  assert.equal(destination.events().length, events.length);
}

for (const shape of ['1.29', '1.30-postgres']) {
  test(`PostHog ${shape}: events that reach the source while the app loads on both threads arrive once, and both threads keep one cut-over`, async (t) => {
    const { destination, host, sourceEvents, clock } = await migration({ shape, threads: 2, history: 40, config: { batchSize: '10' } });
    t.after(() => destination.close());
    const t0 = clock.now;
    // 40 events around the install: a batching SDK sends every other one 3 s after it
    // happened; a few fall in the 10 ms between the two threads' setups.
    const around = sampleEvents({ count: 36, from: t0 - 8000, to: t0 - 1000, seed: 31 });
    around.push(...sampleEvents({ count: 4, from: t0 + 1, to: t0 + 9, seed: 32 }));
    const whileLoading = [[], []];
    around.forEach((event, i) => {
      const happened = Date.parse(event.timestamp);
      const sent = happened + (i % 2 ? 3000 : 0);
      // In the source before the app is loaded on either thread: held back by the host.
      whileLoading[i % 2].push(host.storeInSource(event, { nowMs: sent, sentAtMs: sent }));
    });
    await host.load({ whileLoading });
    const cutovers = messages(host).match(/events before \S+/g);
    assert.equal(cutovers.length, 2);
    assert.equal(cutovers[0], cutovers[1], 'the threads disagree on the cut-over');
    await host.runUntilExported();
    await host.teardown();
    assertEachOnce(destination, [...sourceEvents, ...around], host);
    assert.deepEqual(host.hostErrors, []);
  });
}

test('old events arriving live mid-history: behind the position go live, ahead are left to the export, in between are read again, each once', async (t) => {
  const { destination, host, sourceEvents, clock } = await migration({ shape: '1.29', history: 400, span: 4 * DAY, pageLatencyMs: 200, config: { batchSize: '50' } });
  t.after(() => destination.close());
  await host.load();
  const from = Date.parse('2026-11-01T00:00:00Z'); // the start date
  let state;
  for (let minute = 0; minute < 60; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
    state = host.exportState();
    if (state.position && Date.parse(state.position) > from + 0.5 * (Date.parse(state.to) - from)) break;
  }
  const position = Date.parse(state.position);
  const cursor = Number(JSON.parse(host.storageMap.get('timestamp_cursor')));
  assert.ok(cursor > position + 10 * 60_000, 'the export is ahead of the position');
  assert.ok(Date.parse(state.to) > cursor + 2 * 3600_000, 'the export is not near its end');
  const at = (ms) => ({ ...sampleEvents({ count: 1, from: ms, to: ms + 1, seed: ms % 97 })[0], timestamp: new Date(ms).toISOString() });
  // An offline client's event from behind the position, one from a window the export
  // has not begun, and one from the window it has just read.
  const late = [at(position - DAY / 2), at(cursor + 3600_000), at(cursor - 5 * 60_000)];
  for (const event of late) await host.capture(event, { nowMs: clock.now, sentAtMs: clock.now });
  await host.runUntilExported();
  await host.teardown();
  assertEachOnce(destination, [...sourceEvents, ...late], host);
  const live = destination.events().filter(({ request }) => !request.json.historical_migration).map(({ event }) => key(event));
  assert.deepEqual(live, [key(late[0])], 'only the event behind the position goes live');
  assert.match(messages(host), /Exporting history again at 1 moment\(s\)/);
  assert.deepEqual(host.hostErrors, []);
});
