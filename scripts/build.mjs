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

const run = (cmd, args, env = {}) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });

// TRICKY: plugin servers ran Node 14 to 20, and Node 14 and 16 compile no module that
// uses reference types (externref) or multi-value. rustc enables both by default for
// this target; wasm-bindgen then passes JS values as externref. Built without them (and
// without the target_features section the precompiled standard library still marks
// them in, which wasm-bindgen reads), JS values stay in a JS table, and the module
// needs only what Node 14 has: MVP plus the features below. Only the shipped module is
// built so; the wasm-bindgen tests run with the target's defaults.
run('cargo', ['build', '--quiet', '--release', '--lib', '--target', 'wasm32-unknown-unknown', '-p', 'migrator3000', '-p', 'migrator3000-inflate'], {
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS: '-C target-feature=-reference-types,-multivalue',
});
const wasmOptBin = join(root, 'node_modules', '.bin', 'wasm-opt');
const NODE_14_FEATURES = ['--enable-bulk-memory', '--enable-sign-ext', '--enable-mutable-globals', '--enable-nontrapping-float-to-int'];
const rustcWasm = join(root, 'target', 'wasm32-unknown-unknown', 'release', 'migrator3000.wasm');
const unmarked = join(out, 'core.unmarked.wasm');
run(wasmOptBin, ['--detect-features', '--strip-target-features', rustcWasm, '-o', unmarked]);
run('wasm-bindgen', ['--target', 'web', '--no-typescript', '--out-dir', out, '--out-name', 'core', unmarked]);
// Explicit features: binaryen validates against them, so a module that needs more than
// Node 14 has fails here rather than in a user's plugin server.
const wasmOpt = (level, input, output) =>
  run(wasmOptBin, [level, '--strip-debug', '--strip-producers', ...NODE_14_FEATURES, input, '-o', output]);
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
