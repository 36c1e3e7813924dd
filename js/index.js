// The plugin's hooks. This file only routes the host's hooks into the Rust core and
// does the I/O (fetch, storage, jobs, log): every decision about settings, events,
// batches, answers, retries and the export window is the core's.
import { Migrator, initSync } from 'core-glue';
import WASM_BASE64 from 'core-wasm-base64';
import { base64ToBytes } from './base64.js';
import { inflate } from './inflate.js';

// Our storage keys.
const CUTOVER = 'migrator_cutover';
const EXPORT = 'migrator_export';
const BLOCKED = 'migrator_blocked';
const LAST_PAGE = 'migrator_last_page_at';
const PACE_START = 'migrator_pace_start';
const REJECTED_SAMPLE = 'migrator_rejected_sample';
const PARCEL = (id) => `migrator_parcel_${id}`;
// Counters, atomic where the host offers `utils.cursor`.
const DELIVERED = 'migrator_delivered';
const REJECTED = 'migrator_rejected';
const RETRIED = 'migrator_retried';
const PARKED = 'migrator_parked';
const OPEN_PARCELS = 'migrator_open_parcels';
const PAGES_IN_FLIGHT = 'migrator_pages_in_flight';
const PACED_EVENTS = 'migrator_paced_events';
const PARCEL_SEQ = 'migrator_parcel_seq';
// The host's own keys for its historical export (plugin server 1.10.x and 1.30.x).
const HOST_EXPORT_RUNNING = 'is_export_running';
const HOST_CURSOR = 'timestamp_cursor';
const HOST_LAST = 'max_timestamp';

const RESEND_JOB = 'Resend events';
const RESEND_PARKED_JOB = 'Resend parked events';
const REJECTED_SAMPLE_SIZE = 100;

let coreLoaded = false;
function loadCore() {
  if (coreLoaded) return;
  // TRICKY: a plugin is one file in a sandbox without fs or zlib: the module travels
  // inside this file, deflated, and is compiled synchronously from bytes made in the
  // sandbox's realm.
  initSync({ module: inflate(base64ToBytes(WASM_BASE64)) });
  coreLoaded = true;
}

function core(meta) {
  const migrator = meta.global.migrator;
  if (!migrator) throw new Error('Migrator 3000 is not set up: fix its settings and save them again.');
  return migrator;
}

async function add(meta, key, by) {
  if (meta.utils && meta.utils.cursor) return Number(await meta.utils.cursor.increment(key, by));
  const next = Number(await meta.storage.get(key, 0)) + by;
  await meta.storage.set(key, next);
  return next;
}

async function counted(meta, key) {
  return Math.max(0, Number(await meta.storage.get(key, 0)) || 0);
}

function metric(meta, name, by) {
  const m = meta.metrics && meta.metrics[name];
  if (m && by) m.increment(by);
}

// TRICKY: bytes made in the sandbox reach the host's fetch as a proxy it sends as
// "31,139,...": gzip bodies come from the core as base64 for the host's Buffer.
function bodyOf(request) {
  if (request.encoding !== 'gzip-base64') return request.body;
  return typeof Buffer === 'function' ? Buffer.from(request.body, 'base64') : base64ToBytes(request.body);
}

async function post(request) {
  try {
    const response = await fetch(request.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: bodyOf(request),
    });
    const text = await response.text();
    return { status: response.status, retryAfter: response.headers.get('retry-after') || undefined, text };
  } catch (error) {
    return { status: 0, text: `no answer (${error && error.message})` };
  }
}

async function recordRejected(meta, rejected, path) {
  if (!rejected.length) return;
  for (const r of rejected) {
    console.warn(`Skipped a ${path} event${r.event ? ` "${r.event}"` : ''}${r.uuid ? ` (uuid ${r.uuid})` : ''}: ${r.reason}.`);
  }
  await add(meta, REJECTED, rejected.length);
  metric(meta, 'events_rejected', rejected.length);
  const sample = await meta.storage.get(REJECTED_SAMPLE, []);
  if (sample.length < REJECTED_SAMPLE_SIZE) {
    const at = new Date(Date.now()).toISOString();
    const more = rejected.map((r) => ({ uuid: r.uuid, event: r.event, reason: r.reason, code: r.code, at }));
    await meta.storage.set(REJECTED_SAMPLE, sample.concat(more).slice(0, REJECTED_SAMPLE_SIZE));
  }
}

// A request that could not be delivered now is kept in storage, never dropped:
// `waiting` (a job resends it later), `parked` (tried too often) or `held` (the
// settings must be fixed first).
async function keep(meta, request, historical, { state, attempt = 1, delaySeconds = 0, reason }) {
  const id = await add(meta, PARCEL_SEQ, 1);
  await meta.storage.set(PARCEL(id), { request, historical, attempt, state, reason });
  await add(meta, state === 'parked' ? PARKED : OPEN_PARCELS, 1);
  if (state === 'waiting' && meta.jobs) await meta.jobs[RESEND_JOB]({ id }).runIn(Math.max(1, delaySeconds), 'seconds');
  return id;
}

