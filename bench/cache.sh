#!/usr/bin/env bash
# The memory cache (--memory-capacity) under a Zipf(1.1) popularity: MLServer 1.7.1 with
# MODELS sklearn iris models of 64Mi each (as models.json declares them), a capacity that
# holds a quarter of them, CLIENTS threads sending V2 infer requests through the agent's
# proxied port for DURATION seconds (bench/cache/zipf.py). Before that, the agent's added
# latency on a hit: the same request to a loaded model straight to MLServer and through the
# agent, interleaved. Prints the figures with their goals; fails if any request fails or
# the server ever holds more than the capacity.
#   MODELS=24 CLIENTS=4 DURATION=60 bench/cache.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models="${MODELS:-24}"
clients="${CLIENTS:-4}"
duration="${DURATION:-60}"
# shellcheck source=bench/process_lib.sh
source "$root/bench/process_lib.sh"
"$root/scripts/setup-env" >/dev/null
build_agent
scratch

size=$((64 << 20))
capacity=$((models / 4 * size))
ml=$(free_port) mlgrpc=$(free_port) port=$(free_port) admin=$(free_port)
mkdir -p "$work/src/iris" "$work/models" "$work/config"
"$root/.venvs/mlserver/bin/python" "$root/examples/make_iris.py" "$work/src/iris" >/dev/null
names=()
for i in $(seq -w 1 "$models"); do names+=("m$i"); done
python3 - "$work/config/models.json" "$work/src/iris" "${names[@]}" <<'PY'
import json, sys
path, uri, names = sys.argv[1], sys.argv[2], sys.argv[3:]
entries = [{"modelName": n, "modelSpec": {"storageUri": uri, "framework": "sklearn", "memory": "64Mi"}} for n in names]
json.dump(entries, open(path, "w"))
PY
cat >"$work/models/settings.json" <<CONF
{"debug": false, "load_models_at_startup": false, "host": "127.0.0.1", "http_port": $ml, "grpc_port": $mlgrpc,
 "metrics_port": 0, "parallel_workers": 0}
CONF
"$root/.venvs/mlserver/bin/mlserver" start "$work/models" >"$work/mlserver.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$ml/v2/health/ready" >/dev/null && break
    sleep 0.1
done
"$agent" --config-dir "$work/config" --model-dir "$work/models" --server-url "http://127.0.0.1:$ml" \
    --port "$port" --admin-port "$admin" --bind-address 127.0.0.1 --drain-timeout 0 \
    --local-source-root "$work/src" --memory-capacity "$capacity" >"$work/agent.log" 2>&1 &
pids+=($!)
settled() {
    curl -sf "http://127.0.0.1:$admin/v1/models" 2>/dev/null | python3 -c '
import json, sys
models = json.load(sys.stdin)
states = [m["state"] for m in models]
sys.exit(0 if len(states) == int(sys.argv[1]) and all(s in ("Loaded", "Standby") for s in states) else 1)' "$models" \
        2>/dev/null
}
for _ in $(seq 1200); do settled && break; sleep 0.1; done
settled || { echo "bench: the models did not settle; the agent's log:" >&2; tail -n 20 "$work/agent.log" >&2; exit 1; }

list=$(IFS=,; echo "${names[*]}")
summary=$(python3 "$root/bench/cache/zipf.py" agent="$port" admin="$admin" ml="$ml" models="$list" size="$size" hot="${names[0]}" \
    rounds=10 clients="$clients" duration="$duration" s=1.1 seed=7 log="$work/agent.log")
python3 - "$summary" "$capacity" "$size" "$models" "$clients" "$duration" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
capacity, size, models, clients, duration = map(int, sys.argv[2:7])
a = s["agent_counters"]
o = s["hit_overhead"]
added50 = o["agent"]["p50_ms"] - o["direct"]["p50_ms"]
added99 = o["agent"]["p99_ms"] - o["direct"]["p99_ms"]
print("memory cache: %d models of %d MiB, capacity %d MiB (%d models), %d clients, %d s, Zipf(1.1)"
      % (models, size >> 20, capacity >> 20, capacity // size, clients, duration))
print("  requests %d, failed %d (goal 0)" % (s["requests"], s["failures"]))
print("  hit rate %.1f%% of requests (agent counters: %d hits, %d misses, %d cold loads, %d evictions)"
      % (100 * s["hit_rate"], a["hits"], a["misses"], a["coldLoads"], a["evictions"]))
print("  hits: p50 %.2f ms, p99 %.2f ms" % (s["hit_p50_ms"], s["hit_p99_ms"]))
print("  requests that waited for a load: %d, p50 %s ms, p99 %s ms" % (s["cold_requests"], s["cold_p50_ms"], s["cold_p99_ms"]))
print("  cold loads %d: wait p50 %s ms = MLServer load call p50 %s ms + victim's unload call p50 %s ms + the rest p50 %s ms, p99 %s ms (goal: rest < 50 ms)"
      % (s["cold_loads"], s["cold_wait_p50_ms"], s["load_call_p50_ms"], s["unload_call_p50_ms"], s["cold_overhead_p50_ms"], s["cold_overhead_p99_ms"]))
print("  most models MLServer held at once: %d = %d MiB (goal <= %d MiB; %d index polls)"
      % (s["max_models_held"], s["max_bytes_held"] >> 20, capacity >> 20, s["index_polls"]))
print("  hit overhead (one loaded model, one connection, %d requests each): direct p50 %.3f ms p99 %.3f ms; via agent p50 %.3f ms p99 %.3f ms; added p50 %.3f ms (goal < 1), p99 %.3f ms"
      % (o["direct"]["n"], o["direct"]["p50_ms"], o["direct"]["p99_ms"], o["agent"]["p50_ms"], o["agent"]["p99_ms"], added50, added99))
if s["failures"]:
    sys.exit("bench: %d requests failed, e.g. %s" % (s["failures"], s["failure_examples"]))
if s["max_bytes_held"] > capacity:
    sys.exit("bench: the server held more than the capacity")
PY
