#!/usr/bin/env bash
# Extracting archives served over http: model-agent (zlib) against `curl | tar -xzf` and
# `curl -o` + `unzip`, and against model-agent before the zlib change (its own DEFLATE),
# on 1 GiB of float32 weights (normally distributed, so barely compressible, as real
# weights are) packed as .tar.gz and .zip. Every tool fetches from the same local http
# server in one interleaved run; the extracted file is compared with the original.
#   RUNS=5 bench/archive.sh               # default RUNS=3
#   BEFORE=30cf437 bench/archive.sh       # the revision measured as "before" (built once, cached)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
before_rev="${BEFORE:-30cf437}"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
"$root/scripts/setup-env" >/dev/null
python="$root/.venvs/tools/bin/python3"
(cd "$root" && swift build -c release --product model-agent --static-swift-stdlib 2>&1 | tail -n 1)
agent="$root/.build/release/model-agent"

# The "before" binary: built once from $before_rev in a worktree under bench/work.
cache="$root/bench/work"
mkdir -p "$cache"
before="$cache/before-$before_rev/.build/release/model-agent"
if [ ! -x "$before" ]; then
    rm -rf "$cache/before-$before_rev"
    git -C "$root" worktree add --detach "$cache/before-$before_rev" "$before_rev" >/dev/null
    (cd "$cache/before-$before_rev" && swift build -c release --product model-agent --static-swift-stdlib 2>&1 | tail -n 1)
fi

# Data, cached: 1 GiB of float32 weights, as .tar.gz (gzip -6) and .zip (deflate -6).
data="$cache/archive-data"
if [ ! -f "$data/w.zip" ]; then
    mkdir -p "$data/model"
    "$root/.venvs/mlserver/bin/python" -c \
        "import numpy as np; np.random.default_rng(7).standard_normal(1 << 28, dtype=np.float32).tofile('$data/model/weights.bin')"
    tar -C "$data/model" -czf "$data/w.tar.gz" weights.bin
    (cd "$data/model" && zip -q -6 "$data/w.zip" weights.bin)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/model-agent-bench.XXXXXX")"
cleanup() { kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$python" "$root/Tests/Fixtures/fixture_server.py" --root "$data" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do grep -q "^PORT " "$work/server.log" && break; sleep 0.1; done
base="http://127.0.0.1:$(awk '/^PORT /{print $2}' "$work/server.log")/files"

# run_tool CASE TOOL DEST: one download and extraction into the empty directory DEST.
run_tool() {
    local case="$1" tool="$2" dest="$3" file
    if [ "$case" = targz ]; then file=w.tar.gz; else file=w.zip; fi
    case "$tool" in
    model-agent) "$agent" pull "$base/$file" "$dest" --log-level error ;;
    model-agent-before) "$before" pull "$base/$file" "$dest" --log-level error ;;
    curl+tar/unzip)
        if [ "$case" = targz ]; then curl -sf "$base/$file" | tar -xzf - -C "$dest"
        else curl -sfo "$work/w.zip" "$base/$file" && unzip -q "$work/w.zip" -d "$dest" && rm -f "$work/w.zip"; fi ;;
    esac >/dev/null
}

expect() {
    cmp -s "$2/weights.bin" "$data/model/weights.bin" || { echo "bench: $3 extracted a wrong copy" >&2; exit 1; }
}

case_labels[targz]="1 GiB weights, .tar.gz ($(du -m "$data/w.tar.gz" | cut -f1) MiB)"
case_labels[zip]="1 GiB weights, .zip ($(du -m "$data/w.zip" | cut -f1) MiB)"
tools=(model-agent model-agent-before curl+tar/unzip)
cases=(targz zip)
measure
report
echo "model-agent-before is $before_rev (hand-written DEFLATE and CRC-32). tar $(tar --version | head -n 1 | awk '{print $NF}'),"
echo "unzip $(unzip -v | head -n 1 | awk '{print $2}'), curl $(curl --version | head -n 1 | awk '{print $2}'). Machine: $(nproc) cores, $(uname -r)."
