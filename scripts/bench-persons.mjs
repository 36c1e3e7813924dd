// `npm run bench:persons [-- --persons N] [--query-api-persons M]`: the persons step of
// `migrator3000 posthog --persons only`, its speed, CPU and memory on realistic persons,
// read from ClickHouse and through the Query API, and the Query API's queries it uses.
//
// A real ClickHouse engine (chdb behind cli/tests/clickhouse/server.py) holds PostHog's
// person tables (cli/tests/clickhouse/persons.sql), loaded (not timed) with persons as
// posthog-js's identify leaves them (scripts/bench/persons-seed.sql: 1-2 KB of properties,
// 1-4 distinct ids, unmerged older versions, a few deleted): N in team 2, read from
// ClickHouse, and M in team 3, read through a loopback Query API in this process that
// answers HogQL's `persons` and `person_distinct_ids` from the same engine (each row at
// its highest version, the deleted left out, as PostHog resolves them) and counts the
// queries. The release binary runs with its default flags against a loopback
// destination (scripts/bench/sink.mjs, a process of its own) that counts the events,
// their distinct uuids, each event name and the most requests it held at once; each run
// checks that every live person's `$set` and every further distinct id's `$identify`
// arrived exactly once.
// CPU is user+system seconds of each process (wait4 of the command, /proc of the engine
// and the destination); peak RSS is the kernel's high-water mark.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { ask, cpuOf, startSink } from './bench/processes.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const option = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const PERSONS = Number(option('--persons') ?? 100_000);
const API_PERSONS = Number(option('--query-api-persons') ?? 20_000);
for (const [flag, n] of [['--persons', PERSONS], ['--query-api-persons', API_PERSONS]]) {
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} takes a whole number`);
}
const USER = 'bench';
const PASSWORD = 'bench';
const TEAM = 2; // read from ClickHouse
const PROJECT = 3; // read through the Query API
const PERSONAL_KEY = 'phx_bench';

execFileSync('cargo', ['build', '--quiet', '--release', '-p', 'migrator3000-cli'], { cwd: root, stdio: 'inherit' });
const data = mkdtempSync(join(tmpdir(), 'm3k-bench-persons-'));
mkdirSync(join(data, 'engine'));
const engine = spawn(
  join(root, '.tools/clickhouse-venv/bin/python'),
  [join(root, 'cli/tests/clickhouse/server.py'), '--data', join(data, 'engine'), '--user', USER, '--password', PASSWORD],
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
const statements = (text) => text.split(/;\s*\n/).filter((s) => s.replace(/--.*$/gm, '').trim());

for (const statement of statements(readFileSync(join(root, 'cli/tests/clickhouse/persons.sql'), 'utf8'))) await query(statement);
const seed = readFileSync(join(root, 'scripts/bench/persons-seed.sql'), 'utf8');
for (const [team, count] of [[TEAM, PERSONS], [PROJECT, API_PERSONS]]) {
  if (count === 0) continue;
  for (const statement of statements(seed)) {
    await query(statement.replaceAll('{team}', String(team)).replaceAll('{first}', '0').replaceAll('{count}', String(count)));
  }
}

// HogQL's `persons` and `person_distinct_ids` of a team, as PostHog resolves them.
const personsOf = (team) =>
  ` FROM (SELECT id, argMax(p.properties, p.version) AS properties, argMax(p.is_identified, p.version) AS is_identified ` +
  `FROM default.person AS p WHERE p.team_id = ${team} GROUP BY id HAVING argMax(p.is_deleted, p.version) = 0) `;
const distinctIdsOf = (team) =>
  ` FROM (SELECT distinct_id, argMax(d.person_id, d.version) AS person_id FROM default.person_distinct_id2 AS d ` +
  `WHERE d.team_id = ${team} GROUP BY distinct_id HAVING argMax(d.is_deleted, d.version) = 0) `;

/** What a team holds: live persons, their distinct ids, and their properties' size. */
async function expected(team) {
  const [persons, bytes, least, most] = (
    await query(`SELECT count(), round(avg(length(properties))), min(length(properties)), max(length(properties))${personsOf(team)}FORMAT TSV`)
  )
    .trim()
    .split('\t')
    .map(Number);
  const [named, ids] = (
    await query(`SELECT uniqExact(person_id), count() FROM (SELECT person_id${distinctIdsOf(team)}) WHERE person_id IN (SELECT id${personsOf(team)}) FORMAT TSV`)
  )
    .trim()
    .split('\t')
    .map(Number);
  const [rows] = (await query(`SELECT count() FROM default.person WHERE team_id = ${team} FORMAT TSV`)).trim().split('\t').map(Number);
  return { persons, named, ids, links: ids - named, bytes, least, most, rows };
}

// The Query API: POST /api/projects/:id/query/ with a HogQL query, answered at once.
let hogql = [];
const api = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const reply = (status, body) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${PERSONAL_KEY}`) return reply(401, { detail: 'Invalid personal API key.' });
    if (req.method !== 'POST' || req.url !== `/api/projects/${PROJECT}/query/`) return reply(404, { detail: 'Not found.' });
    const asked = JSON.parse(Buffer.concat(chunks).toString('utf8')).query.query;
    hogql.push(asked);
    const sql = asked.replace(' FROM persons ', personsOf(PROJECT)).replace(' FROM person_distinct_ids ', distinctIdsOf(PROJECT));
    try {
      const answer = JSON.parse(await query(`${sql} FORMAT JSONCompact`));
      reply(200, { results: answer.data.slice(0, 50_000), columns: answer.meta.map((m) => m.name), hasMore: false });
    } catch (error) {
      reply(400, { type: 'validation_error', detail: String(error) });
    }
  });
});
await new Promise((done) => api.listen(0, '127.0.0.1', done));
const apiUrl = `http://127.0.0.1:${api.address().port}`;

