// A PostHog plugin server in miniature: loads the built plugin file the way plugin
// server 1.10.x does (Babel, then a vm2 VM with only the host's globals), once per
// worker thread, hands each a `meta` with the host's semantics (storage and jobs shared,
// `global` per thread), runs jobs on a fake clock on whichever thread picks them up,
// buffers live events per thread for exportEvents, and emulates the historical exports:
// V1 of plugin server 1.10.5 (PostHog <= 1.29, and >= 1.30 in its event shape) and V2
// of the monorepo's plugin server (from mid-2022).
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { VM } from 'vm2';
import fetch from 'node-fetch';
import { TASK_TIMEOUT_SECONDS, transformLikeHost } from './transforms.mjs';
import { arraySource, asExported } from './source-events.mjs';

export class RetryError extends Error {}

/** The globals plugin server 1.10.x adds to a plain vm2 VM. */
export const HOST_GLOBALS = ['console', 'posthog', 'fetch', 'google', '__pluginHostImports', 'RetryError', 'URL', '__asyncGuard', '__pluginHostMeta'];

/** What a vm2 VM has before the host adds anything. */
export function plainVmGlobals() {
  return new VM({ sandbox: {} }).run('Object.getOwnPropertyNames(globalThis)');
}

const V1_JOB = 'Export historical events';
const V1_PAGE_JOB = 'exportEventsFromTheBeginning';
const V1_WINDOW_MS = 10 * 60 * 1000;
const V1_PAGE_SIZE = 100;
const V2_JOB = 'Export historical events V2';
const V2_CHUNK_JOB = 'exportHistoricalEventsV2';
const V2_PAGE_SIZE = 500;
const V2_FETCH_MS = 12 * 3600 * 1000;
const MAX_RETRIES = 15;
const BUFFER_BYTES = 1024 * 1024;
const BUFFER_SECONDS = 10;
const UNITS = { milliseconds: 1, seconds: 1000, minutes: 60e3, hours: 3600e3, days: 86400e3 };

