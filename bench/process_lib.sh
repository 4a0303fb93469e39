# Shared by the bench scripts that run model-agent and servers as processes (idle,
# reaction, scale, proxy). The caller sets `root` (the repository) before sourcing.

# build_agent: sets `agent` to $AGENT when given (to measure another build), else to the
# release build, built first with the static Swift runtime as the image is.
build_agent() {
    if [ -z "${AGENT:-}" ]; then
        (cd "$root" && swift build -c release --product model-agent --static-swift-stdlib 2>&1 | tail -n 1)
    fi
    agent="${AGENT:-$root/.build/release/model-agent}"
}

# scratch: sets `work`, a new scratch directory, and `pids`, the background processes;
# both are cleaned up when the script exits.
scratch() {
    work="$(mktemp -d "${TMPDIR:-/tmp}/model-agent-bench.XXXXXX")"
    pids=()
    trap cleanup_scratch EXIT
}
cleanup_scratch() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

# free_port
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# start_fake_v2: the test fixture's instant V2 server in the background (its log in
# $work/fake.log); sets `fake`, its base URL.
start_fake_v2() {
    "$root/.venvs/tools/bin/python3" "$root/Tests/Fixtures/fixture_server.py" --v2 >"$work/fake.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do grep -q "^PORT" "$work/fake.log" && break; sleep 0.05; done
    fake="http://127.0.0.1:$(awk '/^PORT/ {print $2; exit}' "$work/fake.log")"
}

# cold_page_cache: empties the kernel's page cache of what no process maps (as root), so
# that a binary not running yet is read from disk when it starts, as in a pod. How a file
# entered the page cache (a linker's writes, or readahead) changes how much of it a fault
# maps, by up to 1 MiB of RSS here. Sets `page_cache` (cold or warm) for the report; when
# the cache cannot be emptied, says so once.
page_cache=unset
cold_page_cache() {
    if [ "$page_cache" != warm ] && sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        page_cache=cold
        return
    fi
    [ "$page_cache" = warm ] || echo "bench: cannot empty the page cache (not root?); RSS figures taken warm" >&2
    page_cache=warm
}
