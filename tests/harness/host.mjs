// A PostHog plugin server in miniature: loads the built plugin file the way plugin
// server 1.10.x does (Babel, then a vm2 VM with only the host's globals), once per
// worker thread, all threads at once, hands each a `meta` with the host's semantics
// (storage and jobs shared, `global` per thread), runs jobs on a fake clock on
// whichever thread picks them up, buffers live events per thread for exportEvents, and
// emulates the historical exports: V1 of plugin server 1.10.5 (PostHog <= 1.29, and
// >= 1.30 in its event shape) and V2 of the monorepo's plugin server (from mid-2022).
//
// Time: jobs, buffer flushes and (when asked for) the minute task are events on the
// fake clock. A request to the destination may take fake time (`fetchLatencyMs`), and
// whatever falls due meanwhile runs alongside, as on a real server; with no latency
// every job runs to its end before the next starts.
//
// Crashes: `kill()` is a kill -9 of the plugin server. Nothing of the process runs on
// (its storage calls, requests and jobs never complete), its threads' buffers and the
// jobs it had taken up (every job already due: plugin server 1.10.5 hands a due job
// from graphile-worker to a worker thread at once and marks it done in the queue) are
// lost; jobs due later stay in the queue, which is in Postgres. `restart()` starts a
// new process on the same storage and queue.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { VM } from 'vm2';
import fetch from 'node-fetch';
import { TASK_TIMEOUT_SECONDS, transformLikeHost } from './transforms.mjs';
import { arraySource, asExported, asLive } from './source-events.mjs';

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