const sink = await startSink();
const runs = [];
const destination = ['--host', sink.url, '--project-api-key', 'phc_bench'];
if (PERSONS > 0) {
  const want = await expected(TEAM);
  const run = await measured(`from ClickHouse (team ${TEAM})`, [
    'posthog', '--from', 'clickhouse', '--persons', 'only', '--clickhouse-url', url, '--clickhouse-user', USER,
    '--clickhouse-password', PASSWORD, '--team-id', String(TEAM), ...destination,
  ]);
  runs.push({ ...run, want });
}
if (API_PERSONS > 0) {
  const want = await expected(PROJECT);
  hogql = [];
  const run = await measured(`from the Query API (project ${PROJECT})`, [
    'posthog', '--from', 'query-api', '--persons', 'only', '--query-api-host', apiUrl, '--project-id', String(PROJECT),
    '--personal-api-key', PERSONAL_KEY, ...destination,
  ]);
  runs.push({ ...run, want, queries: hogql.length });
}
sink.child.send('stop');
api.close();
engine.kill();
rmSync(data, { recursive: true, force: true });
print();

/** Runs the command to its end (a fresh state file), with its CPU and memory and the engine's and destination's CPU meanwhile. */
async function measured(what, args) {
  await ask(sink.child, 'reset');
  const usage = join(data, 'usage.json');
  const output = join(data, 'output.txt');
  const [engine0, sink0] = [cpuOf(engine.pid), cpuOf(sink.child.pid)];
  const out = createWriteStream(output);
  await new Promise((done) => out.once('open', done));
  const state = join(data, `${runs.length}.sqlite`);
  const command = [join(root, 'target/release/migrator3000'), '--state', state, ...args];
  const child = spawn('python3', [join(root, 'scripts/bench/rusage.py'), usage, ...command], { stdio: ['ignore', out, out] });
  await new Promise((done) => child.once('exit', done));
  const run = JSON.parse(readFileSync(usage, 'utf8'));
  const received = await ask(sink.child, 'report');
  const said = readFileSync(output, 'utf8');
  if (run.code !== 0) console.error(`${what}: exited with ${run.code}; its last lines:\n${said.split('\n').slice(-15).join('\n')}`);
  return {
    what,
    wall: run.wall,
    cpu: run.user + run.sys,
    peakKb: run.peak_kb,
    engineCpu: cpuOf(engine.pid) - engine0,
    sinkCpu: cpuOf(sink.child.pid) - sink0,
    received,
    code: run.code,
    summary: said.split('\n').find((l) => / persons read, /.test(l) && / sent \(/.test(l)) ?? '',
  };
}

function print() {
  const n = (x) => Math.round(x).toLocaleString('en-US');
  const s = (x) => `${x.toFixed(1)} s`;
  console.log('\n2 cores shared by everything below (the engine, the destination, the command); wall times are noisy, CPU less so.\n');
  for (const r of runs) {
    const { want, received } = r;
    console.log(
      `${r.what}: ${n(want.persons)} persons (${n(want.rows)} person rows with unmerged versions and deletions), ` +
        `${n(want.ids)} distinct ids, properties of ${n(want.least)} to ${n(want.most)} bytes (${n(want.bytes)} on average)`,
    );
  }
  const table = [['', 'wall', 'persons/s', 'own CPU', 'CPU per 100k', 'peak RSS', 'engine CPU', 'dest. CPU', 'requests', 'most in flight', 'HogQL queries', 'per 100k persons']];
  for (const r of runs) {
    table.push([
      r.what,
      s(r.wall),
      n(r.want.persons / r.wall),
      s(r.cpu),
      s((r.cpu * 1e5) / r.want.persons),
      `${(r.peakKb / 1024).toFixed(0)} MB`,
      s(r.engineCpu),
      s(r.sinkCpu),
      n(r.received.requests),
      String(r.received.inflight),
      r.queries === undefined ? '' : String(r.queries),
      r.queries === undefined ? '' : ((r.queries * 1e5) / r.want.persons).toFixed(0),
    ]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
  console.log('');
  let ok = true;
  for (const r of runs) {
    const { want, received } = r;
    const sets = received.names.$set ?? 0;
    const links = received.names.$identify ?? 0;
    const whole = r.code === 0 && sets === want.named && links === want.links && received.distinct === received.events;
    ok &&= whole;
    console.log(
      `${r.what}: ${n(sets)} $set for ${n(want.named)} persons with distinct ids, ${n(links)} $identify for ${n(want.links)} further ids, ` +
        `${n(received.events)} events sent / ${n(received.distinct)} distinct, exit ${r.code}: ${whole ? 'every person whole, once' : 'NOT WHOLE'}`,
    );
    if (r.summary) console.log(`  the command said: ${r.summary.trim()}`);
  }
  process.exitCode = ok ? 0 : 1;
}