// The host's guard around every `await`: a promise that takes longer than the task
// timeout rejects. (Tests may shorten the timeout to stand for 30 s.) It also carries
// the real clock for the loop guard (see transforms.mjs), as the plugin's Date.now is
// the fake clock here.
function asyncGuard(seconds) {
  const guard = (promise) => {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Script execution timed out after promise waited for ${seconds} seconds`)),
        seconds * 1000,
      );
      timer.unref();
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  };
  guard.realNow = () => Date.now();
  return guard;
}

// Postgres-backed storage: JSON values, the default for a missing key. `faults` may
// make a call fail, as a database can.
function makeStorage(store, faults) {
  const check = (op, key) => {
    if (faults.storage && faults.storage(op, key)) throw new Error(`storage unavailable (${op} ${key})`);
  };
  return {
    async get(key, defaultValue) {
      check('get', key);
      return store.has(key) ? JSON.parse(store.get(key)) : defaultValue;
    },
    async set(key, value) {
      check('set', key);
      if (value === undefined) store.delete(key);
      else store.set(key, JSON.stringify(value));
    },
    async del(key) {
      check('del', key);
      store.delete(key);
    },
  };
}

// Redis-backed cache: a missing key is null whatever the default.
function makeCache(store) {
  return {
    async get(key) {
      return store.has(key) ? JSON.parse(store.get(key)) : null;
    },
    async set(key, value) {
      store.set(key, JSON.stringify(value));
    },
    async incr(key) {
      const next = (store.has(key) ? JSON.parse(store.get(key)) : 0) + 1;
      store.set(key, JSON.stringify(next));
      return next;
    },
    async expire() {
      return true;
    },
  };
}

export class PluginHost {
  /**
   * @param {object} options
   * @param {string} options.bundlePath the built plugin file
   * @param {object} options.config the settings form's values (strings)
   * @param {'1.29'|'1.30'|'1.30-postgres'} [options.sourceShape] the shape of exported events
   * @param {object[]} [options.sourceEvents] the source instance's events (as captured)
   * @param {boolean} [options.withJobs] false: a host that runs no jobs (newer PostHog)
   * @param {object} [options.storage] a Map shared across reloads, as Postgres would be
   * @param {number} [options.threads] worker threads, each with a VM of the plugin
   * @param {number} [options.seed] which thread picks up each job (a seeded choice)
   * @param {number} [options.pageLatencyMs] how long the job queue takes to pick up the
   *   export's next page
   */
  constructor({ bundlePath, config, sourceShape = '1.30', sourceEvents = [], source, withJobs = true, storage, clock, taskTimeoutSeconds = TASK_TIMEOUT_SECONDS, fakeClock = true, pageLatencyMs = 0, threads = 1, seed = 1 }) {
    this.pageLatencyMs = pageLatencyMs;
    this.taskTimeoutSeconds = taskTimeoutSeconds;
    this.fakeClock = fakeClock;
    this.bundlePath = bundlePath;
    this.config = config;
    this.sourceShape = sourceShape;
    // The source's events: an array, or a lazy source (see `corpus`) for big runs.
    this.source = source || arraySource(sourceEvents);
    this.withJobs = withJobs;
    this.storageMap = storage || new Map();
    this.cacheMap = new Map();
    this.clock = clock || { now: Date.now() };
    this.threadCount = threads;
    this.seed = seed >>> 0 || 1;
    this.faults = {};
    this.queue = [];
    this.logs = [];
    this.hostErrors = [];
    this.exportCalls = 0;
    this.jobsStarted = [];
  }

  log(level, args) {
    this.logs.push({ level, message: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') });
  }

  /** Which thread picks up the next job: a seeded choice, the same on every run. */
  pickThread() {
    this.seed ^= this.seed << 13;
    this.seed >>>= 0;
    this.seed ^= this.seed >>> 17;
    this.seed ^= this.seed << 5;
    this.seed >>>= 0;
    return this.threads[this.seed % this.threads.length];
  }

  /** Transpiles the plugin file, runs it in one VM per thread, then calls setupPlugin
   * on each (which may throw). */
  async load() {
    const started = performance.now();
    const code = transformLikeHost(readFileSync(this.bundlePath, 'utf8'));
    const transpiled = performance.now();
    this.threads = [];
    let evaluated = 0;
    for (let index = 0; index < this.threadCount; index++) {
      const before = performance.now();
      const thread = this.loadThread(code, index);
      evaluated += performance.now() - before;
      this.threads.push(thread);
    }
    const [first] = this.threads;
    this.vm = first.vm;
    this.methods = first.methods;
    this.pluginJobs = first.jobs;
    this.meta = first.meta;
    this.sandbox = (expression) => first.vm.run(expression);
    const setupStarted = performance.now();
    for (const thread of this.threads) if (thread.methods.setupPlugin) await thread.methods.setupPlugin();
    this.timings = { transpileMs: transpiled - started, evaluateMs: evaluated / this.threadCount, setupMs: (performance.now() - setupStarted) / this.threadCount };
    return this;
  }

  loadThread(code, index) {
    const vm = new VM({ timeout: TASK_TIMEOUT_SECONDS * 1000 + 1, sandbox: {} });
    const console_ = {};
    for (const level of ['debug', 'log', 'info', 'warn', 'error']) console_[level] = (...args) => this.log(level, args);
    vm.freeze(console_, 'console');
    vm.freeze({ capture: () => {} }, 'posthog');
    vm.freeze(fetch, 'fetch');
    vm.freeze({ cloud: {} }, 'google');
    vm.freeze({}, '__pluginHostImports');
    vm.freeze(RetryError, 'RetryError');
    vm.freeze(URL, 'URL');
    vm.freeze(asyncGuard(this.taskTimeoutSeconds), '__asyncGuard');
    vm.freeze(this.hostMeta(), '__pluginHostMeta');
    // The plugin's clock is the fake one, so tests can let time pass without waiting;
    // the global that carries it in is removed again.
    vm.freeze(() => this.clock.now, '__hostClock');
    vm.run(`((clock) => { ${this.fakeClock ? 'Date.now = () => clock();' : ''} })(__hostClock); delete globalThis.__hostClock;`);
    // What the plugin finds before its own code declares anything.
    const globalsBeforePlugin = vm.run('Object.getOwnPropertyNames(globalThis)');
    if (index === 0) this.globalsBeforePlugin = globalsBeforePlugin;
    vm.run(`const module = { exports: {} }; let exports = {};\n${code}`);
    // As the host does: meta is made inside the VM, `global` included, and passed last.
    const plugin = vm.run(`(() => {
      const meta = { ...__pluginHostMeta, global: {} };
      const places = [exports, exports.default, module.exports].filter((d) => d && typeof d === 'object');
      const find = (key) => places.map((d) => d[key]).find(Boolean);
      const bind = (fn) => fn && ((...args) => fn(...args, meta));
      const methods = {};
      for (const name of ['setupPlugin', 'teardownPlugin', 'onEvent', 'exportEvents', 'runEveryMinute']) {
        methods[name] = bind(find(name));
      }
      const jobs = {};
      for (const [name, job] of Object.entries(find('jobs') || {})) jobs[name] = bind(job);
      return { methods, jobs, meta };
    })()`);
    return {
      index,
      vm,
      methods: plugin.methods,
      jobs: plugin.jobs,
      meta: plugin.meta,
      // What the host keeps in each thread's memory for its V1 export (plugin server
      // 1.10.5 puts these in the VM's meta.global): the export's bounds, read from
      // storage the first time a page runs on the thread and reset only on the thread
      // that starts an export.
      exportBounds: { max: null, min: null },
      buffer: [],
      bufferBytes: 0,
      bufferSince: null,
    };
  }

  hostMeta() {
    const meta = {
      config: this.config,
      attachments: {},
      storage: makeStorage(this.storageMap, this.faults),
      cache: makeCache(this.cacheMap),
      utils: {
        cursor: {
          init: async (key, initial = 0) => {
            if (!this.storageMap.has(key)) this.storageMap.set(key, JSON.stringify(initial));
          },
          increment: async (key, by = 1) => {
            const next = Number(JSON.parse(this.storageMap.get(key) || '0')) + by;
            this.storageMap.set(key, JSON.stringify(next));
            return next;
          },
        },
      },
      metrics: {},
      geoip: {},
    };
    if (this.withJobs) {
      meta.jobs = new Proxy(
        {},
        {
          get: (_, name) => (payload) => this.jobHandle(String(name), payload),
        },
      );
    }
    return meta;
  }

  jobHandle(name, payload) {
    const enqueue = (delayMs) => {
      // Payloads are stored as JSON by the job queue.
      this.queue.push({ name, payload: JSON.parse(JSON.stringify(payload ?? {})), at: this.clock.now + delayMs });
    };
    return {
      runNow: async () => enqueue(0),
      runIn: async (duration, unit) => {
        const key = unit.endsWith('s') ? unit : `${unit}s`;
        if (!(key in UNITS)) throw new Error(`Unknown time unit: ${unit}`);
        enqueue(duration * UNITS[key]);
      },
      runAt: async (date) => enqueue(new Date(date).getTime() - this.clock.now),
    };
  }

  /** Runs due jobs (those with runIn as the fake clock advances), up to `ms` ahead, and
   * flushes each thread's export buffer on its timer. */
  async advance(ms = 0) {
    const until = this.clock.now + ms;
    for (let steps = 0; steps < 200000; steps++) {
      this.queue.sort((a, b) => a.at - b.at);
      const next = this.queue[0];
      const bufferDue = this.nextBufferFlush();
      if (bufferDue !== null && bufferDue <= until && (!next || bufferDue <= next.at)) {
        this.clock.now = Math.max(this.clock.now, bufferDue);
        await this.flushDueBuffers();
        continue;
      }
      if (!next || next.at > until) break;
      this.queue.shift();
      this.clock.now = Math.max(this.clock.now, next.at);
      await this.runJob(next);
    }
    this.clock.now = until;
  }

  /** Runs a job on a thread the host picks (or `thread`). */
  async runJob({ name, payload }, thread = this.pickThread()) {
    this.jobsStarted.push(name);
    try {
      if (name === V1_JOB && thread.methods.exportEvents) return await this.startV1Export(thread, payload);
      if (name === V1_PAGE_JOB && thread.methods.exportEvents) return await this.exportV1Page(thread, payload);
      if (name === V2_JOB && thread.methods.exportEvents) return await this.startV2Export(payload);
      if (name === V2_CHUNK_JOB && thread.methods.exportEvents) return await this.exportV2Chunk(thread, payload);
      if (!thread.jobs[name]) throw new Error(`Job "${name}" not found`);
      await thread.jobs[name](payload);
    } catch (error) {
      // The host logs a failing job; it does not retry it.
      this.hostErrors.push({ job: name, thread: thread.index, error });
    }
  }

  /** Calls a hook the way the host does: an error is written to the app's error log,
   * kept here for the tests to see. */
  async call(thread, hook, ...args) {
    if (!thread.methods[hook]) return undefined;
    try {
      return await thread.methods[hook](...args);
    } catch (error) {
      this.hostErrors.push({ hook, thread: thread.index, error });
      return undefined;
    }
  }

  /** A reload, as after a settings change: teardown, then new VMs; storage and jobs stay. */
  async reload(config = this.config) {
    for (const thread of this.threads) await this.call(thread, 'teardownPlugin');
    this.config = config;
    await this.load();
  }

  /** The minute task, on the one thread that holds the host's lock this minute. */
  async runEveryMinute(thread = this.pickThread()) {
    await this.call(thread, 'runEveryMinute');
    // V2's coordinator runs after the plugin's own minute task.
    await this.coordinateV2();
  }

  // --- live events: onEvent, and each thread's buffer into exportEvents ---

  async ingest(event, thread = this.threads[0]) {
    if (thread.methods.exportEvents) {
      const bytes = JSON.stringify(event).length;
      if (thread.bufferBytes + bytes > BUFFER_BYTES) await this.flushBuffer(thread);
      thread.buffer.push(event);
      thread.bufferBytes += bytes;
      if (thread.bufferSince === null) thread.bufferSince = this.clock.now;
    }
    await this.call(thread, 'onEvent', event);
  }

  nextBufferFlush() {
    const due = (this.threads || []).filter((t) => t.bufferSince !== null).map((t) => t.bufferSince + BUFFER_SECONDS * 1000);
    return due.length ? Math.min(...due) : null;
  }

  async flushDueBuffers() {
    for (const thread of this.threads) {
      if (thread.bufferSince !== null && this.clock.now - thread.bufferSince >= BUFFER_SECONDS * 1000) await this.flushBuffer(thread);
    }
  }

  async flushBuffer(thread) {
    const batch = thread.buffer;
    thread.buffer = [];
    thread.bufferBytes = 0;
    thread.bufferSince = null;
    if (batch.length) await this.call(thread, 'exportEvents', batch);
  }

  async teardown() {
    for (const thread of this.threads) {
      await this.flushBuffer(thread);
      await this.call(thread, 'teardownPlugin');
    }
  }

  exported(i) {
    return asExported(this.source.event(i), this.sourceShape, this.clock.now, i);
  }

  // --- V1: the historical export of plugin server 1.10.5 ---

  async startV1Export(thread, payload) {
    const storage = this.meta.storage;
    if (await storage.get('is_export_running', false)) return;
    await storage.set('is_export_running', true);
    for (const key of ['timestamp_cursor', 'min_timestamp', 'max_timestamp']) await storage.del(key);
    // Only this thread forgets the bounds it had.
    thread.exportBounds = { max: null, min: null };
    const { source } = this;
    const first = source.count ? Date.parse(source.event(0).timestamp) : this.clock.now;
    const last = source.count ? Date.parse(source.event(source.count - 1).timestamp) : this.clock.now;
    const from = payload.dateFrom ? Date.parse(payload.dateFrom) : first;
    const to = payload.dateTo ? Date.parse(payload.dateTo) : last;
    await this.hostMeta().utils.cursor.init('timestamp_cursor', from - V1_WINDOW_MS);
    await storage.set('min_timestamp', from);
    await storage.set('max_timestamp', to);
    this.queue.push({ name: V1_PAGE_JOB, payload: { retriesPerformedSoFar: 0, incrementTimestampCursor: true }, at: this.clock.now });
  }

  async exportV1Page(thread, payload) {
    const storage = this.meta.storage;
    const retries = payload.retriesPerformedSoFar || 0;
    if (retries >= MAX_RETRIES) return;
    let cursor = payload.timestampCursor;
    let offset = payload.intraIntervalOffset || 0;
    if (!thread.exportBounds.max) thread.exportBounds.max = Number(await storage.get('max_timestamp', null));
    if (!thread.exportBounds.min) thread.exportBounds.min = Number(await storage.get('min_timestamp', null));
    if (payload.incrementTimestampCursor || !cursor) {
      offset = 0;
      cursor = await this.hostMeta().utils.cursor.increment('timestamp_cursor', V1_WINDOW_MS);
    }
    if (cursor > thread.exportBounds.max) {
      await storage.del('is_export_running');
      this.log('log', ['Done exporting all events']);
      return;
    }
    // Ordered and paged as the database does. (The real query's upper bound is
    // inclusive, so an event exactly on a window's end is exported twice, with the same
    // uuid; the windows here are half-open so that tests can count exact deliveries.)
    const [first, end] = this.source.range(cursor, cursor + V1_WINDOW_MS);
    const events = [];
    for (let i = first + offset; i < Math.min(end, first + offset + V1_PAGE_SIZE); i++) events.push(this.exported(i));
    if (retries === 0) {
      this.queue.push({
        name: V1_PAGE_JOB,
        payload: { timestampCursor: cursor, incrementTimestampCursor: events.length === 0, retriesPerformedSoFar: 0, intraIntervalOffset: offset + V1_PAGE_SIZE },
        at: this.clock.now + this.pageLatencyMs,
      });
    }
    this.exportCalls += 1;
    try {
      await thread.methods.exportEvents(events);
    } catch (error) {
      // Retried on RetryError only; any other error is logged and the page dropped.
      if (!(error instanceof RetryError)) return this.hostErrors.push({ hook: 'exportEvents', thread: thread.index, error });
      this.queue.push({
        name: V1_PAGE_JOB,
        payload: { timestampCursor: cursor, intraIntervalOffset: offset, retriesPerformedSoFar: retries + 1 },
        at: this.clock.now + 2 ** retries * 3000,
      });
    }
  }

  // --- V2: the monorepo's `Export historical events V2` (from mid-2022) ---
  // Emulated: its parameters and coordination keys, day chunks cut at midnight UTC, one
  // chunk at a time (parallelism 1), pages of 500, retries of RetryError (3*2^n s, 15
  // times, then the export stops), any other error stopping the export, and the
  // coordinator in the minute task. Skipped: its fetch window resizing (a fixed 12 h
  // window here) and the restart of chunks it finds inactive.

  async startV2Export(payload) {
    const storage = this.meta.storage;
    if (await storage.get('EXPORT_PARAMETERS', null)) {
      this.log('warn', ['Export already running, not starting another.']);
      return;
    }
    await storage.del('EXPORT_COORDINATION');
    const from = new Date(payload.dateFrom);
    const to = new Date(payload.dateTo);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) {
      this.log('error', ["'dateFrom' and 'dateTo' should be timestamps in ISO string format."]);
      throw new Error("'dateFrom' and 'dateTo' should be timestamps in ISO string format.");
    }
    this.v2Id = (this.v2Id || 0) + 1;
    await storage.set('EXPORT_PARAMETERS', { id: this.v2Id, parallelism: 1, dateFrom: from.toISOString(), dateTo: to.toISOString() });
    await this.coordinateV2();
  }

  v2Days({ dateFrom, dateTo }) {
    const days = [];
    let at = Date.parse(dateFrom);
    const end = Date.parse(dateTo);
    while (at < end) {
      const midnight = new Date(at);
      midnight.setUTCHours(24, 0, 0, 0);
      const next = Math.min(midnight.getTime(), end);
      days.push([new Date(at).toISOString(), new Date(next).toISOString()]);
      at = next;
    }
    return days;
  }

  async coordinateV2() {
    if (!this.withJobs || !this.meta) return;
    const storage = this.meta.storage;
    const params = await storage.get('EXPORT_PARAMETERS', null);
    if (!params) return;
    const { done = [], running = [] } = await storage.get('EXPORT_COORDINATION', {});
    const doneSet = new Set(done);
    const runningSet = new Set(running);
    for (const date of running) {
      const status = await storage.get(`EXPORT_DATE_STATUS_${date}`, null);
      if (status && status.done) {
        doneSet.add(date);
        runningSet.delete(date);
      }
    }
    const days = this.v2Days(params);
    if (doneSet.size === days.length) {
      await storage.del('EXPORT_PARAMETERS');
      await storage.set('EXPORT_COORDINATION', { done: [...doneSet], running: [], progress: 1 });
      this.log('log', ['Export has finished! 💯']);
      return;
    }
    if (runningSet.size === 0) {
      const next = days.find(([start]) => !doneSet.has(start));
      runningSet.add(next[0]);
      const payload = { timestampCursor: Date.parse(next[0]), startTime: Date.parse(next[0]), endTime: Date.parse(next[1]), offset: 0, retriesPerformedSoFar: 0, exportId: params.id, statusKey: `EXPORT_DATE_STATUS_${next[0]}` };
      await storage.set(payload.statusKey, { ...payload, done: false, progress: 0, statusTime: this.clock.now });
      this.queue.push({ name: V2_CHUNK_JOB, payload, at: this.clock.now });
    }
    await storage.set('EXPORT_COORDINATION', { done: [...doneSet], running: [...runningSet], progress: doneSet.size / days.length });
  }

  async exportV2Chunk(thread, payload) {
    const storage = this.meta.storage;
    const params = await storage.get('EXPORT_PARAMETERS', null);
    if (!params || params.id !== payload.exportId) return;
    const stop = async (message) => {
      await storage.del('EXPORT_PARAMETERS');
      this.log('error', [message]);
    };
    if (payload.retriesPerformedSoFar >= MAX_RETRIES) return stop('Exporting chunk failed after 15 retries. Stopping export.');
    if (payload.timestampCursor >= payload.endTime) {
      await storage.set(payload.statusKey, { ...payload, done: true, progress: 1, statusTime: this.clock.now });
      return undefined;
    }
    const windowEnd = Math.min(payload.timestampCursor + V2_FETCH_MS, payload.endTime);
    const [first, end] = this.source.range(payload.timestampCursor, windowEnd);
    const events = [];
    for (let i = first + payload.offset; i < Math.min(end, first + payload.offset + V2_PAGE_SIZE); i++) events.push(this.exported(i));
    if (events.length > 0) {
      this.exportCalls += 1;
      try {
        await thread.methods.exportEvents(events);
      } catch (error) {
        if (error instanceof RetryError) {
          this.queue.push({ name: V2_CHUNK_JOB, payload: { ...payload, retriesPerformedSoFar: payload.retriesPerformedSoFar + 1 }, at: this.clock.now + 2 ** payload.retriesPerformedSoFar * 3000 });
          return undefined;
        }
        this.hostErrors.push({ hook: 'exportEvents', thread: thread.index, error });
        return stop(`exportEvents returned unknown error, stopping export. error=${error}`);
      }
    }
    const more = events.length === V2_PAGE_SIZE;
    const next = more ? { timestampCursor: payload.timestampCursor, offset: payload.offset + V2_PAGE_SIZE } : { timestampCursor: windowEnd, offset: 0 };
    await storage.set(payload.statusKey, { ...payload, ...next, done: false, statusTime: this.clock.now });
    this.queue.push({ name: V2_CHUNK_JOB, payload: { ...payload, ...next, retriesPerformedSoFar: 0 }, at: this.clock.now + 1000 });
    return undefined;
  }

  /** The app's export state, as it stored it. */
  exportState() {
    const stored = this.storageMap.get('migrator_export');
    return stored ? JSON.parse(JSON.parse(stored)) : null;
  }

  /** Runs the scheduled minute task and the job queue until the export is done. */
  async runUntilExported(maxMinutes = 3000) {
    for (let minute = 0; minute < maxMinutes; minute++) {
      await this.runEveryMinute();
      await this.advance(60_000);
      if (this.exportState()?.done) return minute;
    }
    throw new Error(`the export did not finish within ${maxMinutes} simulated minutes`);
  }
}
