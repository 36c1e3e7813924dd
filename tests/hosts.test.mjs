// The app against what real hosts and destinations do: settings saved empty, answers
// with odd bodies, the V2 export, Postgres-sourced exports, lost jobs, endpoints that
// refuse everything alike, pacing, and sockets cut mid-upload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { messages, migration } from './harness/scenario.mjs';
import { asLive, sampleEvents } from './harness/source-events.mjs';

const DENSE = 20 * 60_000;
const uuidsOf = (destination) => destination.events().map(({ event }) => event.uuid);
const kept = (host) => [...host.storageMap.keys()].filter((k) => k.startsWith('migrator_parcel_') && /\d$/.test(k));

async function everyEventOnce(t, host, destination, sourceEvents) {
  await host.runUntilExported();
  const uuids = uuidsOf(destination);
  assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)), messages(host));
  assert.equal(uuids.length, sourceEvents.length, 'an event arrived twice');
  assert.deepEqual(host.hostErrors, []);
  return uuids;
}

test('every optional setting saved empty, as the Apps page saves a cleared field, loads and migrates', async (t) => {
  const cleared = { startDate: '', eventsToIgnore: '', eventsPerMinute: '', batchSize: '', batchMaxKilobytes: '', gzip: '', debug: '', posthogVersion: '1.30.0' };
  const { destination, host, sourceEvents, clock } = await migration({ config: cleared });
  t.after(() => destination.close());
  await host.load();
  assert.deepEqual(host.hostErrors, []);
  await everyEventOnce(t, host, destination, sourceEvents);
  // An empty live page, and an event of empty strings, break nothing either.
  await host.methods.exportEvents([]);
  await host.ingest(asLive({ event: '', distinct_id: '', uuid: '', timestamp: '', properties: { '': '' } }, clock.now));
  await host.teardown();
  assert.deepEqual(host.hostErrors, []);
  assert.match(messages(host), /warn: Skipped a live event: the event has no name/);
});

test('answers with an empty, HTML, huge or non-UTF-8 body lose nothing, and the history completes only after', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '5' }, span: DENSE });
  t.after(() => destination.close());
  destination.script(
    { status: 502, raw: '' },
    { status: 503, raw: '<html><head><title>503 Service Unavailable</title></head><body><h1>nginx</h1></body></html>', headers: { 'Content-Type': 'text/html' } },
    { status: 500, raw: 'x'.repeat(3_000_000) },
    { status: 504, raw: Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28]) },
    { status: 200, raw: '' },
  );
  await host.load();
  await host.runEveryMinute();
  await host.advance(60_000);
  assert.ok(!host.exportState().done, 'complete while requests waited to be resent');
  await everyEventOnce(t, host, destination, sourceEvents);
  assert.match(messages(host), /not delivered yet \(HTTP 502\): sending them again in 15 s/);
  assert.deepEqual(kept(host), []);
});

test('V2 (PostHog Latest) without a start date gets both dates, and the history arrives', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { posthogVersion: 'Latest', startDate: '' }, span: 2 * 86_400_000 });
  t.after(() => destination.close());
  await host.load();
  await host.runEveryMinute();
  const start = host.queue.find((job) => job.name === 'Export historical events V2');
  assert.deepEqual(start.payload, { dateFrom: '2020-01-01T00:00:00.000Z', dateTo: '2026-11-20T12:00:00.000Z' });
  await everyEventOnce(t, host, destination, sourceEvents);
  assert.match(messages(host), /log: Export has finished!/);
});

test('V2 from a start date: its days done in a row move the position; a restart continues from there', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { posthogVersion: 'Latest' }, span: 4 * 86_400_000 });
  t.after(() => destination.close());
  await host.load();
  await everyEventOnce(t, host, destination, sourceEvents);
  assert.equal(host.exportState().position, '2026-11-20T12:00:00.000Z');
});

test('a 1.30 export from Postgres, run twice, gives every event the same uuid both times', async (t) => {
  const runs = [];
  for (let run = 0; run < 2; run++) {
    const { destination, host } = await migration({ shape: '1.30-postgres' });
    t.after(() => destination.close());
    await host.load();
    await host.runUntilExported();
    assert.deepEqual(host.hostErrors, []);
    runs.push(uuidsOf(destination).sort());
  }
  assert.equal(runs[0].length, 40);
  assert.deepEqual(runs[1], runs[0]);
});

