#!/usr/bin/env bash
# Installs the Debian packages sov's build and tests need, when any is missing.
# Usage: scripts/deps.sh [build|test|deb|cluster]   (test adds what the test suite uses, deb what make deb
# does, cluster what make cluster-demo runs)
set -euo pipefail
need=(cmake ninja-build gcc libc6-dev pkg-config libevent-dev libjansson-dev libsqlite3-dev libpq-dev libssl-dev)
need+=(libseccomp-dev) # src/sandbox: the seccomp filter of sov serve's egress lockdown
need+=(libcurl4-openssl-dev) # src/pull: sov pull's downloads from a Hugging Face-compatible hub
need+=(libopenmpi-dev openmpi-bin) # src/tp: --tp R, one model split across MPI ranks (mpirun)
if [ "${1:-build}" = test ]; then
  need+=(python3-numpy postgresql clang libclang-rt-14-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
  need+=(openssl curl) # the TLS tests: a test PKI from the openssl command line, HTTPS requests with curl
  command -v npm >/dev/null || need+=(nodejs npm) # the OpenAI client for the server tests
  need+=(openssl) # the openssl command line checks sov's model signatures (tests/server/test_signed_models.py)
  need+=(python3-jsonschema) # validates structured-output samples independently (tests/server/test_structured_output.py)
  need+=(python3-jinja2) # the reference renderer of the chat-template tests (tests/jinja/render_ref.py)
  need+=(chromium) # the browser the web chat and console tests drive headless (tests/web/test_web_browser.py)
  need+=(python3-regex) # runs the published pre-tokenizer expressions (tests/tok/test_tok_pretok_regex.py)
  need+=(iproute2 openmpi-bin libopenmpi-dev) # tests/net: ip netns, tc tbf and mpirun for the emulated links (bench/netns.sh, bench_allreduce)
fi
if [ "${1:-build}" = test ] || [ "${1:-build}" = deb ]; then
  need+=(help2man dpkg-dev) # make deb: the man page from sov --help; CPack's DEB generator (dpkg-shlibdeps)
fi
# HAProxy and PostgreSQL: make cluster-demo's front door and shared state, and the replica test
# (tests/deploy/test_replicas.py) that kills a replica under load behind them
{ [ "${1:-build}" = test ] || [ "${1:-build}" = cluster ]; } && need+=(haproxy postgresql curl)
[ "${1:-build}" = test ] && need+=(systemd strace python3-yaml) # tests/deploy: systemd-analyze security, the unit's syscall filter, the k8s manifests
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The server tests drive sov serve with the official OpenAI client from npm (pinned by
# tests/server/js/package-lock.json); installed beside the test when node is there.
npm_client() {
  local js
  js=$(cd "$(dirname "$0")/.." && pwd)/tests/server/js
  [ "${1:-build}" = test ] && command -v npm >/dev/null && [ ! -d "$js/node_modules/openai" ] || return 0
  echo "sov: installing the npm test client (openai) into $js" >&2
  npm ci --prefix "$js" --no-audit --no-fund >/dev/null 2>&1 || npm ci --prefix "$js" --no-audit --no-fund
}

# The browser tests drive chromium with puppeteer-core from npm (pinned by
# tests/web/package-lock.json; it downloads no browser), installed beside them.
npm_web() {
  local web
  web=$(cd "$(dirname "$0")/.." && pwd)/tests/web
  [ "${1:-build}" = test ] && command -v npm >/dev/null && [ ! -d "$web/node_modules/puppeteer-core" ] || return 0
  echo "sov: installing the browser test driver (puppeteer-core) into $web" >&2
  npm ci --prefix "$web" --no-audit --no-fund >/dev/null 2>&1 || npm ci --prefix "$web" --no-audit --no-fund
}

if [ ${#missing[@]} -eq 0 ]; then
  npm_client "${1:-build}"
  npm_web "${1:-build}"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "sov: missing Debian packages: ${missing[*]}" >&2
  echo "sov: install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "sov: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null
  apt-get install -y --no-install-recommends "${missing[@]}"
}
npm_client "${1:-build}"
npm_web "${1:-build}"
