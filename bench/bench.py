#!/usr/bin/env python3
"""pvegate benchmark: throughput/latency against the upstream directly, nginx and HAProxy.

Run through bench/run.sh (installs the tools and builds the binary first). Everything is on
loopback. The upstream is a separate nginx returning a small Proxmox-shaped JSON body with
keep-alive, so it is never the bottleneck of a proxy run (see the per-core CPU columns).

CPU placement (default, "pinned"): the proxy under test runs alone on CPU 0 with one worker
(pvegate: TOKIO_WORKER_THREADS=1; nginx: worker_processes 1; HAProxy: nbthread 1); wrk (one
thread) and the upstream nginx (one worker) share CPU 1. With --no-pin nothing is pinned and
every proxy gets as many workers as there are CPUs (what pvegate's runtime uses by default).

With --proxy-bound ("proxy-bound") the placement is the pinned one, and in addition each proxy
process (pvegate plain, pvegate TLS, nginx, HAProxy) runs in its own cgroup with a CFS quota of
--proxy-cpu (default 0.5) of CPU 0, with a 10 ms period: cgroup v1 cpu.cfs_period_us /
cpu.cfs_quota_us under /sys/fs/cgroup/cpu/, or cgroup v2 cpu.max when
/sys/fs/cgroup/cgroup.controllers exists. Needs root and a writable cgroupfs. In the pinned
mode a fast proxy can outrun wrk + upstream on CPU 1, which caps the requests/s ratio between
proxies near 1.0; with the quota the proxy is the bottleneck and CPU 1 keeps headroom, so
requests/s is about quota / CPU µs per request. Each proxy is started through a shell that
writes its own pid into the group's cgroup.procs and then execs the proxy, so every process
and thread it creates is born inside the group (checked after each run). The groups are
removed at the end, also on errors, Ctrl-C and SIGTERM. The memory tests never use them.

Each proxy writes one log line per request to its own file under the results directory
(pvegate: the JSON audit log on stderr; nginx: a JSON access_log; HAProxy: `log stdout` with
a JSON log-format). The lines are counted and the files truncated after each run.

Stdlib only. Results: bench/results/<stamp>/{results.json,report.md}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
AUTH = "PVEAPIToken=bench@pve!load=00000000-0000-0000-0000-000000000000"
POLL = "/api2/json/nodes/pve/qemu/104/status/current"
STATUS_BODY = (
    '{"data":{"status":"running","vmid":104,"name":"doc1","qmpstatus":"running",'
    '"uptime":1234567,"cpus":4,"cpu":0.0123,"maxmem":8589934592,"mem":2147483648,'
    '"maxdisk":34359738368,"disk":0,"netin":123456789,"netout":98765432,'
    '"diskread":5368709120,"diskwrite":1073741824,"pid":4242,"ha":{"managed":0},'
    '"running-machine":"pc-i440fx-9.0+pve0","running-qemu":"9.0.2"}}'
)
READONLY_RE = r"^/api2/[a-z]+/nodes/[^/]+/(qemu|lxc)/(104|109)(/|$)"

PORTS = {
    "upstream": (19080, 19443),
    "pvegate": (19001, 19002),
    "nginx": (19101, 19102),
    "haproxy": (19201, 19202),
    "pvegate-b": (19301, 19302),
}
# "pvegate-b" (only with --targets, and PVEGATE_BIN_B naming a second pvegate binary): another
# build of pvegate in the same rounds, for before/after comparisons on a noisy machine.
TARGETS = ["direct", "pvegate", "nginx", "haproxy"]
ALL_TARGETS = TARGETS + ["pvegate-b"]
# name -> (tls, connections, lua script, or "tlsconn"/"tlsconn-full": bench/tlsconn, a new TLS
# connection per request with `Connection: close`, resuming sessions or only full handshakes,
# or "rate:R": bench/tlsconn's open loop, R requests/s in all over keep-alive connections, so
# every target gets the same load and p99 compares latency at equal load)
WORKLOADS = {
    "plain-c1": (False, 1, "report.lua"),
    "plain-c64": (False, 64, "report.lua"),
    "tls-c1": (True, 1, "report.lua"),
    "tls-c64": (True, 64, "report.lua"),
    "mixed-c64": (False, 64, "mixed.lua"),
    "tlsnew-c16": (True, 16, "tlsconn"),
    "tlsfull-c16": (True, 16, "tlsconn-full"),
    "plain-r20k": (False, 64, "rate:20000"),
    "tls-r15k": (True, 64, "rate:15000"),
}
TLSCONN = BENCH / "tlsconn" / "target" / "release" / "tlsconn"
MIXED_REFUSED_SHARE = 0.10
OTHER_BUSY_MAX = 20  # % of one CPU used by neither proxy, upstream nor wrk (noise: ~±10)


# ------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------


class Procs:
    """Processes this script started; stopped by their own process-group id at exit."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, name, argv, out: Path, env=None, cpus=None,
              group: CpuGroup | None = None) -> subprocess.Popen:
        if group is not None:
            argv = group.wrap(argv)
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + argv
        f = open(out, "ab")
        p = subprocess.Popen(
            argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        f.close()
        p.bench_name = name  # type: ignore[attr-defined]
        self.started.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.started:
            self.started.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.started)):
            self.stop(p)