// A uuid for an event the host makes itself, from the time and a counter.
function hostUuid(ms, n) {
  const hex = (ms.toString(16) + n.toString(16).padStart(4, '0')).padStart(32, '0').slice(-32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20)}`;
}

// What a killed process was waiting for: it never comes.
const never = () => new Promise(() => {});

// Postgres-backed storage: JSON values, the default for a missing key. `faults` may
// make a call fail, as a database can.
function makeStorage(store, faults, gen) {
  const check = (op, key) => {
    if (faults.storage && faults.storage(op, key)) throw new Error(`storage unavailable (${op} ${key})`);
  };
  return {
    async get(key, defaultValue) {
      if (!gen.alive) return never();
      check('get', key);
      return store.has(key) ? JSON.parse(store.get(key)) : defaultValue;
    },
    async set(key, value) {
      if (!gen.alive) return never();
      check('set', key);
      if (value === undefined) store.delete(key);
      else store.set(key, JSON.stringify(value));
      return undefined;
    },
    async del(key) {
      if (!gen.alive) return never();
      check('del', key);
      store.delete(key);
      return undefined;
    },
  };
}

// Redis-backed cache: a missing key is null whatever the default.
function makeCache(store, gen) {
  return {
    async get(key) {
      if (!gen.alive) return never();
      return store.has(key) ? JSON.parse(store.get(key)) : null;
    },
    async set(key, value) {
      if (!gen.alive) return never();
      store.set(key, JSON.stringify(value));
      return undefined;
    },
    async incr(key) {
      if (!gen.alive) return never();
      const next = (store.has(key) ? JSON.parse(store.get(key)) : 0) + 1;
      store.set(key, JSON.stringify(next));
      return next;
    },
    async expire() {
      if (!gen.alive) return never();
      return true;
    },
  };
}

// utils.cursor of plugin server 1.10.5 (worker/vm/extensions/utilities.ts and utils.ts):
// `init` is INSERT ... ON CONFLICT DO NOTHING, `increment` an upsert adding to the
// value, RETURNING it as the text column holds it. Both treat a falsy number as the
// default (0 for init, 1 for increment).
function makeCursor(store, gen) {
  return {
    init: async (key, initialValue) => {
      if (!gen.alive) return never();
      const initial = initialValue || 0;
      if (typeof initial !== 'number') throw new Error("The cursor's initial value must be a number!");
      if (!store.has(key)) store.set(key, JSON.stringify(initial));
      return undefined;
    },
    increment: async (key, incrementBy) => {
      if (!gen.alive) return never();
      const by = incrementBy || 1;
      if (typeof by !== 'number') throw new Error('The incrementBy value must be a number!');
      const next = store.has(key) ? Number(JSON.parse(store.get(key))) + by : by;
      if (Number.isNaN(next)) throw new Error(`invalid input syntax for type numeric: ${store.get(key)}`);
      store.set(key, String(next));
      return String(next);
    },
  };
}

// The metrics a plugin declares (`export const metrics`), plus the ones the host adds
// for exportEvents, as meta.metrics of 1.10.5 gives them: an undeclared name throws.
const EXPORT_EVENTS_METRICS = { events_seen: 'sum', events_delivered_successfully: 'sum', undelivered_events: 'sum', retry_errors: 'sum', other_errors: 'sum' };
function makeMetrics(declared, record) {
  return new Proxy(
    {},
    {
      get(_, key) {
        if (typeof key !== 'string' || !(key in declared)) throw new Error('Invalid metric name');
        const type = String(declared[key]).toLowerCase();
        const op = (apply) => (value) => record(key, apply, value);
        if (type === 'sum') return { increment: op((a, b) => a + b) };
        if (type === 'max') return { max: op(Math.max) };
        if (type === 'min') return { min: op(Math.min) };
        return {};
      },
    },
  );
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
  constructor({ bundlePath, config, sourceShape = '1.30', sourceEvents = [], source, withJobs = true, storage, clock, taskTimeoutSeconds = TASK_TIMEOUT_SECONDS, fakeClock = true, pageLatencyMs = 0, fetchLatencyMs = 0, setupStaggerMs = 10, threads = 1, seed = 1 }) {
    this.pageLatencyMs = pageLatencyMs;
    this.fetchLatencyMs = fetchLatencyMs;
    this.setupStaggerMs = setupStaggerMs;
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
    /** V1 pages handed to exportEvents and not yet returned. */
    this.pagesInFlight = 0;
    this.jobsStarted = [];
    this.sleepers = [];
    this.minuteTask = null;
    this.generations = 0;
    this.gen = { alive: true, running: 0, id: 0 };
  }

  log(level, args, gen = this.gen) {
    if (!gen.alive) return;
    this.logs.push({ level, at: this.clock.now, message: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') });
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
   * on every thread at once (which may throw), thread i starting `setupStaggerMs` * i
   * later. `whileLoading[i]`: live events the host held back while thread i loaded,
   * which reach its onEvent, all at once, when its setupPlugin is done. */
  async load({ whileLoading = [] } = {}) {
    const started = performance.now();
    const code = transformLikeHost(readFileSync(this.bundlePath, 'utf8'));
    const transpiled = performance.now();
    this.generations += 1;
    const gen = { alive: true, running: 0, id: this.generations };
    this.gen = gen;
    this.threads = [];
    let evaluated = 0;
    for (let index = 0; index < this.threadCount; index++) {
      const before = performance.now();
      const thread = this.loadThread(code, index, gen);
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
    await Promise.all(
      this.threads.map(async (thread) => {
        thread.clockOffset = thread.index * this.setupStaggerMs;
        try {
          if (thread.methods.setupPlugin) await thread.methods.setupPlugin();
        } finally {
          thread.clockOffset = 0;
        }
        await Promise.all((whileLoading[thread.index] || []).map((event) => this.ingest(event, thread)));
      }),
    );
    this.timings = { transpileMs: transpiled - started, evaluateMs: evaluated / this.threadCount, setupMs: (performance.now() - setupStarted) / this.threadCount };
    return this;
  }

  /** kill -9 of the plugin server (see the top of this file). */
  kill() {
    this.gen.alive = false;
    this.killedAt = this.clock.now;
    // `due`: when the job was due in the queue (a runNow'd page is due at once, though
    // the harness lets `pageLatencyMs` pass before a worker takes it up).
    this.queue = this.queue.filter((job) => (job.due === undefined ? job.at : job.due) > this.clock.now);
    this.sleepers = this.sleepers.filter((s) => s.gen.alive);
    for (const thread of this.threads || []) thread.buffer = [];
  }

  /** A new plugin server process on the same storage and job queue; its scheduler
   * runs the minute task from the next full minute. */
  async restart(options) {
    this.restartedAt = this.clock.now;
    if (this.minuteTask) this.minuteTask = { next: this.clock.now + 60_000 - (this.clock.now % 60_000), running: false };
    return this.load(options);
  }

  loadThread(code, index, gen) {
    const vm = new VM({ timeout: TASK_TIMEOUT_SECONDS * 1000 + 1, sandbox: {} });
    const console_ = {};
    for (const level of ['debug', 'log', 'info', 'warn', 'error']) console_[level] = (...args) => this.log(level, args, gen);
    vm.freeze(console_, 'console');
    vm.freeze({ capture: () => {} }, 'posthog');
    vm.freeze((url, options) => this.fetch(gen, url, options), 'fetch');
    vm.freeze({ cloud: {} }, 'google');
    vm.freeze({}, '__pluginHostImports');
    vm.freeze(RetryError, 'RetryError');
    vm.freeze(URL, 'URL');
    vm.freeze(asyncGuard(this.taskTimeoutSeconds), '__asyncGuard');
    const thread = { index, clockOffset: 0 };
    const hostMeta = this.hostMeta(gen, thread);
    vm.freeze(hostMeta, '__pluginHostMeta');
    // The plugin's clock is the fake one, so tests can let time pass without waiting;
    // the global that carries it in is removed again. A thread loading later than
    // another sees a later time.
    vm.freeze(() => this.clock.now + thread.clockOffset, '__hostClock');
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
      return { methods, jobs, meta, metrics: JSON.parse(JSON.stringify(find('metrics') || {})) };
    })()`);
    thread.declaredMetrics = { ...plugin.metrics, ...(plugin.methods.exportEvents ? EXPORT_EVENTS_METRICS : {}) };
    return Object.assign(thread, {
      gen,
      hostMeta,
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
      pluginMetrics: {},
    });
  }

  hostMeta(gen = this.gen, thread = null) {
    const meta = {
      config: this.config,
      attachments: {},
      storage: makeStorage(this.storageMap, this.faults, gen),
      cache: makeCache(this.cacheMap, gen),
      utils: { cursor: makeCursor(this.storageMap, gen) },
      metrics: thread
        ? makeMetrics(new Proxy({}, { has: (_, key) => key in (thread.declaredMetrics || {}), get: (_, key) => (thread.declaredMetrics || {})[key] }), (name, apply, value) => {
            if (typeof value !== 'number') throw new Error('Only numbers are allowed for operations on metrics');
            thread.pluginMetrics[name] = name in thread.pluginMetrics ? apply(thread.pluginMetrics[name], value) : value;
          })
        : {},
      geoip: {},
    };
    if (this.withJobs) {
      meta.jobs = new Proxy(
        {},
        {
          get: (_, name) => (payload) => this.jobHandle(String(name), payload, gen),
        },
      );
    }
    return meta;
  }

  jobHandle(name, payload, gen = this.gen) {
    const enqueue = (delayMs) => {
      if (!gen.alive) return never();
      // Payloads are stored as JSON by the job queue.
      this.queue.push({ name, payload: JSON.parse(JSON.stringify(payload ?? {})), at: this.clock.now + delayMs });
      return undefined;
    };
    return {
      runNow: async () => enqueue(0),
      runIn: async (duration, unit) => {
        const key = unit.endsWith('s') ? unit : `${unit}s`;
        if (!(key in UNITS)) throw new Error(`Unknown time unit: ${unit}`);
        return enqueue(duration * UNITS[key]);
      },
      runAt: async (date) => enqueue(new Date(date).getTime() - this.clock.now),
    };
  }

  /** The host's fetch, as the plugin sees it: a request to the destination takes
   * `fetchLatencyMs` of fake time, during which whatever falls due runs. */
  async fetch(gen, url, options) {
    if (!gen.alive) return never();
    const response = await fetch(url, options);
    const body = await response.buffer();
    await this.sleep(gen, this.fetchLatencyMs);
    if (!gen.alive) return never();
    return new fetch.Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  }

  /** Fake time passing inside a task (a job, the minute task, a buffer flush) while
   * `advance` runs; outside it, none passes. */
  sleep(gen, ms) {
    if (!this.advancing || !ms) return Promise.resolve();
    gen.running -= 1;
    return new Promise((resolve) => this.sleepers.push({ at: this.clock.now + ms, gen, resolve })).then(() => {
      gen.running += 1;
    });
  }

  /** Starts a task of the current process; `advance` waits until every task of it has
   * finished or sleeps before it moves the clock. */
  task(work) {
    const { gen } = this;
    gen.running += 1;
    const done = () => {
      gen.running -= 1;
    };
    return Promise.resolve()
      .then(work)
      .then(done, (error) => {
        done();
        if (gen.alive) this.hostErrors.push({ task: true, error });
      });
  }

  async settle() {
    const { gen } = this;
    while (gen.alive && gen.running > 0) await new Promise((resolve) => setImmediate(resolve));
  }

  /** Also runs the minute task every minute of fake time while `advance` runs. */
  startMinuteTask() {
    this.minuteTask = { next: this.clock.now + 60_000, running: false };
  }

  /** Runs what falls due up to `ms` ahead: jobs (runIn as the fake clock advances),
   * each thread's export buffer on its timer, sleepers waking, the minute task. Stops
   * early when the process is killed. */
  async advance(ms = 0) {
    const until = this.clock.now + ms;
    const { gen } = this;
    this.advancing = true;
    try {
      for (let steps = 0; steps < 500000; steps++) {
        await this.settle();
        if (!gen.alive) return;
        this.queue.sort((a, b) => a.at - b.at);
        const events = [];
        if (this.queue.length) events.push({ at: this.queue[0].at, kind: 'job' });
        const bufferDue = this.nextBufferFlush();
        if (bufferDue !== null) events.push({ at: bufferDue, kind: 'buffer' });
        const sleepers = this.sleepers.filter((s) => s.gen === gen).sort((a, b) => a.at - b.at);
        if (sleepers.length) events.push({ at: sleepers[0].at, kind: 'wake' });
        if (this.minuteTask) events.push({ at: this.minuteTask.next, kind: 'minute' });
        // Buffer flushes first at a tie, then sleepers, then jobs, then the minute task.
        const order = { buffer: 0, wake: 1, job: 2, minute: 3 };
        events.sort((a, b) => a.at - b.at || order[a.kind] - order[b.kind]);
        const next = events[0];
        if (!next || next.at > until) break;
        this.clock.now = Math.max(this.clock.now, next.at);
        if (next.kind === 'buffer') this.task(() => this.flushDueBuffers());
        else if (next.kind === 'wake') {
          this.sleepers.splice(this.sleepers.indexOf(sleepers[0]), 1);
          sleepers[0].resolve();
        } else if (next.kind === 'job') {
          const job = this.queue.shift();
          const thread = this.pickThread();
          this.task(() => this.runJob(job, thread));
        } else {
          this.minuteTask.next += 60_000;
          // Skipped while its previous run is still going, as the host's scheduler does.
          if (!this.minuteTask.running) {
            this.minuteTask.running = true;
            this.task(() => this.runEveryMinute().finally(() => {
              this.minuteTask.running = false;
            }));
          }
        }
      }
      await this.settle();
    } finally {
      this.advancing = false;
    }
    if (gen.alive) this.clock.now = Math.max(this.clock.now, until);
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
      if (thread.gen.alive) this.hostErrors.push({ job: name, thread: thread.index, error });
    }
  }

  /** Calls a hook the way the host does: an error is written to the app's error log,
   * kept here for the tests to see. */
  async call(thread, hook, ...args) {
    if (!thread.methods[hook]) return undefined;
    try {
      return await thread.methods[hook](...args);
    } catch (error) {
      if (thread.gen.alive) this.hostErrors.push({ hook, thread: thread.index, error });
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

  /** An event reaches the source: stored in its database (as ingestion stores it),
   * then handed to onEvent on `thread` (or one the host picks). Returns the event as
   * onEvent received it. */
  async capture(event, { nowMs = this.clock.now, sentAtMs = nowMs, thread = this.pickThread() } = {}) {
    const live = this.storeInSource(event, { nowMs, sentAtMs });
    await this.ingest(live, thread);
    return live;
  }

  /** Stores an event in the source's database as ingestion does (its time corrected by
   * `sent_at`: now + (timestamp - sent_at)), without handing it to the app; the event
   * as onEvent receives it. */
  storeInSource(event, { nowMs = this.clock.now, sentAtMs = nowMs } = {}) {
    const live = { ...asLive(event, nowMs), sent_at: new Date(sentAtMs).toISOString() };
    const storedAt = event.timestamp ? nowMs + (Date.parse(event.timestamp) - sentAtMs) : nowMs;
    this.source.insert({ ...event, timestamp: new Date(storedAt).toISOString() }, nowMs);
    return live;
  }

  /** What each thread's PluginMetricsManager sends every minute: a `$$plugin_metrics`
   * event per thread with metrics, captured into the project through the host's
   * `posthog.capture` (src/utils/plugin-metrics.ts, vm/extensions/posthog.ts). */
  async sendPluginMetrics(pluginName = 'Migrator 3000 (WebAssembly)') {
    const sent = [];
    for (const thread of this.threads) {
      const metrics = thread.pluginMetrics;
      if (!Object.keys(metrics).length) continue;
      thread.pluginMetrics = {};
      const timestamp = new Date(this.clock.now).toISOString();
      const event = {
        event: '$$plugin_metrics',
        distinct_id: pluginName,
        timestamp,
        uuid: hostUuid(this.clock.now, sent.length),
        properties: { $lib: 'posthog-plugin-server', $lib_version: '1.10.5', distinct_id: pluginName, ...metrics, plugin_name: pluginName, plugin_id: 7, plugin_tag: null },
      };
      sent.push(await this.capture(event, { nowMs: this.clock.now, sentAtMs: this.clock.now }));
    }
    return sent;
  }

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

  /** A row of the source's database as its export hands it over. */
  exported({ event, id, storedAt }) {
    return asExported(event, this.sourceShape, this.clock.now, id, storedAt);
  }

  // --- V1: the historical export of plugin server 1.10.5 ---

  async startV1Export(thread, payload) {
    const { storage, utils } = thread.hostMeta;
    if (await storage.get('is_export_running', false)) return;
    await storage.set('is_export_running', true);
    for (const key of ['timestamp_cursor', 'min_timestamp', 'max_timestamp']) await storage.del(key);
    // Only this thread forgets the bounds it had.
    thread.exportBounds = { max: null, min: null };
    const [first, last] = this.source.bounds(this.clock.now);
    const from = payload.dateFrom ? Date.parse(payload.dateFrom) : first;
    const to = payload.dateTo ? Date.parse(payload.dateTo) : last;
    await utils.cursor.init('timestamp_cursor', from - V1_WINDOW_MS);
    await storage.set('min_timestamp', from);
    await storage.set('max_timestamp', to);
    this.queue.push({ name: V1_PAGE_JOB, payload: { retriesPerformedSoFar: 0, incrementTimestampCursor: true }, at: this.clock.now });
  }

  async exportV1Page(thread, payload) {
    const { gen } = thread;
    const { storage, utils } = thread.hostMeta;
    const retries = payload.retriesPerformedSoFar || 0;
    if (retries >= MAX_RETRIES) return;
    let cursor = payload.timestampCursor;
    let offset = payload.intraIntervalOffset || 0;
    if (!thread.exportBounds.max) thread.exportBounds.max = Number(await storage.get('max_timestamp', null));
    if (!thread.exportBounds.min) thread.exportBounds.min = Number(await storage.get('min_timestamp', null));
    if (payload.incrementTimestampCursor || !cursor) {
      offset = 0;
      cursor = Number(await utils.cursor.increment('timestamp_cursor', V1_WINDOW_MS));
    }
    if (cursor > thread.exportBounds.max) {
      await storage.del('is_export_running');
      this.log('log', ['Done exporting all events'], gen);
      return;
    }
    // Ordered and paged as the database does (ORDER BY id LIMIT 100 OFFSET n). (The
    // real query's upper bound is inclusive, so an event exactly on a window's end is
    // exported twice, with the same uuid; the windows here are half-open so that tests
    // can count exact deliveries.)
    const events = this.source.page(cursor, cursor + V1_WINDOW_MS, offset, V1_PAGE_SIZE).map((row) => this.exported(row));
    // TRICKY: 1.10.5 queues the next page before it hands this one over, whatever retry
    // this is: a retried page starts another chain through the rest of its window, which
    // then takes windows from the shared cursor like the first.
    this.queue.push({
      name: V1_PAGE_JOB,
      payload: { timestampCursor: cursor, incrementTimestampCursor: events.length === 0, retriesPerformedSoFar: 0, intraIntervalOffset: offset + V1_PAGE_SIZE },
      at: this.clock.now + this.pageLatencyMs,
      due: this.clock.now,
    });
    this.exportCalls += 1;
    this.pagesInFlight += 1;
    try {
      await thread.methods.exportEvents(events);
      this.pagesInFlight -= 1;
    } catch (error) {
      this.pagesInFlight -= 1;
      if (!gen.alive) return;
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
    const { storage } = this.hostMeta(this.gen);
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
    const { storage } = this.hostMeta(this.gen);
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
    const { storage } = thread.hostMeta;
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
    const events = this.source.page(payload.timestampCursor, windowEnd, payload.offset, V2_PAGE_SIZE).map((row) => this.exported(row));
    if (events.length > 0) {
      this.exportCalls += 1;
      try {
        await thread.methods.exportEvents(events);
      } catch (error) {
        if (!thread.gen.alive) return undefined;
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
      if (!this.minuteTask) await this.runEveryMinute();
      await this.advance(60_000);
      if (this.exportState()?.done) return minute;
    }
    throw new Error(`the export did not finish within ${maxMinutes} simulated minutes`);
  }
}
