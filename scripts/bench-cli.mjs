// `npm run bench:cli [-- --events N] [--peer DIR]`: the migrator3000 command's speed,
// CPU and memory on realistic events, side by side in one run with the floors it cannot
// beat and, given a checkout of PostHog/posthog-migration-tools, PostHog's own script.
//
// A real ClickHouse engine (chdb behind cli/tests/clickhouse/server.py) is loaded with N
// realistic events (not timed). Then, in turn, each against the same engine and the same
// loopback destination (a process of its own, which checks that every event arrived
// exactly once):
//   - migrator3000 (release build), with its default flags;
//   - floor, engine alone: the queries the command sent, sent again, answers discarded;
//   - floor, destination alone: the requests the command sent, sent again as they were;
//   - with --peer DIR: DIR/migrate.py in a virtualenv of its pinned packages (made once,
//     under target/), reading the engine through the same HTTP interface.
// CPU is user+system seconds of each process (wait4 of the command and the script,
// /proc of the engine and the destination); peak RSS is the kernel's high-water mark.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { ask, cpuOf, startSink } from './bench/processes.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const option = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const EVENTS = Number(option('--events') ?? 1_000_000);
const PEER = option('--peer') && resolve(option('--peer'));
if (!Number.isInteger(EVENTS) || EVENTS < 10) throw new Error('--events takes a whole number of at least 10');
if (PEER && !existsSync(join(PEER, 'migrate.py'))) {
  throw new Error(`--peer ${PEER}: no migrate.py there; give the folder of a checkout of PostHog/posthog-migration-tools`);
}
const USER = 'bench';
const PASSWORD = 'bench';
const TEAM = '2';
const CONCURRENCY = 4; // the command's default --concurrency, for the destination's replay