test('a request whose resend job was lost is still sent, and the history completes', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '10' } });
  t.after(() => destination.close());
  destination.script({ status: 503, raw: '' });
  await host.load();
  await host.runEveryMinute();
  await host.advance(0);
  const lost = host.queue.filter((job) => job.name === 'Resend events');
  assert.equal(lost.length, 1);
  host.queue = host.queue.filter((job) => job.name !== 'Resend events'); // a restart of the job queue
  await everyEventOnce(t, host, destination, sourceEvents);
  assert.deepEqual(kept(host), []);
});

test('400 to every event alone with the answer the whole request got: held as an endpoint problem, nothing rejected', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '20' }, span: DENSE });
  t.after(() => destination.close());
  let redirected = true;
  const noData = { status: 400, raw: 'No data found. Make sure to use a POST request when sending the payload in the body of the request.' };
  destination.inject(() => (redirected ? noData : undefined));
  await host.load();
  for (let minute = 0; minute < 5; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
  }
  const log = messages(host);
  assert.match(log, /error: The destination refuses every event alone with the answer it gave the whole request \(HTTP 400 No data found/);
  assert.match(log, /Check the setting "Destination host"/);
  assert.doesNotMatch(log, /Skipped a historical event/);
  assert.ok(destination.requests.length < 30, `${destination.requests.length} requests: it tried every event alone`);
  assert.ok(Date.parse(host.exportState().position) <= Date.parse('2026-11-20T11:40:00.000Z'));
  redirected = false;
  await host.reload({ ...host.config });
  await everyEventOnce(t, host, destination, sourceEvents);
});

test('pacing slows the source: nothing is copied into storage to wait, and a long pause saves up no burst', async (t) => {
  const { destination, host, sourceEvents, clock } = await migration({ config: { eventsPerMinute: '100', batchSize: '20' }, history: 250, span: DENSE });
  t.after(() => destination.close());
  destination.inject((record) => {
    record.at = clock.now;
    return undefined;
  });
  await host.load();
  let mostKept = 0;
  for (let minute = 0; minute < 3000 && !host.exportState()?.done; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
    mostKept = Math.max(mostKept, kept(host).length);
  }
  assert.equal(mostKept, 0, 'requests were kept in storage to wait for their turn');
  const uuids = uuidsOf(destination);
  assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)));
  const accepted = destination.requests.filter((r) => r.status === 200);
  const start = accepted[0].at;
  let sent = 0;
  for (const r of accepted) {
    sent += r.json.batch.length;
    assert.ok(sent <= 100 * ((r.at - start) / 60_000 + 1) + 100, `${sent} events by ${(r.at - start) / 1000} s`);
  }
  // After a six-hour pause, at most a minute's worth goes at once.
  const bucket = JSON.parse(host.storageMap.get('migrator_pace'));
  assert.ok(bucket.tokens <= 100);
});

test('a large request whose socket is cut mid-upload is split and delivered', async (t) => {
  const big = sampleEvents({ count: 30, from: Date.parse('2026-11-10T00:00:00Z'), to: Date.parse('2026-11-10T00:05:00Z'), seed: 12 })
    .map((e) => ({ ...e, properties: { ...e.properties, blob: 'z'.repeat(100_000) } }));
  const { destination, host } = await migration({ config: { gzip: 'OFF', batchMaxKilobytes: '5000', batchSize: '100' }, events: big });
  t.after(() => destination.close());
  destination.limitUpload(2 * 1024 * 1024); // capture's limit on the wire
  await host.load();
  await everyEventOnce(t, host, destination, big);
  assert.ok(destination.requests.some((r) => r.status === 'cut'), 'no request was cut');
  assert.doesNotMatch(messages(host), /not delivered yet/, 'the cut request waited instead of being split');
});

test('autocapture elements from a >= 1.30 export go out as posthog-js sends them', async (t) => {
  const { destination, host } = await migration();
  t.after(() => destination.close());
  await host.load();
  await host.runUntilExported();
  const autocapture = destination.events().map(({ event }) => event).filter((e) => e.event === '$autocapture');
  assert.ok(autocapture.length > 0);
  for (const event of autocapture) {
    for (const element of event.properties.$elements) {
      if ('attr__class' in element) {
        assert.equal(typeof element.attr__class, 'string');
        assert.deepEqual(element.classes, element.attr__class.split(' '));
      }
      for (const [key, value] of Object.entries(element)) assert.ok(!(key.startsWith('attr__') && value === null), `${key} is null`);
    }
  }
});

