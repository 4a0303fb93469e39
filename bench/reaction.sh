#!/usr/bin/env bash
# How fast a ConfigMap change reaches the model server (issue 11): the agent holds MODELS
# models loaded (local artifacts, an instant fake V2 server: Tests/Fixtures/fixture_server.py
# --v2), then SWAPS times a models.json with one model more is published the kubelet's way
# (a new timestamped directory, `..data_tmp` symlink renamed onto `..data`). Each figure is
# the time from the rename to the fake server receiving that model's load request (both
# clocks are this machine's). Prints p50, p90 and max, and the goal.
#   bench/reaction.sh                # MODELS=200 SWAPS=20; AGENT=path measures another build
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models="${MODELS:-200}"
swaps="${SWAPS:-20}"
# shellcheck source=bench/process_lib.sh
source "$root/bench/process_lib.sh"
"$root/scripts/setup-env" >/dev/null
build_agent
python="$root/.venvs/tools/bin/python3"
scratch
start_fake_v2
mkdir -p "$work/artifact" "$work/config"
echo weights >"$work/artifact/weights.bin"
admin=$(free_port)

"$python" - "$work" "$fake" "$admin" "$models" "$swaps" "$agent" <<'PY'
import json, os, statistics, subprocess, sys, time, urllib.request

work, fake, admin, models, swaps, agent = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
config = work + "/config"
generation = 0

def publish(names):
    """Writes models.json as the kubelet does and returns the time of the ..data rename."""
    global generation
    generation += 1
    stamp = "..2026_11_23_00_00_00.%d" % generation
    os.mkdir(os.path.join(config, stamp))
    entries = [{"modelName": n, "modelSpec": {"storageUri": work + "/artifact", "framework": "sklearn",
                                              "memory": "1Mi"}} for n in names]
    with open(os.path.join(config, stamp, "models.json"), "w") as f:
        json.dump(entries, f)
    previous = os.readlink(os.path.join(config, "..data")) if os.path.islink(os.path.join(config, "..data")) else None
    os.symlink(stamp, os.path.join(config, "..data_tmp"))
    renamed = time.time()
    os.rename(os.path.join(config, "..data_tmp"), os.path.join(config, "..data"))
    if not os.path.lexists(os.path.join(config, "models.json")):
        os.symlink("..data/models.json", os.path.join(config, "models.json"))
    if previous:
        subprocess.run(["rm", "-rf", os.path.join(config, previous)], check=True)
    return renamed

def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)

def wait_loaded(count):
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            states = get("http://127.0.0.1:%s/v1/models" % admin)
            if len(states) == count and all(m["state"] == "Loaded" for m in states):
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("bench: %d models never all loaded; agent log: %s" % (count, open(work + "/agent.log").read()[-2000:]))

names = ["m%05d" % i for i in range(models)]
publish(names)
log = open(work + "/agent.log", "w")
proc = subprocess.Popen([agent, "--config-dir", config, "--model-dir", work + "/models", "--server-url", fake,
                         "--port", "0", "--admin-port", admin, "--bind-address", "127.0.0.1",
                         "--drain-timeout", "0", "--log-level", "warning",
                         "--local-source-root", work + "/artifact"], stdout=log, stderr=log)
try:
    wait_loaded(models)
    figures = []
    for i in range(swaps):
        name = "new%03d" % i
        names.append(name)
        renamed = publish(names)
        deadline = time.time() + 60
        seen = None
        while seen is None and time.time() < deadline:
            for entry in get(fake + "/_control/log"):
                if entry.get("op") == "load" and entry.get("model") == name:
                    seen = entry["time"]
            if seen is None:
                time.sleep(0.002)
        if seen is None:
            sys.exit("bench: no load request for %s" % name)
        figures.append((seen - renamed) * 1000)
        wait_loaded(len(names))
        urllib.request.urlopen(urllib.request.Request(fake + "/_control/log", method="DELETE"), timeout=10).read()
    figures.sort()
    p90 = figures[min(len(figures) - 1, int(round(0.9 * (len(figures) - 1))))]
    print("| models loaded | swaps | p50 ms | p90 ms | max ms | goal |")
    print("|---|---|---|---|---|---|")
    print("| %d | %d | %.1f | %.1f | %.1f | p50 ≤ 20 ms |" % (models, swaps, statistics.median(figures), p90,
                                                              figures[-1]))
finally:
    proc.terminate()
    proc.wait(timeout=30)
PY