execFileSync('cargo', ['build', '--quiet', '--release', '-p', 'migrator3000-cli'], { cwd: root, stdio: 'inherit' });
const peerPython = PEER ? peerVenv(PEER) : null;
const data = mkdtempSync(join(tmpdir(), 'm3k-bench-'));
const queryLog = join(data, 'queries.jsonl');
mkdirSync(join(data, 'engine'));
const engine = spawn(
  join(root, '.tools/clickhouse-venv/bin/python'),
  [join(root, 'cli/tests/clickhouse/server.py'), '--data', join(data, 'engine'), '--user', USER, '--password', PASSWORD, '--log', queryLog],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const url = await new Promise((done) => createInterface({ input: engine.stdout }).once('line', (line) => done(line.replace('READY ', ''))));
const headers = { 'X-ClickHouse-User': USER, 'X-ClickHouse-Key': PASSWORD };
const query = async (sql) => {
  const response = await fetch(`${url}/`, { method: 'POST', headers, body: sql });
  const text = await response.text();
  if (!response.ok) throw new Error(`${sql.slice(0, 80)}: ${text}`);
  return text;
};

// Realistic events (cli/tests/clickhouse/seed.sql: posthog-js-like properties of 1-2 KB,
// elements chains on autocapture) in PostHog's own tables (schema.sql: sharded_events, a
// ReplacingMergeTree, read through the Distributed events). A month of history, a
// timestamp shared by every 10 events.
const sql = (name) => readFileSync(join(root, 'cli/tests/clickhouse', name), 'utf8');
for (const statement of sql('schema.sql').split(/;\s*\n/).filter((s) => s.replace(/--.*$/gm, '').trim())) await query(statement);
const times = Math.max(1, Math.floor(EVENTS / 10));
const seed = sql('seed.sql')
  .replaceAll('{team}', TEAM)
  .replaceAll('{first}', '0')
  .replaceAll('{count}', String(EVENTS))
  .replaceAll('{distinct_times}', String(times))
  .replaceAll('{from}', '2021-06-01 00:00:00')
  .replaceAll('{step_us}', String(Math.floor((30 * 86_400 * 1e6) / times)));
await query(seed);
const [loaded, averageBytes] = (await query("SELECT count(), round(avg(length(properties) + length(elements_chain))) FROM default.events FORMAT TSV"))
  .trim()
  .split('\t')
  .map(Number);

const sink = await startSink();
const rows = [];

// migrator3000, its requests recorded for the destination's replay.
const recorded = join(data, 'requests.bin');
const queriesBefore = lines(queryLog).length;
const state = join(data, 'state.sqlite');
const ours = await measured('migrator3000', join(root, 'target/release/migrator3000'), [
  '--state', state, 'posthog', '--from', 'clickhouse', '--clickhouse-url', url, '--clickhouse-user', USER,
  '--clickhouse-password', PASSWORD, '--team-id', TEAM, '--host', sink.url, '--project-api-key', 'phc_bench',
  // The events alone, as the peer and the floors copy them (persons: npm run bench:persons).
  '--persons', 'skip',
]);
rows.push(ours);
const ourQueries = lines(queryLog).slice(queriesBefore);

// Floor: the engine alone answering the same queries, the answers read and discarded.
{
  const engine0 = cpuOf(engine.pid);
  const started = performance.now();
  let bytes = 0;
  for (const { path, body } of ourQueries) {
    const response = await fetch(`${url}${path}`, { method: 'POST', headers, body });
    for await (const chunk of response.body) bytes += chunk.length;
  }
  const wall = (performance.now() - started) / 1000;
  rows.push({ what: 'floor: engine alone (same queries)', wall, events: EVENTS, engineCpu: cpuOf(engine.pid) - engine0, note: `${ourQueries.length} queries, ${mb(bytes)} read` });
}

// Floor: the destination alone taking the same requests (a fresh destination).
{
  const requests = readRecorded(recorded);
  const fresh = await startSink();
  const sink0 = cpuOf(fresh.child.pid);
  const started = performance.now();
  await replay(requests, fresh.port);
  const wall = (performance.now() - started) / 1000;
  const report = await ask(fresh.child, 'report');
  rows.push({ what: 'floor: destination alone (same requests)', wall, events: report.distinct, sinkCpu: cpuOf(fresh.child.pid) - sink0, received: report, note: `${requests.length} requests, ${mb(report.bytes)}` });
  fresh.child.send('stop');
}

if (peerPython) {
  // PostHog's script, with the flags of its README's example.
  rows.push(
    await measured('posthog-migration-tools migrate.py', peerPython, [
      join(PEER, 'migrate.py'), '--clickhouse-url', url, '--clickhouse-user', USER, '--clickhouse-password', PASSWORD,
      '--clickhouse-database', 'default', '--team-id', TEAM, '--posthog-url', sink.url, '--posthog-api-token', 'phc_bench',
      '--start-date', '2021-06-01T00:00:00', '--end-date', '2021-08-01T00:00:00', '--fetch-limit', '10000',
    ], { cwd: PEER, env: { ...process.env, TZ: 'UTC' } }),
  );
}
sink.child.send('stop');
engine.kill();
rmSync(data, { recursive: true, force: true });

print();

/** Runs a migrator to its end, with its CPU and memory and the engine's and destination's CPU meanwhile. */
async function measured(what, command, args, options = {}) {
  await ask(sink.child, 'reset');
  if (what === 'migrator3000') await ask(sink.child, { record: recorded });
  const usage = join(data, 'usage.json');
  const output = join(data, 'output.txt');
  const [engine0, sink0] = [cpuOf(engine.pid), cpuOf(sink.child.pid)];
  const out = createWriteStream(output);
  await new Promise((done) => out.once('open', done));
  const child = spawn('python3', [join(root, 'scripts/bench/rusage.py'), usage, command, ...args], { stdio: ['ignore', out, out], ...options });
  await new Promise((done) => child.once('exit', done));
  const run = JSON.parse(readFileSync(usage, 'utf8'));
  const received = await ask(sink.child, 'report');
  if (run.code !== 0) console.error(`${what} exited with ${run.code}; its last lines:\n${readFileSync(output, 'utf8').split('\n').slice(-15).join('\n')}`);
  return {
    what,
    wall: run.wall,
    events: received.distinct,
    cpu: run.user + run.sys,
    peakKb: run.peak_kb,
    engineCpu: cpuOf(engine.pid) - engine0,
    sinkCpu: cpuOf(sink.child.pid) - sink0,
    received,
    code: run.code,
  };
}

/** User+system CPU seconds a running process has used. */

function lines(file) {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

/** The requests the destination recorded: a JSON line of each one's url, type and length, then its body. */
function readRecorded(file) {
  const all = readFileSync(file);
  const requests = [];
  for (let at = 0; at < all.length; ) {
    const end = all.indexOf(0x0a, at);
    const head = JSON.parse(all.subarray(at, end).toString('utf8'));
    requests.push({ ...head, body: all.subarray(end + 1, end + 1 + head.bytes) });
    at = end + 1 + head.bytes;
  }
  return requests;
}

/** Sends the requests again, as many in flight as the command keeps. */
async function replay(requests, port) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let next = 0;
  const one = ({ url: path, type, body }) =>
    new Promise((done, fail) => {
      const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'Content-Type': type, 'Content-Length': body.length } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? done() : fail(new Error(`the destination answered ${res.statusCode}`))));
      });
      req.on('error', fail);
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < requests.length) await one(requests[next++]);
    }),
  );
  agent.destroy();
}

