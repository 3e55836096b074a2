#!/usr/bin/env python3
"""proxmoxer (the real PyPI package) against pvegate, once with API-token auth and once with
ticket auth (cookie + CSRFPreventionToken).

On managed guests (VM 110, CT 120, and clones of template 9001) every call must succeed; on the
readonly guests (VM 104 'doc1', VM 109 'igp') every read must succeed and every change must
raise proxmoxer's ResourceException with HTTP 403 and a text naming the guest and pvegate.

Configuration comes from the environment (set by tests/clients/proxmoxer.rs):
  PVEGATE_HOST, PVEGATE_PORT   where pvegate listens (HTTPS)
  PVEGATE_CA                   PEM file of the CA that signed pvegate's certificate
  PVE_TOKEN_USER, PVE_TOKEN_NAME, PVE_TOKEN_VALUE   API token
  PVE_USER, PVE_PASSWORD       user for ticket auth
  PVE_NODE                     node name (pve)
  PVEGATE_EXPECT_PROXMOXER     the proxmoxer version that must be the one imported (optional)
  PVE_POLL_INTERVAL            task polling interval in seconds (default 1, like proxmoxer)

The last line printed is `SUMMARY <json>`: counts per auth mode and every refused call, so the
Rust side can check that none of them reached the (simulated) Proxmox.
"""

import json
import os
import sys
import tempfile
import traceback

import proxmoxer
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

HOST = os.environ["PVEGATE_HOST"]
PORT = int(os.environ["PVEGATE_PORT"])
CA = os.environ["PVEGATE_CA"]
NODE = os.environ.get("PVE_NODE", "pve")
POLL = float(os.environ.get("PVE_POLL_INTERVAL", "1"))

READONLY = {104: "doc1", 109: "igp"}


