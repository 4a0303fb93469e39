#!/usr/bin/env bash
# The proxied port's cost: requests sent straight to a server (the floor), through Go's
# httputil.ReverseProxy (what KServe's agent is built on; bench/proxy/goproxy.go), through
# nginx (proxy_pass with upstream keep-alive; grpc_pass for h2c) and through model-agent.
# Upstreams: a static responder (nginx `return 200`, to isolate the proxy's cost) and a real
# MLServer 1.7.1 V2 infer endpoint (sklearn iris). Load: wrk with keep-alive at 1, 16 and 64
# connections, a small V2 infer POST; h2load for h2c (prior knowledge, one stream per
# connection at a time). Every tool runs once per case unmeasured, then RUNS rounds in which
# each tool runs once (interleaved). Medians; the peak RSS of every proxy is read at the end.
#   RUNS=3 SECONDS_PER_RUN=5 bench/proxy.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
seconds="${SECONDS_PER_RUN:-5}"
for tool in wrk nginx go h2load; do
    command -v "$tool" >/dev/null || apt-get install -y wrk nginx-light golang-go nghttp2-client >/dev/null
done
# shellcheck source=bench/process_lib.sh
source "$root/bench/process_lib.sh"
"$root/scripts/setup-env" >/dev/null
build_agent
scratch
(cd "$work" && GO111MODULE=off go build -o goproxy "$root/bench/proxy/goproxy.go")

wait_port() {
    for _ in $(seq 300); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on $1 ($2); the logs:" >&2
    tail -n 5 "$work"/*.log "$work"/*/error.log >&2 || true
    exit 1
}
start() { # start NAME COMMAND…: runs it in the background, output in $work/NAME.log
    local name="$1"
    shift
    "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    eval "pid_$name=$!"
}

body='{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]}]}'
printf '%s' "$body" >"$work/body.json"
answer='{"model_name":"iris","outputs":[{"name":"predict","shape":[1,1],"datatype":"INT64","data":[0]}]}'

# Upstreams: static nginx (HTTP/1.1 and h2c listeners, one worker) and MLServer.
static1=$(free_port) static2=$(free_port) ml=$(free_port) mlgrpc=$(free_port)
mkdir -p "$work/static" "$work/nginx-proxy"
cat >"$work/static/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/static/nginx.pid;
error_log $work/static/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/static/body;
    server {
        listen 127.0.0.1:$static1;
        listen 127.0.0.1:$static2 http2;
        keepalive_requests 1000000;
        location / { default_type application/json; return 200 '$answer'; }
    }
}
CONF
start static nginx -p "$work/static" -c "$work/static/nginx.conf"
mkdir -p "$work/repo/iris" "$work/empty-config"
echo '[]' >"$work/empty-config/models.json"
"$root/.venvs/mlserver/bin/python" "$root/examples/make_iris.py" "$work/repo/iris" >/dev/null
echo '{"implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}' \
    >"$work/repo/iris/model-settings.json"
cat >"$work/repo/settings.json" <<CONF
{"debug": false, "load_models_at_startup": true, "host": "127.0.0.1", "http_port": $ml, "grpc_port": $mlgrpc,
 "metrics_port": 0, "parallel_workers": 0}
CONF
start mlserver "$root/.venvs/mlserver/bin/mlserver" start "$work/repo"

