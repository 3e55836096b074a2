-- Mixed Proxmox API traffic, in a fixed cycle of 10 requests per wrk thread:
--   6 x GET  .../qemu/104/status/current   (status poll of a readonly guest: allowed)
--   1 x GET  .../qemu/110/config           (allowed)
--   2 x POST .../qemu/110/config           (form body; guest 110 is not protected: allowed)
--   1 x POST .../qemu/104/status/stop      (guest 104 is readonly: every proxy must answer 403)
-- so 10% of the requests are refusals. wrk counts non-2xx answers in errors.status, which
-- bench.py checks against the expected 10%.
local auth = "PVEAPIToken=bench@pve!load=00000000-0000-0000-0000-000000000000"
local reqs = {}
local i = 0

init = function(args)
  local get = { ["Authorization"] = auth }
  local post = {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  local poll = wrk.format("GET", "/api2/json/nodes/pve/qemu/104/status/current", get)
  local cfg = wrk.format("GET", "/api2/json/nodes/pve/qemu/110/config", get)
  local write = wrk.format("POST", "/api2/json/nodes/pve/qemu/110/config", post,
    "memory=2048&net0=virtio%2Cbridge%3Dvmbr0&description=bench")
  local refused = wrk.format("POST", "/api2/json/nodes/pve/qemu/104/status/stop", post,
    "timeout=30")
  reqs = { poll, poll, write, poll, cfg, poll, refused, poll, write, poll }
end

request = function()
  i = i % #reqs + 1
  return reqs[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