class CpuGroup:
    """A cgroup with a CFS quota (cgroup v1 cpu controller or cgroup v2 cpu.max).

    A process joins it through wrap(): a shell writes its own pid into cgroup.procs and then
    execs the program, so the program and every process and thread it creates later (nginx
    workers, pvegate's runtime threads) are born inside the group.
    """

    PERIOD_US = 10_000  # short period: a throttled proxy waits at most a few ms
    PREFIX = "pvegate-bench-"
    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, name: str, share: float) -> None:
        self.quota_us = round(share * self.PERIOD_US)
        self.v2 = (self.V2 / "cgroup.controllers").exists()
        if self.v2:
            if "cpu" not in (self.V2 / "cgroup.controllers").read_text().split():
                raise OSError("cgroup v2 without the cpu controller in "
                              f"{self.V2 / 'cgroup.controllers'}")
            if "cpu" not in (self.V2 / "cgroup.subtree_control").read_text().split():
                (self.V2 / "cgroup.subtree_control").write_text("+cpu")
            root = self.V2
        elif (self.V1 / "cpu.cfs_quota_us").exists():
            root = self.V1
        else:
            raise OSError(f"neither cgroup v2 ({self.V2 / 'cgroup.controllers'}) nor the "
                          f"cgroup v1 cpu controller ({self.V1 / 'cpu.cfs_quota_us'}) is mounted")
        self.path = root / f"{self.PREFIX}{os.getpid()}-{name}"
        self.path.mkdir()
        try:
            if self.v2:
                (self.path / "cpu.max").write_text(f"{self.quota_us} {self.PERIOD_US}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        except OSError:
            self.remove()
            raise

    @classmethod
    def remove_stale(cls) -> None:
        """Empty groups left behind by an earlier run that was killed (rmdir fails if in use)."""
        root = cls.V2 if (cls.V2 / "cgroup.controllers").exists() else cls.V1
        for d in root.glob(cls.PREFIX + "*"):
            try:
                d.rmdir()
            except OSError:
                pass

    def wrap(self, argv: list[str]) -> list[str]:
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"),
                *argv]

    def threads(self) -> set[int]:
        f = self.path / ("cgroup.threads" if self.v2 else "tasks")
        return {int(x) for x in f.read_text().split()}

    def check(self, pids: list[int]) -> None:
        """Every thread of these processes must be in the group."""
        tids = set()
        for p in pids:
            try:
                tids |= {int(t) for t in os.listdir(f"/proc/{p}/task")}
            except OSError:
                pass
        missing = tids - self.threads()
        if missing:
            raise SystemExit(f"threads {sorted(missing)} are not in {self.path}")

    def stat(self) -> dict:
        """Throttling counters: nr_periods, nr_throttled, throttled_us."""
        kv = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return {"nr_periods": int(kv.get("nr_periods", 0)),
                "nr_throttled": int(kv.get("nr_throttled", 0)),
                "throttled_us": int(kv["throttled_usec"]) if "throttled_usec" in kv
                else int(kv.get("throttled_time", 0)) // 1000}

    def remove(self) -> None:
        for _ in range(50):  # the last processes may still be exiting
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        print(f"warning: could not remove {self.path}", file=sys.stderr)


def make_groups(names: list[str], share: float) -> dict[str, CpuGroup]:
    """One CFS-quota group per proxy process, or exit saying why not and what to run instead."""
    groups: dict[str, CpuGroup] = {}
    try:
        CpuGroup.remove_stale()
        for name in names:
            groups[name] = CpuGroup(name, share)
    except OSError as e:
        for g in groups.values():
            g.remove()
        raise SystemExit(
            f"--proxy-bound needs a writable cgroup CPU controller to cap each proxy with a CFS "
            f"quota (cgroup v1 at {CpuGroup.V1}/, or cgroup v2 at {CpuGroup.V2}/ with the cpu "
            f"controller), as root: {e}\n"
            "Run it as root where cgroupfs is writable (e.g. a privileged container), or use "
            "the other modes, which need no cgroup: bench/run.sh (pinned) or "
            "bench/run.sh --no-pin.")
    return groups


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout=15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} (see its log)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def family(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # utime + stime
    return total


def proc_status(pid: int, key: str) -> int:
    """A /proc/<pid>/status value in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def per_cpu_busy() -> list[tuple[int, int]]:
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + v[4]
            out.append((sum(v) - idle, sum(v)))
    return out


def task_ticks() -> int:
    """user + nice + system + irq + softirq ticks of all CPUs.

    A process's system time includes the loopback network work done in its context, which
    /proc/stat counts as irq/softirq: without those the "other" share goes negative."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def children_cpu() -> float:
    """CPU seconds of the reaped child processes (wrk)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------
# setup: certificates and configuration files
# ------------------------------------------------------------------------------------------


def make_certs(d: Path) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("upstream", "proxy"):
        cert, key = d / f"{name}-cert.pem", d / f"{name}-key.pem"
        if not cert.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                 "-subj", f"/CN=pvegate-bench-{name}", "-addext",
                 "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True)
        combined = d / f"{name}-combined.pem"
        combined.write_bytes(cert.read_bytes() + key.read_bytes())
        out[name] = (cert, key, combined)
    fp = subprocess.run(
        ["openssl", "x509", "-in", str(out["upstream"][0]), "-noout", "-fingerprint",
         "-sha256"], check=True, capture_output=True, text=True).stdout
    out["upstream_fingerprint"] = fp.strip().split("=", 1)[1]
    return out


def nginx_temp_paths(d: Path) -> str:
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    return "\n".join(
        f"  {k}_temp_path {d}/tmp/{k};"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def upstream_conf(d: Path, certs: dict) -> Path:
    cert, key, _ = certs["upstream"]
    body = STATUS_BODY.replace("'", "\\'")
    conf = f"""
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/upstream.pid;
error_log {d}/upstream-error.log warn;
events {{ worker_connections 20000; }}
http {{
{nginx_temp_paths(d / 'upstream')}
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 1000000000;
  client_max_body_size 0;
  default_type application/json;
  server {{
    listen 127.0.0.1:{PORTS['upstream'][0]} backlog=4096;
    listen 127.0.0.1:{PORTS['upstream'][1]} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ return 200 '{body}'; }}
  }}
}}
"""
    p = d / "upstream-nginx.conf"
    p.write_text(conf)
    return p


def nginx_proxy_conf(d: Path, certs: dict, workers: int, log: Path, discard_port: int,
                     mem_port: int) -> Path:
    cert, key, _ = certs["proxy"]
    up = PORTS["upstream"]

    def locations(scheme: str, upstream: str) -> str:
        return f"""
    location ~ {READONLY_RE} {{
      limit_except GET {{ deny all; }}
      proxy_pass {scheme}://{upstream};
    }}
    location / {{ proxy_pass {scheme}://{upstream}; }}"""

    conf = f"""
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 19000; }}
http {{
{nginx_temp_paths(d / 'nginx')}
  log_format audit escape=json '{{"time":"$time_iso8601","client":"$remote_addr:$remote_port",'
      '"method":"$request_method","path":"$uri","status":"$status",'
      '"upstream_status":"$upstream_status","decision":"$status"}}';
  access_log {log} audit;
  keepalive_timeout 300s;
  keepalive_requests 1000000000;
  client_max_body_size 0;
  proxy_request_buffering off;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header X-Forwarded-For $remote_addr;
  proxy_ssl_session_reuse on;
  proxy_ssl_protocols TLSv1.2 TLSv1.3;
  upstream up_plain {{ server 127.0.0.1:{up[0]}; keepalive 256;
    keepalive_requests 1000000000; keepalive_timeout 300s; }}
  upstream up_tls {{ server 127.0.0.1:{up[1]}; keepalive 256;
    keepalive_requests 1000000000; keepalive_timeout 300s; }}
  upstream up_discard {{ server 127.0.0.1:{discard_port}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx'][0]} backlog=4096;{locations('http', 'up_plain')}
  }}
  server {{
    listen 127.0.0.1:{PORTS['nginx'][1]} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;{locations('https', 'up_tls')}
  }}
  server {{
    listen 127.0.0.1:{mem_port} backlog=4096;{locations('http', 'up_discard')}
  }}
}}
"""
    p = d / "nginx-proxy.conf"
    p.write_text(conf)
    return p


def haproxy_conf(d: Path, certs: dict, threads: int, discard_port: int, mem_port: int) -> Path:
    _, _, combined = certs["proxy"]
    up = PORTS["upstream"]

    def frontend(name: str, bind: str, backend: str) -> str:
        return f"""
frontend {name}
  bind {bind}
  acl readonly_guest path_reg {READONLY_RE}
  http-request deny deny_status 403 if readonly_guest !METH_GET
  default_backend {backend}
"""

    conf = f"""
global
  nbthread {threads}
  maxconn 9900  # the container caps open files at 20000 (hard); haproxy needs ~2 per connection
  log stdout format raw local0 info

defaults
  mode http
  log global
  log-format '{{"client":"%ci:%cp","method":"%HM","path":"%HU","status":"%ST","backend":"%b"}}'
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  timeout http-request 30s
{frontend('fe_plain', f"127.0.0.1:{PORTS['haproxy'][0]}", 'be_plain')}
{frontend('fe_tls', f"127.0.0.1:{PORTS['haproxy'][1]} ssl crt {combined} alpn http/1.1", 'be_tls')}
{frontend('fe_mem', f"127.0.0.1:{mem_port}", 'be_discard')}
backend be_plain
  server up 127.0.0.1:{up[0]}
backend be_tls
  server up 127.0.0.1:{up[1]} ssl verify none alpn http/1.1
backend be_discard
  server up 127.0.0.1:{discard_port}
"""
    p = d / "haproxy.cfg"
    p.write_text(conf)
    return p


def pvegate_conf(d: Path, name: str, port: int, upstream_url: str, certs: dict | None,
                 policy: Path, admin_port: int | None = None) -> Path:
    """pvegate's config; with `admin_port`, every optional feature on as well: the admin
    listener (metrics), the audit log in a file, the policy watched and in shadow mode."""
    tls = ""
    trust = ""
    if certs is not None:
        cert, key, _ = certs["proxy"]
        tls = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    if upstream_url.startswith("https"):
        trust = f'fingerprint = "{certs["upstream_fingerprint"]}"\n'
    conf = f"""[listen]
address = "127.0.0.1:{port}"
{tls}
[upstream]
url = "{upstream_url}"
{trust}
[policy]
files = ["{policy}"]

[log]
format = "json"
level = "info"
"""
    if admin_port is not None:
        conf = conf.replace(f'files = ["{policy}"]\n',
                            f'files = ["{policy}"]\nwatch = true\nmode = "shadow"\n')
        conf += (f'\n[audit]\nfile = "{d / (name + "-audit.log")}"\n'
                 f'\n[admin]\naddress = "127.0.0.1:{admin_port}"\n')
    p = d / f"{name}.toml"
    p.write_text(conf)
    return p


# ------------------------------------------------------------------------------------------
# checks and measurement
# ------------------------------------------------------------------------------------------


def request(port: int, tls: bool, method: str, path: str, body: str | None = None):
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": AUTH}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def check_target(target: str) -> None:
    """Every proxy must allow reads and writes to 110 and refuse writes to 104 with 403."""
    for tls in (False, True):
        port = PORTS["upstream" if target == "direct" else target][1 if tls else 0]
        cases = [("GET", POLL, None, 200),
                 ("POST", "/api2/json/nodes/pve/qemu/110/config", "memory=2048", 200)]
        if target != "direct":
            cases.append(("POST", "/api2/json/nodes/pve/qemu/104/status/stop", "timeout=30", 403))
            cases.append(("PUT", "/api2/json/nodes/pve/lxc/109/config", "cores=2", 403))
        for method, path, body, want in cases:
            status, data = request(port, tls, method, path, body)
            if status != want:
                raise SystemExit(
                    f"check failed: {target} {'TLS' if tls else 'plain'} {method} {path}: "
                    f"{status}, expected {want}: {data[:200]!r}")
            if want == 200 and b'"data"' not in data:
                raise SystemExit(f"check failed: {target} {method} {path}: body {data[:200]!r}")


def build_tlsconn() -> None:
    """Builds bench/tlsconn (the new-connections load generator), a crate of its own."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path",
                    str(BENCH / "tlsconn" / "Cargo.toml")], check=True)


def run_wrk(url: str, conns: int, duration: int, script: str, wrk_cpus: str | None,
            threads: int) -> dict:
    if script.startswith(("tlsconn", "rate:")):
        # https://127.0.0.1:PORT/path -> 127.0.0.1:PORT /path
        hostport, path = url.split("://", 1)[1].split("/", 1)
        argv = [str(TLSCONN), hostport, "/" + path, "--conns", str(conns), "--seconds",
                str(duration), "--header", f"Authorization: {AUTH}"]
        if script == "tlsconn-full":
            argv.append("--no-resume")
        if script.startswith("rate:"):
            argv += ["--rate", script[len("rate:"):]]
            if url.startswith("http:"):
                argv.append("--plain")
        if wrk_cpus is not None:
            argv = ["taskset", "-c", wrk_cpus] + argv
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return parse_summary(out)
    argv = ["wrk", f"-t{min(threads, conns)}", f"-c{conns}", f"-d{duration}s", "--latency",
            "-s", str(BENCH / "wrk" / script), "-H", f"Authorization: {AUTH}", url]
    if wrk_cpus is not None:
        argv = ["taskset", "-c", wrk_cpus] + argv
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse_summary(out)


def parse_summary(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            return r
    raise SystemExit(f"the load generator printed no summary:\n{out}")


def count_and_truncate(log: Path | None) -> int:
    if log is None or not log.exists():
        return 0
    with open(log, "rb") as f:
        n = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    open(log, "wb").close()
    return n


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def mmm(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def report(results: list[dict], meta: dict) -> str:
    bound = meta.get("proxy_cpu") is not None
    lines = [f"### Throughput and latency ({meta['mode']}, {meta['rounds']} rounds x "
             f"{meta['duration']} s; min/median/max over rounds)", ""]
    if bound:
        lines += [f"Proxy-bound: each proxy may use {meta['proxy_cpu'] * 1e6:.0f} µs of CPU per "
                  "second, so its requests/s is about that divided by its CPU µs/req while the "
                  "quota is used up (quota used ≈ 100 %); CPU1 busy well below 100 % shows that "
                  "wrk + upstream were not the limit. \"direct\" (no proxy) has no quota. "
                  "Throttled = share of CFS periods in which the proxy hit its quota; latency "
                  "includes those pauses.", ""]
    disturbed = [r["other_busy"] for r in results if r.get("other_busy", 0) > OTHER_BUSY_MAX]
    if disturbed:
        lines += [f"**Warning:** in {len(disturbed)} of {len(results)} runs something other than "
                  "the proxy, the upstream and wrk kept the CPUs busy (other processes, up "
                  f"to {max(disturbed):.0f} % of one CPU); those runs are "
                  "disturbed, repeat them on an idle machine.", ""]
    extra_head, extra_rule = (" quota used % | throttled % |", "---|---|") if bound else ("", "")
    for wl in WORKLOADS:
        rows = [r for r in results if r["workload"] == wl]
        if not rows:
            continue
        lines += [f"**{wl}**", "",
                  "| target | requests/s | p50 ms | p99 ms | proxy CPU µs/req | CPU0/CPU1 busy % | non-2xx % |"
                  + extra_head,
                  "|---|---|---|---|---|---|---|" + extra_rule]
        for t in ALL_TARGETS:
            rr = [r for r in rows if r["target"] == t]
            if not rr:
                continue
            extra = ""
            if bound:
                extra = (f" {mmm([r['quota_used'] * 100 for r in rr if 'cfs' in r], '{:.0f}')} "
                         f"| {mmm([r['throttled_share'] * 100 for r in rr if 'cfs' in r], '{:.0f}')} |")
            lines.append(
                f"| {t} | {mmm([r['rps'] for r in rr], '{:.0f}')} "
                f"| {mmm([r['p50_us'] / 1000 for r in rr], '{:.2f}')} "
                f"| {mmm([r['p99_us'] / 1000 for r in rr], '{:.2f}')} "
                f"| {mmm([r['cpu_us_per_req'] for r in rr], '{:.1f}') if t != 'direct' else '-'} "
                f"| {statistics.median([r['cpu_busy'][0] for r in rr]):.0f}/"
                f"{statistics.median([r['cpu_busy'][1] for r in rr]):.0f} "
                f"| {statistics.median([r['non2xx_share'] * 100 for r in rr]):.1f} |" + extra)
        resumed = [f"{t} {statistics.median([r['resumed'] / max(r['requests'], 1) * 100 for r in rows if r['target'] == t]):.0f} %"
                   for t in ALL_TARGETS if any(r["target"] == t and "resumed" in r for r in rows)]
        if resumed:
            lines += ["", "Handshakes that resumed a session (median): " + ", ".join(resumed) + "."]
        lines.append("")
    lines += ["### pvegate ratios (same round; min/median/max over rounds)", "",
              "| workload | rps pvegate/nginx | rps pvegate/haproxy | rps pvegate/pvegate-b "
              "| p99 pvegate/nginx | p99 pvegate/haproxy | p99 pvegate/pvegate-b |",
              "|---|---|---|---|---|---|---|"]
    for wl in WORKLOADS:
        by = {}
        for r in results:
            if r["workload"] == wl:
                by.setdefault(r["round"], {})[r["target"]] = r
        cols = []
        for key in ("rps", "p99_us"):
            for other in ("nginx", "haproxy", "pvegate-b"):
                v = [rd["pvegate"][key] / rd[other][key] for rd in by.values()
                     if "pvegate" in rd and other in rd and rd[other][key] > 0]
                cols.append(mmm(v, "{:.2f}"))
        if any(c != "-" for c in cols):
            lines.append(f"| {wl} | " + " | ".join(cols) + " |")
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def interrupt(*_) -> None:
    """SIGTERM handler: like Ctrl-C, so the finally in main() stops the proxies and removes
    the cgroups."""
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round x 3 s, small memory tests")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int, help="seconds per wrk run")
    ap.add_argument("--no-pin", action="store_true", help="no CPU pinning, workers = CPUs")
    ap.add_argument("--proxy-bound", action="store_true",
                    help="pinned, and each proxy capped by a CFS quota (cgroup, needs root) to "
                    "--proxy-cpu of CPU 0, so the proxy is the bottleneck, not wrk + upstream")
    ap.add_argument("--proxy-cpu", type=float, default=0.5,
                    help="--proxy-bound quota as a share of one CPU, 0.1 to 1 (default 0.5)")
    ap.add_argument("--only", choices=["rps", "mem"])
    ap.add_argument("--workloads", help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--targets", help="comma-separated subset of " + ",".join(ALL_TARGETS)
                    + " (pvegate-b: the binary PVEGATE_BIN_B, for before/after comparisons)")
    args = ap.parse_args()
    if args.proxy_bound and args.no_pin:
        ap.error("--proxy-bound pins the proxy to CPU 0; it cannot be combined with --no-pin")
    if not 0.1 <= args.proxy_cpu <= 1:
        ap.error("--proxy-cpu must be between 0.1 and 1 (a share of CPU 0)")
    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (3 if args.quick else 10)
    pvegate_bin = os.environ.get("PVEGATE_BIN") or str(ROOT / "target/release/pvegate")
    ncpu = os.cpu_count() or 1
    if args.proxy_bound and ncpu < 2:
        raise SystemExit("--proxy-bound needs 2 CPUs (proxy on CPU 0, wrk + upstream on CPU 1)")
    groups: dict[str, CpuGroup] = {}
    if args.proxy_bound and args.only != "mem":
        targets = args.targets.split(",") if args.targets else TARGETS
        names = [f"{t}-{k}" for t in ("pvegate", "pvegate-b") if t in targets
                 for k in ("plain", "tls")] + [t for t in ("nginx", "haproxy") if t in targets]
        groups = make_groups(names, args.proxy_cpu)
        signal.signal(signal.SIGTERM, interrupt)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    res = BENCH / "results" / stamp
    res.mkdir(parents=True)
    (BENCH / "results" / "latest").unlink(missing_ok=True)
    (BENCH / "results" / "latest").symlink_to(stamp)
    certs = make_certs(BENCH / "results" / "certs")
    pin = not args.no_pin and ncpu >= 2
    workers = 1 if pin else ncpu
    proxy_cpus, side_cpus = ("0", "1") if pin else (None, None)
    if args.proxy_bound:
        mode = (f"proxy-bound: each proxy alone on CPU 0 with 1 worker, limited to "
                f"{args.proxy_cpu * 100:g}% of CPU 0 by a CFS quota "
                f"({args.proxy_cpu * CpuGroup.PERIOD_US / 1000:g} ms per "
                f"{CpuGroup.PERIOD_US / 1000:g} ms period); wrk + upstream on CPU 1")
    elif pin:
        mode = "pinned: proxy alone on CPU 0 with 1 worker; wrk + upstream on CPU 1"
    else:
        mode = f"unpinned: {workers} workers per proxy, wrk -t{ncpu}"
    meta = {
        "mode": mode,
        "proxy_cpu": args.proxy_cpu if args.proxy_bound else None,
        "rounds": rounds, "duration": duration, "cpus": ncpu,
        "versions": versions(pvegate_bin),
    }
    print(json.dumps(meta, indent=1), file=sys.stderr)
    procs = Procs()
    try:
        if args.only != "mem":
            results = run_rps(args, procs, res, certs, pvegate_bin, pin, workers, proxy_cpus,
                              side_cpus, rounds, duration, groups)
            for g in groups.values():
                g.remove()
            (res / "results.json").write_text(json.dumps({"meta": meta, "runs": results},
                                                         indent=1))
            text = report(results, meta)
            (res / "report.md").write_text(text)
            print(text)
        if args.only != "rps":
            import mem
            text = mem.run(procs, res, certs, pvegate_bin, quick=args.quick)
            with open(res / "report.md", "a") as f:
                f.write("\n" + text)
            print(text)
    finally:
        procs.stop_all()
        for g in groups.values():
            g.remove()
    print(f"results: {res}", file=sys.stderr)


def versions(pvegate_bin: str) -> dict:
    def first(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return {
        "pvegate": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                  capture_output=True, text=True).stdout.strip(),
        "nginx": first(["nginx", "-v"]),
        "haproxy": first(["haproxy", "-v"]),
        "wrk": first(["wrk", "-v"]),
        "kernel": os.uname().release,
        "cpu": next((l.split(":", 1)[1].strip() for l in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name")), "?"),
    }


def run_rps(args, procs, res, certs, pvegate_bin, pin, workers, proxy_cpus, side_cpus,
            rounds, duration, groups: dict[str, CpuGroup]) -> list[dict]:
    workloads = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    targets = args.targets.split(",") if args.targets else list(TARGETS)
    up = procs.start("upstream", ["nginx", "-c", str(upstream_conf(res, certs)), "-p", str(res)],
                     res / "upstream.out", cpus=side_cpus)
    wait_port(PORTS["upstream"][1], up, "upstream nginx")
    pids: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    policy = ROOT / "policies" / "homelab.toml"
    env = {"TOKIO_WORKER_THREADS": str(workers)}
    for target, binary in (("pvegate", pvegate_bin), ("pvegate-b", os.environ.get("PVEGATE_BIN_B"))):
        if target not in targets:
            continue
        if not binary:
            raise SystemExit("the pvegate-b target needs PVEGATE_BIN_B (a second pvegate binary)")
        for name, port, url, c in (
            (f"{target}-plain", PORTS[target][0], f"http://127.0.0.1:{PORTS['upstream'][0]}", None),
            (f"{target}-tls", PORTS[target][1], f"https://127.0.0.1:{PORTS['upstream'][1]}", certs),
        ):
            conf = pvegate_conf(res, name, port, url, c, policy)
            logs[name] = res / f"{name}.log"
            pids[name] = procs.start(name, [binary, "serve", "--config", str(conf)], logs[name],
                                     env=env, cpus=proxy_cpus, group=groups.get(name))
            wait_port(port, pids[name], name)
    if "nginx" in targets:
        logs["nginx"] = res / "nginx-access.log"
        pids["nginx"] = procs.start(
            "nginx", ["nginx", "-c", str(nginx_proxy_conf(res, certs, workers, logs["nginx"],
                                                          19399, 19398)), "-p", str(res)],
            res / "nginx.out", cpus=proxy_cpus, group=groups.get("nginx"))
        wait_port(PORTS["nginx"][1], pids["nginx"], "nginx")
    if "haproxy" in targets:
        logs["haproxy"] = res / "haproxy.log"
        pids["haproxy"] = procs.start(
            "haproxy", ["haproxy", "-db", "-f", str(haproxy_conf(res, certs, workers, 19399,
                                                                 19397))],
            logs["haproxy"], cpus=proxy_cpus, group=groups.get("haproxy"))
        wait_port(PORTS["haproxy"][1], pids["haproxy"], "haproxy")
    for t in targets:
        check_target(t)
    for log in logs.values():
        count_and_truncate(log)
    print("checks passed: every proxy allows 104 reads and 110 writes, refuses 104/109 writes "
          "with 403", file=sys.stderr)

    def proc_for(target: str, tls: bool):
        if target == "direct":
            return None, None, None
        name = f"{target}-{'tls' if tls else 'plain'}" if target.startswith("pvegate") else target
        return pids[name], logs[name], groups.get(name)

    wrk_threads = 1 if pin else (os.cpu_count() or 1)
    if any(WORKLOADS[wl][2].startswith(("tlsconn", "rate:")) for wl in workloads):
        build_tlsconn()
    results = []
    # Warm-up: every target and workload once, briefly (connection pools, TLS sessions, caches).
    for wl in workloads:
        tls, conns, script = WORKLOADS[wl]
        for t in targets:
            port = PORTS["upstream" if t == "direct" else t][1 if tls else 0]
            url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{POLL}"
            run_wrk(url, conns, 1, script, side_cpus, wrk_threads)
            count_and_truncate(proc_for(t, tls)[1])
    share = args.proxy_cpu if groups else None
    for rnd in range(rounds):
        order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
        for wl in workloads:
            tls, conns, script = WORKLOADS[wl]
            for t in order:
                port = PORTS["upstream" if t == "direct" else t][1 if tls else 0]
                url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{POLL}"
                proc, log, group = proc_for(t, tls)
                fam = family(proc.pid) if proc else []
                ours = fam + family(up.pid)
                g0 = group.stat() if group else None
                c0, b0 = cpu_ticks(fam), per_cpu_busy()
                o0, w0, t0 = cpu_ticks(ours), children_cpu(), task_ticks()
                r = run_wrk(url, conns, duration, script, side_cpus, wrk_threads)
                c1, b1 = cpu_ticks(fam), per_cpu_busy()
                o1, w1, t1 = cpu_ticks(ours), children_cpu(), task_ticks()
                # CPU time of processes other than the proxy, the upstream and wrk, as % of one
                # CPU: high means something else ran (a build, tests) and disturbed the run.
                other = (t1 - t0) - (o1 - o0) - (w1 - w0) * TICK
                r["other_busy"] = 100.0 * other / max(
                    statistics.mean(x1[1] - x0[1] for x0, x1 in zip(b0, b1)), 1)
                if group:
                    g1 = group.stat()
                    group.check(family(proc.pid))
                    r["cfs"] = {k: g1[k] - g0[k] for k in g1}
                r.update({
                    "round": rnd, "workload": wl, "target": t,
                    "cpu_us_per_req": (c1 - c0) / TICK * 1e6 / max(r["requests"], 1),
                    "cpu_busy": [100.0 * (x1[0] - x0[0]) / max(x1[1] - x0[1], 1)
                                 for x0, x1 in zip(b0, b1)],
                    "non2xx_share": r["err_status"] / max(r["requests"], 1),
                    "log_lines": count_and_truncate(log),
                })
                if script == "mixed.lua" and t != "direct":
                    refused = r["non2xx_share"]
                    if abs(refused - MIXED_REFUSED_SHARE) > 0.01:
                        raise SystemExit(f"{t}: {refused:.3f} of mixed requests refused, "
                                         f"expected {MIXED_REFUSED_SHARE}")
                errors = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
                r["socket_errors"] = errors
                quota = ""
                if "cfs" in r:
                    # CPU time the proxy used / CPU time its quota allowed during the run
                    r["quota_used"] = r["rps"] * r["cpu_us_per_req"] / (share * 1e6)
                    r["throttled_share"] = (r["cfs"]["nr_throttled"]
                                            / max(r["cfs"]["nr_periods"], 1))
                    quota = (f"quota used {r['quota_used'] * 100:3.0f}%  "
                             f"throttled {r['throttled_share'] * 100:3.0f}% of periods  ")
                results.append(r)
                print(f"round {rnd + 1}/{rounds} {wl:10} {t:8} {r['rps']:9.0f} rps  "
                      f"p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms  "
                      f"cpu {r['cpu_us_per_req']:5.1f} µs/req  "
                      f"busy {r['cpu_busy'][0]:3.0f}/{r['cpu_busy'][1] if len(r['cpu_busy']) > 1 else 0:3.0f}%  "
                      f"{quota}other {r['other_busy']:3.0f}%  "
                      f"log {r['log_lines']}  errors {errors}"
                      + (f"  resumed {r['resumed'] / max(r['requests'], 1):.0%}"
                         if "resumed" in r else ""), file=sys.stderr)
    for p in [up, *pids.values()]:
        procs.stop(p)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
