#!/usr/bin/env bash
# Pulls the same data from one fake-gcs-server (filesystem backend) with model-agent,
# `gcloud storage cp` (when installed) and plain curl (one connection, one stream at a
# time), several runs interleaved; prints medians and model-agent's ratio to each.
# Cases: one 1 GiB object; 1,000 objects of 100 KiB.
#   RUNS=5 bench/gcs_pull.sh         # default RUNS=3
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
"$root/scripts/setup-env" >/dev/null
(cd "$root" && swift build -c release --product model-agent --static-swift-stdlib 2>&1 | tail -n 1)
agent="$root/.build/release/model-agent"
fake="$(find "$root/.venvs/tools/lib" -path '*fake-gcs-server/bin/fake-gcs-server-linux-amd64' | head -n 1)"

work="$(mktemp -d "${TMPDIR:-/tmp}/model-agent-gcs-bench.XXXXXX")"
cleanup() { kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/gcloud"
make_data "$work/seed/bench"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$fake" -scheme http -host 127.0.0.1 -port "$port" -backend filesystem -filesystem-root "$work/storage" \
    -data "$work/seed" -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" -log-level warn \
    >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/storage/v1/b" >/dev/null && break; sleep 0.2; done
export STORAGE_EMULATOR_HOST="127.0.0.1:$port"
export CLOUDSDK_CONFIG="$work/gcloud" CLOUDSDK_CORE_DISABLE_PROMPTS=1 CLOUDSDK_AUTH_ACCESS_TOKEN=dummy \
    CLOUDSDK_CORE_PROJECT=test CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE="http://127.0.0.1:$port/"
small_urls="$work/small-urls"
for i in $(seq -f "%04g" 0 999); do
    echo "url = \"http://127.0.0.1:$port/storage/v1/b/bench/o/small%2Ff$i.bin?alt=media\""
    echo "output = \"f$i.bin\""
done >"$small_urls"

tools=(model-agent model-agent-noverify curl)
cases=(big small)
command -v gcloud >/dev/null && gcloud storage ls gs://bench/ >/dev/null 2>&1 && tools+=(gcloud)

run_tool() {
    local case="$1" tool="$2" dest="$3"
    case "$tool:$case" in
    model-agent:big) "$agent" pull gs://bench/big/weights.bin "$dest" --log-level error ;;
    model-agent:small) "$agent" pull gs://bench/small "$dest" --log-level error ;;
    model-agent-noverify:big) "$agent" pull --verify-checksums false gs://bench/big/weights.bin "$dest" --log-level error ;;
    model-agent-noverify:small) "$agent" pull --verify-checksums false gs://bench/small "$dest" --log-level error ;;
    curl:big) curl -sf -o "$dest/weights.bin" "http://127.0.0.1:$port/storage/v1/b/bench/o/big%2Fweights.bin?alt=media" ;;
    curl:small) (cd "$dest" && curl -sf -K "$small_urls") ;;
    gcloud:big) gcloud storage cp gs://bench/big/weights.bin "$dest/" ;;
    gcloud:small) gcloud storage cp "gs://bench/small/*" "$dest/" ;;
    esac >/dev/null 2>&1
}

expect() {
    if [ "$1" = big ]; then
        cmp -s "$2/weights.bin" "$work/seed/bench/big/weights.bin" || { echo "bench: $3 produced a wrong copy" >&2; exit 1; }
    else
        [ "$(find "$2" -type f | wc -l)" -eq 1000 ] || { echo "bench: $3 copied $(find "$2" -type f | wc -l) files" >&2; exit 1; }
    fi
}

measure
report
echo "model-agent verifies CRC32C unless --verify-checksums false; gcloud storage verifies too; curl does not."
echo "curl: one connection, files one after another. Machine: $(nproc) cores; server: fake-gcs-server, filesystem backend."
