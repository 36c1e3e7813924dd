// The plugin's hooks. This file only routes the host's hooks into the Rust core and
// does the I/O (fetch, storage, jobs, log): every decision about settings, events,
// batches, answers and the export window is the core's.
import { Migrator, classifyAnswer, initSync } from 'core-glue';
import WASM_BASE64 from 'core-wasm-base64';
import { base64ToBytes } from './base64.js';

// Our storage keys.
const CUTOVER = 'migrator_cutover';
const EXPORT = 'migrator_export';
const PROGRESS = 'migrator_progress';
// The host's own keys for its historical export (plugin server 1.10.x and 1.30.x):
// the flag it clears when done, and the window it is in and the last one it will do.
const HOST_EXPORT_RUNNING = 'is_export_running';
const HOST_CURSOR = 'timestamp_cursor';
const HOST_LAST = 'max_timestamp';
// How long after starting the export to say plainly that nothing has come of it.
const EXPORT_SILENT_AFTER_MS = 15 * 60 * 1000;

let coreLoaded = false;
function loadCore() {
  if (coreLoaded) return;
  // TRICKY: a plugin is one file in a sandbox without fs: the module travels inside
  // this file and is compiled synchronously from bytes made in the sandbox's realm.
  initSync({ module: base64ToBytes(WASM_BASE64) });
  coreLoaded = true;
}

function core(meta) {
  const migrator = meta.global.migrator;
  if (!migrator) throw new Error('Migrator 3000 is not set up: fix its settings and save them again.');
  return migrator;
}

const retryError = (message) => (typeof RetryError === 'function' ? new RetryError(message) : new Error(message));

// TRICKY: bytes made in the sandbox reach the host's fetch as a proxy it sends as
// "31,139,...": gzip bodies come from the core as base64 for the host's Buffer.
function bodyOf(request) {
  if (request.encoding !== 'gzip-base64') return request.body;
  return typeof Buffer === 'function' ? Buffer.from(request.body, 'base64') : base64ToBytes(request.body);
}

async function send(request) {
  try {
    const response = await fetch(request.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: bodyOf(request),
    });
    return { answer: classifyAnswer(response.status), status: `HTTP ${response.status}` };
  } catch (error) {
    return { answer: 'retry', status: `no answer (${error && error.message})` };
  }
}

function explain(answer, status, count, what) {
  switch (answer) {
    case 'unauthorized':
      return `${count} ${what} not accepted (${status}): the destination refused the project API key. Check the "Destination host" and "Destination project API key" settings.`;
    case 'refused':
      return `${count} ${what} refused by the destination (${status}).`;
    default:
      return `${count} ${what} not delivered yet (${status}).`;
  }
}

function logRejected(outcome, what) {
  for (const r of outcome.rejected) {
    console.warn(`Skipped a ${what} event${r.event ? ` "${r.event}"` : ''}${r.uuid ? ` (uuid ${r.uuid})` : ''}: ${r.reason}.`);
  }
}

// Live requests: sent as they fill; what fails is logged.
async function deliverLive(requests) {
  let delivered = 0;
  for (const request of requests) {
    const { answer, status } = await send(request);
    if (answer === 'delivered') delivered += request.uuids.length;
    else console.error(explain(answer, status, request.uuids.length, 'live events'));
  }
  return delivered;
}

export async function setupPlugin(meta) {
  loadCore();
  const { config, global, storage } = meta;
  const stored = await storage.get(CUTOVER, null);
  const now = Date.now();
  // Throws an Error naming each bad setting; the host shows it and disables the app.
  const migrator = new Migrator(config, now, stored ? Date.parse(stored) : undefined);
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
    console.warn(
      'This PostHog runs no jobs for apps, so it cannot replay the history here: only new events are forwarded.',
    );
  }
}

export async function teardownPlugin(meta) {
  const migrator = meta.global.migrator;
  if (!migrator) return;
  const last = migrator.flushLive();
  if (last) await deliverLive([last]);
}

