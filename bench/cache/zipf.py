"""Request generator and analysis for bench/cache.sh.

Phase 1 (hit overhead): one loaded model, requests straight to MLServer and through the
agent's proxied port, interleaved in rounds, one keep-alive connection each.
Phase 2 (Zipf): CLIENTS threads send V2 infer requests for DURATION seconds, each picking a
model with Zipf(S) popularity over the models (rank 1 = first in models.json). A monitor
polls MLServer's repository index and records the most models it ever held at once.
Hits and cold loads are told apart with the agent's own log: each "Cold load of model X
done" line gives the window (first waiting request to release) of one cold load; a request
for X that started inside that window waited for it. Prints a JSON summary.
"""

import http.client
import json
import random
import statistics
import sys
import threading
import time

BODY = json.dumps({"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32",
                               "data": [[5.1, 3.5, 1.4, 0.2]]}]}).encode()


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def infer(self, model):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            try:
                start = time.perf_counter()
                self.conn.request("POST", "/v2/models/%s/infer" % model, BODY,
                                  {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - start
                if response.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status, elapsed
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


def quantile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value):
    return None if value is None else round(value * 1000, 3)


def hit_overhead(direct_port, agent_port, model, rounds, per_round):
    direct, agent = Client(direct_port), Client(agent_port)
    times = {"direct": [], "agent": []}
    for _ in range(3 * per_round):  # warm both paths
        direct.infer(model)
        agent.infer(model)
    for _ in range(rounds):
        for name, client in (("direct", direct), ("agent", agent)):
            for _ in range(per_round):
                status, elapsed = client.infer(model)
                if status != 200:
                    sys.exit("hit phase: %s answered %d" % (name, status))
                times[name].append(elapsed)
    return {name: {"p50_ms": ms(quantile(v, 0.5)), "p99_ms": ms(quantile(v, 0.99)), "n": len(v)}
            for name, v in times.items()}


def zipf_run(agent_port, ml_port, models, sizes, clients, duration, s, seed):
    weights = [1.0 / (rank ** s) for rank in range(1, len(models) + 1)]
    records, lock = [], threading.Lock()
    held = {"max_models": 0, "max_bytes": 0, "polls": 0}
    stop = time.monotonic() + duration
    done = threading.Event()

    def worker(index):
        rng = random.Random(seed + index)
        client = Client(agent_port)
        while time.monotonic() < stop:
            model = rng.choices(models, weights)[0]
            started = time.time()
            try:
                status, elapsed = client.infer(model)
            except Exception as error:  # a failed request is a result, not a crash
                status, elapsed = "error: %s" % error, time.time() - started
            with lock:
                records.append((started, model, status, elapsed))

    def monitor():
        conn = http.client.HTTPConnection("127.0.0.1", ml_port, timeout=30)
        while not done.is_set():
            conn.request("POST", "/v2/repository/index", b"{}", {"Content-Type": "application/json"})
            index = json.loads(conn.getresponse().read())
            ready = [m["name"] for m in index if m.get("state") == "READY"]
            held["polls"] += 1
            held["max_models"] = max(held["max_models"], len(ready))
            held["max_bytes"] = max(held["max_bytes"], sum(sizes.get(m, 0) for m in ready))
            done.wait(0.05)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    watcher = threading.Thread(target=monitor)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    return records, held


def cold_loads(log_path):
    """(model, release wall time, wait, load call, unload call of its victim) per cold load,
    in seconds (the unload is 0 when the load needed no eviction)."""
    loads, unloads, evicted_for, result = {}, {}, {}, []
    for line in open(log_path):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        msg, model = entry.get("msg", ""), entry.get("model")
        if msg.startswith("Successfully loaded model"):
            loads[model] = int(entry.get("duration_ms", 0)) / 1000
        elif msg.startswith("Evicting model"):
            evicted_for.setdefault(entry.get("for"), []).append(model)
        elif msg.startswith("Successfully unloaded model"):
            unloads[model] = int(entry.get("duration_ms", 0)) / 1000
        elif msg.startswith("Cold load of model"):
            victims = evicted_for.pop(model, [])
            unload = sum(unloads.get(v, 0) for v in victims)
            result.append((model, entry["ts"], int(entry["duration_ms"]) / 1000, loads.get(model), unload))
    return result


def counters(admin_port):
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
    conn.request("GET", "/v1/models")
    models = json.loads(conn.getresponse().read())
    return {key: sum(m.get(key, 0) for m in models) for key in ("hits", "misses", "evictions", "coldLoads")}


def main():
    args = dict(a.split("=", 1) for a in sys.argv[1:])
    models = args["models"].split(",")
    size = int(args["size"])
    sizes = {m: size for m in models}
    overhead = hit_overhead(int(args["ml"]), int(args["agent"]), args["hot"], int(args["rounds"]), 200)
    before = counters(int(args["admin"]))
    records, held = zipf_run(int(args["agent"]), int(args["ml"]), models, sizes, int(args["clients"]),
                             float(args["duration"]), float(args["s"]), int(args["seed"]))
    after = counters(int(args["admin"]))
    agent = {key: after[key] - before[key] for key in after}
    start = min(r[0] for r in records)
    colds = [c for c in cold_loads(args["log"]) if c[1] >= start]
    cold_requests, hit_requests = [], []
    for started, model, status, elapsed in records:
        waited = any(m == model and release - wait - 0.002 <= started <= release for m, release, wait, _, _ in colds)
        (cold_requests if waited else hit_requests).append(elapsed)
    failures = [r for r in records if r[2] != 200]
    overheads = [wait - call - unload for _, _, wait, call, unload in colds if call is not None]
    summary = {
        "requests": len(records),
        "failures": len(failures),
        "failure_examples": [str(r[2]) for r in failures[:5]],
        "hit_rate": round(len(hit_requests) / len(records), 4),
        "hit_p50_ms": ms(quantile(hit_requests, 0.5)), "hit_p99_ms": ms(quantile(hit_requests, 0.99)),
        "cold_requests": len(cold_requests),
        "cold_p50_ms": ms(quantile(cold_requests, 0.5)), "cold_p99_ms": ms(quantile(cold_requests, 0.99)),
        "cold_loads": len(colds),
        "cold_wait_p50_ms": ms(quantile([c[2] for c in colds], 0.5)),
        "load_call_p50_ms": ms(quantile([c[3] for c in colds if c[3] is not None], 0.5)),
        "unload_call_p50_ms": ms(quantile([c[4] for c in colds], 0.5)),
        "agent_counters": agent,
        "cold_overhead_p50_ms": ms(quantile(overheads, 0.5)),
        "cold_overhead_p99_ms": ms(quantile(overheads, 0.99)),
        "max_models_held": held["max_models"], "max_bytes_held": held["max_bytes"], "index_polls": held["polls"],
        "hit_overhead": overhead,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
