#!/usr/bin/env bash
# Profile a `vkey serve` process under `vkey bench`: where the server's CPU time goes for
# one operation. perf with the cpu-clock software event (this machine kind has no
# hardware counters), call graphs by frame pointer/DWARF as the release build has
# debug info (profile.release debug = 1): DWARF unwinding, so inclusive times are right.
#
#   benches/profile-server.sh OP[=COUNT] [-- SERVE-ARGS...]
#   e.g. benches/profile-server.sh ga=3000
#        benches/profile-server.sh mc=2000 -- --attestation none
#
# Prints the operation's figures, its cost categories (benches/perf-categories.py), the
# split by binary, the top self-time symbols and vkey's inclusive (children) symbols. Output files stay in $OUT (default target/profile/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
OP=${1:?usage: profile-server.sh OP[=COUNT] [-- SERVE-ARGS...]}
shift
[ "${1:-}" = -- ] && shift
VKEY=${CARGO_TARGET_DIR:-$ROOT/target}/release/vkey
OUT=${OUT:-${CARGO_TARGET_DIR:-$ROOT/target}/profile}
mkdir -p "$OUT"
name=$(printf '%s' "$OP" | tr '=' '-')${1:+-$(printf '%s' "$*" | tr -c 'a-z0-9' '-')}
[ -x "$VKEY" ] || (cd "$ROOT" && cargo build --release)
command -v perf >/dev/null || { echo "perf not installed (apt-get install linux-perf)" >&2; exit 1; }

start_server "$VKEY" serve --ephemeral --listen 127.0.0.1:0 "$@"
trap 'kill $server 2>/dev/null || true' EXIT

perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$server" -o "$OUT/$name.data" 2>"$OUT/$name.perf.log" &
perf_pid=$!
sleep 0.5
line=$("$VKEY" bench --target "$addr/1-1" --server-pid "$server" --op "$OP" --warmup 20 --json 2>/dev/null)
kill -INT $perf_pid; wait $perf_pid || true
cpu=$(printf '%s' "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(r["server_cpu_us_per_op"] or ""); print("p50 %s us, p99 %s us, server CPU %s us/op (under perf)" % (r["p50_us"], r["p99_us"], r["server_cpu_us_per_op"]), file=sys.stderr)')

echo "--- cost categories (perf-categories.py; µs/op from the measured server CPU)"
perf script -i "$OUT/$name.data" 2>/dev/null | python3 "$ROOT/benches/perf-categories.py" $cpu

echo "--- by binary (kernel = TCP loopback, syscalls, scheduler)"
perf report -i "$OUT/$name.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -6
echo "--- self time (top symbols, % of the server's samples)"
perf report -i "$OUT/$name.data" --no-children --sort sym --stdio -g none --percent-limit 1 2>/dev/null \
    | grep '%' | head -30
echo "--- inclusive time of vkey's own functions"
perf report -i "$OUT/$name.data" --children --sort sym --stdio -g none 2>/dev/null \
    | grep -E '%' | grep -E '\] (vkey::|p256::|ecdsa::|primeorder::|ciborium|sha2::|aes|ed25519|rcgen::|tokio::|hmac::|std::|__GI|epoll|syscall|__libc|do_syscall|tcp_|sock_)' \
    | head -40