# Proxies: one per upstream for Go and model-agent (each has one target), one nginx.
go_static=$(free_port) go_ml=$(free_port)
nginx_static=$(free_port) nginx_ml=$(free_port) nginx_h2=$(free_port)
agent_static=$(free_port) agent_ml=$(free_port)
# The proxies' binaries are read from disk, as in a pod that has just started (files that
# running processes map stay cached: the libraries, and nginx's binary, which the upstream
# runs too).
cold_page_cache
start go_static "$work/goproxy" -listen "127.0.0.1:$go_static" -target "http://127.0.0.1:$static1"
start go_ml "$work/goproxy" -listen "127.0.0.1:$go_ml" -target "http://127.0.0.1:$ml"
cat >"$work/nginx-proxy/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx-proxy/nginx.pid;
error_log $work/nginx-proxy/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx-proxy/body;
    proxy_temp_path $work/nginx-proxy/proxy;
    upstream static1 { server 127.0.0.1:$static1; keepalive 128; }
    upstream static2 { server 127.0.0.1:$static2; keepalive 128; }
    upstream ml { server 127.0.0.1:$ml; keepalive 128; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$nginx_static; location / { proxy_pass http://static1; } }
    server { listen 127.0.0.1:$nginx_ml; location / { proxy_pass http://ml; } }
    server { listen 127.0.0.1:$nginx_h2 http2; location / { grpc_pass grpc://static2; } }
}
CONF
start nginx_proxy nginx -p "$work/nginx-proxy" -c "$work/nginx-proxy/nginx.conf"
agent_args=(--config-dir "$work/empty-config" --admin-port 0 --bind-address 127.0.0.1 --drain-timeout 0
    --log-level warning)
start agent_static "$agent" "${agent_args[@]}" --model-dir "$work/models-static" --port "$agent_static" \
    --server-url "http://127.0.0.1:$static1" --h2c-server-url "http://127.0.0.1:$static2"
start agent_ml "$agent" "${agent_args[@]}" --model-dir "$work/models-ml" --port "$agent_ml" \
    --server-url "http://127.0.0.1:$ml"
for port in $static1 $static2 $go_static $go_ml $nginx_static $nginx_ml $nginx_h2 $agent_static $agent_ml; do
    wait_port "$port" "a proxy or the static server"
done
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$ml/v2/models/iris/ready" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$ml/v2/models/iris/ready" >/dev/null || { echo "bench: MLServer not ready" >&2; exit 1; }

# url CASE TOOL
url() {
    local path=/v2/models/iris/infer
    case "$1,$2" in
    static,direct) echo "http://127.0.0.1:$static1$path" ;;
    static,go) echo "http://127.0.0.1:$go_static$path" ;;
    static,nginx) echo "http://127.0.0.1:$nginx_static$path" ;;
    static,model-agent) echo "http://127.0.0.1:$agent_static$path" ;;
    mlserver,direct) echo "http://127.0.0.1:$ml$path" ;;
    mlserver,go) echo "http://127.0.0.1:$go_ml$path" ;;
    mlserver,nginx) echo "http://127.0.0.1:$nginx_ml$path" ;;
    mlserver,model-agent) echo "http://127.0.0.1:$agent_ml$path" ;;
    h2c,direct) echo "http://127.0.0.1:$static2$path" ;;
    h2c,nginx) echo "http://127.0.0.1:$nginx_h2$path" ;;
    h2c,model-agent) echo "http://127.0.0.1:$agent_static$path" ;;
    esac
}

# load CASE TOOL CONNECTIONS SECONDS: prints "rps p50_us p99_us"; fails on any error.
load() {
    local target line
    target=$(url "$1" "$2")
    if [ "$1" = h2c ]; then
        rm -f "$work/h2.log"
        h2load -c "$3" -m 1 -D "$4" -d "$work/body.json" -H 'content-type: application/json' \
            --log-file "$work/h2.log" "$target" >"$work/h2load.out" 2>&1
        python3 - "$work/h2.log" "$4" "$2" "$3" <<'PY'
import collections, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
bad = collections.Counter(r[1] for r in rows if r[1] != "200")
if not rows or (bad and sys.argv[3] == "model-agent"):
    sys.exit("h2load: %s with %s connections: %d requests, failed by status: %s" % (sys.argv[3], sys.argv[4], len(rows), dict(bad)))
if bad:  # a peer's failures are reported, not fatal
    print("bench: %s with %s connections (h2c): %d of %d requests failed: %s" % (sys.argv[3], sys.argv[4], sum(bad.values()), len(rows), dict(bad)), file=sys.stderr)
durations = sorted(int(r[2]) for r in rows)
pick = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]
print("%.1f %d %d" % (len(rows) / float(sys.argv[2]), pick(0.50), pick(0.99)))
PY
    else
        line=$(wrk -t 1 -c "$3" -d "${4}s" -s "$root/bench/proxy/post.lua" "$target" | grep '^RESULT')
        case "$line" in
        *" errors=0") ;;
        *) echo "bench: $2 ($1, $3 connections) had errors: $line" >&2; [ "$2" != model-agent ] || exit 1 ;;
        esac
        echo "$line" | sed -E 's/RESULT rps=([0-9.]+) p50_us=([0-9]+) p99_us=([0-9]+).*/\1 \2 \3/'
    fi
}

