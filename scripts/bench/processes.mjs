// What both command benches (bench-cli.mjs, bench-persons.mjs) start and ask of the
// processes around the command: the loopback destination, and a process's CPU so far.
import { execFileSync, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** A process's CPU seconds so far (user + system), from /proc. */
export function cpuOf(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** The bench's destination (sink.mjs), a process of its own, once it listens. */
export async function startSink() {
  const child = fork(join(here, 'sink.mjs'));
  const { port } = await new Promise((done) => child.once('message', done));
  return { child, port, url: `http://127.0.0.1:${port}` };
}

/** A question to a forked process, and its answer. */
export function ask(child, message) {
  return new Promise((done) => {
    child.once('message', done);
    child.send(message);
  });
}
