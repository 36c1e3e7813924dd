// The plugin's hooks. This file only routes the host's hooks into the Rust core and
// does the I/O (fetch, storage, jobs, log): every decision about settings, events,
// requests, answers, retries, pacing and the export is the core's.
import { Migrator, initSync } from 'core-glue';
import WASM_BASE64 from 'core-wasm-base64';
import { base64ToBytes } from './base64.js';
import { inflate } from './inflate.js';

// Our storage keys.
const CUTOVER = 'migrator_cutover';
const EXPORT = 'migrator_export';
const BLOCKED = 'migrator_blocked';
const LAST_PAGE = 'migrator_last_page_at';
const SOURCE_DB = 'migrator_source_db';
const PACE = 'migrator_pace';
const REJECTED_SAMPLE = 'migrator_rejected_sample';
const PARCEL = (id) => `migrator_parcel_${id}`;
const PARCEL_FLOOR = 'migrator_parcel_floor';
const PARCEL_LOOK_FROM = 'migrator_parcel_look_from';
const PARKED = 'migrator_parked';
// The history's records: pages in flight, and instants of live events left to it.
const HISTORY = (id) => `migrator_history_${id}`;
const HISTORY_FLOOR = 'migrator_history_floor';
// Counters, atomic where the host offers `utils.cursor`.
const DELIVERED = 'migrator_delivered';
const REJECTED = 'migrator_rejected';
const RETRIED = 'migrator_retried';
const PARCEL_SEQ = 'migrator_parcel_seq';
const HISTORY_SEQ = 'migrator_history_seq';
// The host's own keys for its historical exports (V1, then V2).
const HOST_V1_RUNNING = 'is_export_running';
const HOST_V1_CURSOR = 'timestamp_cursor';
const HOST_V1_MIN = 'min_timestamp';
const HOST_V2_PARAMETERS = 'EXPORT_PARAMETERS';
const HOST_V2_COORDINATION = 'EXPORT_COORDINATION';

const RESEND_JOB = 'Resend events';
const RESEND_PARKED_JOB = 'Resend parked events';
const REJECTED_SAMPLE_SIZE = 100;
// Parcel windows looked at in one call when every kept request must go again.
const RELEASE_WINDOWS = 20;
// Of an answer's text, only the start is ever shown.
const ANSWER_TEXT_CHARS = 65536;

const encoder = new TextEncoder();
const jsonBytes = (value) => encoder.encode(JSON.stringify(value));

let coreLoaded = false;
function loadCore() {
  if (coreLoaded) return;
  // TRICKY: a plugin is one file in a sandbox without fs or zlib: the module travels
  // inside this file, deflated, and is compiled synchronously from bytes made in the
  // sandbox's realm.
  initSync({ module: inflate(base64ToBytes(WASM_BASE64)) });
  coreLoaded = true;
}

// TRICKY: every worker thread runs setupPlugin, within milliseconds of the others, and
// all must work with ONE cut-over. A storage.get then storage.set is not atomic: two
// threads both find none and each stores its own. utils.cursor.init is the host's
// INSERT ... ON CONFLICT DO NOTHING (plugin server 1.10.5, worker/vm/extensions/utils.ts
// postgresSetOnce): the first thread's moment stays, and every thread reads that one
// back. Installs from before this stored an ISO string, which is read as it is.
async function agreeOnCutover(meta) {
  if (meta.utils && meta.utils.cursor) {
    await meta.utils.cursor.init(CUTOVER, Date.now());
    return meta.storage.get(CUTOVER, null);
  }
  const now = Date.now();
  await meta.storage.set(CUTOVER, now);
  return now;
}

const millis = (stored) => {
  const ms = typeof stored === 'number' ? stored : Date.parse(stored);
  return Number.isFinite(ms) ? ms : undefined;
};

async function createMigrator(meta) {
  loadCore();
  const stored = await meta.storage.get(CUTOVER, null);
  // Throws an Error naming each bad setting, before anything is stored; the host shows
  // it and disables the app.
  let migrator = new Migrator(meta.config, Date.now(), stored === null ? undefined : millis(stored));
  if (stored === null) {
    const agreed = await agreeOnCutover(meta);
    migrator.free();
    migrator = new Migrator(meta.config, Date.now(), millis(agreed));
  }
  meta.global.migrator = migrator;
  return migrator;
}

// The core of this thread; made again after a fault of the module (see `guarded`).
async function ready(meta) {
  return meta.global.migrator || createMigrator(meta);
}

// A trap inside the module leaves its memory in an unknown state: the next call loads
// it afresh. Live events waiting in the old one are lost with it (see README).
async function guarded(meta, work) {
  try {
    return await work(await ready(meta));
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) {
      coreLoaded = false;
      meta.global.migrator = null;
    }
    throw error;
  }
}

