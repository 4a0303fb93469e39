#!/usr/bin/env bash
# The agent's idle footprint (issue 11): a release build started with an empty models.json,
# measured once it has been idle for SETTLE seconds (Dispatch ends its idle worker threads
# after 5 s). Prints resident memory split into anonymous (the process's own) and
# file-backed (mapped code and data of the binary and shared libraries), the threads by
# name, and the largest mappings; then the same figures for do-nothing programs built with
# the same toolchain, which are the floor any Swift program with libcurl starts from.
#   bench/idle.sh                    # AGENT=path/to/model-agent measures another build
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
settle="${SETTLE:-10}"
# shellcheck source=bench/process_lib.sh
source "$root/bench/process_lib.sh"
build_agent
scratch

# figures PID LABEL: one table row, MiB.
figures() {
    awk -v label="$2" '
        /^VmRSS/ {rss = $2} /^RssAnon/ {anon = $2} /^RssFile/ {file = $2} /^Threads/ {threads = $2}
        END {printf "| %s | %.1f | %.1f | %.1f | %d |\n", label, rss / 1024, anon / 1024, file / 1024, threads}
    ' "/proc/$1/status"
}

mkdir -p "$work/config"
echo '[]' >"$work/config/models.json"
admin=$(free_port)
cold_page_cache
"$agent" --config-dir "$work/config" --model-dir "$work/models" --port "$(free_port)" --admin-port "$admin" \
    --bind-address 127.0.0.1 --server-url http://127.0.0.1:9 --drain-timeout 0 --log-level warning \
    >"$work/agent.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$admin/livez" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$admin/livez" >/dev/null || { cat "$work/agent.log" >&2; exit 1; }
sleep "$settle"

echo "| program | RSS MiB | anonymous MiB | file-backed MiB | threads |"
echo "|---|---|---|---|---|"
figures "$pid" "model-agent, idle ${settle} s"
agent_pid=$pid

# The floor: programs that only start (FoundationEssentials used, as the agent does) and
# sleep, built by the same toolchain, with and without libcurl and the static runtime.
cat >"$work/idle.swift" <<'SWIFT'
import FoundationEssentials
import Glibc
let started = Date.now
print(Data("ready".utf8).count, started.timeIntervalSince1970 > 0)
fflush(stdout)
sleep(60)
SWIFT
# The last one is linked as the release build is (Package.swift, releaseLinkerFlags).
for variant in "dynamic runtime:" "dynamic runtime, libcurl:-lcurl" "static runtime:-static-stdlib" \
    "static runtime, libcurl:-static-stdlib -lcurl" \
    "static runtime, libcurl, linked as the release build:-static-stdlib -lcurl -use-ld=lld -Xlinker --no-export-dynamic -Xlinker -z -Xlinker pack-relative-relocs"; do
    label="${variant%%:*}"
    flags="${variant#*:}"
    # shellcheck disable=SC2086
    swiftc -O $flags "$work/idle.swift" -o "$work/idle" 2>/dev/null
    cold_page_cache
    "$work/idle" >"$work/idle.out" &
    floor=$!
    for _ in $(seq 100); do [ -s "$work/idle.out" ] && break; sleep 0.05; done
    figures "$floor" "do-nothing Swift program, $label"
    kill "$floor"
    wait "$floor" 2>/dev/null || true
done

echo
echo "model-agent's threads: $(cat /proc/"$agent_pid"/task/*/comm | sort | uniq -c | awk '{printf "%s%s × %s", sep, $1, $2; sep=", "}')"
echo "model-agent's largest mappings (resident KiB, permissions, file):"
awk '/^[0-9a-f]+-/ {map = $2 " " ($6 == "" ? "[anonymous]" : $6)} /^Rss:/ {if ($2 >= 256) print "  " $2, map}' \
    "/proc/$agent_pid/smaps" | sort -rn | head -n 12
echo "kernel $(uname -r), $(nproc) cores; $(swift --version 2>&1 | head -n 1); page cache $page_cache at each start"