// Live events arrive here on every PostHog generation (newer ones call nothing else),
// so this is the live path. The host may also pass live events to exportEvents
// through its export buffer; the core skips them there, so each is sent once.
export async function onEvent(event, meta) {
  const migrator = core(meta);
  const outcome = migrator.addLive(JSON.stringify([event]), Date.now());
  logRejected(outcome, 'live');
  await deliverLive(outcome.requests);
}

// Historical events: one page of the host's export. A request the destination may
// accept later makes the host retry the whole page (resends carry the same uuids).
export async function exportEvents(events, meta) {
  const migrator = core(meta);
  const outcome = migrator.exportHistorical(JSON.stringify(events), Date.now());
  logRejected(outcome, 'historical');
  let delivered = 0;
  for (const request of outcome.requests) {
    const { answer, status } = await send(request);
    if (answer === 'delivered') {
      delivered += request.uuids.length;
    } else if (answer === 'refused') {
      console.error(explain(answer, status, request.uuids.length, 'historical events'));
    } else {
      throw retryError(`${explain(answer, status, request.uuids.length, 'historical events')} The page will be retried.`);
    }
  }
  if (delivered > 0) {
    const progress = await meta.storage.get(PROGRESS, { delivered: 0, latest: null });
    progress.delivered += delivered;
    if (outcome.latest && (!progress.latest || outcome.latest > progress.latest)) progress.latest = outcome.latest;
    await meta.storage.set(PROGRESS, progress);
  }
  if (meta.global.debug) {
    console.log(
      `Export page: ${events.length} events in, ${delivered} delivered, ${outcome.rejected.length} skipped,` +
        ` ${outcome.otherPath + outcome.afterCutover} left to the live path, ${outcome.ignored} ignored.`,
    );
  }
}

async function startExport(meta, plan, verb) {
  await meta.jobs[plan.job](plan.payload).runNow();
  await meta.storage.set(EXPORT, { job: plan.job, payload: plan.payload, startedAt: Date.now(), seenRunning: false });
  console.log(
    `${verb} the historical export ("${plan.job}") of events from ${plan.payload.dateFrom || 'the first event'} to ${plan.payload.dateTo}.`,
  );
}

export async function runEveryMinute(meta) {
  const migrator = core(meta);
  const due = migrator.flushLiveIfDue(Date.now());
  if (due) await deliverLive([due]);
  if (!meta.jobs) return;

  const { storage } = meta;
  const state = await storage.get(EXPORT, null);
  if (!state) return startExport(meta, migrator.exportPlan(), 'Started');
  if (state.done) return;
  const running = await storage.get(HOST_EXPORT_RUNNING, null);
  const progress = await storage.get(PROGRESS, { delivered: 0, latest: null });
  const cursor = await storage.get(HOST_CURSOR, null);
  const last = await storage.get(HOST_LAST, null);
  // The export may start and finish between two of these minutes: the host's cursor
  // past its last window says so too.
  const finished = state.seenRunning || (cursor !== null && last !== null && Number(cursor) > Number(last));
  if (running) {
    if (!state.seenRunning) await storage.set(EXPORT, { ...state, seenRunning: true });
  } else if (finished) {
    await storage.set(EXPORT, { ...state, done: true });
    console.log(`The historical export has finished: ${progress.delivered} historical events delivered.`);
  } else if (progress.delivered === 0 && !state.warned && Date.now() - state.startedAt > EXPORT_SILENT_AFTER_MS) {
    await storage.set(EXPORT, { ...state, warned: true });
    console.warn(
      `No historical events have arrived since "${state.job}" was started. This PostHog may not offer that export;` +
        ' check the "PostHog version" setting. New events are still forwarded.',
    );
  }
}

export const jobs = {
  '[ADVANCED] Force restart': async (_payload, meta) => {
    const migrator = core(meta);
    const cursor = await meta.storage.get(HOST_CURSOR, null);
    const progress = await meta.storage.get(PROGRESS, { delivered: 0, latest: null });
    const plan = migrator.resumePlan(
      cursor === null ? undefined : Number(cursor),
      progress.latest ? Date.parse(progress.latest) : undefined,
    );
    // The host refuses to start an export while its flag says one is running.
    await meta.storage.del(HOST_EXPORT_RUNNING);
    await startExport(meta, plan, 'Restarted');
  },
};