declare -A rps p50 p99
cases=(static mlserver h2c)
for case in "${cases[@]}"; do
    if [ "$case" = h2c ]; then tools=(direct nginx model-agent); else tools=(direct go nginx model-agent); fi
    for connections in 1 16 64; do
        for tool in "${tools[@]}"; do load "$case" "$tool" "$connections" 1 >/dev/null; done
        for _ in $(seq "$runs"); do
            for tool in "${tools[@]}"; do
                read -r r a b < <(load "$case" "$tool" "$connections" "$seconds")
                rps[$case,$connections,$tool]+="$r "
                p50[$case,$connections,$tool]+="$a "
                p99[$case,$connections,$tool]+="$b "
            done
        done
    done
done

median() { python3 -c 'import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))' $1; }
fmt() { python3 -c "print(f'{$1:$2}')"; }
echo
echo "| upstream | conns | tool | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | agent req/s ÷ tool |"
echo "|---|---|---|---|---|---|---|---|---|"
for case in "${cases[@]}"; do
    if [ "$case" = h2c ]; then tools=(direct nginx model-agent); else tools=(direct go nginx model-agent); fi
    for connections in 1 16 64; do
        d50=$(median "${p50[$case,$connections,direct]}")
        d99=$(median "${p99[$case,$connections,direct]}")
        ours=$(median "${rps[$case,$connections,model-agent]}")
        for tool in "${tools[@]}"; do
            r=$(median "${rps[$case,$connections,$tool]}")
            a=$(median "${p50[$case,$connections,$tool]}")
            b=$(median "${p99[$case,$connections,$tool]}")
            added="— | —"
            [ "$tool" != direct ] && added="$(fmt "($a - $d50) / 1000" .3f) | $(fmt "($b - $d99) / 1000" .3f)"
            echo "| $case | $connections | $tool | $(fmt "$r" .0f) | $(fmt "$a / 1000" .3f) | $(fmt "$b / 1000" .3f) | $added | $(fmt "$ours / $r" .2f) |"
        done
    done
done
echo
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
nginx_kb=0
for pid in $(pgrep -P "$pid_nginx_proxy" || true) $pid_nginx_proxy; do
    kb=$(hwm "$pid" 2>/dev/null || echo 0)
    nginx_kb=$((nginx_kb + kb))
done
echo "Peak RSS (VmHWM) of each proxy process after the run, MiB: model-agent $(fmt "$(hwm "$pid_agent_static") / 1024" .1f) (static + h2c)" \
    "and $(fmt "$(hwm "$pid_agent_ml") / 1024" .1f) (MLServer); Go $(fmt "$(hwm "$pid_go_static") / 1024" .1f) and" \
    "$(fmt "$(hwm "$pid_go_ml") / 1024" .1f); nginx master + workers $(fmt "$nginx_kb / 1024" .1f) (all three cases)."
# RSS is mostly mapped code (a fault maps the code around it too, in 64 KiB steps or whole
# page-cache folios, of the binary and its libraries); anonymous memory is what each
# process allocated itself.
anon() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
echo "Anonymous RSS now, MiB: model-agent $(fmt "$(anon "$pid_agent_static") / 1024" .1f) (static + h2c) and" \
    "$(fmt "$(anon "$pid_agent_ml") / 1024" .1f) (MLServer); Go $(fmt "$(anon "$pid_go_static") / 1024" .1f) and" \
    "$(fmt "$(anon "$pid_go_ml") / 1024" .1f)."
echo "wrk $(wrk -v 2>&1 | head -n 1 | awk '{print $2}'), h2load $(h2load --version | awk '{print $NF}'), nginx $(nginx -v 2>&1 | awk -F/ '{print $2}'),"
echo "$(go version | awk '{print $3}'), $(nproc) cores, $(uname -r); RUNS=$runs, ${seconds} s per run;" \
    "page cache $page_cache when the proxies started."
