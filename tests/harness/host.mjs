// A PostHog plugin server in miniature: loads the built plugin file the way plugin
// server 1.10.x does (Babel, then a vm2 VM with only the host's globals), hands it a
// `meta` with the host's semantics, runs its jobs on a fake clock, buffers live
// events for exportEvents, and emulates the historical export of PostHog <= 1.29 and
// >= 1.30.
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

const EXPORT_JOB = 'Export historical events';
const EXPORT_PAGE_JOB = 'exportEventsFromTheBeginning';
const EXPORT_WINDOW_MS = 10 * 60 * 1000;
const EXPORT_PAGE_SIZE = 100;
const EXPORT_MAX_RETRIES = 15;
const BUFFER_BYTES = 1024 * 1024;
const BUFFER_SECONDS = 10;
const UNITS = { milliseconds: 1, seconds: 1000, minutes: 60e3, hours: 3600e3, days: 86400e3 };

// The host's guard around every `await`: a promise that takes longer than the task
// timeout rejects. (Tests may shorten the timeout to stand for 30 s.)
function asyncGuard(seconds) {
  return (promise) => {
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
}

// Postgres-backed storage: JSON values, the default for a missing key.
function makeStorage(store) {
  return {
    async get(key, defaultValue) {
      return store.has(key) ? JSON.parse(store.get(key)) : defaultValue;
    },
    async set(key, value) {
      if (value === undefined) store.delete(key);
      else store.set(key, JSON.stringify(value));
    },
    async del(key) {
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
   * @param {'1.29'|'1.30'} [options.sourceShape] which historical export to emulate
   * @param {object[]} [options.sourceEvents] the source instance's events (as captured)
   * @param {boolean} [options.withJobs] false: a host that runs no jobs (newer PostHog)
   * @param {object} [options.storage] a Map shared across reloads, as Postgres would be
   */
  constructor({ bundlePath, config, sourceShape = '1.30', sourceEvents = [], source, withJobs = true, storage, clock, taskTimeoutSeconds = TASK_TIMEOUT_SECONDS, fakeClock = true, pageLatencyMs = 0 }) {
    // How long the host's job queue takes to pick up the export's next page.
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
    this.queue = [];
    this.logs = [];
    this.hostErrors = [];
    this.buffer = [];
    this.bufferBytes = 0;
    this.bufferSince = null;
    this.exportCalls = 0;
  }

  log(level, args) {
    this.logs.push({ level, message: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') });
  }

  /** Transpiles and runs the plugin file, then calls setupPlugin (which may throw). */
  async load() {
    const started = performance.now();
    const code = transformLikeHost(readFileSync(this.bundlePath, 'utf8'));
    const transpiled = performance.now();
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
    this.globalsBeforePlugin = vm.run('Object.getOwnPropertyNames(globalThis)');
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
    this.vm = vm;
    this.methods = plugin.methods;
    this.pluginJobs = plugin.jobs;
    this.meta = plugin.meta;
    this.sandbox = (expression) => vm.run(expression);
    const evaluated = performance.now();
    if (this.methods.setupPlugin) await this.methods.setupPlugin();
    this.timings = { transpileMs: transpiled - started, evaluateMs: evaluated - transpiled, setupMs: performance.now() - evaluated };
    return this;
  }

  hostMeta() {
    const meta = {
      config: this.config,
      attachments: {},
      storage: makeStorage(this.storageMap),
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

  /** Runs due jobs (those with runIn as the fake clock advances), up to `ms` ahead. */
  async advance(ms = 0) {
    const until = this.clock.now + ms;
    for (let steps = 0; steps < 100000; steps++) {
      this.queue.sort((a, b) => a.at - b.at);
      const next = this.queue[0];
      if (!next || next.at > until) break;
      this.queue.shift();
      this.clock.now = Math.max(this.clock.now, next.at);
      await this.runJob(next);
    }
    this.clock.now = until;
    if (this.bufferSince !== null && this.clock.now - this.bufferSince >= BUFFER_SECONDS * 1000) await this.flushBuffer();
  }

  async runJob({ name, payload }) {
    try {
      if (name === EXPORT_JOB && this.methods.exportEvents) return await this.startHistoricalExport(payload);
      if (name === EXPORT_PAGE_JOB && this.methods.exportEvents) return await this.exportPage(payload);
      if (!this.pluginJobs[name]) throw new Error(`Job "${name}" not found`);
      await this.pluginJobs[name](payload);
    } catch (error) {
      // The host logs a failing job; it does not retry it.
      this.hostErrors.push({ job: name, error });
    }
  }

  /** A reload, as after a settings change: teardown, then a new VM; storage and jobs stay. */
  async reload(config = this.config) {
    if (this.methods.teardownPlugin) await this.methods.teardownPlugin();
    this.config = config;
    await this.load();
  }

  async runEveryMinute() {
    if (this.methods.runEveryMinute) await this.methods.runEveryMinute();
  }

  // --- live events: onEvent, and the host's buffer into exportEvents ---

  async ingest(event) {
    if (this.methods.exportEvents) {
      const bytes = JSON.stringify(event).length;
      if (this.bufferBytes + bytes > BUFFER_BYTES) await this.flushBuffer();
      this.buffer.push(event);
      this.bufferBytes += bytes;
      if (this.bufferSince === null) this.bufferSince = this.clock.now;
    }
    if (this.methods.onEvent) await this.methods.onEvent(event);
  }

  async flushBuffer() {
    const batch = this.buffer;
    this.buffer = [];
    this.bufferBytes = 0;
    this.bufferSince = null;
    if (batch.length) await this.methods.exportEvents(batch);
  }

  async teardown() {
    await this.flushBuffer();
    if (this.methods.teardownPlugin) await this.methods.teardownPlugin();
  }

  // --- the historical export of plugin server 1.10.x ---

  async startHistoricalExport({ dateFrom, dateTo }) {
    const storage = this.meta.storage;
    if (await storage.get('is_export_running', false)) return;
    await storage.set('is_export_running', true);
    for (const key of ['timestamp_cursor', 'min_timestamp', 'max_timestamp']) await storage.del(key);
    const { source } = this;
    const from = dateFrom ? Date.parse(dateFrom) : Date.parse(source.event(0).timestamp);
    const to = dateTo ? Date.parse(dateTo) : Date.parse(source.event(source.count - 1).timestamp);
    await this.hostMeta().utils.cursor.init('timestamp_cursor', from - EXPORT_WINDOW_MS);
    await storage.set('min_timestamp', from);
    await storage.set('max_timestamp', to);
    this.queue.push({
      name: EXPORT_PAGE_JOB,
      payload: { retriesPerformedSoFar: 0, incrementTimestampCursor: true },
      at: this.clock.now,
    });
  }

  async exportPage(payload) {
    const storage = this.meta.storage;
    const retries = payload.retriesPerformedSoFar || 0;
    if (retries >= EXPORT_MAX_RETRIES) return;
    let cursor = payload.timestampCursor;
    let offset = payload.intraIntervalOffset || 0;
    if (payload.incrementTimestampCursor || cursor === undefined) {
      offset = 0;
      cursor = await this.hostMeta().utils.cursor.increment('timestamp_cursor', EXPORT_WINDOW_MS);
    }
    if (cursor > (await storage.get('max_timestamp'))) {
      await storage.del('is_export_running');
      this.log('log', ['Done exporting all events']);
      return;
    }
    const [first, end] = this.source.range(cursor, cursor + EXPORT_WINDOW_MS);
    const events = [];
    for (let i = first + offset; i < Math.min(end, first + offset + EXPORT_PAGE_SIZE); i++) {
      events.push(asExported(this.source.event(i), this.sourceShape, this.clock.now));
    }
    if (retries === 0) {
      this.queue.push({
        name: EXPORT_PAGE_JOB,
        payload: {
          timestampCursor: cursor,
          incrementTimestampCursor: events.length === 0,
          retriesPerformedSoFar: 0,
          intraIntervalOffset: offset + EXPORT_PAGE_SIZE,
        },
        at: this.clock.now + this.pageLatencyMs,
      });
    }
    try {
      this.exportCalls += 1;
      await this.methods.exportEvents(events);
    } catch (error) {
      if (!(error instanceof RetryError)) return; // swallowed, as the host does
      this.queue.push({
        name: EXPORT_PAGE_JOB,
        payload: { timestampCursor: cursor, intraIntervalOffset: offset, retriesPerformedSoFar: retries + 1 },
        at: this.clock.now + 2 ** retries * 3000,
      });
    }
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
