#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: a noise-free A/B figure
# for changes to pvegate's request path on a shared, noisy machine (requests/s and CPU time
# move by ±30% between runs there; instruction counts by well under 1%).
#
#   bench/instructions.sh [--tls] [--nginx] [--seconds N] [--warmup N] [BINARY...]
#       BINARY   pvegate binaries to count (default: the release build of this checkout)
#       --nginx  also count nginx proxying the same request the same way (one process, the
#                proxy configuration of bench/bench.py: regex location for the readonly guests,
#                keep-alive upstream, X-Forwarded-For, JSON access log to a file)
#       --tls    TLS from wrk to the proxy and from the proxy to the upstream (ECDSA P-256,
#                TLS 1.3, pvegate pins the upstream by fingerprint), keep-alive on both sides
#       --seconds N   load time counted per binary (default 6)
#       --warmup N    load time before counting starts (default 1, with --tls 5: 64 TLS
#                     handshakes under callgrind take seconds, and they are not requests)
#       --keep DIR    keep each callgrind profile as DIR/<n>.callgrind (callgrind_annotate)
#
# For each proxy: an upstream nginx (the same small JSON status body as bench/run.sh) on
# 127.0.0.1:29080 (TLS :29443), the proxy under valgrind --tool=callgrind with one worker on
# :29001 (pvegate: policy policies/homelab.toml, JSON audit log on stderr to a file), 64 wrk
# connections polling GET /api2/json/nodes/pve/qemu/104/status/current, then callgrind's total
# over the requests answered. Startup and the connections' handshakes are not counted
# (counters zeroed --warmup seconds into the load; requests counted by the upstream's access
# log over the same window). Kernel time (the TCP work) is not in the count: see BENCHMARKS.md.
# Needs valgrind, nginx, wrk and openssl (installed from Debian when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

tls=0
with_nginx=0
seconds=6
warmup=""
keep=""
bins=()
while (($#)); do
    case $1 in
    --tls) tls=1 ;;
    --nginx) with_nginx=1 ;;
    --seconds) seconds=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --keep) keep=$2; mkdir -p "$keep"; shift ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) bins+=("$1") ;;
    esac
    shift
done

