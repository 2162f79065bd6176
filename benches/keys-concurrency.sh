#!/usr/bin/env bash
# Throughput of N keys in ONE vkey process (`vkey serve --keys N`), each driven by its
# own client thread (`vkey bench --concurrent --sweep`): 1, 2, …, N keys at once.
#
#   benches/keys-concurrency.sh [N] [-- BENCH-ARGS...]
#   e.g. benches/keys-concurrency.sh 2 -- --repeat 5 --op ga=800
#
# VKEY=path picks the binary (default target/release/vkey).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
N=${1:-2}; shift || true
[ "${1:-}" = -- ] && shift
VKEY=${VKEY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/vkey}
tmp=$(mktemp -d)
trap 'kill ${server:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT
start_server "$VKEY" serve --ephemeral --keys "$N" --listen 127.0.0.1:0 --control "$tmp/c.sock"
targets=()
for i in $(seq 1 "$N"); do targets+=(--target "key$i=$addr/1-$i"); done
[ $# -gt 0 ] || set -- --repeat 5 --op ping-64=2000 --op getinfo=1500 --op ga=800 --op mc=600 --warmup 20
"$VKEY" bench "${targets[@]}" --server-pid "$server" $(for i in $(seq 2 "$N"); do printf -- '--server-pid %s ' "$server"; done) --concurrent --sweep "$@"
