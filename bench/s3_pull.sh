#!/usr/bin/env bash
# Pulls the same data from one `rclone serve s3` with model-agent and its peers (s5cmd,
# rclone, awscli), each run several times, interleaved, and prints median times and
# model-agent's ratio to each peer. Cases: one 1 GiB object (MD5 ETag only); the same
# bytes stored with an S3 additional checksum (CRC-64/NVME, CRC-32C; rclone keeps the
# checksum a PUT declares and returns it with checksum mode on); 1,000 objects of 100 KiB.
#   RUNS=5 bench/s3_pull.sh          # default RUNS=3
#   CASES="big crc64" bench/s3_pull.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
"$root/scripts/setup-env" >/dev/null
bin="$root/.venvs/tools/bin"
# awscrt: AWS's own CRC-64/NVME and CRC-32C, to compute the stored checksums.
if [ ! -x "$root/.venvs/bench/bin/aws" ] || ! "$root/.venvs/bench/bin/python" -c "import awscrt" 2>/dev/null; then
    python3 -m venv "$root/.venvs/bench" && "$root/.venvs/bench/bin/pip" install -q awscli awscrt
fi
aws="$root/.venvs/bench/bin/aws"
(cd "$root" && swift build -c release --product model-agent --static-swift-stdlib 2>&1 | tail -n 1)
agent="$root/.build/release/model-agent"

work="$(mktemp -d "${TMPDIR:-/tmp}/model-agent-bench.XXXXXX")"
cleanup() { kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
make_data "$work/data/bench"

export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
start_s3 "$work/data" "$work/server.log" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
server=$s3_pid
endpoint=$s3_endpoint
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other RCLONE_CONFIG_BENCH_ENDPOINT="$endpoint" \
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"

case_labels[crc64]="1 GiB, CRC-64/NVME stored"
case_labels[crc32c]="1 GiB, CRC-32C stored"
cases=(${CASES:-big crc64 crc32c small})

# store_with_checksum ALGORITHM PREFIX: PUTs the 1 GiB object as PREFIX/weights.bin with
# its x-amz-checksum-ALGORITHM (computed by awscrt, not by model-agent).
store_with_checksum() {
    local value
    value=$("$root/.venvs/bench/bin/python" - "$1" "$work/data/bench/big/weights.bin" <<'PY'
import base64, sys
from awscrt import checksums
algorithm, path = sys.argv[1], sys.argv[2]
crc, width = 0, 8 if algorithm == "crc64nvme" else 4
with open(path, "rb") as f:
    while chunk := f.read(16 << 20):
        crc = checksums.crc64nvme(chunk, crc) if algorithm == "crc64nvme" else checksums.crc32c(chunk, crc)
print(base64.b64encode(crc.to_bytes(width, "big")).decode())
PY
)
    curl -sf -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -H "x-amz-checksum-$1: $value" \
        -T "$work/data/bench/big/weights.bin" "$endpoint/bench/$2/weights.bin"
}
for case in "${cases[@]}"; do
    case "$case" in
    crc64) store_with_checksum crc64nvme crc64 ;;
    crc32c) store_with_checksum crc32c crc32c ;;
    esac
done

# run_tool CASE TOOL DEST: one pull into the empty directory DEST.
run_tool() {
    local case="$1" tool="$2" dest="$3" src
    if [ "$case" = small ]; then src=small; else src="$case/weights.bin"; fi
    case "$tool" in
    model-agent) AWS_ENDPOINT_URL="$endpoint" "$agent" pull "s3://bench/$src" "$dest" --log-level error ;;
    model-agent-noverify)
        AWS_ENDPOINT_URL="$endpoint" "$agent" pull --verify-checksums false "s3://bench/$src" "$dest" --log-level error ;;
    s5cmd)
        if [ "$case" != small ]; then "$bin/s5cmd" --endpoint-url "$endpoint" cp "s3://bench/$src" "$dest/"
        else "$bin/s5cmd" --endpoint-url "$endpoint" cp "s3://bench/small/*" "$dest/"; fi ;;
    rclone)
        if [ "$case" != small ]; then "$bin/rclone" --config /dev/null copy "bench:bench/$case" "$dest"
        else "$bin/rclone" --config /dev/null copy bench:bench/small "$dest"; fi ;;
    awscli)
        if [ "$case" != small ]; then "$aws" --endpoint-url "$endpoint" s3 cp --quiet "s3://bench/$src" "$dest/"
        else "$aws" --endpoint-url "$endpoint" s3 cp --quiet --recursive "s3://bench/small" "$dest"; fi ;;
    esac >/dev/null
}

# expect CASE DEST: the pull is complete and correct (sizes; content of the big object).
expect() {
    if [ "$1" != small ]; then
        cmp -s "$2/weights.bin" "$work/data/bench/big/weights.bin" || { echo "bench: $3 made a wrong copy" >&2; exit 1; }
    else
        [ "$(find "$2" -type f | wc -l)" -eq 1000 ] || { echo "bench: $3 copied too few files" >&2; exit 1; }
    fi
}

# awscli is left out of the stored-checksum cases: rclone returns the whole object's
# checksum on ranged GETs too (S3 does not), and awscli checks each part against it and fails.
all_cases=("${cases[@]}")
for group in plain stored; do
    cases=()
    for case in "${all_cases[@]}"; do
        case "$case" in crc*) [ "$group" = stored ] && cases+=("$case") ;; *) [ "$group" = plain ] && cases+=("$case") ;; esac
    done
    ((${#cases[@]})) || continue
    if [ "$group" = plain ]; then tools=(model-agent model-agent-noverify s5cmd rclone awscli)
    else tools=(model-agent model-agent-noverify s5cmd rclone); fi
    measure
    report
done
echo "model-agent verifies the stored CRC when there is one, else MD5 (the ETag), unless --verify-checksums false;"
echo "rclone copy verifies MD5; s5cmd checks sizes only; awscli validates a checksum only on whole-object GETs. Machine: $(nproc) cores, $(uname -r); server: rclone $("$bin/rclone" version | head -n 1 | cut -d' ' -f2) serve s3 on loopback."