class Suite:
    def __init__(self, mode, prox, clone_id):
        self.mode = mode
        self.prox = prox
        self.node = prox.nodes(NODE)
        self.clone_id = clone_id
        self.reads = 0
        self.allowed = 0
        self.refused = []
        self.failures = []

    # -- helpers -------------------------------------------------------------------------

    def check(self, cond, what):
        if not cond:
            self.failures.append(f"[{self.mode}] {what}")

    def wait(self, upid, what):
        """Polls the task like proxmoxer's Tasks.blocking_status and checks it ended OK."""
        self.check(isinstance(upid, str) and upid.startswith("UPID:"), f"{what}: no UPID: {upid!r}")
        status = Tasks.blocking_status(self.prox, upid, timeout=30, polling_interval=POLL)
        self.check(status is not None, f"{what}: task {upid} did not finish")
        if status is not None:
            self.check(status.get("exitstatus") == "OK", f"{what}: task ended {status}")
        log = self.node.tasks(upid).log.get()
        self.check(isinstance(log, list), f"{what}: task log is {log!r}")
        return status

    def read(self, what, fn):
        try:
            out = fn()
            self.reads += 1
            return out
        except Exception as e:  # noqa: BLE001 - report any failure
            self.failures.append(f"[{self.mode}] read {what} failed: {e!r}")
            return None

    def change(self, what, fn, task=True):
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001
            self.failures.append(f"[{self.mode}] {what} failed: {e!r}")
            return None
        self.allowed += 1
        if task:
            self.wait(out, what)
        return out

    def refused_change(self, vmid, what, method, path, fn):
        name = READONLY[vmid]
        try:
            out = fn()
        except ResourceException as e:
            text = str(e)
            self.check(e.status_code == 403, f"{what}: status {e.status_code}: {text}")
            self.check(text.startswith("403 Forbidden: Permission check failed (pvegate: "),
                       f"{what}: text {text!r}")
            self.check(f"VM {vmid} '{name}'" in text, f"{what}: text lacks the guest: {text!r}")
            self.refused.append({"mode": self.mode, "method": method, "path": path,
                                 "what": what, "text": text})
            return
        except Exception as e:  # noqa: BLE001
            self.failures.append(f"[{self.mode}] {what}: expected ResourceException, got {e!r}")
            return
        self.failures.append(f"[{self.mode}] {what}: was NOT refused, returned {out!r}")

    def status_of(self, kind, vmid):
        return getattr(self.node, kind)(vmid).status.current.get()["status"]

    # -- the suite -----------------------------------------------------------------------

    def listing(self):
        nodes = self.read("nodes", lambda: self.prox.nodes.get())
        self.check(nodes and any(n["node"] == NODE for n in nodes), f"nodes: {nodes}")
        vms = self.read("qemu list", lambda: self.node.qemu.get()) or []
        ids = sorted(int(v["vmid"]) for v in vms)
        for want in (104, 109, 110, 9001):
            self.check(want in ids, f"qemu list lacks {want}: {ids}")
        cts = self.read("lxc list", lambda: self.node.lxc.get()) or []
        self.check(any(int(c["vmid"]) == 120 for c in cts), f"lxc list: {cts}")
        res = self.read("cluster resources", lambda: self.prox.cluster.resources.get(type="vm")) or []
        self.check(len(res) >= 5, f"cluster resources: {res}")
        self.read("version", lambda: self.prox.version.get())

    def managed_vm(self):
        vm = self.node.qemu(110)
        self.check(self.read("110 status", lambda: self.status_of("qemu", 110)) == "running",
                   "110 should start running")
        self.change("110 shutdown", lambda: vm.status.shutdown.post(timeout=30))
        self.check(self.status_of("qemu", 110) == "stopped", "110 stopped after shutdown")
        self.change("110 start", lambda: vm.status.start.post())
        self.check(self.status_of("qemu", 110) == "running", "110 running after start")
        self.change("110 stop", lambda: vm.status.stop.post())
        self.check(self.status_of("qemu", 110) == "stopped", "110 stopped after stop")
        self.change("110 start again", lambda: vm.status.start.post())
        self.change("110 reboot", lambda: vm.status.reboot.post())
        self.change("110 config put",
                    lambda: vm.config.put(description=f"set by proxmoxer ({self.mode})", memory=3072),
                    task=False)
        cfg = self.read("110 config", lambda: vm.config.get()) or {}
        self.check(int(cfg.get("memory", 0)) == 3072, f"110 memory not updated: {cfg}")
        self.change("110 config post", lambda: vm.config.post(cores=4))
        before = cfg.get("scsi0", "")
        self.change("110 resize", lambda: vm.resize.put(disk="scsi0", size="+1G"))
        after = (self.read("110 config after resize", lambda: vm.config.get()) or {}).get("scsi0", "")
        self.check(before != after and "size=" in after, f"110 resize: {before} -> {after}")
        self.change("110 snapshot", lambda: vm.snapshot.post(snapname=f"pm{self.mode}"))
        self.change("110 snapshot delete", lambda: vm.snapshot(f"pm{self.mode}").delete())
        agent = self.read("110 agent", lambda: vm.agent("network-get-interfaces").get()) or {}
        self.check("result" in agent, f"110 agent: {agent}")

    def managed_clone_and_delete(self):
        new = self.clone_id
        tmpl = self.node.qemu(9001)
        self.change(f"clone 9001 -> {new}",
                    lambda: tmpl.clone.post(newid=new, name=f"pm-{self.mode}", full=1))
        vm = self.node.qemu(new)
        self.read(f"{new} config", lambda: vm.config.get())
        self.change(f"{new} start", lambda: vm.status.start.post())
        self.change(f"{new} stop", lambda: vm.status.stop.post())
        self.change(f"{new} delete",
                    lambda: vm.delete(purge=1, **{"destroy-unreferenced-disks": 1}))
        try:
            vm.status.current.get()
            self.failures.append(f"[{self.mode}] {new} still exists after delete")
        except ResourceException as e:
            self.check(e.status_code == 500 and "does not exist" in str(e),
                       f"{new} after delete: {e}")

    def upload(self):
        # proxmoxer sends files as multipart (requests builds it with a Content-Length).
        size = 3 * 1024 * 1024 + 17
        storage = self.node.storage("local")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, f"pm-{self.mode}.iso")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            with open(path, "rb") as f:
                self.change("iso upload", lambda: storage.upload.post(content="iso", filename=f))
        isos = self.read("iso list", lambda: storage.content.get(content="iso")) or []
        mine = [i for i in isos if i.get("volid", "").endswith(f"pm-{self.mode}.iso")]
        self.check(len(mine) == 1 and int(mine[0].get("size", 0)) == size, f"uploaded iso: {isos}")

    def managed_ct(self):
        ct = self.node.lxc(120)
        self.change("120 start", lambda: ct.status.start.post())
        self.change("120 config put",
                    lambda: ct.config.put(description=f"proxmoxer {self.mode}"), task=False)
        self.change("120 shutdown", lambda: ct.status.shutdown.post(timeout=10))
        self.check(self.status_of("lxc", 120) == "stopped", "120 stopped after shutdown")

    def readonly(self, vmid):
        vm = self.node.qemu(vmid)
        base = f"/api2/json/nodes/{NODE}/qemu/{vmid}"
        st = self.read(f"{vmid} status", lambda: vm.status.current.get()) or {}
        self.check(st.get("status") == "running", f"{vmid} status: {st}")
        self.read(f"{vmid} config", lambda: vm.config.get())
        self.read(f"{vmid} pending", lambda: vm.pending.get())
        self.read(f"{vmid} snapshots", lambda: vm.snapshot.get())
        self.read(f"{vmid} rrddata", lambda: vm.rrddata.get(timeframe="hour", cf="AVERAGE"))
        self.read(f"{vmid} agent interfaces", lambda: vm.agent("network-get-interfaces").get())
        self.read(f"{vmid} tasks", lambda: self.node.tasks.get(vmid=vmid))
        cases = [
            ("start", "POST", f"{base}/status/start", lambda: vm.status.start.post()),
            ("stop", "POST", f"{base}/status/stop", lambda: vm.status.stop.post()),
            ("shutdown", "POST", f"{base}/status/shutdown", lambda: vm.status.shutdown.post(timeout=30)),
            ("reboot", "POST", f"{base}/status/reboot", lambda: vm.status.reboot.post()),
            ("suspend", "POST", f"{base}/status/suspend", lambda: vm.status.suspend.post()),
            ("config put", "PUT", f"{base}/config", lambda: vm.config.put(memory=4096)),
            ("config post", "POST", f"{base}/config", lambda: vm.config.post(cores=8)),
            ("resize", "PUT", f"{base}/resize", lambda: vm.resize.put(disk="scsi0", size="+1G")),
            ("snapshot", "POST", f"{base}/snapshot", lambda: vm.snapshot.post(snapname="pm")),
            ("delete", "DELETE", base, lambda: vm.delete(purge=1)),
            ("vncproxy", "POST", f"{base}/vncproxy", lambda: vm.vncproxy.post(websocket=1)),
            ("agent exec", "POST", f"{base}/agent/exec", lambda: vm.agent.exec.post(command="id")),
            ("migrate", "POST", f"{base}/migrate", lambda: vm.migrate.post(target="pve2")),
            ("clone onto", "POST", f"/api2/json/nodes/{NODE}/qemu/9001/clone",
             lambda: self.node.qemu(9001).clone.post(newid=vmid, name="x")),
        ]
        for what, method, path, fn in cases:
            self.refused_change(vmid, f"{vmid} {what}", method, path, fn)
        st = self.read(f"{vmid} status after", lambda: vm.status.current.get()) or {}
        self.check(st.get("status") == "running", f"{vmid} changed state: {st}")

    def run(self):
        for step in (self.listing, self.managed_vm, self.managed_clone_and_delete,
                     self.upload, self.managed_ct, lambda: self.readonly(104), lambda: self.readonly(109)):
            try:
                step()
            except Exception:  # noqa: BLE001
                self.failures.append(f"[{self.mode}] step crashed:\n{traceback.format_exc()}")
        return {
            "mode": self.mode,
            "reads": self.reads,
            "allowed_changes": self.allowed,
            "refused_changes": len(self.refused),
            "refused": self.refused,
            "failures": self.failures,
        }