[[ -n $warmup ]] || warmup=$((tls ? 5 : 1))
need=()
for tool in valgrind:valgrind nginx:nginx wrk:wrk callgrind_annotate:valgrind openssl:openssl; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ((${#bins[@]} == 0)); then
    cargo build --release --quiet --bin pvegate
    bins=("${CARGO_TARGET_DIR:-target}/release/pvegate")
fi

work=$(mktemp -d /tmp/pvegate-instructions.XXXXXX)
cleanup() {
    [[ -f $work/up.pid ]] && kill "$(cat "$work/up.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/tmp"
for name in upstream proxy; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$work/$name.key" -out "$work/$name.pem" 2>/dev/null
done
fingerprint=$(openssl x509 -in "$work/upstream.pem" -noout -fingerprint -sha256 | cut -d= -f2)
temp_paths="client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;"
body='{"data":{"status":"running","vmid":104,"name":"doc1","qmpstatus":"running","uptime":1234567,"cpus":4,"cpu":0.0123,"maxmem":8589934592,"mem":2147483648}}'
cat >"$work/up.conf" <<EOF
daemon on;
worker_processes 1;
pid $work/up.pid;
error_log $work/up-error.log warn;
events { worker_connections 1024; }
http {
  $temp_paths
  log_format line '\$request_time'; access_log $work/up-access.log line;
  keepalive_requests 1000000000; default_type application/json;
  server {
    listen 127.0.0.1:29080;
    listen 127.0.0.1:29443 ssl;
    ssl_certificate $work/upstream.pem; ssl_certificate_key $work/upstream.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 '$body'; }
  }
}
EOF
if ((tls)); then
    scheme=https
    listen_tls="tls_cert = \"$work/proxy.pem\"
tls_key = \"$work/proxy.key\""
    upstream="url = \"https://127.0.0.1:29443\"
fingerprint = \"$fingerprint\""
    nginx_listen="listen 127.0.0.1:29001 ssl; ssl_certificate $work/proxy.pem; ssl_certificate_key $work/proxy.key; ssl_protocols TLSv1.2 TLSv1.3;"
    nginx_upstream="https://up"
    nginx_up_port=29443
else
    scheme=http
    listen_tls=""
    upstream="url = \"http://127.0.0.1:29080\""
    nginx_listen="listen 127.0.0.1:29001;"
    nginx_upstream="http://up"
    nginx_up_port=29080
fi
cat >"$work/pvegate.toml" <<EOF
[listen]
address = "127.0.0.1:29001"
$listen_tls
[upstream]
$upstream
[policy]
files = ["$PWD/policies/homelab.toml"]
[log]
format = "json"
level = "info"
EOF
# nginx as bench/bench.py configures it, in one process so that callgrind sees all of it.
cat >"$work/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  $temp_paths
  log_format audit escape=json '{"time":"\$time_iso8601","client":"\$remote_addr:\$remote_port",'
      '"method":"\$request_method","path":"\$uri","status":"\$status",'
      '"upstream_status":"\$upstream_status","decision":"\$status"}';
  access_log $work/nginx-access.log audit;
  keepalive_timeout 300s; keepalive_requests 1000000000; client_max_body_size 0;
  proxy_request_buffering off; proxy_http_version 1.1;
  proxy_set_header Connection ""; proxy_set_header X-Forwarded-For \$remote_addr;
  proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.2 TLSv1.3;
  upstream up { server 127.0.0.1:$nginx_up_port; keepalive 256;
    keepalive_requests 1000000000; keepalive_timeout 300s; }
  server {
    $nginx_listen
    location ~ ^/api2/[a-z]+/nodes/[^/]+/(qemu|lxc)/(104|109)(/|\$) {
      limit_except GET { deny all; }
      proxy_pass $nginx_upstream;
    }
    location / { proxy_pass $nginx_upstream; }
  }
}
EOF
nginx -c "$work/up.conf"

# Runs "$@" under callgrind, loads it, prints its instructions per request.
count() {
    local label=$1
    shift
    rm -f "$work/cg.out" "$work/proxy.log"
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        "$@" 2>"$work/proxy.log" &
    local pid=$!
    for _ in $(seq 300); do
        curl -sk -o /dev/null "$scheme://127.0.0.1:29001/api2/json/version" 2>/dev/null && break
        sleep 0.2
    done
    # Count from $warmup seconds into the load: startup (config, policy, catalogue, TLS setup)
    # and the 64 connections' handshakes are not requests. The requests counted are those the
    # upstream logged in the same window (one upstream request per proxied request).
    wrk -t1 -c64 -d"$((seconds + warmup))s" -H "Authorization: PVEAPIToken=bench@pve!load=00000000-0000-0000-0000-000000000000" \
        "$scheme://127.0.0.1:29001/api2/json/nodes/pve/qemu/104/status/current" >"$work/wrk.out" &
    local wrk_pid=$!
    sleep "$warmup"
    callgrind_control -z "$pid" >/dev/null 2>&1 || true
    local before
    before=$(wc -l <"$work/up-access.log")
    wait "$wrk_pid"
    local requests total
    requests=$(($(wc -l <"$work/up-access.log") - before))
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    total=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    if grep -q "Non-2xx" "$work/wrk.out"; then
        echo "$label: non-2xx answers, not counted:" >&2
        cat "$work/wrk.out" >&2
        return
    fi
    echo "$label ($scheme): $requests requests, $((total / requests)) instructions per request (user space)"
    if [[ -n $keep ]]; then
        kept=$((kept + 1))
        cp "$work/cg.out" "$keep/$kept.callgrind"
        echo "  profile: $keep/$kept.callgrind"
    fi
}
kept=0

for bin in "${bins[@]}"; do
    count "$bin" "$bin" serve --config "$work/pvegate.toml"
done
if ((with_nginx)); then
    count "nginx $(nginx -v 2>&1 | sed 's/.*\///')" nginx -c "$work/nginx.conf"
fi
