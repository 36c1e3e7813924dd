// The built plugin file, loaded as a PostHog plugin server loads it, migrating to a
// real HTTP server on loopback. Run by `npm test` (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_GLOBALS, PluginHost, plainVmGlobals } from './harness/host.mjs';
import { DAY, KEY, bundlePath, messages, migration, root } from './harness/scenario.mjs';
import { asLive, sampleEvents } from './harness/source-events.mjs';
import { transformLikeHost } from './harness/transforms.mjs';
import { sourceHash, stampOf } from '../scripts/sources.mjs';

const bundle = readFileSync(bundlePath, 'utf8');

/** What the rules make of a posthog-js element after the >= 1.30 export rebuilt it. */
function expectedElement(original) {
  // As posthog-js sends it: the class attribute a string, the classes beside it, and
  // no attribute the element did not have.
  const own = { $el_text: original.$el_text ?? null, tag_name: original.tag_name, nth_child: original.nth_child, nth_of_type: original.nth_of_type };
  if (original.attr__href) own.attr__href = original.attr__href;
  if (original.attr__id) own.attr__id = original.attr__id;
  if (original.attr__class) Object.assign(own, { attr__class: original.attr__class, classes: original.attr__class.split(' ') });
  const lifted = Object.fromEntries(Object.entries(original).filter(([k]) => k.startsWith('attr__')));
  return { ...lifted, ...own };
}

/**
 * The exact event the destination must receive for a source event, by the rules:
 * `historical` is the export shape ('1.30' or '1.29') or false for a live event.
 */
function expectedEvent(source, historical, receivedUuid) {
  const { token, $elements, ...kept } = source.properties;
  const properties = { ...kept, $geoip_disable: true };
  const event = { event: source.event, distinct_id: source.distinct_id, timestamp: new Date(source.timestamp).toISOString() };
  if (historical) {
    // The source stored a top-level $set merged into properties.$set, and no elements
    // before 1.30.
    if (source.$set) properties.$set = { ...source.properties.$set, ...source.$set };
    if ($elements && historical === '1.30') properties.$elements = $elements.map(expectedElement);
  } else {
    if (source.$set) event.$set = source.$set;
    if ($elements) properties.$elements = $elements;
  }
  return { ...event, properties, uuid: historical === '1.29' ? receivedUuid : source.uuid };
}

function assertTransformed(received, source, { historical }) {
  assert.deepEqual(received, expectedEvent(source, historical, received.uuid));
  assert.equal(received.event, source.event);
  assert.equal(received.distinct_id, source.distinct_id);
  assert.equal(received.timestamp, new Date(source.timestamp).toISOString());
  for (const dropped of ['team_id', 'now', 'offset', 'sent_at', '$token', 'token', 'project_id', 'api_key', 'ip', 'site_url']) {
    assert.equal(received[dropped], undefined, `${dropped} was sent`);
  }
  const p = received.properties;
  assert.equal(p.$geoip_disable, true);
  assert.equal(p.token, undefined);
  assert.ok(Object.keys(p).every((k) => !k.startsWith('$$')), 'export markers were sent');
  for (const [key, value] of Object.entries(source.properties)) {
    if (['token', '$elements', '$set'].includes(key)) continue;
    assert.deepEqual(p[key], value, `property ${key}`);
  }
  if (historical) {
    // The source stored a top-level $set merged into properties.$set.
    if (source.$set) assert.deepEqual(p.$set, { ...source.properties.$set, ...source.$set });
  } else {
    assert.deepEqual(received.$set, source.$set);
    assert.deepEqual(p.$set, source.properties.$set);
  }
  if (source.properties.$elements && historical === '1.30') {
    assert.deepEqual(p.$elements, source.properties.$elements.map(expectedElement));
  } else if (source.properties.$elements && historical === false) {
    assert.deepEqual(p.$elements, source.properties.$elements, 'posthog-js elements must pass unchanged');
  }
}

function assertBatchRequests(destination) {
  assert.ok(destination.requests.length > 0);
  for (const r of destination.requests) {
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/batch/');
    assert.deepEqual(r.query, { compression: 'gzip-js' });
    assert.ok(r.gzipped, 'body is gzip');
    assert.equal(r.json.api_key, KEY);
    assert.equal(r.status, 200, `destination refused: ${r.text && r.text.slice(0, 300)}`);
  }
}

test('the committed bundle is built from the current sources', () => {
  assert.equal(stampOf(bundle), sourceHash(root), 'dist/index.js is stale: run `npm run build` and commit it');
});

