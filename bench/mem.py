"""Memory benchmarks (called by bench.py; stdlib only).

1. Peak RSS (VmHWM) while one 2 GiB multipart upload streams through the proxy to an upstream
   that reads and discards it (POST /api2/json/nodes/pve/storage/local/upload with a
   Content-Length; the body is generated on the fly from one 1 MiB buffer).
2. RSS (VmRSS) with 10,000 idle keep-alive client connections, each of which has made one
   status request (so every connection has been through a full request/response).

Standalone, pvegate only: `python3 bench/mem.py --all-features BINARY` measures 1. and 2. with
every optional feature on (metrics, audit file, policy watch, shadow mode, and the inventory:
the discard upstream then also answers what the inventory reads, for 10,000 guests, to
pvegate's own token only, and the policy has selector rules);
`python3 bench/mem.py --slow-bodies BINARY` measures memory under
slow request bodies (parameter bodies, which pvegate buffers to judge them):
3. one connection sending a 20,000-byte body one byte per TCP segment (RSS growth per byte);
4. 2,000 connections each sending one body byte per second for 20 s (RSS during and after).

Every measurement uses a freshly started proxy (VmHWM is a high-water mark since start), not
pinned, with as many workers as CPUs: pvegate's default runtime, nginx worker_processes = CPUs,
HAProxy nbthread = CPUs. For nginx the figure is the sum over master and workers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import socketserver
import sys
import time
from pathlib import Path

import bench

DISCARD_PORT = 19399
PORTS = {"pvegate": 19396, "nginx": 19398, "haproxy": 19397}
UPLOAD_PATH = "/api2/json/nodes/pve/storage/local/upload"
REPLY = b'{"data":"UPID:pve:00001234:0000ABCD:65A1B2C3:imgcopy::bench@pve!load:"}'


INVENTORY_TOKEN = "pvegate@pve!inventory=11111111-2222-3333-4444-555555555555"
INVENTORY_GUESTS = 10_000


def inventory_guests(n: int) -> list:
    """`/cluster/resources?type=vm` of n guests (vmids 1000…): every 5th tagged prod, every
    7th in pool core, every 11th named db-…, every 4th an LXC, every 50th a template, eight
    nodes (the distribution of benches/inventory.rs)."""
    out = []
    for i in range(n):
        vmid = 1000 + i
        kind = "lxc" if i % 4 == 0 else "qemu"
        g = {"id": f"{kind}/{vmid}", "vmid": vmid,
             "name": f"db-{vmid}" if i % 11 == 0 else f"web-{vmid}",
             "node": f"pve{i % 8}", "type": kind, "status": "running",
             "tags": "team-a;prod" if i % 5 == 0 else "team-a",
             "template": 1 if i % 50 == 0 else 0,
             "maxmem": 4294967296, "mem": 1073741824, "maxcpu": 4, "cpu": 0.02,
             "uptime": 1234, "maxdisk": 34359738368, "disk": 0, "netin": 1, "netout": 1,
             "diskread": 1, "diskwrite": 1}
        if i % 7 == 0:
            g["pool"] = "core"
        out.append(g)
    return out


class Inventory:
    """What the discard upstream answers to the inventory's reads (GETs under /api2/json,
    with `Authorization: PVEAPIToken=<INVENTORY_TOKEN>`; 401 with any other credential)."""

    def __init__(self, n: int) -> None:
        import json
        self.json = json
        guests = inventory_guests(n)
        self.kinds = {g["vmid"]: g["type"] for g in guests}
        self.answers = {
            "/cluster/resources?type=vm": {"data": guests},
            "/cluster/mapping/pci": {"data": [
                {"id": "igpu", "map": ["node=pve0,path=0000:00:02.0"]}]},
            "/cluster/mapping/usb": {"data": []},
            "/storage": {"data": [{"storage": "local", "type": "dir"},
                                  {"storage": "local-lvm", "type": "lvmthin"},
                                  {"storage": "tank", "type": "zfspool"}]},
            "/cluster/backup": {"data": [
                {"id": "backup-core", "pool": "core", "schedule": "daily"},
                {"id": "backup-list", "vmid": "1000,1005,1010", "schedule": "daily"},
                {"id": "backup-all", "all": 1, "exclude": "1003", "schedule": "weekly"}]},
            "/cluster/ha/resources": {"data": [
                {"sid": f"vm:{1000 + i * 20}", "group": "g1"} for i in range(100)]},
            "/cluster/ha/rules": {"data": [
                {"rule": "r1", "resources": "vm:1005,vm:1010,vm:1015"}]},
        }
        self.answers = {k: json.dumps(v).encode() for k, v in self.answers.items()}
        self.calls = 0

    def answer(self, target: str, auth: str) -> tuple[int, bytes]:
        path = target[len("/api2/json"):] if target.startswith("/api2/json/") else target
        known = path in self.answers or path.endswith("/config")
        if not known:
            return 0, b""
        if auth != f"PVEAPIToken={INVENTORY_TOKEN}":
            return 401, b'{"data":null}'
        self.calls += 1
        if path in self.answers:
            return 200, self.answers[path]
        parts = path.split("/")  # ['', 'nodes', node, kind, vmid, 'config']
        try:
            vmid = int(parts[4])
        except (IndexError, ValueError):
            return 400, b'{"data":null}'
        if self.kinds.get(vmid) != parts[3]:
            return 500, b'{"data":null}'
        c = {"scsi0": f"local-lvm:vm-{vmid}-disk-0,size=32G", "memory": "4096",
             "cores": "2", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
             "digest": "0123456789abcdef0123456789abcdef01234567"}
        if vmid % 10 == 0:
            c["mp0"] = f"tank:subvol-{vmid}-disk-1,mp=/srv"
        if vmid == 1005:
            c["hostpci0"] = "mapping=igpu,pcie=1"
        return 200, self.json.dumps({"data": c}).encode()


INVENTORY: Inventory | None = None


class Discard(socketserver.BaseRequestHandler):
    """HTTP/1.1 keep-alive server that reads (and drops) each request body, then answers 200;
    with `--inventory`, the inventory's reads are answered as a 10,000-guest cluster would."""

    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 20)
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                pending += chunk
            head, pending = pending.split(b"\r\n\r\n", 1)
            length = 0
            auth = ""
            lines = head.split(b"\r\n")
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v.strip())
                elif k == b"authorization":
                    auth = v.strip().decode("latin-1")
            left = length - len(pending)
            pending = pending[length:] if left <= 0 else b""
            view = memoryview(buf)
            while left > 0:
                n = sock.recv_into(view[: min(left, len(buf))])
                if n == 0:
                    return
                left -= n
            status, body = 0, b""
            if INVENTORY is not None and lines[0].startswith(b"GET "):
                target = lines[0].split(b" ")[1].decode("latin-1")
                status, body = INVENTORY.answer(target, auth)
            if status:
                reason = {200: b"OK", 401: b"Unauthorized"}.get(status, b"Error")
                sock.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % (status, reason, len(body)) + body)
                continue
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(REPLY), REPLY))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def upload(port: int, size: int) -> tuple[int, float]:
    """Streams a multipart upload of `size` file bytes; returns (status, seconds)."""
    boundary = "----pvegatebench7MA4YWxkTrZu0gW"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; "
            f"filename=\"bench.iso\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    total = len(head) + size + len(tail)
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.time()
    s.sendall((f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: {bench.AUTH}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {total}\r\n\r\n").encode() + head)
    block = bytes(1 << 20)
    left = size
    while left > 0:
        n = min(left, len(block))
        s.sendall(block[:n] if n < len(block) else block)
        left -= n
    s.sendall(tail)
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
    s.close()
    status = int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else 0
    return status, time.time() - t0


async def open_idle(port: int, n: int, concurrency: int = 200) -> list:
    """Opens n connections, makes one GET on each, and keeps them open."""
    sem = asyncio.Semaphore(concurrency)
    req = (f"GET {bench.POLL} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: {bench.AUTH}\r\n\r\n").encode()
    conns: list = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(req)
                head = await r.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await r.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures += 1
                conns.append((r, w))
            except (OSError, asyncio.IncompleteReadError):
                failures += 1

    await asyncio.gather(*(one() for _ in range(n)))
    if failures:
        print(f"  {failures} of {n} connections failed", flush=True)
    return conns


def family_kib(pid: int, key: str) -> int:
    return sum(bench.proc_status(p, key) for p in bench.family(pid))


def fds(pid: int) -> int:
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in bench.family(pid))


def run(procs: bench.Procs, res: Path, certs: dict, pvegate_bin: str, quick: bool) -> str:
    ncpu = os.cpu_count() or 1
    size = (256 << 20) if quick else (2 << 30)
    n_idle = 1000 if quick else 10_000
    # The discard upstream runs in its own process: its sockets must not count against this
    # process's open-file limit (20,000 here), which the 10,000 client connections need.
    srv = procs.start("discard", [sys.executable, str(Path(__file__)), "--discard-server"],
                      res / "discard.out")
    bench.wait_port(DISCARD_PORT, srv, "discard upstream")
    policy = bench.ROOT / "policies" / "homelab.toml"
    conf = bench.pvegate_conf(res, "pvegate-mem", PORTS["pvegate"],
                              f"http://127.0.0.1:{DISCARD_PORT}", None, policy)
    ngconf = bench.nginx_proxy_conf(res, certs, ncpu, res / "nginx-mem-access.log",
                                    DISCARD_PORT, PORTS["nginx"])
    haconf = bench.haproxy_conf(res, certs, ncpu, DISCARD_PORT, PORTS["haproxy"])
    starters = {
        "pvegate": lambda: procs.start("pvegate-mem", [pvegate_bin, "serve", "--config", str(conf)],
                                       res / "pvegate-mem.log"),
        "nginx": lambda: procs.start("nginx-mem", ["nginx", "-c", str(ngconf), "-p", str(res)],
                                     res / "nginx-mem.out"),
        "haproxy": lambda: procs.start("haproxy-mem", ["haproxy", "-db", "-f", str(haconf)],
                                       res / "haproxy-mem.log"),
    }
    rows = []
    for name, start in starters.items():
        # 1. upload, on a fresh process
        p = start()
        bench.wait_port(PORTS[name], p, name)
        time.sleep(0.5)
        base = family_kib(p.pid, "VmRSS")
        status, secs = upload(PORTS[name], size)
        hwm = family_kib(p.pid, "VmHWM")
        procs.stop(p)
        print(f"  {name}: upload {size >> 20} MiB -> {status} in {secs:.1f} s "
              f"({size / secs / 1e9:.2f} GB/s), VmHWM {hwm / 1024:.1f} MiB "
              f"(idle before: {base / 1024:.1f} MiB)", flush=True)
        # 2. idle connections, on a fresh process. HAProxy's maxconn is capped below 10,000
        # by the container's 20,000 open-file limit.
        n = n_idle if name != "haproxy" else min(n_idle, 9000)
        p = start()
        bench.wait_port(PORTS[name], p, name)
        time.sleep(0.5)
        before = family_kib(p.pid, "VmRSS")
        loop = asyncio.new_event_loop()
        conns = loop.run_until_complete(open_idle(PORTS[name], n))
        time.sleep(2)
        rss = family_kib(p.pid, "VmRSS")
        hwm2 = family_kib(p.pid, "VmHWM")
        open_fds = fds(p.pid)
        n_open = len(conns)
        for _, w in conns:
            w.close()
        # Let the loop run the closes (a closed loop would leave the sockets open).
        loop.run_until_complete(asyncio.sleep(0.5))
        conns.clear()
        loop.close()
        procs.stop(p)
        per_conn = (rss - before) / max(n_open, 1)
        print(f"  {name}: {n_open} idle connections: VmRSS {rss / 1024:.1f} MiB "
              f"(before {before / 1024:.1f}; {per_conn:.1f} KiB per connection), "
              f"VmHWM {hwm2 / 1024:.1f} MiB, {open_fds} fds open", flush=True)
        rows.append((name, size, status, secs, base, hwm, n_open, before, rss, hwm2,
                     per_conn, open_fds))
    procs.stop(srv)
    lines = [f"### Memory (fresh process per test, unpinned, {ncpu} workers each)", "",
             f"| proxy | upload {size >> 20} MiB: status | time s | VmHWM MiB | idle conns "
             "| VmRSS MiB (before) | KiB per idle conn | proxy fds |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, size, status, secs, base, hwm, n, before, rss, hwm2, per_conn, open_fds) in rows:
        lines.append(f"| {name} | {status} | {secs:.1f} | {hwm / 1024:.1f} | {n} "
                     f"| {rss / 1024:.1f} ({before / 1024:.1f}) | {per_conn:.1f} | {open_fds} |")
    lines.append("")
    return "\n".join(lines)


SLOW_PATH = "/api2/json/nodes/pve/qemu/100/config"


def slow_head(port: int, length: int) -> bytes:
    return (f"POST {SLOW_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: {bench.AUTH}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


def byte_by_byte(port: int, n: int) -> None:
    """One connection: `description=` then n-12 bytes, each in its own TCP segment."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = b"description=" + b"x" * (n - 12)
    s.sendall(slow_head(port, len(body)))
    for i in range(len(body)):
        s.send(body[i:i + 1])
        time.sleep(0.0005)
    s.recv(65536)
    s.close()


async def dribble(port: int, conns: int, seconds: int) -> None:
    """`conns` connections, each sending one body byte per second for `seconds`."""
    length = 12 + seconds + 10

    async def one() -> None:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(slow_head(port, length) + b"description=")
            await w.drain()
            for _ in range(seconds):
                await asyncio.sleep(1)
                w.write(b"x")
                await w.drain()
            w.close()
        except OSError:
            pass

    await asyncio.gather(*(one() for _ in range(conns)))


def slow_bodies(pvegate_bin: str) -> None:
    import subprocess
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="pvegate-slow-"))
    srv = subprocess.Popen([sys.executable, str(Path(__file__)), "--discard-server"])
    conf = bench.pvegate_conf(d, "pvegate-slow", PORTS["pvegate"],
                              f"http://127.0.0.1:{DISCARD_PORT}", None,
                              bench.ROOT / "policies" / "homelab.toml")
    with open(d / "pvegate.log", "w") as log:
        p = subprocess.Popen([pvegate_bin, "serve", "--config", str(conf)], stderr=log)
    try:
        bench.wait_port(DISCARD_PORT, srv, "discard upstream")
        bench.wait_port(PORTS["pvegate"], p, "pvegate")
        time.sleep(0.5)
        before = bench.proc_status(p.pid, "VmRSS")
        byte_by_byte(PORTS["pvegate"], 20_000)
        hwm = bench.proc_status(p.pid, "VmHWM")
        print(f"byte by byte: 20,000 body bytes in single segments: VmRSS before "
              f"{before / 1024:.1f} MiB, VmHWM after {hwm / 1024:.1f} MiB "
              f"({(hwm - before) * 1024 / 20_000:.0f} bytes per body byte)", flush=True)
        before = bench.proc_status(p.pid, "VmRSS")
        loop = asyncio.new_event_loop()
        task = loop.create_task(dribble(PORTS["pvegate"], 2000, 20))
        loop.run_until_complete(asyncio.sleep(18))
        during = bench.proc_status(p.pid, "VmRSS")
        loop.run_until_complete(task)
        time.sleep(2)
        after = bench.proc_status(p.pid, "VmRSS")
        loop.close()
        print(f"2,000 connections x 1 body byte/s for 20 s: VmRSS before {before / 1024:.1f} "
              f"MiB, at 18 s {during / 1024:.1f} MiB, after {after / 1024:.1f} MiB", flush=True)
    finally:
        p.terminate()
        srv.terminate()
        p.wait()
        srv.wait()


INVENTORY_POLICY = """
# Selector rules (bench/mem.py --all-features): the inventory's view is built and used.
[[guest]]
tags = ["prod"]
access = "readonly"
allow = ["snapshot.*"]

[[guest]]
pool = "core"
access = "managed"
deny = ["destroy"]

[[guest]]
name = "db-*"
access = "readonly"

[[guest]]
type = "lxc"
access = "managed"
deny = ["destroy"]

[[guest]]
template = true
access = "readonly"
"""


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def inventory_live(admin: int, guests: int) -> str:
    """The inventory metrics from /metrics; exits if the inventory is not loaded, fresh and
    complete, or a refresh failed."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    got = {k: metric(text, f"pvegate_inventory_{k}")
           for k in ("loaded", "fresh", "guests", "refresh_failures_total", "age_seconds")}
    if (got["loaded"] != 1 or got["fresh"] != 1 or got["guests"] != guests
            or got["refresh_failures_total"] != 0):
        raise SystemExit(f"the inventory was not live: {got}")
    return (f"inventory loaded, fresh, {int(got['guests'])} guests, "
            f"age {got['age_seconds']:.1f} s, 0 failed refreshes")


def selector_writes(port: int, audit: Path) -> str:
    """Three writes the selector rules judge (shadow mode: forwarded, audited as would-deny by
    the tag and name rules; allowed for a guest no rule selects); exits unless the audit file
    names the selector rules."""
    import json
    cases = [("POST", "/api2/json/nodes/pve5/qemu/1005/status/stop", "would-deny", "tags"),
             ("POST", "/api2/json/nodes/pve3/qemu/1011/status/stop", "would-deny", "name"),
             ("POST", "/api2/json/nodes/pve1/qemu/1001/status/stop", "allow", None)]
    for method, path, _, _ in cases:
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall((f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: {bench.AUTH}\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n").encode())
        while c.recv(65536):
            pass
        c.close()
    time.sleep(0.5)
    seen = {}
    for line in audit.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        f = e.get("fields", e)
        seen[f.get("path")] = (f.get("decision"), str(f.get("rule")))
    for _, path, decision, sel in cases:
        d, rule = seen.get(path, (None, ""))
        if d != decision or (sel is not None and f"guests {sel} = " not in rule):
            raise SystemExit(f"the selector rules did not judge {path}: audit says "
                             f"{d} by {rule!r}")
    return "; ".join(f"{p.split('/')[6]} {seen[p][0]} ({seen[p][1]})" for _, p, _, _ in cases)


def all_features(pvegate_bin: str, size: int = 2 << 30, n_idle: int = 10_000) -> None:
    """pvegate alone with every optional feature on (metrics on the admin listener, the audit
    log in a file, the policy watched and in shadow mode, the inventory reading 10,000 guests
    from the discard upstream with selector rules in the policy): the 2 GiB upload's VmHWM and
    the VmRSS of 10,000 idle connections, each on a fresh process, then a look at /metrics
    (the inventory loaded and fresh) and the audit file (selector rules judged writes) to show
    each was at work; exits if the inventory was not."""
    import subprocess
    import tempfile
    import urllib.request
    d = Path(tempfile.mkdtemp(prefix="pvegate-features-"))
    admin = 19395
    srv = subprocess.Popen([sys.executable, str(Path(__file__)), "--discard-server",
                            "--inventory", str(INVENTORY_GUESTS)])
    policy = d / "policy.toml"
    policy.write_text((bench.ROOT / "policies" / "homelab.toml").read_text() + INVENTORY_POLICY)
    token = d / "inventory.token"
    token.write_text(INVENTORY_TOKEN + "\n")
    token.chmod(0o600)
    conf = bench.pvegate_conf(d, "pvegate-features", PORTS["pvegate"],
                              f"http://127.0.0.1:{DISCARD_PORT}", None, policy, admin_port=admin)
    # The inventory with its defaults (refresh every 10 s, stale after 60 s).
    with open(conf, "a") as f:
        f.write(f'\n[inventory]\ntoken_file = "{token}"\n')
    audit = d / "pvegate-features-audit.log"
    bench.wait_port(DISCARD_PORT, srv, "discard upstream")

    def start() -> subprocess.Popen:
        with open(d / "pvegate.log", "a") as log:
            p = subprocess.Popen([pvegate_bin, "serve", "--config", str(conf)], stderr=log)
        # pvegate reads the inventory once before it listens.
        bench.wait_port(PORTS["pvegate"], p, "pvegate", timeout=180)
        time.sleep(0.5)
        return p

    def stop(p: subprocess.Popen) -> None:
        p.terminate()
        p.wait()

    try:
        p = start()
        live = inventory_live(admin, INVENTORY_GUESTS)
        judged = selector_writes(PORTS["pvegate"], audit)
        print(f"every feature on: {live}; selector rules judged: {judged}", flush=True)
        base = bench.proc_status(p.pid, "VmRSS")
        status, secs = upload(PORTS["pvegate"], size)
        hwm = bench.proc_status(p.pid, "VmHWM")
        live = inventory_live(admin, INVENTORY_GUESTS)
        stop(p)
        print(f"every feature on: upload {size >> 20} MiB -> {status} in {secs:.1f} s, "
              f"VmHWM {hwm / 1024:.1f} MiB (idle before: {base / 1024:.1f} MiB); {live}",
              flush=True)
        p = start()
        selector_writes(PORTS["pvegate"], audit)
        before = bench.proc_status(p.pid, "VmRSS")
        loop = asyncio.new_event_loop()
        conns = loop.run_until_complete(open_idle(PORTS["pvegate"], n_idle))
        time.sleep(2)
        rss = bench.proc_status(p.pid, "VmRSS")
        hwm2 = bench.proc_status(p.pid, "VmHWM")
        n_open = len(conns)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read()
        live = inventory_live(admin, INVENTORY_GUESTS)
        for _, w in conns:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
        stop(p)
        audit_lines = audit.read_bytes().count(b"\n")
        refreshes = (d / "pvegate.log").read_text().count("inventory read")
        print(f"every feature on: {n_open} idle connections: VmRSS {rss / 1024:.1f} MiB "
              f"(before {before / 1024:.1f}; {(rss - before) / max(n_open, 1):.1f} KiB per "
              f"connection; VmHWM {hwm2 / 1024:.1f} MiB); /metrics {len(metrics)} bytes, "
              f"audit file {audit_lines} lines; {live}; 'inventory read' logged at "
              f"{refreshes} starts", flush=True)
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["--discard-server"]:
    if sys.argv[2:3] == ["--inventory"]:
        INVENTORY = Inventory(int(sys.argv[3]))
    Server(("127.0.0.1", DISCARD_PORT), Discard).serve_forever()
elif __name__ == "__main__" and sys.argv[1:2] == ["--slow-bodies"]:
    slow_bodies(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:2] == ["--all-features"]:
    all_features(sys.argv[2])