/** A virtualenv of the peer's pinned packages, made once per requirements file. */
function peerVenv(dir) {
  const requirements = join(dir, 'requirements.txt');
  const hash = createHash('sha256').update(readFileSync(requirements)).digest('hex').slice(0, 16);
  const venv = join(root, 'target/bench-peer-venv', hash);
  const python = join(venv, 'bin/python');
  if (!existsSync(join(venv, 'installed'))) {
    console.log(`Installing the peer's pinned packages (${requirements}) into ${venv}...`);
    mkdirSync(venv, { recursive: true });
    execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    execFileSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements], { stdio: 'inherit' });
    writeFileSync(join(venv, 'installed'), '');
  }
  return python;
}

function mb(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

function print() {
  const n = (x) => Math.round(x).toLocaleString('en-US');
  const s = (x) => (x === undefined ? '' : `${x.toFixed(1)} s`);
  console.log(`\n${n(loaded)} events in ClickHouse (team ${TEAM}), ${n(averageBytes)} bytes of properties and elements chain on average; 2 cores shared by everything below.\n`);
  const table = [['', 'wall', 'events/s', 'own CPU', 'CPU per 1M', 'peak RSS', 'engine CPU', 'dest. CPU', 'received / distinct']];
  for (const r of rows) {
    table.push([
      r.what,
      s(r.wall),
      n(r.events / r.wall),
      s(r.cpu),
      r.cpu === undefined ? '' : s((r.cpu * 1e6) / r.events),
      r.peakKb === undefined ? '' : `${(r.peakKb / 1024).toFixed(0)} MB`,
      s(r.engineCpu),
      s(r.sinkCpu),
      r.received ? `${n(r.received.events)} / ${n(r.received.distinct)}${r.note ? `; ${r.note}` : ''}` : r.note,
    ]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) console.log(row.map((cell, i) => (i === 0 || i === 8 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));

  const peer = rows.find((r) => r.what.startsWith('posthog'));
  const perMillionWall = (ours.wall * 1e6) / EVENTS;
  const targets = [
    ['every event arrived exactly once', `${n(ours.received.events)} sent, ${n(ours.received.distinct)} distinct, exit ${ours.code}`, `${n(EVENTS)} each`, ours.code === 0 && ours.received.events === EVENTS && ours.received.distinct === EVENTS],
    ['1M realistic events, wall', `${perMillionWall.toFixed(1)} s per million`, '<= 60 s', perMillionWall <= 60],
    ['our CPU', `${((ours.cpu * 1e6) / EVENTS).toFixed(1)} s per million`, '<= 15 s', (ours.cpu * 1e6) / EVENTS <= 15],
    ['our events/s against the peer', peer ? `${(ours.events / ours.wall / (peer.events / peer.wall)).toFixed(1)}x` : 'not measured (--peer DIR)', '>= 4x', peer ? ours.events / ours.wall >= (4 * peer.events) / peer.wall : undefined],
    ['our peak RSS', `${(ours.peakKb / 1024).toFixed(0)} MB`, '<= 200 MB', ours.peakKb / 1024 <= 200],
  ];
  console.log('');
  const w = [0, 1, 2].map((i) => Math.max(...targets.map((t) => t[i].length)));
  for (const [what, value, target, ok] of targets) {
    console.log(`${what.padEnd(w[0])}  ${value.padEnd(w[1])}  ${target.padEnd(w[2])}  ${ok === undefined ? '' : ok ? 'met' : 'NOT MET'}`);
  }
  process.exitCode = targets[0][3] ? 0 : 1;
}