test('the bundle is one file that imports nothing', () => {
  assert.doesNotMatch(bundle, /\brequire\s*\(/);
  assert.doesNotMatch(bundle, /^\s*import\s/m);
  assert.doesNotMatch(bundle, /\bsetTimeout\b|\batob\b|import\.meta/);
  // The host's import rewriting throws on any import it does not provide.
  const transformed = transformLikeHost(bundle, {});
  // ... and every loop of the file is guarded as the host guards it.
  const loops = (transformed.match(/Script execution timed out after looping for 30 seconds/g) || []).length;
  assert.ok(loops >= 5, `only ${loops} loops guarded`);
  assert.match(transformed, /__asyncGuard\(/);
  assert.throws(() => transformLikeHost('const zlib = require("zlib");', {}), /Cannot import 'zlib'/);
});

test('it loads where setTimeout, TextEncoder, TextDecoder and require are absent', async (t) => {
  const { destination, host } = await migration();
  t.after(() => destination.close());
  await host.load();
  const plain = new Set(plainVmGlobals());
  // vm2 has a `console` of its own, which the host replaces with its logger.
  assert.deepEqual(
    host.globalsBeforePlugin.filter((name) => !plain.has(name)).sort(),
    HOST_GLOBALS.filter((name) => !plain.has(name)).sort(),
  );
  for (const name of ['setTimeout', 'setInterval', 'TextEncoder', 'TextDecoder', 'require', 'atob', 'process', 'queueMicrotask']) {
    assert.ok(!host.globalsBeforePlugin.includes(name), `the sandbox has ${name}`);
  }
  assert.match(messages(host), /log: Migrating to http:\/\/127\.0\.0\.1:\d+: events before 2026-11-20T12:00:00\.000Z/);
});

test('bad settings stop setup with an error naming each field, and nothing is stored', async (t) => {
  const { destination, host } = await migration({ config: { host: 'ftp://old', projectApiKey: 'phx_personal123456', startDate: '2021-02-30' } });
  t.after(() => destination.close());
  const error = await host.load().then(() => null, (e) => e);
  assert.ok(error, 'setupPlugin accepted bad settings');
  assert.match(error.message, /^3 settings to fix/);
  assert.match(error.message, /Destination host \(host\): "ftp:\/\/old" is not accepted: only http:\/\/ and https:\/\//);
  assert.match(error.message, /personal API key/);
  assert.doesNotMatch(error.message, /phx_personal123456/);
  assert.match(error.message, /Date to start exporting events from \(startDate\): "2021-02-30" is not accepted: it is not a real date/);
  assert.equal(error.kind, 'bad_setting');
  assert.equal(host.storageMap.size, 0);
});

for (const shape of ['1.30', '1.29']) {
  test(`PostHog ${shape}: history then live events arrive exactly once, transformed`, async (t) => {
    const { destination, host, sourceEvents, clock } = await migration({ shape, config: { batchSize: '4' } });
    t.after(() => destination.close());
    await host.load();
    await host.runUntilExported();
    const historical = destination.events();
    assert.equal(historical.length, sourceEvents.length);
    assert.ok(historical.every(({ request }) => request.json.historical_migration === true));

    const live = sampleEvents({ count: 10, from: clock.now + 1000, to: clock.now + 5000, seed: 99 });
    for (const event of live) await host.ingest(asLive(event, clock.now));
    await host.teardown();

    assertBatchRequests(destination);
    const all = destination.events();
    assert.equal(all.length, sourceEvents.length + live.length);
    const liveReceived = all.slice(sourceEvents.length);
    assert.ok(liveReceived.every(({ request }) => request.json.historical_migration === false));
    const liveRequests = new Set(liveReceived.map(({ request }) => request));
    assert.equal(liveRequests.size, 3, 'live events go in batches of 4, not one request each');

    // Every source event once: matched by uuid for live events and >= 1.30 history,
    // by content for <= 1.29 history (which has no uuid).
    const uuids = all.map(({ event }) => event.uuid);
    assert.equal(new Set(uuids).size, uuids.length, 'an event arrived twice');
    for (const { event } of all) assert.match(event.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const byKey = (e) => `${e.event}|${e.distinct_id}|${new Date(e.timestamp).toISOString()}`;
    const received = new Map(historical.map(({ event }) => [byKey(event), event]));
    for (const source of sourceEvents) {
      const got = received.get(byKey(source));
      assert.ok(got, `history lost ${byKey(source)}`);
      if (shape === '1.30') assert.equal(got.uuid, source.uuid);
      assertTransformed(got, source, { historical: shape });
    }
    for (const [i, source] of live.entries()) {
      assert.equal(liveReceived[i].event.uuid, source.uuid);
      assertTransformed(liveReceived[i].event, source, { historical: false });
    }
    assert.match(messages(host), /log: The history is complete: everything up to 2026-11-20T12:00:00\.000Z is acknowledged\./);
    assert.match(messages(host), /log: History: 100% of 2026-11-01T00:00:00\.000Z to 2026-11-20T12:00:00\.000Z acknowledged; 40 delivered, 0 rejected, 0 retries, 0 parked;/);
  });
}

test('PostHog 1.29: a second export gives every event the same uuid again', async (t) => {
  const runs = [];
  for (let run = 0; run < 2; run++) {
    const { destination, host } = await migration({ shape: '1.29' });
    t.after(() => destination.close());
    await host.load();
    await host.runUntilExported();
    runs.push(destination.events().map(({ event }) => event.uuid).sort());
  }
  assert.equal(runs[0].length, 40);
  assert.deepEqual(runs[1], runs[0]);
});

test('live events wait for a full batch, 10 s of age, the minute task or teardown', async (t) => {
  const { destination, host, clock } = await migration({ config: { batchSize: '3' }, withJobs: false });
  t.after(() => destination.close());
  await host.load();
  const live = sampleEvents({ count: 8, from: clock.now, to: clock.now + 1000, seed: 5 }).map((e) => asLive(e, clock.now));
  const liveCount = () => destination.events().length;

  for (const e of live.slice(0, 4)) await host.ingest(e);
  assert.equal(liveCount(), 3, 'a full batch goes at once');
  await host.advance(9_000);
  await host.ingest(live[4]);
  assert.equal(liveCount(), 3, 'younger than 10 s: waits');
  await host.advance(1_000);
  assert.equal(liveCount(), 5, 'the oldest waited 10 s: the next call on this thread (its export buffer) sends all waiting');
  await host.ingest(live[5]);
  await host.ingest(live[6]);
  assert.equal(liveCount(), 5, 'younger than 10 s: waits');
  await host.advance(9_000);
  await host.runEveryMinute();
  assert.equal(liveCount(), 5, 'younger than 10 s, even for the minute task');
  await host.advance(1_000);
  await host.runEveryMinute();
  assert.equal(liveCount(), 7, 'the minute task sends what waited long enough');
  await host.ingest(live[7]);
  await host.teardown();
  assert.deepEqual(destination.events().map(({ event }) => event.uuid), live.map((e) => e.uuid));
});

test('a host without jobs forwards live events and says it cannot export history', async (t) => {
  const { destination, host, clock } = await migration({ withJobs: false });
  t.after(() => destination.close());
  await host.load();
  assert.match(messages(host), /warn: This PostHog runs no jobs for apps, so it cannot replay the history here: only new events are forwarded\./);
  await host.runEveryMinute();
  const live = sampleEvents({ count: 2, from: clock.now, to: clock.now + 10, seed: 3 });
  for (const e of live) await host.ingest(asLive(e, clock.now));
  await host.teardown();
  assert.deepEqual(destination.events().map(({ event }) => event.uuid), live.map((e) => e.uuid));
  assert.ok(destination.events().every(({ request }) => request.json.historical_migration === false));
});

test('a reload keeps the cut-over and does not start the export twice', async (t) => {
  const storage = new Map();
  const first = await migration({ storage, pageLatencyMs: 60_000 });
  t.after(() => first.destination.close());
  await first.host.load();
  await first.host.runEveryMinute();
  const started = (host) => host.jobsStarted.filter((name) => name === 'Export historical events').length;
  await first.host.advance(60_000);
  assert.equal(started(first.host), 1);
  assert.equal(storage.get('is_export_running'), 'true');
  const cutover = storage.get('migrator_cutover');
  // A new server process (the same Postgres) five minutes later.
  const second = new PluginHost({ bundlePath, config: first.host.config, storage, clock: { now: first.clock.now + 5 * 60_000 } });
  await second.load();
  await second.runEveryMinute();
  assert.equal(storage.get('migrator_cutover'), cutover);
  await second.advance(60_000);
  assert.equal(started(second), 0, 'the export was started again');
  assert.match(messages(second), /events before 2026-11-20T12:00:00\.000Z/);
  assert.deepEqual(second.hostErrors, []);
});

test('a page the app cannot handle goes back to the host, which offers it again; every event arrives once', async (t) => {
  const { destination, host, sourceEvents } = await migration();
  t.after(() => destination.close());
  // Postgres fails twice while the app marks a page in flight.
  let failures = 2;
  host.faults.storage = (op, key) => op === 'set' && key === 'migrator_last_page_at' && failures-- > 0;
  await host.load();
  await host.runUntilExported();
  const uuids = destination.events().map(({ event }) => event.uuid);
  assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)));
  assert.equal(uuids.length, sourceEvents.length);
  const log = messages(host);
  assert.equal((log.match(/error: This page of history could not be handled and goes back to the export: storage unavailable/g) || []).length, 2);
  assert.deepEqual(host.hostErrors, [], 'the page was handed back with RetryError, not dropped with another error');
  assert.deepEqual(Object.keys(Object.fromEntries(host.storageMap)).filter((k) => k.startsWith('migrator_page_')), [], 'a page is still counted in flight');
});

test('[ADVANCED] Force restart resumes from the last acknowledged position; resends keep their uuids', async (t) => {
  const { destination, host, sourceEvents } = await migration({ pageLatencyMs: 1000 });
  t.after(() => destination.close());
  await host.load();
  for (let minute = 0; minute < 3; minute++) {
    await host.runEveryMinute();
    await host.advance(60_000);
  }
  const { position } = host.exportState();
  assert.ok(position > '2026-11-01T00:00:00.000Z' && position < '2026-11-20T12:00:00.000Z', position);
  await host.runJob({ name: '[ADVANCED] Force restart', payload: {} });
  assert.deepEqual(host.hostErrors, []);
  const starts = messages(host).match(/log: Exporting history from \S+ to 2026-11-20T12:00:00\.000Z \("Export historical events"\)\./g);
  assert.deepEqual(starts, [
    'log: Exporting history from 2026-11-01T00:00:00.000Z to 2026-11-20T12:00:00.000Z ("Export historical events").',
    `log: Exporting history from ${position} to 2026-11-20T12:00:00.000Z ("Export historical events").`,
  ]);
  await host.runUntilExported();
  const uuids = destination.events().map(({ event }) => event.uuid);
  assert.deepEqual(new Set(uuids), new Set(sourceEvents.map((e) => e.uuid)));
});

test('plugin.json describes the bundle, the settings the core reads, and the public job', async (t) => {
  const manifest = JSON.parse(readFileSync(join(root, 'plugin.json'), 'utf8'));
  assert.equal(join(root, manifest.main), bundlePath);
  const fields = manifest.config.filter((c) => c.key);
  assert.deepEqual(
    fields.map((c) => c.key),
    ['host', 'projectApiKey', 'startDate', 'posthogVersion', 'debug', 'batchSize', 'batchMaxKilobytes', 'gzip', 'eventsPerMinute', 'eventsToIgnore', 'copyPluginMetrics'],
  );
  for (const field of fields) assert.ok(field.name && field.hint && field.type, `${field.key} lacks a name, hint or type`);
  assert.deepEqual(fields.find((c) => c.key === 'posthogVersion').choices, ['1.29.0', '1.30.0', '1.30.0+', 'Latest']);
  assert.deepEqual(fields.find((c) => c.key === 'debug').choices, ['OFF', 'ON']);
  assert.deepEqual(fields.find((c) => c.key === 'copyPluginMetrics').choices, ['OFF', 'ON']);

  // The form's defaults are accepted as they are, and each field reaches the core:
  // a bad value in any of them is reported under its key.
  const { destination, host } = await migration();
  t.after(() => destination.close());
  const defaults = Object.fromEntries(fields.filter((c) => 'default' in c).map((c) => [c.key, c.default]));
  host.config = { ...defaults, host: destination.url, projectApiKey: KEY };
  await host.load();
  for (const field of fields.filter((c) => !['startDate', 'eventsToIgnore', 'posthogVersion'].includes(c.key))) {
    const { host: broken, destination: d } = await migration({ config: { [field.key]: '\u0000 not valid' } });
    t.after(() => d.close());
    const error = await broken.load().then(() => null, (e) => e);
    assert.ok(error && error.message.includes(`(${field.key})`), `${field.key}: ${error && error.message}`);
  }
  for (const job of Object.keys(manifest.publicJobs)) assert.equal(typeof host.pluginJobs[job], 'function', job);
});
