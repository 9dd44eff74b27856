# shellcheck shell=bash
# Starts moto_server (the AWS API emulator, from .venv) on a free loopback
# port, exports SPRINTERS_TEST_AWS_ENDPOINT and stops it when the calling
# shell exits. Sourced by scripts/test; fails the run if moto cannot start.

start_moto() {
    local port log
    port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log=$(mktemp -t sprinters-moto.XXXXXX)
    # scripts/moto_server.py: moto_server with its per-resource tag lookup
    # made direct (same answers; a listing no longer slows quadratically
    # as a long run's instances accumulate), and as strict as EC2 on
    # client tokens, gp3 volumes and the metadata hop limit.
    .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT
    export SPRINTERS_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
    local tries=0
    until .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "$SPRINTERS_TEST_AWS_ENDPOINT/moto-api/" 2>/dev/null; do
        tries=$((tries + 1))
        if ! kill -0 "$MOTO_PID" 2>/dev/null || [ "$tries" -gt 150 ]; then
            echo "moto_server did not start on port $port; its log:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.2
    done
}
