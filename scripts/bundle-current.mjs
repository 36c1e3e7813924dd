// Exits 0 when dist/index.js was built from the sources as they are, 1 otherwise (no
// npm package needed: `npm start` asks this before it installs any build tool).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceHash, stampOf } from './sources.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist', 'index.js');
process.exitCode = existsSync(bundle) && stampOf(readFileSync(bundle, 'utf8')) === sourceHash(root) ? 0 : 1;
