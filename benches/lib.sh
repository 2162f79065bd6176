# Sourced by the bench scripts (callgrind-server.sh, profile-server.sh,
# keys-concurrency.sh); not run by itself.

# start_server COMMAND...: runs COMMAND, a `vkey serve ... --listen 127.0.0.1:0` (under
# a wrapper such as valgrind if need be), in the background with VKEY_LOG=warn, and
# waits until it says where it listens. Sets $server (its pid) and $addr (HOST:PORT);
# its standard output goes on being read so that it never blocks. Exits the script if
# the server stops before it listens.
start_server() {
    local fifo line
    fifo=$(mktemp -u); mkfifo "$fifo"
    VKEY_LOG=warn "$@" >"$fifo" &
    server=$!
    exec 3<"$fifo"; rm -f "$fifo"
    addr=
    while read -r line <&3; do
        case $line in "listening on "*) addr=${line#listening on }; addr=${addr%% *}; break ;; esac
    done
    [ -n "$addr" ] || { echo "vkey serve did not start" >&2; exit 1; }
    cat <&3 >/dev/null &
}
