// cv4pve-api-javascript (the npm package, unmodified) against pvegate, once with an API token
// and once with a ticket login. Driven by tests/clients/registry.rs, which starts the simulated
// Proxmox and pvegate and passes, in the environment:
//   PVEGATE_HOST, PVEGATE_PORT, PVE_USER ("root"), PVE_REALM, PVE_PASSWORD, PVE_TOKEN
//   ("root@pam!tofu=…"), PVE_NODE, PVE_CLONE_IDS ("141,142": one clone id per mode).
// Prints one line "SUMMARY {json}"; exits 1 when a call does not behave.
"use strict";
const { PveClient } = require("@corsinvest/cv4pve-api-javascript");

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`missing ${k}`);
  return v;
};
const host = env("PVEGATE_HOST");
const port = Number(env("PVEGATE_PORT"));
const nodeName = env("PVE_NODE");
const cloneIds = env("PVE_CLONE_IDS").split(",").map(Number);
const failures = [];

async function waitTask(client, result, what) {
  const upid = result.response && result.response.data;
  if (typeof upid !== "string" || !upid.startsWith("UPID:")) {
    failures.push(`${what}: no task id in ${JSON.stringify(result.response)}`);
    return;
  }
  const done = await client.waitForTaskToFinish(upid, 50, 10000);
  if (!done) failures.push(`${what}: task did not finish`);
  const exit = await client.getExitStatusTask(upid);
  if (exit !== "OK") failures.push(`${what}: task ended ${exit}`);
}

async function run(mode, client, cloneId) {
  const out = { mode, reads: 0, allowed: 0, refused: [] };
  const node = client.nodes.get(nodeName);
  const read = async (what, call) => {
    const r = await call();
    if (!r.isSuccessStatusCode) failures.push(`${mode} read ${what}: ${r.statusCode} ${r.reasonPhrase}`);
    else out.reads++;
    return r;
  };
  const change = async (what, call, task = true) => {
    const r = await call();
    if (!r.isSuccessStatusCode) {
      failures.push(`${mode} change ${what}: ${r.statusCode} ${r.reasonPhrase}`);
      return;
    }
    if (task) await waitTask(client, r, `${mode} ${what}`);
    out.allowed++;
  };
  const refuse = async (vmid, what, method, path, call) => {
    const r = await call();
    const text = `${r.reasonPhrase} ${r.response && r.response.message}`;
    if (r.statusCode !== 403 || !text.includes("pvegate") || !text.includes(`VM ${vmid}`)) {
      failures.push(`${mode} refusal ${what} on ${vmid}: ${r.statusCode} ${text}`);
    } else {
      out.refused.push({ vmid, what, method, path, text: r.reasonPhrase });
    }
  };

  // Reads, the readonly guests included.
  const version = await read("version", () => client.version.version());
  if (!version.response.data.version) failures.push(`${mode}: no version`);
  await read("nodes", () => client.nodes.index());
  const res = await read("cluster resources", () => client.cluster.resources.resources("vm"));
  if (!res.response.data.some((g) => g.vmid === 104)) failures.push(`${mode}: 104 not listed`);
  for (const vmid of [104, 109, 110]) {
    const vm = node.qemu.get(vmid);
    await read(`${vmid} status`, () => vm.status.current.vmStatus());
    await read(`${vmid} config`, () => vm.config.vmConfig());
    await read(`${vmid} snapshots`, () => vm.snapshot.snapshotList());
  }

  // Changes on the managed VM 110 and a clone of template 9001.
  const vm = node.qemu.get(110);
  await change("stop 110", () => vm.status.stop.vmStop());
  await change("start 110", () => vm.status.start.vmStart());
  await change("shutdown 110", () => vm.status.shutdown.vmShutdown());
  await change("start 110 again", () => vm.status.start.vmStart());
  await change("config 110 (PUT)", () =>
    client.set(`/nodes/${nodeName}/qemu/110/config`, { description: `cv4pve ${mode}` }), false);
  await change("config 110 (POST)", () =>
    client.create(`/nodes/${nodeName}/qemu/110/config`, { memory: 2048 }));
  await change("snapshot 110", () => vm.snapshot.snapshot(`cv4pve-${mode}`));
  await change("delete snapshot 110", () => vm.snapshot.get(`cv4pve-${mode}`).delsnapshot());
  await change(`clone 9001 -> ${cloneId}`, () =>
    node.qemu.get(9001).clone.cloneVm(cloneId, undefined, undefined, undefined, undefined, `cv4pve-${mode}`));
  await change(`delete ${cloneId}`, () => node.qemu.get(cloneId).destroyVm());

  // Every kind of change to the readonly VMs 104 and 109 is refused.
  for (const vmid of [104, 109]) {
    const g = node.qemu.get(vmid);
    const base = `/api2/json/nodes/${nodeName}/qemu/${vmid}`;
    await refuse(vmid, "stop", "POST", `${base}/status/stop`, () => g.status.stop.vmStop());
    await refuse(vmid, "shutdown", "POST", `${base}/status/shutdown`, () => g.status.shutdown.vmShutdown());
    await refuse(vmid, "reboot", "POST", `${base}/status/reboot`, () => g.status.reboot.vmReboot());
    await refuse(vmid, "config", "PUT", `${base}/config`, () =>
      client.set(`/nodes/${nodeName}/qemu/${vmid}/config`, { memory: 1 }));
    await refuse(vmid, "resize", "PUT", `${base}/resize`, () => g.resize.resizeVm("scsi0", "+1G"));
    await refuse(vmid, "snapshot", "POST", `${base}/snapshot`, () => g.snapshot.snapshot("nope"));
    await refuse(vmid, "console", "POST", `${base}/vncproxy`, () => g.vncproxy.vncproxy(undefined, true));
    await refuse(vmid, "destroy", "DELETE", base, () => g.destroyVm());
    await refuse(vmid, "clone onto", "POST", `/api2/json/nodes/${nodeName}/qemu/9001/clone`, () =>
      node.qemu.get(9001).clone.cloneVm(vmid));
  }
  return out;
}

(async () => {
  const token = new PveClient(host, port);
  token.apiToken = env("PVE_TOKEN");
  const ticket = new PveClient(host, port);
  const loggedIn = await ticket.login(env("PVE_USER"), env("PVE_PASSWORD"), env("PVE_REALM"));
  if (!loggedIn) failures.push("login failed");
  const results = [await run("token", token, cloneIds[0])];
  if (loggedIn) results.push(await run("ticket", ticket, cloneIds[1]));
  console.log("SUMMARY " + JSON.stringify({ results, failures }));
  process.exit(failures.length ? 1 : 0);
})().catch((e) => {
  console.log("SUMMARY " + JSON.stringify({ results: [], failures: [String(e && e.stack || e)] }));
  process.exit(1);
});
