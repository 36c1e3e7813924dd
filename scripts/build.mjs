// `npm run build`: the Rust core to wasm, optimised, inlined as base64 with the shim
// into ONE plugin file, dist/index.js, stamped with a hash of its sources.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { constants, deflateRawSync, gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { bundleStamp, sourceHash } from './sources.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'target', 'bundle');
const bundlePath = join(root, 'dist', 'index.js');
mkdirSync(out, { recursive: true });
// The glue is an ES module; the bench imports it from here.
writeFileSync(join(out, 'package.json'), '{"type": "module"}\n');
mkdirSync(dirname(bundlePath), { recursive: true });

const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

run('cargo', ['build', '--quiet', '--release', '--lib', '--target', 'wasm32-unknown-unknown', '-p', 'migrator3000', '-p', 'migrator3000-inflate']);
run('wasm-bindgen', [
  '--target', 'web', '--no-typescript', '--out-dir', out, '--out-name', 'core',
  join(root, 'target', 'wasm32-unknown-unknown', 'release', 'migrator3000.wasm'),
]);
// Explicit features: `--all-features` can emit some Node 20 refuses. These are the
// ones rustc enables by default for wasm32-unknown-unknown.
const wasmOpt = (level, input, output) =>
  run(join(root, 'node_modules', '.bin', 'wasm-opt'), [
    level, '--strip-debug', '--strip-producers',
    '--enable-bulk-memory', '--enable-sign-ext', '--enable-mutable-globals',
    '--enable-nontrapping-float-to-int', '--enable-reference-types', '--enable-multivalue',
    input, '-o', output,
  ]);
wasmOpt('-O3', join(out, 'core_bg.wasm'), join(out, 'core.opt.wasm'));
// Stage 0, which inflates the main module at load (see inflate/src/lib.rs).
wasmOpt('-Oz', join(root, 'target', 'wasm32-unknown-unknown', 'release', 'migrator3000_inflate.wasm'), join(out, 'inflate.wasm'));
const inflater = readFileSync(join(out, 'inflate.wasm'));
writeFileSync(join(out, 'inflate-base64.js'), `export default ${JSON.stringify(inflater.toString('base64'))};\n`);
const wasm = readFileSync(join(out, 'core.opt.wasm'));
// Deflated, then base64: half the size of base64 alone; stage 0 inflates it at load.
const deflated = deflateRawSync(wasm, { level: constants.Z_BEST_COMPRESSION, memLevel: 9 });
writeFileSync(join(out, 'wasm-base64.js'), `export default ${JSON.stringify(deflated.toString('base64'))};\n`);

const hash = sourceHash(root);
await esbuild.build({
  entryPoints: [join(root, 'js', 'index.js')],
  outfile: bundlePath,
  bundle: true,
  format: 'cjs',
  platform: 'neutral',
  target: 'es2020',
  charset: 'utf8',
  legalComments: 'none',
  // Smaller for the host to transpile and store; names are kept for readable errors.
  minifyWhitespace: true,
  minifySyntax: true,
  banner: { js: bundleStamp(hash) },
  alias: {
    'core-glue': join(out, 'core.js'),
    'core-wasm-base64': join(out, 'wasm-base64.js'),
    'inflate-wasm-base64': join(out, 'inflate-base64.js'),
  },
  inject: [join(root, 'js', 'text-codec.js')],
  // The glue's async loader refers to import.meta.url; the plugin uses initSync only.
  logOverride: { 'empty-import-meta': 'silent' },
  logLevel: 'warning',
});

const bundle = readFileSync(bundlePath);
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(
  `dist/index.js: ${kb(bundle.length)} (${kb(gzipSync(bundle).length)} gzipped); ` +
    `wasm ${kb(wasm.length)} (${kb(deflated.length)} deflated), stage 0 ${kb(inflater.length)}; sources ${hash.slice(0, 12)}`,
);
