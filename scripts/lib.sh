# Shared by scripts/demo, scripts/image and bench/s3_pull.sh. The caller sets `root` (the
# repository) before sourcing; scripts/setup-env has made .venvs/tools.

# free_port: prints a TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_s3 DIR LOG KEY SECRET: `rclone serve s3` on a free loopback port serving DIR (its
# top-level folders are the buckets), SigV4 with KEY/SECRET, its output in LOG. Sets
# `s3_pid` and `s3_endpoint` (http://127.0.0.1:PORT) once it listens; returns 1 with the log
# on stderr when it has not started within 20 s.
start_s3() {
    RCLONE_CONFIG=/dev/null "$root/.venvs/tools/bin/rclone" serve s3 --addr 127.0.0.1:0 \
        --auth-key "$3,$4" --config /dev/null --vfs-cache-mode off "$1" >"$2" 2>&1 &
    s3_pid=$!
    local _
    for _ in $(seq 400); do grep -q "Starting s3 server" "$2" && break; sleep 0.05; done
    if ! grep -q "Starting s3 server" "$2"; then
        cat "$2" >&2
        echo "rclone serve s3 did not start" >&2
        return 1
    fi
    s3_endpoint="http://$(grep -oE '127\.0\.0\.1:[0-9]+' "$2" | head -n 1)"
}
