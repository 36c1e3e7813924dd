#!/usr/bin/env bash
# Installs whatever is missing; costs seconds when everything is present.
#   bootstrap.sh start   what `npm start` needs: npm packages, and the build tools
#                        only when dist/index.js is older than its sources
#   bootstrap.sh build   what `npm run build` needs
#   bootstrap.sh         that, plus what `npm test` needs (wasm-pack, Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-test}"
only_build=false; [ "$mode" != test ] && only_build=true

say() { printf '[bootstrap] %s\n' "$*"; }

# npm packages: reinstalled only when package-lock.json changed since the last install.
npm_packages() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing npm packages"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

if [ "$mode" = start ]; then
  npm_packages
  if node scripts/bundle-current.mjs; then
    say "dist/index.js is current: nothing to build (no Rust toolchain or wasm-bindgen-cli needed)"
    exit 0
  fi
  say "dist/index.js is older than its sources: installing what building it needs, then building it"
fi

# The Node versions PostHog's plugin servers ran (1.29-era servers ran Node 14).
NODE_VERSIONS="14.21.3 16.20.2 18.20.8 20.20.2"

# The wasm-bindgen CLI must be the exact version of the crate (pinned with `=`).
pinned=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' Cargo.toml)
[ -n "$pinned" ] || { echo "Cargo.toml does not pin wasm-bindgen with =" >&2; exit 1; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding $component"
    rustup component add "$component"
  fi
done

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$pinned" ]; then
  say "installing wasm-bindgen-cli $pinned (a few minutes)"
  # Without --locked: its lock file names a crate version the registry here lacks.
  cargo install wasm-bindgen-cli --version "$pinned" --force
fi
if ! $only_build && ! command -v wasm-pack >/dev/null; then
  say "installing wasm-pack (a few minutes)"
  # The npm package of the same name downloads a binary at install time, which fails offline.
  cargo install wasm-pack --locked
fi

if ! $only_build && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  say "installing Chromium and ChromeDriver for the browser tests"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Node 14, 16, 18 and 20, the versions PostHog's plugin servers ran, for the test that
# loads the built plugin under each. The registry's node-linux-* packages carry the
# binaries; each goes to .tools/node-<version>/.
if ! $only_build; then
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) arch="" ;; esac
  [ -n "$arch" ] || { echo "no Node binaries for $(uname -m) in the registry" >&2; exit 1; }
  for version in $NODE_VERSIONS; do
    [ -x ".tools/node-$version/bin/node" ] && continue
    say "installing Node $version for the plugin-server versions test"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent --loglevel=error "node-linux-$arch@$version" >/dev/null)
    mkdir -p ".tools/node-$version"
    tar xzf "$tmp"/node-linux-*.tgz -C ".tools/node-$version" --strip-components=1
    rm -rf "$tmp"
  done
fi

# A real ClickHouse engine for the command's tests and bench: chdb (ClickHouse
# in-process) in a virtualenv of its own, behind cli/tests/clickhouse/server.py.
if ! $only_build && ! .tools/clickhouse-venv/bin/python -c 'import chdb' 2>/dev/null; then
  say "installing chdb (a ClickHouse engine, about 890 MB installed) for the command's tests"
  python3 -m venv .tools/clickhouse-venv
  .tools/clickhouse-venv/bin/pip install --quiet --disable-pip-version-check "chdb-core==26.9.0"
fi

# A real S3-compatible server for the tests of `migrator3000 files --s3`: moto in
# server mode, in a virtualenv of its own.
if ! $only_build && [ ! -x .tools/s3-venv/bin/moto_server ]; then
  say "installing moto (an S3-compatible server) for the command's tests"
  python3 -m venv .tools/s3-venv
  .tools/s3-venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==5.2.5"
fi

npm_packages
