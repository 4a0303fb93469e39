#!/usr/bin/env bash
# Many models (issue 11): the agent starts with MODELS entries in models.json (local
# artifacts of one small file; an instant fake V2 server, Tests/Fixtures/fixture_server.py
# --v2) and is measured until every model is loaded, then models.json is emptied and it is
# measured until every model is gone. Prints: time until /v1/models lists them all, time
# until all are loaded, peak RSS and threads (sampled every 50 ms, and VmHWM), RSS once
# all are removed, each with its goal.
#   bench/scale.sh                   # MODELS=10000; AGENT=path measures another build
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models="${MODELS:-10000}"
# shellcheck source=bench/process_lib.sh
source "$root/bench/process_lib.sh"
"$root/scripts/setup-env" >/dev/null
build_agent
python="$root/.venvs/tools/bin/python3"
# The scratch directory (artifacts, model dir) goes on tmpfs unless TMPDIR says
# otherwise. On ext4, every run creates and deletes ~30,000 inodes, and ext4 skips inodes
# deleted in the last minutes when it allocates: back-to-back runs spent most of their
# time in the kernel's allocator (perf: 70 % kernel, `recently_deleted`), and "all loaded"
# varied from 3 to 10 s with the same build.
scratch_dir="${TMPDIR:-}"
if [ -z "$scratch_dir" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch_dir=/dev/shm; fi
TMPDIR="${scratch_dir:-/tmp}" scratch
start_fake_v2
mkdir -p "$work/artifact" "$work/config"
echo weights >"$work/artifact/weights.bin"

"$python" - "$work" "$fake" "$(free_port)" "$models" "$agent" <<'PY'
import json, os, subprocess, sys, threading, time, urllib.request

work, fake, admin, models, agent = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
config = work + "/config"

def publish(names, generation):
    stamp = "..2026_11_23_00_00_00.%d" % generation
    os.mkdir(os.path.join(config, stamp))
    entries = [{"modelName": n, "modelSpec": {"storageUri": work + "/artifact", "framework": "sklearn",
                                              "memory": "1Mi"}} for n in names]
    with open(os.path.join(config, stamp, "models.json"), "w") as f:
        json.dump(entries, f)
    os.symlink(stamp, os.path.join(config, "..data_tmp"))
    os.rename(os.path.join(config, "..data_tmp"), os.path.join(config, "..data"))
    if not os.path.lexists(os.path.join(config, "models.json")):
        os.symlink("..data/models.json", os.path.join(config, "models.json"))

def states():
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/v1/models" % admin, timeout=30) as r:
            return json.load(r)
    except OSError:
        return None

def status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else ""
    return int(fields["VmRSS"]), int(fields["VmHWM"]), int(fields["Threads"])

publish(["m%05d" % i for i in range(models)], 1)
log = open(work + "/agent.log", "w")
started = time.time()
proc = subprocess.Popen([agent, "--config-dir", config, "--model-dir", work + "/models", "--server-url", fake,
                         "--port", "0", "--admin-port", admin, "--bind-address", "127.0.0.1",
                         "--drain-timeout", "0", "--log-level", "warning",
                         "--local-source-root", work + "/artifact"], stdout=log, stderr=log)
peak = {"rss": 0, "threads": 0}
sampling = True
def sample():
    while sampling:
        try:
            rss, _, threads = status(proc.pid)
        except (OSError, KeyError):
            return
        peak["rss"] = max(peak["rss"], rss)
        peak["threads"] = max(peak["threads"], threads)
        time.sleep(0.05)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()

def wait(what, done, limit=600):
    deadline = time.time() + limit
    while time.time() < deadline:
        listed = states()
        if listed is not None and done(listed):
            return time.time()
        time.sleep(0.05)
    sys.exit("bench: %s never happened; agent log tail: %s" % (what, open(work + "/agent.log").read()[-2000:]))

try:
    listed_at = wait("all listed", lambda s: len(s) == models)
    loaded_at = wait("all loaded", lambda s: len(s) == models and all(m["state"] == "Loaded" for m in s))
    _, hwm, _ = status(proc.pid)
    publish([], 2)
    wait("all removed", lambda s: len(s) == 0)
    time.sleep(2)
    after, _, _ = status(proc.pid)
    sampling = False
    sampler.join()
    print("| figure | %d models | goal |" % models)
    print("|---|---|---|")
    print("| start → all listed in /v1/models | %.2f s | ≤ 1 s |" % (listed_at - started))
    print("| start → all loaded | %.2f s | ≤ 7 s |" % (loaded_at - started))
    print("| peak RSS (VmHWM) | %.1f MiB | ≤ 64 MiB |" % (hwm / 1024))
    print("| peak threads (sampled every 50 ms) | %d | ≤ 64 |" % peak["threads"])
    print("| RSS 2 s after all were removed | %.1f MiB | ≤ idle + 8 MiB |" % (after / 1024))
finally:
    sampling = False
    proc.terminate()
    proc.wait(timeout=60)
PY
