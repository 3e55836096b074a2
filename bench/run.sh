#!/usr/bin/env bash
# pvegate benchmark suite: one entry point.
#
#   bench/run.sh                 # full run: 5 rounds x 10 s per workload and target, then memory
#   bench/run.sh --quick         # smoke run: 1 round x 3 s, smaller memory tests
#   bench/run.sh --no-pin        # no CPU pinning: every process floats, proxies get 2 workers
#   bench/run.sh --proxy-bound   # pinned, and each proxy capped to 50% of CPU 0 by a CFS quota
#                                # (cgroup v1 or v2, needs root), so the proxy is the bottleneck
#                                # and not wrk + upstream on CPU 1; memory tests are unchanged
#   bench/run.sh --proxy-bound --proxy-cpu 0.3   # another quota (share of one CPU, 0.1 to 1)
#   bench/run.sh --only rps|mem  # just the throughput or just the memory part
#   bench/run.sh --rounds 3 --duration 5
#
# Installs nginx, haproxy and wrk from Debian when missing (needs root), builds the release
# binary into $CARGO_TARGET_DIR (default: target/), writes everything under
# bench/results/<timestamp>/ (git-ignored) and prints markdown tables. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in nginx:nginx haproxy:haproxy wrk:wrk openssl:openssl taskset:util-linux; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --quiet --bin pvegate
target_dir="${CARGO_TARGET_DIR:-target}"
export PVEGATE_BIN="$(cd "$target_dir/release" && pwd)/pvegate"

exec python3 bench/bench.py "$@"
