// The fault suite: a destination that refuses, fails, throttles, hangs and hangs up,
// and a plugin reloaded mid-export. Each test checks that the uuids delivered are
// exactly the source's minus the rejected ones (which are reported), that anything
// delivered twice was a resend of the same uuid, and that the log tells the story.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { messages, migration } from './harness/scenario.mjs';

const batchHas = (record, uuids) => Array.isArray(record.json?.batch) && record.json.batch.some((e) => uuids.has(e.uuid));

/** Runs the history to the end and checks what arrived against the source. */
async function assertEveryEventOnce(host, destination, sourceEvents, { rejected = new Set() } = {}) {
  await host.runUntilExported();
  const delivered = destination.events().map(({ event }) => event.uuid);
  const source = new Set(sourceEvents.map((e) => e.uuid));
  const expected = [...source].filter((u) => !rejected.has(u));
  assert.deepEqual(new Set(delivered), new Set(expected), 'delivered uuids differ from the source minus the rejected');
  for (const uuid of rejected) assert.ok(!delivered.includes(uuid), `rejected ${uuid} was delivered`);
  // No event invented, none lost in the app's storage.
  assert.ok(delivered.every((u) => source.has(u)));
  const state = host.exportState();
  assert.ok(state.done, 'the history did not complete');
  return delivered;
}

function cleanup(t, destination) {
  t.after(() => destination.close());
}

// Dense history (40 events in 20 minutes), so that requests carry many events.
const DENSE = 20 * 60_000;

test('400 for chosen events: they alone are rejected and reported, all others arrive', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '8' }, span: DENSE });
  cleanup(t, destination);
  const bad = new Set([sourceEvents[3].uuid, sourceEvents[17].uuid]);
  destination.inject((record) => (batchHas(record, bad) ? { status: 400, body: { type: 'validation_error', code: 'invalid_payload' } } : undefined));
  await host.load();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents, { rejected: bad });
  assert.equal(delivered.length, sourceEvents.length - 2, 'nothing was delivered twice');
  assert.ok(destination.requests.some((r) => r.status === 400 && r.json.batch.length === 8), 'no full batch was refused');

  const sample = await host.meta.storage.get('migrator_rejected_sample', []);
  assert.deepEqual(new Set(sample.map((r) => r.uuid)), bad);
  for (const r of sample) {
    assert.equal(r.code, 'refused_by_destination');
    assert.match(r.reason, /^the destination refused it \(HTTP 400\) \{"type":"validation_error","code":"invalid_payload"\}$/);
  }
  const log = messages(host);
  for (const uuid of bad) assert.match(log, new RegExp(`warn: Skipped a historical event "[^"]+" \\(uuid ${uuid}\\): the destination refused it \\(HTTP 400\\)`));
  assert.match(log, /History: 100% of .* acknowledged; 38 delivered, 2 rejected, 0 retries, 0 parked/);
});

test('401: nothing advances, the log says to fix the key, and saving the settings sends everything', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '10' } });
  cleanup(t, destination);
  let keyFixed = false;
  destination.inject(() => (keyFixed ? undefined : { status: 401, body: { error: 'invalid token' } }));
  await host.load();
  for (let minute = 0; minute < 30; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
  }
  assert.equal(destination.events().length, 0);
  const firstEvent = Math.min(...sourceEvents.map((e) => Date.parse(e.timestamp)));
  assert.ok(Date.parse(host.exportState().position) <= firstEvent, 'the position advanced past undelivered events');
  assert.match(
    messages(host),
    /error: The destination refused the project API key \(HTTP 401\)\. Check the settings "Destination host" and "Destination project API key"; saving them resends what waits\. \(\d+ historical events are kept until then\.\)/,
  );
  const attempts = destination.requests.length;
  await host.advance(3_600_000);
  assert.equal(destination.requests.length, attempts, 'it kept knocking with a wrong key');

  keyFixed = true;
  await host.reload({ ...host.config, projectApiKey: 'phc_destination_key' });
  assert.match(messages(host), /log: Settings saved: sending the \d+ events kept since "The destination refused the project API key/);
  await assertEveryEventOnce(host, destination, sourceEvents);
});

test('413: a request too large is split until it fits', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '10' }, span: DENSE });
  cleanup(t, destination);
  destination.inject((record) => (record.json?.batch?.length > 2 ? { status: 413, body: {} } : undefined));
  await host.load();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.equal(delivered.length, sourceEvents.length);
  assert.ok(destination.requests.some((r) => r.status === 413));
  assert.ok(destination.events().every(({ request }) => request.json.batch.length <= 2));
});

test('429 with Retry-After: the wait is honoured and the events arrive once', async (t) => {
  const { destination, host, sourceEvents } = await migration();
  cleanup(t, destination);
  destination.script(
    { status: 429, headers: { 'Retry-After': '120' }, body: {} },
    { status: 429, headers: { 'Retry-After': '120' }, body: {} },
  );
  await host.load();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.equal(delivered.length, sourceEvents.length);
  const log = messages(host);
  assert.equal(log.match(/warn: \d+ historical events not delivered yet \(HTTP 429\): sending them again in 120 s \(attempt 2\)\./g).length, 2);
  assert.match(log, /History: 100% .* 40 delivered, 0 rejected, 2 retries, 0 parked/);
});