// What the core decided for a request that was not delivered.
async function settle(meta, request, historical, attempt, decision, answer) {
  const path = historical ? 'historical' : 'live';
  const n = request.uuids.length;
  const status = answer.status ? `HTTP ${answer.status}` : answer.text;
  if (decision.action === 'rejected') {
    await recordRejected(meta, [decision.rejected], path);
  } else if (decision.action === 'retry') {
    await keep(meta, request, historical, { state: 'waiting', attempt: decision.attempt, delaySeconds: decision.delaySeconds });
    await add(meta, RETRIED, 1);
    metric(meta, 'events_retried', n);
    console.warn(`${n} ${path} events not delivered yet (${status}): sending them again in ${decision.delaySeconds} s (attempt ${decision.attempt}).`);
  } else if (decision.action === 'park') {
    await keep(meta, request, historical, { state: 'parked', reason: status });
    metric(meta, 'events_parked', n);
    console.error(
      `${n} ${path} events are parked after ${attempt} attempts (last answer: ${status}). They are kept;` +
        ` run the job "${RESEND_PARKED_JOB}" to send them again.`,
    );
  } else {
    // 'stop': nothing gets through until a setting is fixed.
    await keep(meta, request, historical, { state: 'held', reason: decision.message });
    await meta.storage.set(BLOCKED, { message: decision.message, since: Date.now() });
    console.error(`${decision.message} (${n} ${path} events are kept until then.)`);
  }
}

// Sends requests and follows the core's decision for each answer. `attempt` is that
// of the first request (a resend's); halves of a refused request start afresh.
async function deliver(meta, requests, historical, attempt = 1) {
  const migrator = core(meta);
  const queue = requests.map((request) => ({ request, attempt }));
  let delivered = 0;
  while (queue.length > 0) {
    const next = queue.shift();
    const answer = await post(next.request);
    const decision = migrator.answer(next.request, answer.status, answer.retryAfter, answer.text, next.attempt, Date.now());
    if (decision.action === 'delivered') delivered += decision.count;
    else if (decision.action === 'split') queue.unshift(...decision.requests.map((half) => ({ request: half, attempt: 1 })));
    else await settle(meta, next.request, historical, next.attempt, decision, answer);
  }
  if (delivered) {
    await add(meta, DELIVERED, delivered);
    metric(meta, 'events_delivered', delivered);
  }
}

// Requests held or parked go back to waiting, to be sent at once.
async function releaseParcels(meta, states) {
  const last = await counted(meta, PARCEL_SEQ);
  let released = 0;
  for (let id = 1; id <= last; id++) {
    const parcel = await meta.storage.get(PARCEL(id), null);
    if (!parcel || !states.includes(parcel.state)) continue;
    if (parcel.state === 'parked') {
      await add(meta, PARKED, -1);
      await add(meta, OPEN_PARCELS, 1);
    }
    await meta.storage.set(PARCEL(id), { ...parcel, state: 'waiting', attempt: 1 });
    await meta.jobs[RESEND_JOB]({ id }).runNow();
    released += parcel.request.uuids.length;
  }
  return released;
}

export async function setupPlugin(meta) {
  loadCore();
  const { config, global, storage } = meta;
  const stored = await storage.get(CUTOVER, null);
  // Throws an Error naming each bad setting; the host shows it and disables the app.
  const migrator = new Migrator(config, Date.now(), stored ? Date.parse(stored) : undefined);
  const settings = migrator.settings;
  if (!stored) await storage.set(CUTOVER, settings.cutover);
  global.migrator = migrator;
  global.debug = settings.debug;
  console.log(
    `Migrating to ${settings.destination}: events before ${settings.cutover} through the historical export` +
      ` (from ${settings.startDate || 'the first event'}), events after it as they arrive.` +
      ` Source PostHog ${settings.posthogVersion}: its historical events ${settings.historicalEvents}.`,
  );
  if (!meta.jobs) {
    console.warn('This PostHog runs no jobs for apps, so it cannot replay the history here: only new events are forwarded.');
  }
  // Saved settings after a 401/403/404: what was held goes out again.
  const blocked = await storage.get(BLOCKED, null);
  if (blocked && meta.jobs) {
    await storage.del(BLOCKED);
    const released = await releaseParcels(meta, ['held']);
    console.log(`Settings saved: sending the ${released} events kept since "${blocked.message}"`);
  }
}

export async function teardownPlugin(meta) {
  const migrator = meta.global.migrator;
  if (!migrator) return;
  const last = migrator.flushLive();
  if (last) await deliver(meta, [last], false);
}

