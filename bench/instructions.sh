#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: a noise-free A/B figure
# for changes to pvegate's request path on a shared, noisy machine (requests/s and CPU time
# move by ±30% between runs there; instruction counts by well under 1%).
#
#   bench/instructions.sh [BINARY...]   # default: the release build of this checkout
#
# For each binary: an upstream nginx (the same small JSON status body as bench/run.sh) on
# 127.0.0.1:29080, pvegate under valgrind --tool=callgrind with one worker on :29001 (policy:
# policies/homelab.toml, JSON audit log on), 64 wrk connections polling
# GET /api2/json/nodes/pve/qemu/104/status/current for 6 s, then callgrind's total over the
# requests answered. Kernel time (the TCP work) is not in the count: see BENCHMARKS.md.
# Needs valgrind, nginx and wrk (installed from Debian when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in valgrind:valgrind nginx:nginx wrk:wrk callgrind_annotate:valgrind; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if (($# == 0)); then
    cargo build --release --quiet --bin pvegate
    set -- "${CARGO_TARGET_DIR:-target}/release/pvegate"
fi

work=$(mktemp -d /tmp/pvegate-instructions.XXXXXX)
cleanup() {
    [[ -f $work/up.pid ]] && kill "$(cat "$work/up.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/tmp"
body='{"data":{"status":"running","vmid":104,"name":"doc1","qmpstatus":"running","uptime":1234567,"cpus":4,"cpu":0.0123,"maxmem":8589934592,"mem":2147483648}}'
cat >"$work/up.conf" <<EOF
daemon on;
worker_processes 1;
pid $work/up.pid;
error_log $work/up-error.log warn;
events { worker_connections 1024; }
http {
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  access_log off; keepalive_requests 1000000000; default_type application/json;
  server { listen 127.0.0.1:29080; location / { return 200 '$body'; } }
}
EOF
cat >"$work/pvegate.toml" <<EOF
[listen]
address = "127.0.0.1:29001"
[upstream]
url = "http://127.0.0.1:29080"
[policy]
files = ["$PWD/policies/homelab.toml"]
[log]
format = "json"
level = "info"
EOF
nginx -c "$work/up.conf"

for bin in "$@"; do
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        "$bin" serve --config "$work/pvegate.toml" 2>"$work/pvegate.log" &
    pid=$!
    for _ in $(seq 100); do
        grep -q "pvegate listening" "$work/pvegate.log" 2>/dev/null && break
        sleep 0.2
    done
    # Start counting now: startup (config, policy, catalogue) is not part of a request.
    callgrind_control -z "$pid" >/dev/null 2>&1 || true
    wrk -t1 -c64 -d6s -H "Authorization: PVEAPIToken=bench@pve!load=00000000-0000-0000-0000-000000000000" \
        http://127.0.0.1:29001/api2/json/nodes/pve/qemu/104/status/current >"$work/wrk.out"
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    total=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$bin: $requests requests, $((total / requests)) instructions per request (user space)"
done