test('a history event sent without a timestamp is exported as the source stored it', async (t) => {
  const events = sampleEvents({ count: 12, from: Date.parse('2026-11-10T00:00:00Z'), to: Date.parse('2026-11-10T06:00:00Z'), seed: 4 });
  const { timestamp, ...untimed } = events[5];
  events[5] = { ...untimed, now: timestamp };
  const { destination, host } = await migration({ events });
  t.after(() => destination.close());
  await host.load();
  await everyEventOnce(t, host, destination, events);
  const received = destination.events().find(({ event }) => event.uuid === events[5].uuid).event;
  assert.equal(received.timestamp, new Date(timestamp).toISOString());
});

test("the plugin server's own $$plugin_metrics stay at the source unless the setting keeps them; $$heatmap goes", async (t) => {
  for (const keep of ['OFF', 'ON']) {
    const { destination, host, sourceEvents, clock } = await migration({ config: { copyPluginMetrics: keep } });
    t.after(() => destination.close());
    await host.load();
    await host.runUntilExported();
    // The app's metrics, as the host sends them once a minute; and a heatmap of posthog-js.
    const metrics = await host.sendPluginMetrics();
    assert.equal(metrics.length, 1, 'the app counted nothing in its metrics');
    assert.equal(metrics[0].properties.events_delivered, sourceEvents.length);
    const [heatmap] = sampleEvents({ count: 1, from: clock.now + 1000, to: clock.now + 2000, seed: 6 });
    await host.capture({ ...heatmap, event: '$$heatmap', properties: { ...heatmap.properties, $heatmap_data: { '/': [{ x: 10, y: 20, target_fixed: false, type: 'click' }] } } });
    await host.teardown();
    const names = destination.events().filter(({ request }) => !request.json.historical_migration).map(({ event }) => event.event);
    assert.deepEqual(names.sort(), keep === 'ON' ? ['$$heatmap', '$$plugin_metrics'] : ['$$heatmap'], keep);
    assert.deepEqual(host.hostErrors, []);
  }
});

test('a 200 that is not capture\'s answer (a web app\'s page for every path) delivers nothing: held until the host is fixed, then every event once', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '10' } });
  t.after(() => destination.close());
  const page = '<!DOCTYPE html><html><head><title>Acme</title></head><body><div id="root"></div></body></html>';
  let webApp = true;
  destination.inject((record) => {
    if (!webApp) return undefined;
    record.page = true;
    return { status: 200, raw: page, headers: { 'Content-Type': 'text/html' } };
  });
  await host.load();
  for (let minute = 0; minute < 30; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
  }
  const log = messages(host);
  assert.match(log, /error: The destination answered HTTP 200 with something that is not PostHog capture's answer \(<!DOCTYPE html>/);
  assert.match(log, /Check the setting "Destination host"/);
  assert.doesNotMatch(log, /The history is complete/);
  const firstEvent = Math.min(...sourceEvents.map((e) => Date.parse(e.timestamp)));
  assert.ok(Date.parse(host.exportState().position) <= firstEvent, 'the position advanced past events a web page took');
  const attempts = destination.requests.length;
  await host.advance(3_600_000);
  assert.equal(destination.requests.length, attempts, 'it went on sending to a web page');

  webApp = false;
  await host.reload({ ...host.config });
  await host.runUntilExported();
  const uuids = destination.events().filter(({ request }) => !request.page).map(({ event }) => event.uuid);
  assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)), messages(host));
  assert.equal(uuids.length, sourceEvents.length, 'an event arrived twice');
});

test('a proxy refusing every request as too large (413) rejects nothing: held, the limit to raise is said, and saving the settings sends every event once', async (t) => {
  const { destination, host, sourceEvents } = await migration({ config: { batchSize: '10' } });
  t.after(() => destination.close());
  const nginx = '<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
  let limited = true;
  destination.inject(() => (limited ? { status: 413, raw: nginx, headers: { 'Content-Type': 'text/html' } } : undefined));
  await host.load();
  for (let minute = 0; minute < 30; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
  }
  const log = messages(host);
  assert.match(log, /error: The destination refuses a request of a single event \(\d+ bytes\) as too large \(HTTP 413\)/);
  assert.match(log, /client_max_body_size/);
  assert.doesNotMatch(log, /Skipped a historical event/);
  assert.equal(destination.events().length, 0);
  const firstEvent = Math.min(...sourceEvents.map((e) => Date.parse(e.timestamp)));
  assert.ok(Date.parse(host.exportState().position) <= firstEvent, 'the position advanced past refused events');

  limited = false;
  await host.reload({ ...host.config });
  await everyEventOnce(t, host, destination, sourceEvents);
});
