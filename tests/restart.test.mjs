// A busy export on plugin server 1.10.5, which queues the next page before it hands
// the current one over: pages are always in flight. The acknowledged position must
// move all the same, so that a kill -9 of the plugin server costs minutes of history,
// not all of it, and the export, which dies with the server, is started again soon
// after the server comes back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { messages, migration } from './harness/scenario.mjs';

const DAY = 86_400_000;
const CUTOVER = Date.parse('2026-11-20T12:00:00Z'); // the scenarios' clock at install

// 2,000 events over the 2 days before the cut-over, from a start date 19.5 days back:
// pages follow one another every 3 s of the host's job queue, and each of the app's
// requests takes 4 s, so two or three pages are in flight at any moment.
const busy = (t) =>
  migration({ shape: '1.29', threads: 2, history: 2000, span: 2 * DAY, pageLatencyMs: 3000, fetchLatencyMs: 4000, config: { startDate: '2026-11-18' } }).then((m) => {
    t.after(() => m.destination.close());
    return m;
  });
const BUSY_START = Date.parse('2026-11-18T00:00:00Z');
const busyShare = (iso) => (Date.parse(iso) - BUSY_START) / (CUTOVER - BUSY_START);

test('a busy export always has pages in flight, and the acknowledged position follows it all the same', async (t) => {
  const { destination, host } = await busy(t);
  await host.load();
  host.startMinuteTask();
  let inFlightAtTicks = 0;
  let ticks = 0;
  const original = host.runEveryMinute.bind(host);
  host.runEveryMinute = async (...args) => {
    // While the host is exporting, as it says.
    if (host.storageMap.has('is_export_running')) {
      ticks += 1;
      if (host.pagesInFlight > 0) inFlightAtTicks += 1;
    }
    return original(...args);
  };
  let halfway = null;
  for (let minute = 0; minute < 120 && !host.exportState()?.done; minute++) {
    await host.advance(60_000);
    const delivered = destination.events().length;
    if (halfway === null && delivered >= 1000) halfway = host.exportState().position;
  }
  assert.ok(host.exportState().done, messages(host));
  assert.ok(inFlightAtTicks >= ticks - 3, `pages were in flight at only ${inFlightAtTicks} of ${ticks} minute tasks`);
  assert.ok(halfway && busyShare(halfway) >= 0.3, `the position was at ${halfway} when half the history had arrived`);
  assert.equal(new Set(destination.events().map(({ event }) => event.uuid)).size, 2000);
  assert.deepEqual(host.hostErrors, []);
});

test('kill -9 of the plugin server at 45% of the history: after the restart the export starts again within two minutes, from past 40%', async (t) => {
  const { destination, host, sourceEvents } = await busy(t);
  let accepted = 0;
  destination.inject((record) => {
    accepted += (record.json && record.json.batch ? record.json.batch.length : 0);
    if (accepted >= 0.45 * sourceEvents.length && !host.killedAt) host.kill();
    return undefined;
  });
  await host.load();
  host.startMinuteTask();
  for (let minute = 0; minute < 120 && !host.killedAt; minute++) await host.advance(60_000);
  assert.ok(host.killedAt, 'the history finished before 45%');
  const before = host.exportState();
  // The server is down for 40 s, then starts again on the same Postgres.
  host.clock.now += 40_000;
  await host.restart();
  const restartedAt = host.clock.now;
  for (let second = 0; second < 180 && host.exportState().epoch === before.epoch; second += 10) await host.advance(10_000);
  const again = host.logs.find((l) => l.at >= restartedAt && /^Exporting history from/.test(l.message));
  assert.ok(again, `no restart of the export after the plugin server came back\n${messages(host)}`);
  assert.ok(again.at - restartedAt <= 120_000, `started again ${(again.at - restartedAt) / 1000} s after the restart`);
  const from = /^Exporting history from (\S+) /.exec(again.message)[1];
  assert.ok(busyShare(from) >= 0.4, `started again from ${from} (${Math.round(busyShare(from) * 100)}% of the history)`);
  await host.runUntilExported();
  await host.teardown();
  // Every event arrived; those sent again since the position kept their uuids.
  const uuids = destination.events().map(({ event }) => event.uuid);
  assert.equal(new Set(uuids).size, sourceEvents.length, messages(host));
  assert.ok(uuids.length - sourceEvents.length < 0.2 * sourceEvents.length, `${uuids.length - sourceEvents.length} events sent twice`);
  assert.deepEqual(host.hostErrors, []);
});
