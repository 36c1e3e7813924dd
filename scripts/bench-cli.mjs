// `npm run bench:cli [-- --events N]`: the migrator3000 command's speed and memory,
// printed beside their targets. A real ClickHouse engine (chdb) is loaded with N events
// (not timed), then the release build copies them to a loopback destination (a process
// of its own) and every event is checked to have arrived exactly once.
import { execFileSync, fork, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const at = process.argv.indexOf('--events');
const EVENTS = at > 0 ? Number(process.argv[at + 1]) : 1_000_000;
const USER = 'bench';
const PASSWORD = 'bench';

execFileSync('cargo', ['build', '--quiet', '--release', '-p', 'migrator3000-cli'], { cwd: root, stdio: 'inherit' });
const data = mkdtempSync(join(tmpdir(), 'm3k-bench-'));
const engine = spawn(join(root, '.tools/clickhouse-venv/bin/python'), [join(root, 'cli/tests/clickhouse/server.py'), '--data', data, '--user', USER, '--password', PASSWORD], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const url = await new Promise((resolve) => createInterface({ input: engine.stdout }).once('line', (line) => resolve(line.replace('READY ', ''))));
const query = async (sql) => {
  const response = await fetch(`${url}/`, { method: 'POST', headers: { 'X-ClickHouse-User': USER, 'X-ClickHouse-Key': PASSWORD }, body: sql });
  const text = await response.text();
  if (!response.ok) throw new Error(`${sql.slice(0, 80)}: ${text}`);
  return text;
};
const sql = (name) => readFileSync(join(root, 'cli/tests/clickhouse', name), 'utf8');
await query(sql('schema.sql'));
// A month of history, a timestamp shared by every 10 events.
const times = Math.max(1, Math.floor(EVENTS / 10));
const seed = sql('seed.sql').replaceAll('{team}', '2').replaceAll('{first}', '0').replaceAll('{count}', String(EVENTS)).replaceAll('{distinct_times}', String(times)).replaceAll('{from}', '2021-06-01 00:00:00').replaceAll('{step_us}', String(Math.floor((30 * 86_400 * 1e6) / times)));
await query(seed);
const loaded = Number((await query('SELECT count() FROM default.events FORMAT TSV')).trim());

const sink = fork(join(root, 'scripts', 'bench', 'sink.mjs'));
const { port } = await new Promise((resolve) => sink.once('message', resolve));
const state = join(data, 'state.sqlite');
const args = ['--state', state, 'posthog', '--from', 'clickhouse', '--clickhouse-url', url, '--clickhouse-user', USER, '--clickhouse-password', PASSWORD, '--team-id', '2', '--start', '2021-06-01', '--end', '2021-08-01', '--host', `http://127.0.0.1:${port}`, '--project-api-key', 'phc_bench', '--page-size', '20000', '--concurrency', '4'];
const started = performance.now();
const child = spawn(join(root, 'target/release/migrator3000'), args, { stdio: ['ignore', 'inherit', 'pipe'] });
child.stderr.resume();
// The peak resident memory of the command: its own high-water mark, read until it ends.
let peakKb = 0;
const watch = setInterval(() => {
  try {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    if (hwm) peakKb = Math.max(peakKb, Number(hwm[1]));
  } catch {
    // it has ended
  }
}, 20);
const code = await new Promise((resolve) => child.once('exit', resolve));
clearInterval(watch);
const seconds = (performance.now() - started) / 1000;
sink.send('report');
const report = await new Promise((resolve) => sink.once('message', resolve));
sink.send('stop');
engine.kill();
rmSync(data, { recursive: true, force: true });

const perMillion = (seconds * 1_000_000) / EVENTS;
const rows = [
  [`events in ClickHouse (${loaded.toLocaleString('en-US')})`, `exit code ${code}`, '', code === 0],
  ['time to copy them', `${seconds.toFixed(1)} s, ${Math.round(EVENTS / seconds).toLocaleString('en-US')} events/s (${perMillion.toFixed(0)} s per million)`, '1M in <= 60 s', perMillion <= 60],
  ['peak RSS of migrator3000', `${(peakKb / 1024).toFixed(0)} MB`, '<= 200 MB', peakKb / 1024 <= 200],
  ['events received / distinct uuids', `${report.events.toLocaleString('en-US')} / ${report.distinct.toLocaleString('en-US')} in ${report.requests} requests`, `${EVENTS.toLocaleString('en-US')} each`, report.events === EVENTS && report.distinct === EVENTS],
];
const width = Math.max(...rows.map((r) => r[0].length));
const figure = Math.max(...rows.map((r) => r[1].length));
for (const [what, value, target, ok] of rows) console.log(`${what.padEnd(width)}  ${value.padEnd(figure)}  ${target.padEnd(14)} ${target ? (ok ? 'met' : 'NOT MET') : ''}`);
process.exitCode = code === 0 && report.distinct === EVENTS ? 0 : 1;