// Live events arrive here on every PostHog generation (newer ones call nothing else),
// so this is the live path. The host may also pass live events to exportEvents
// through its export buffer; the core skips them there, so each is sent once.
export async function onEvent(event, meta) {
  const outcome = core(meta).addLive(JSON.stringify([event]), Date.now());
  await recordRejected(meta, outcome.rejected, 'live');
  await deliver(meta, outcome.requests, false);
}

// Historical events: one page of the host's export.
export async function exportEvents(events, meta) {
  const migrator = core(meta);
  const state = await meta.storage.get(EXPORT, null);
  const outcome = migrator.exportHistorical(JSON.stringify(events), Date.now(), state === null ? undefined : state);
  const historical = outcome.requests.length + outcome.rejected.length + outcome.afterCutover + outcome.outsideWindow;
  if (historical === 0) return; // only live events, from the host's buffer
  // Counted while handled: a crash mid-page leaves the count up, and the export
  // stalls and starts the chunk again rather than skip the page.
  await add(meta, PAGES_IN_FLIGHT, 1);
  await meta.storage.set(LAST_PAGE, Date.now());
  try {
    await recordRejected(meta, outcome.rejected, 'historical');
    for (const request of outcome.requests) {
      const wait = await paceDelay(meta, migrator, request.uuids.length);
      if (wait) await keep(meta, request, true, { state: 'waiting', delaySeconds: wait });
      else await deliver(meta, [request], true);
    }
  } finally {
    await add(meta, PAGES_IN_FLIGHT, -1);
  }
  if (meta.global.debug) {
    console.log(
      `Export page: ${events.length} events, ${outcome.requests.length} requests, ${outcome.rejected.length} skipped,` +
        ` ${outcome.otherPath + outcome.afterCutover} left to the live path, ${outcome.outsideWindow} to another day,` +
        ` ${outcome.ignored} ignored.`,
    );
  }
}

async function paceDelay(meta, migrator, count) {
  if (!migrator.settings.eventsPerMinute) return undefined;
  let start = await meta.storage.get(PACE_START, null);
  if (start === null) {
    start = Date.now();
    await meta.storage.set(PACE_START, start);
  }
  const sent = await add(meta, PACED_EVENTS, count);
  return migrator.paceDelay(sent, (Date.now() - start) / 1000);
}

async function applyExportStep(meta, step) {
  const { storage } = meta;
  await storage.set(EXPORT, step.state);
  if (step.resetHost) {
    // The host refuses to start an export while its flag says one is running, and a
    // page lost in a crash would hold our count up for ever.
    await storage.del(HOST_EXPORT_RUNNING);
    await storage.set(PAGES_IN_FLIGHT, 0);
  }
  if (step.start) await meta.jobs[step.start.job](step.start.payload).runNow();
  for (const line of step.log) console.log(line);
  for (const line of step.warn) console.warn(line);
}

export async function runEveryMinute(meta) {
  const migrator = core(meta);
  const due = migrator.flushLiveIfDue(Date.now());
  if (due) await deliver(meta, [due], false);
  if (!meta.jobs) return;
  const { storage } = meta;
  // A settings problem stops the history where it is; saving the settings resumes it.
  if (await storage.get(BLOCKED, null)) return;
  const number = (value) => (value === null || value === undefined ? undefined : Number(value));
  const seen = {
    hostRunning: Boolean(await storage.get(HOST_EXPORT_RUNNING, false)),
    hostCursor: number(await storage.get(HOST_CURSOR, null)),
    hostLast: number(await storage.get(HOST_LAST, null)),
    openParcels: await counted(meta, OPEN_PARCELS),
    pagesInFlight: await counted(meta, PAGES_IN_FLIGHT),
    lastPageAt: number(await storage.get(LAST_PAGE, null)),
    delivered: await counted(meta, DELIVERED),
    rejected: await counted(meta, REJECTED),
    retried: await counted(meta, RETRIED),
    parked: await counted(meta, PARKED),
  };
  await applyExportStep(meta, migrator.exportTick(await storage.get(EXPORT, null), seen, Date.now()));
}

export const jobs = {
  // A kept request, sent again; whatever fails of it is kept anew before it goes.
  [RESEND_JOB]: async ({ id }, meta) => {
    const parcel = await meta.storage.get(PARCEL(id), null);
    if (!parcel || parcel.state !== 'waiting') return;
    await deliver(meta, [parcel.request], parcel.historical, parcel.attempt);
    await meta.storage.del(PARCEL(id));
    await add(meta, OPEN_PARCELS, -1);
  },
  [RESEND_PARKED_JOB]: async (_payload, meta) => {
    const released = await releaseParcels(meta, ['parked', 'held']);
    console.log(`Sending again ${released} parked events.`);
  },
  '[ADVANCED] Force restart': async (_payload, meta) => {
    const migrator = core(meta);
    await applyExportStep(meta, migrator.exportRestart(await meta.storage.get(EXPORT, null), Date.now()));
  },
};

export const metrics = {
  events_delivered: 'sum',
  events_rejected: 'sum',
  events_retried: 'sum',
  events_parked: 'sum',
};
