#!/usr/bin/env bash
# Every test, from nothing: `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

step() { printf '\n== %s\n' "$*"; }

step "format and lints"
cargo fmt --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p migrator3000 --all-targets --quiet --target wasm32-unknown-unknown -- -D warnings

step "core, natively, and the migrator3000 command (a real ClickHouse engine, loopback servers)"
cargo test --workspace --quiet

step "wasm boundary in Node"
wasm-pack test --node

step "wasm boundary in headless Chrome"
# The boundary tests are not tied to a runner; this makes the runner pick the browser.
WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="$(command -v chromedriver)" wasm-pack test --headless --chrome

step "the built plugin in a host-faithful plugin server"
node --test tests/

step "the built plugin under Node 14, 16, 18 and 20"
for node in .tools/node-*/bin/node; do "$node" tests/node-versions/migrate.mjs; done