function retryError(message) {
  return typeof RetryError === 'function' ? new RetryError(message) : new Error(message);
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
    return { status: response.status, retryAfter: response.headers.get('retry-after') || undefined, text: text.slice(0, ANSWER_TEXT_CHARS) };
  } catch (error) {
    const message = String((error && error.message) || error);
    return { status: 0, text: message.slice(0, ANSWER_TEXT_CHARS), error: (error && (error.code || error.errno)) || undefined };
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

// Sends what a dispatch gives, hands back every answer, and carries out its summary:
// requests not delivered are kept in storage, never dropped.
async function run(meta, migrator, dispatch, path) {
  for (let request = dispatch.nextRequest(); request; request = dispatch.nextRequest()) {
    const reply = await post(request);
    dispatch.answer(reply.status, reply.retryAfter, reply.text, reply.error, Date.now());
  }
  const summary = dispatch.finish(Date.now());
  if (summary.delivered) {
    await add(meta, DELIVERED, summary.delivered);
    metric(meta, 'events_delivered', summary.delivered);
  }
  await recordRejected(meta, summary.rejected, path);
  for (const { parcel, delaySeconds } of summary.keep) {
    const id = await add(meta, PARCEL_SEQ, 1);
    await meta.storage.set(PARCEL(id), parcel);
    if (delaySeconds !== null && meta.jobs) await meta.jobs[RESEND_JOB]({ id }).runIn(delaySeconds, 'seconds');
  }
  if (summary.retries) {
    await add(meta, RETRIED, summary.retries);
    metric(meta, 'events_retried', summary.retries);
  }
  metric(meta, 'events_parked', summary.parked);
  if (summary.stop) {
    migrator.hold(summary.stop);
    await meta.storage.set(BLOCKED, { message: summary.stop, since: Date.now() });
  }
  for (const line of summary.warn) console.warn(line);
  for (const line of summary.error) console.error(line);
  return summary;
}

async function sendLive(meta, migrator, page) {
  await recordRejected(meta, page.info.rejected, 'live');
  await run(meta, migrator, page.dispatch(), 'live');
}

// What the core needs to route live events stamped before the cut-over: the host's
// progress keys first, the export state last (a run started in between is then seen
// with keys that are not its own, which routes safely).
async function historyView(meta) {
  const { storage } = meta;
  const number = (value) => (value === null || value === undefined ? undefined : Number(value));
  const coordination = (await storage.get(HOST_V2_COORDINATION, null)) || {};
  const chunks = [].concat(coordination.done || [], coordination.running || []).map(String);
  const hostCursor = number(await storage.get(HOST_V1_CURSOR, null));
  const hostMin = number(await storage.get(HOST_V1_MIN, null));
  const sourceDb = (await storage.get(SOURCE_DB, null)) || undefined;
  return { hostCursor, hostMin, v2Chunks: chunks, sourceDb, exportState: await storage.get(EXPORT, null) };
}

// Records kept under numbers of the history's sequence (the minute task finds them).
async function addHistoryRecord(meta, record) {
  const id = await add(meta, HISTORY_SEQ, 1);
  await meta.storage.set(HISTORY(id), record);
  return id;
}

// Live events wait in this thread's memory; every call on the thread sends those that
// waited long enough, so none waits for the minute task to land here.
async function flushDue(meta, migrator) {
  await sendLive(meta, migrator, migrator.flushLiveIfDue(Date.now()));
}

// Reads the kept requests the core asks for and carries out what it says of them.
async function lookAtParcels(meta, migrator, why) {
  const { storage } = meta;
  const floor = Number(await storage.get(PARCEL_FLOOR, 1));
  const from = await storage.get(PARCEL_LOOK_FROM, null);
  const last = await counted(meta, PARCEL_SEQ);
  const [first, end] = migrator.parcelsToLookAt(floor, from === null ? undefined : Number(from), last);
  const read = [];
  for (let id = first; id <= end; id++) read.push([id, await storage.get(PARCEL(id), null)]);
  const looked = migrator.lookAtParcels(floor, first, last, JSON.stringify(read), why, Date.now());
  if (looked.floor !== floor) await storage.set(PARCEL_FLOOR, looked.floor);
  if (looked.nextFrom === null) await storage.del(PARCEL_LOOK_FROM);
  else await storage.set(PARCEL_LOOK_FROM, looked.nextFrom);
  for (const [id, parcel] of looked.send) {
    await storage.set(PARCEL(id), parcel);
    if (meta.jobs) await meta.jobs[RESEND_JOB]({ id }).runNow();
  }
  for (const id of looked.unreadable) console.error(`The kept request ${PARCEL(id)} cannot be read; it is left in storage for you to look at.`);
  return looked;
}

// Every kept request the core releases for `why`, window after window.
async function release(meta, migrator, why) {
  let events = 0;
  for (let window = 0; window < RELEASE_WINDOWS; window++) {
    const looked = await lookAtParcels(meta, migrator, why);
    events += looked.events;
    if (looked.nextFrom === null) break;
  }
  return events;
}

export async function setupPlugin(meta) {
  const migrator = await createMigrator(meta);
  const settings = migrator.settings;
  meta.global.debug = settings.debug;
  console.log(
    `Migrating to ${settings.destination}: events before ${settings.cutover} through the historical export` +
      ` (from ${settings.startDate || 'the first event'}), events after it as they arrive.` +
      ` Source PostHog ${settings.posthogVersion}: its historical events ${settings.historicalEvents}.`,
  );
  if (!meta.jobs) {
    console.warn('This PostHog runs no jobs for apps, so it cannot replay the history here: only new events are forwarded.');
  }
  // Saved settings after a 401/403/404: what was held goes out again.
  const blocked = await meta.storage.get(BLOCKED, null);
  if (blocked && meta.jobs) {
    await meta.storage.del(BLOCKED);
    const released = await release(meta, migrator, 'settings-saved');
    console.log(`Settings saved: sending the ${released} events kept since "${blocked.message}"`);
  }
}

export async function teardownPlugin(meta) {
  const migrator = meta.global.migrator;
  if (migrator) await sendLive(meta, migrator, migrator.flushLive());
}

// Live events arrive here on every PostHog generation (newer ones call nothing else),
// so this is the live path. The host may also pass live events to exportEvents
// through its export buffer; the core skips them there, so each is sent once. Those
// stamped before the cut-over are routed by the history's state (see src/handover.rs).
export async function onEvent(event, meta) {
  await guarded(meta, async (migrator) => {
    const bytes = jsonBytes([event]);
    const history = migrator.liveNeedsHistory(bytes) ? await historyView(meta) : undefined;
    const page = migrator.addLive(bytes, Date.now(), history);
    for (const record of page.info.late) await addHistoryRecord(meta, record);
    await sendLive(meta, migrator, page);
  });
}

// Historical events: one page of the host's export. Whatever goes wrong, the page is
// handed back with RetryError, for the host to offer again: a page is never lost here.
export async function exportEvents(events, meta) {
  try {
    await guarded(meta, (migrator) => exportPage(meta, migrator, events));
  } catch (error) {
    if (typeof RetryError === 'function' && error instanceof RetryError) throw error;
    console.error(`This page of history could not be handled and goes back to the export: ${(error && error.message) || error}`);
    throw retryError(`Migrator 3000: ${(error && error.message) || error}`);
  }
}

async function exportPage(meta, migrator, events) {
  const { storage } = meta;
  const state = await storage.get(EXPORT, null);
  const blocked = await storage.get(BLOCKED, null);
  const held = blocked ? blocked.message : undefined;
  const page = migrator.exportHistorical(jsonBytes(events), Date.now(), state === null ? undefined : state, held);
  const info = page.info;
  // Where the history comes from, as its events say, for the live path (once per thread).
  if (info.sourceDb && meta.global.sourceDb !== info.sourceDb) {
    await storage.set(SOURCE_DB, info.sourceDb);
    meta.global.sourceDb = info.sourceDb;
  }
  if (info.pageKey === null) {
    if (info.fromExport) await storage.set(LAST_PAGE, Date.now());
    await flushDue(meta, migrator);
    if (info.flushLive) await sendLive(meta, migrator, migrator.flushLive());
    await run(meta, migrator, page.dispatch(held), 'historical'); // nothing of the history: an empty dispatch
    return;
  }
  // Recorded in flight before anything else, until handled to the end (a page offered
  // again is the same page): a page lost in a crash holds the position, and the export
  // starts again from before it rather than skip it.
  const id = await recordPage(meta, migrator, page, info.pageKey);
  try {
    await flushDue(meta, migrator);
    if (info.flushLive) await sendLive(meta, migrator, migrator.flushLive());
    const pace = migrator.pace(await storage.get(PACE, null), info.events, Date.now());
    if (pace) {
      await storage.set(PACE, pace.bucket);
      if (!pace.allowed) {
        page.free();
        throw retryError(`Keeping to the events per minute set: this page goes again in about ${pace.waitSeconds} s.`);
      }
    }
    await run(meta, migrator, page.dispatch(held), 'historical');
    await recordRejected(meta, info.rejected, 'historical');
  } catch (error) {
    // Back to the host, which offers it again: its record says when to expect it.
    const record = await storage.get(HISTORY(id), null).catch(() => null);
    if (record) await storage.set(HISTORY(id), migrator.pageRecord(record, true, Date.now())).catch(() => {});
    throw error;
  }
  await storage.del(HISTORY(id));
  await storage.del(info.pageKey);
  if (meta.global.debug) {
    console.log(
      `Export page: ${events.length} events, ${info.requests} requests, ${info.rejected.length} skipped,` +
        ` ${info.otherPath + info.afterCutover} left to the live path, ${info.outsideWindow} outside the export,` +
        ` ${info.ignored} ignored.`,
    );
  }
}

// The page's record: found again by its key when the host offers it again, else new.
async function recordPage(meta, migrator, page, key) {
  const { storage } = meta;
  const known = await storage.get(key, null);
  const id = known && typeof known === 'object' ? Number(known.id) : null;
  const record = id ? await storage.get(HISTORY(id), null) : null;
  if (record) {
    await storage.set(HISTORY(id), migrator.pageRecord(record, false, Date.now()));
    return id;
  }
  const fresh = await addHistoryRecord(meta, page.record(Date.now()));
  await storage.set(key, { id: fresh });
  await storage.set(LAST_PAGE, Date.now());
  return fresh;
}

async function applyExportStep(meta, step, floor) {
  const { storage } = meta;
  await storage.set(EXPORT, step.state);
  if (step.floor !== null && step.floor !== undefined && step.floor !== floor) await storage.set(HISTORY_FLOOR, step.floor);
  for (const [id, key] of step.forget || []) {
    await storage.del(HISTORY(id));
    if (key) await storage.del(key);
  }
  for (const key of step.resetKeys) await storage.del(key);
  if (step.start) await meta.jobs[step.start.job](step.start.payload).runNow();
  for (const line of step.log) console.log(line);
  for (const line of step.warn) console.warn(line);
}

export async function runEveryMinute(meta) {
  await guarded(meta, async (migrator) => {
    await flushDue(meta, migrator);
    if (!meta.jobs) return;
    const { storage } = meta;
    const looked = await lookAtParcels(meta, migrator, 'minute');
    await storage.set(PARKED, looked.parked);
    // A settings problem stops the history where it is; saving the settings resumes it.
    if (await storage.get(BLOCKED, null)) return;
    const number = (value) => (value === null || value === undefined ? undefined : Number(value));
    const state = await storage.get(EXPORT, null);
    const coordination = (await storage.get(HOST_V2_COORDINATION, null)) || {};
    const seen = {
      hostRunning: Boolean(await storage.get(HOST_V1_RUNNING, false)),
      hostCursor: number(await storage.get(HOST_V1_CURSOR, null)),
      hostMin: number(await storage.get(HOST_V1_MIN, null)),
      v2Running: (await storage.get(HOST_V2_PARAMETERS, null)) !== null,
      v2Done: Array.isArray(coordination.done) ? coordination.done.map(String) : [],
      openParcels: looked.open,
      lastPageAt: number(await storage.get(LAST_PAGE, null)),
      delivered: await counted(meta, DELIVERED),
      rejected: await counted(meta, REJECTED),
      retried: await counted(meta, RETRIED),
      parked: looked.parked,
    };
    const floor = Number(await storage.get(HISTORY_FLOOR, 1));
    const last = await counted(meta, HISTORY_SEQ);
    const [first, end] = migrator.historyRecordsToRead(floor, last);
    const records = [];
    for (let id = first; id <= end; id++) records.push([id, await storage.get(HISTORY(id), null)]);
    const step = migrator.exportTick(state === null ? undefined : state, seen, floor, last, JSON.stringify(records), Date.now());
    await applyExportStep(meta, step, floor);
  });
}

export const jobs = {
  // A kept request, sent again; whatever fails of it is kept anew before it goes.
  [RESEND_JOB]: async ({ id }, meta) => {
    await guarded(meta, async (migrator) => {
      await flushDue(meta, migrator);
      const parcel = await meta.storage.get(PARCEL(id), null);
      const dispatch = parcel && migrator.resend(parcel);
      if (!dispatch) return;
      await run(meta, migrator, dispatch, parcel.historical ? 'historical' : 'live');
      await meta.storage.del(PARCEL(id));
    });
  },
  [RESEND_PARKED_JOB]: async (_payload, meta) => {
    await guarded(meta, async (migrator) => {
      const released = await release(meta, migrator, 'resend-parked');
      console.log(`Sending again ${released} parked events.`);
    });
  },
  '[ADVANCED] Force restart': async (_payload, meta) => {
    await guarded(meta, async (migrator) => {
      const state = await meta.storage.get(EXPORT, null);
      await applyExportStep(meta, migrator.exportRestart(state === null ? undefined : state, Date.now()));
    });
  },
};

export const metrics = {
  events_delivered: 'sum',
  events_rejected: 'sum',
  events_retried: 'sum',
  events_parked: 'sum',
};
