#!/usr/bin/env bash
# Pulls the same data from one `rclone serve s3` with model-agent and its peers (s5cmd,
# rclone, awscli), each run several times, interleaved, and prints median times and
# model-agent's ratio to each peer. Cases: one 1 GiB object; 1,000 objects of 100 KiB.
#   RUNS=5 bench/s3_pull.sh          # default RUNS=3
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
"$root/scripts/setup-env" >/dev/null
bin="$root/.venvs/tools/bin"
if [ ! -x "$root/.venvs/bench/bin/aws" ]; then
    python3 -m venv "$root/.venvs/bench" && "$root/.venvs/bench/bin/pip" install -q awscli
fi
aws="$root/.venvs/bench/bin/aws"
(cd "$root" && swift build -c release --product model-agent --static-swift-stdlib 2>&1 | tail -n 1)
agent="$root/.build/release/model-agent"

work="$(mktemp -d "${TMPDIR:-/tmp}/model-agent-bench.XXXXXX")"
cleanup() { kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
make_data "$work/data/bench"

export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
RCLONE_CONFIG=/dev/null "$bin/rclone" serve s3 --addr 127.0.0.1:0 --auth-key "$AWS_ACCESS_KEY_ID,$AWS_SECRET_ACCESS_KEY" \
    --config /dev/null --vfs-cache-mode off "$work/data" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do grep -q "Starting s3 server" "$work/server.log" && break; sleep 0.1; done
endpoint="http://$(grep -oE '127\.0\.0\.1:[0-9]+' "$work/server.log" | head -n 1)"
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other RCLONE_CONFIG_BENCH_ENDPOINT="$endpoint" \
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"

# run_tool CASE TOOL DEST: one pull into the empty directory DEST.
run_tool() {
    local case="$1" tool="$2" dest="$3" src
    if [ "$case" = big ]; then src=big/weights.bin; else src=small; fi
    case "$tool" in
    model-agent) AWS_ENDPOINT_URL="$endpoint" "$agent" pull "s3://bench/$src" "$dest" --log-level error ;;
    model-agent-noverify)
        AWS_ENDPOINT_URL="$endpoint" "$agent" pull --verify-checksums false "s3://bench/$src" "$dest" --log-level error ;;
    s5cmd)
        if [ "$case" = big ]; then "$bin/s5cmd" --endpoint-url "$endpoint" cp "s3://bench/$src" "$dest/"
        else "$bin/s5cmd" --endpoint-url "$endpoint" cp "s3://bench/small/*" "$dest/"; fi ;;
    rclone)
        if [ "$case" = big ]; then "$bin/rclone" --config /dev/null copy bench:bench/big "$dest"
        else "$bin/rclone" --config /dev/null copy bench:bench/small "$dest"; fi ;;
    awscli)
        if [ "$case" = big ]; then "$aws" --endpoint-url "$endpoint" s3 cp --quiet "s3://bench/$src" "$dest/"
        else "$aws" --endpoint-url "$endpoint" s3 cp --quiet --recursive "s3://bench/small" "$dest"; fi ;;
    esac >/dev/null
}

# expect CASE DEST: the pull is complete and correct (sizes; content of the big object).
expect() {
    if [ "$1" = big ]; then
        cmp -s "$2/weights.bin" "$work/data/bench/big/weights.bin" || { echo "bench: $3 made a wrong copy" >&2; exit 1; }
    else
        [ "$(find "$2" -type f | wc -l)" -eq 1000 ] || { echo "bench: $3 copied too few files" >&2; exit 1; }
    fi
}

tools=(model-agent model-agent-noverify s5cmd rclone awscli)
cases=(big small)
measure
report
echo "model-agent verifies MD5 (the ETag) unless --verify-checksums false; rclone copy verifies MD5 too;"
echo "s5cmd and awscli check sizes only. Machine: $(nproc) cores, $(uname -r); server: rclone $("$bin/rclone" version | head -n 1 | cut -d' ' -f2) serve s3 on loopback."