def main():
    expected = os.environ.get("PVEGATE_EXPECT_PROXMOXER")
    if expected and getattr(proxmoxer, "__version__", None) != expected:
        print(f"proxmoxer {getattr(proxmoxer, '__version__', '?')} imported from "
              f"{proxmoxer.__file__}, expected {expected}", file=sys.stderr)
        return 2
    token = ProxmoxAPI(
        HOST,
        port=PORT,
        user=os.environ["PVE_TOKEN_USER"],
        token_name=os.environ["PVE_TOKEN_NAME"],
        token_value=os.environ["PVE_TOKEN_VALUE"],
        verify_ssl=CA,
        timeout=15,
    )
    ticket = ProxmoxAPI(
        HOST,
        port=PORT,
        user=os.environ["PVE_USER"],
        password=os.environ["PVE_PASSWORD"],
        verify_ssl=CA,
        timeout=15,
    )
    ticket_value, csrf = ticket.get_tokens()
    results = [Suite("token", token, 131).run()]
    check = []
    if not (ticket_value and ticket_value.startswith("PVE:") and csrf):
        check.append(f"[ticket] login gave ticket {ticket_value!r}, CSRF {csrf!r}")
    results.append(Suite("ticket", ticket, 132).run())
    failures = check + [f for r in results for f in r["failures"]]
    for r in results:
        print(f"{r['mode']}: {r['reads']} reads, {r['allowed_changes']} changes allowed, "
              f"{r['refused_changes']} changes refused")
    for f in failures:
        print("FAIL", f)
    print("SUMMARY " + json.dumps({"results": results, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
