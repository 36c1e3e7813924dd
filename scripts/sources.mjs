// What the bundle is built from, hashed: the stamp in dist/index.js says which sources
// it came from, and a test fails when the committed bundle is stale against them.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const INPUTS = ['Cargo.toml', 'Cargo.lock', 'package-lock.json', 'src', 'inflate/Cargo.toml', 'inflate/src', 'js', 'scripts/build.mjs', 'scripts/sources.mjs'];

function files(root, path) {
  const full = join(root, path);
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full)
    .sort()
    .flatMap((name) => files(root, relative(root, join(full, name))));
}

export function sourceHash(root) {
  const hash = createHash('sha256');
  for (const path of INPUTS.flatMap((p) => files(root, p))) {
    // Line endings normalised, so a checkout with CRLF gives the same hash.
    hash.update(`${path}\n`).update(readFileSync(join(root, path), 'utf8').replace(/\r\n/g, '\n')).update('\n');
  }
  return hash.digest('hex');
}

export function bundleStamp(hash) {
  return `/* Migrator 3000 for PostHog. Built by \`npm run build\`; do not edit. sources sha256:${hash} */`;
}

export function stampOf(bundleText) {
  const match = /^\/\* Migrator 3000 for PostHog\..* sources sha256:([0-9a-f]{64}) \*\//.exec(bundleText);
  return match ? match[1] : null;
}
