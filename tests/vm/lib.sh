# Shared by tests/vm/*.sh: start `vkey serve` on a free loopback port.
#   start_vkey NAME [VKEY_SERVE_ARGS...]   → sets VKEY_PID, VKEY_PORT, VKEY_LOGFILE; stops it on exit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VKEY=${VKEY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/vkey}
LINUX_VM=${LINUX_VM:-$ROOT/../shared/tools/linux-vm}
OUT=$ROOT/tests/out
mkdir -p "$OUT"

start_vkey() {
    local name=$1; shift
    VKEY_LOGFILE=$OUT/$name.vkey.log

    "$VKEY" serve --listen 127.0.0.1:0 "$@" > "$VKEY_LOGFILE.stdout" 2> "$VKEY_LOGFILE" &
    VKEY_PID=$!
    trap 'kill $VKEY_PID 2>/dev/null || true; wait $VKEY_PID 2>/dev/null || true' EXIT
    VKEY_PORT=""
    for _ in $(seq 100); do
        # The file may not exist yet: vkey's shell opens it after this loop starts.
        VKEY_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$VKEY_LOGFILE.stdout" 2>/dev/null || true)
        [ -n "$VKEY_PORT" ] && return 0
        kill -0 $VKEY_PID 2>/dev/null || { cat "$VKEY_LOGFILE"; echo "vkey exited"; return 1; }
        sleep 0.1
    done
    echo "vkey did not start"; return 1
}
