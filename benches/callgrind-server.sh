#!/usr/bin/env bash
# Instruction counts of a `vkey serve` process per operation, with valgrind's callgrind
# (deterministic, user space only; perf-based profile-server.sh shows the kernel side).
#
#   benches/callgrind-server.sh OP=COUNT [-- SERVE-ARGS...]
#   e.g. benches/callgrind-server.sh ga=200
#
# Counters are zeroed once the server is up (start-up, e.g. the attestation CA, is not
# counted) and dumped after the run: COUNT + 5 warm-up operations, the import and one
# getInfo. Prints instructions per operation and the top functions (inclusive).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
OP=${1:?usage: callgrind-server.sh OP=COUNT [-- SERVE-ARGS...]}
shift
[ "${1:-}" = -- ] && shift
COUNT=${OP#*=}
VKEY=${CARGO_TARGET_DIR:-$ROOT/target}/release/vkey
OUT=${OUT:-${CARGO_TARGET_DIR:-$ROOT/target}/profile}
mkdir -p "$OUT"
name=callgrind-$(printf '%s' "$OP" | tr '=' '-')${1:+-$(printf '%s' "$*" | tr -c 'a-z0-9' '-')}
[ -x "$VKEY" ] || (cd "$ROOT" && cargo build --release)
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 1; }

start_server valgrind -q --tool=callgrind --callgrind-out-file="$OUT/$name.%p" \
    "$VKEY" serve --ephemeral --listen 127.0.0.1:0 "$@"
callgrind_control -z "$server" >/dev/null
"$VKEY" bench --target "$addr/1-1" --server-pid "$server" --op "$OP" --warmup 5 \
    --timeout-ms 60000 --verify-every 1 2>/dev/null | grep '^| [a-z]' | grep -v '^| op' || true
callgrind_control -d "$server" >/dev/null
kill -INT "$server"; wait "$server" || true
dump=$(ls -t "$OUT/$name".* | grep -v '\.[0-9]*$' | head -1 || true)
[ -n "$dump" ] || dump=$(ls -t "$OUT/$name".* | head -1)
# The dump made by `callgrind_control -d` (part 1) holds the zeroed-then-counted run.
part=$(ls -t "$OUT/$name".*.1 2>/dev/null | head -1 || true)
[ -n "$part" ] && dump=$part
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "instructions: $total in $((COUNT + 5)) operations (+ import, INIT, getInfo) = $((total / (COUNT + 5))) per operation"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -40