test('500 and 503: retried with back-off; a batch failing every time is parked, kept, and sent when asked', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '5' } });
  cleanup(t, destination);
  destination.script({ status: 500, body: {} }, { status: 503, body: {} }, { status: 500, body: {} });
  const doomed = new Set([sourceEvents[20].uuid]);
  let outage = true;
  destination.inject((record) => (outage && batchHas(record, doomed) ? { status: 503, body: {} } : undefined));
  await host.load();
  await host.runUntilExported();
  const log = messages(host);
  assert.match(log, /sending them again in 15 s \(attempt 2\)/);
  assert.match(log, /sending them again in 30 s \(attempt 3\)/);
  assert.match(log, /error: \d+ historical events are parked after 12 attempts \(last answer: HTTP 503\)\. They are kept; run the job "Resend parked events" to send them again\./);
  assert.ok(!destination.events().some(({ event }) => doomed.has(event.uuid)));
  assert.equal(host.exportState().done, true, 'a parked batch holds nothing else back');

  outage = false;
  await host.runJob({ name: 'Resend parked events', payload: {} });
  await host.advance(60_000);
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.equal(delivered.length, sourceEvents.length);
  assert.match(messages(host), /log: Sending again \d+ parked events\./);
});

test('answers slower than the host allows: retried; a late answer can only duplicate the same uuids', async (t) => {
  const { destination, host, sourceEvents } = await migration({ taskTimeoutSeconds: 0.5 });
  cleanup(t, destination);
  let slow = 2;
  destination.inject(() => (slow-- > 0 ? { status: 200, body: { status: 1 }, delayMs: 900 } : undefined));
  await host.load();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.ok(delivered.length >= sourceEvents.length);
  assert.match(messages(host), /historical events not delivered yet \(no answer \(Script execution timed out after promise waited for 0\.5 seconds\)\)/);
  await new Promise((resolve) => setTimeout(resolve, 600)); // let the late answers land
});

test('dropped connections: retried, and every event arrives once', async (t) => {
  const { destination, host, sourceEvents } = await migration();
  cleanup(t, destination);
  let drops = 3;
  destination.inject(() => (drops-- > 0 ? { drop: true } : undefined));
  await host.load();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.equal(delivered.length, sourceEvents.length);
  assert.equal(destination.requests.filter((r) => r.status === 'dropped').length, 3);
  assert.match(messages(host), /historical events not delivered yet \(no answer \(.*socket hang up.*\)\)/);
});

test('a reload in the middle of the export resumes it; nothing is lost', async (t) => {
  // A second per page of the export: the history takes longer than the minutes below.
  const { destination, host, sourceEvents, clock } = await migration({ pageLatencyMs: 1000 });
  cleanup(t, destination);
  await host.load();
  for (let minute = 0; minute < 3; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
  }
  const position = host.exportState().position;
  assert.ok(destination.events().length < sourceEvents.length, 'the export was already over');
  clock.now += 5 * 60_000;
  await host.reload();
  assert.equal(host.exportState().position, position);
  assert.equal((messages(host).match(/log: Migrating to/g) || []).length, 2);
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.equal(delivered.length, sourceEvents.length);
});

test('a crash in the middle of a page: after the restart the export starts again from the position, with the same uuids', async (t) => {
  const { destination, host, sourceEvents } = await migration({ fetchLatencyMs: 2000, pageLatencyMs: 200, config: { startDate: '2026-11-15' } });
  cleanup(t, destination);
  // kill -9 while the fifth request is on its way: its page stays recorded in flight,
  // the host's flag stays set, and the export's chain is gone with the process.
  destination.inject(() => {
    if (destination.requests.length >= 5 && !host.killedAt) host.kill();
    return undefined;
  });
  await host.load();
  host.startMinuteTask();
  for (let minute = 0; minute < 30 && !host.killedAt; minute++) await host.advance(60_000);
  assert.ok(host.killedAt, 'the history finished before the crash');
  await host.restart();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  assert.ok(delivered.length >= sourceEvents.length);
  assert.match(messages(host), /warn: The historical export has not moved for 1 minute\(s\) although this PostHog says it is running \(a restart of the plugin server ends it\): starting it again from 2026-11-\d\dT[\d:.]+Z\./);
});

test('pacing: the history keeps to the events per minute set, and all of it arrives', async (t) => {
  const { destination, host, sourceEvents, clock } = await migration({ config: { eventsPerMinute: '100', batchSize: '20' }, history: 250, span: DENSE });
  cleanup(t, destination);
  destination.inject((record) => {
    record.at = clock.now;
    return undefined;
  });
  await host.load();
  const delivered = await assertEveryEventOnce(host, destination, sourceEvents);
  // Plugin server 1.10.5 starts another export chain with each page it offers again,
  // which reads the rest of that page's window once more: some events come twice, with
  // their uuids (README, Known limits).
  assert.ok(delivered.length >= 250);
  const accepted = destination.requests.filter((r) => r.status === 200);
  const start = accepted[0].at;
  let sent = 0;
  for (const r of accepted) {
    sent += r.json.batch.length;
    // The budget: one minute's worth at once, then 100 a minute.
    assert.ok(sent <= 100 * ((r.at - start) / 60_000 + 1) + 20, `${sent} events by ${(r.at - start) / 1000} s`);
  }
  assert.ok(accepted.at(-1).at - start >= 60_000, 'the history went out faster than paced');
});
