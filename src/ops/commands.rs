//! The operations of `pvegate ops` (and the tools of `pvegate mcp`): each [`Op`] runs
//! against the API through one [`Client`] and yields a [`Report`] (JSON and a table), or an
//! [`OpsError`] whose text is one line (plus a task log tail for failed tasks).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{encode_segment, CallError, Client, GuestRef};
use super::output::{human_bytes, kv_table, table};
use super::settings::parse_range;
use super::OpsError;

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// `status/start`.
    Start,
    /// `status/stop` (hard stop).
    Stop,
    /// `status/shutdown` (ACPI / init).
    Shutdown,
    /// `status/reboot`.
    Reboot,
}

impl Power {
    /// The API path element and the operation name.
    pub fn name(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Stop => "stop",
            Power::Shutdown => "shutdown",
            Power::Reboot => "reboot",
        }
    }
}

/// One operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// Every guest.
    List,
    /// `status/current` of a guest.
    Status { vmid: u32 },
    /// The config of a guest.
    Config { vmid: u32 },
    /// The guest's IP addresses (QEMU: guest agent; LXC: `interfaces`).
    GetIp { vmid: u32 },
    /// Storages of the node(s).
    Storage,
    /// The next free VMID, optionally inside a range (`100-199` or a configured name).
    NextVmid { range: Option<String> },
    /// A power action, waiting for its task unless `wait` is false.
    Power {
        vmid: u32,
        action: Power,
        wait: bool,
    },
    /// Destroy a guest (the caller has confirmed).
    Destroy { vmid: u32, wait: bool },
    /// Set config keys (`delete=key1,key2` removes keys).
    Configure {
        vmid: u32,
        settings: Vec<(String, String)>,
    },
    /// Grow a disk: `size` is `+10G` or an absolute size.
    Resize {
        vmid: u32,
        disk: String,
        size: String,
    },
    /// Add a new disk (QEMU `scsiN`/`virtioN`/`sataN`, LXC `mpN`) of `size` GiB on `storage`.
    CreateDisk {
        vmid: u32,
        storage: String,
        size: String,
        bus: Option<String>,
        mountpoint: Option<String>,
    },
    /// Clone a guest or template.
    Clone {
        source: u32,
        newid: u32,
        name: Option<String>,
        full: bool,
        wait: bool,
    },
    /// Turn a guest into a template.
    Template { vmid: u32 },
    /// Wait until the guest reports an address that accepts TCP on `port`.
    WaitSsh {
        vmid: u32,
        timeout: Duration,
        port: u16,
    },
}

impl Op {
    /// The operation's name, as in `pvegate ops <name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Status { .. } => "status",
            Op::Config { .. } => "config",
            Op::GetIp { .. } => "get-ip",
            Op::Storage => "storage",
            Op::NextVmid { .. } => "next-vmid",
            Op::Power { action, .. } => action.name(),
            Op::Destroy { .. } => "destroy",
            Op::Configure { .. } => "configure",
            Op::Resize { .. } => "resize",
            Op::CreateDisk { .. } => "create-disk",
            Op::Clone { .. } => "clone",
            Op::Template { .. } => "template",
            Op::WaitSsh { .. } => "wait-ssh",
        }
    }
}

/// What an operation produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// For `--json` and MCP.
    pub json: Value,
    /// For people.
    pub text: String,
}

/// Runs `op`.
pub async fn run(client: &Client, op: &Op) -> Result<Report, OpsError> {
    let mut ctx = Ctx {
        client,
        op: op.name(),
        guest: None,
        subject: None,
    };
    match ctx.run(op).await {
        Ok(r) => Ok(r),
        Err(CallError::Other(e)) => Err(e),
        Err(CallError::Api(e)) => Err(ctx.explain(e).await),
    }
}

struct Ctx<'a> {
    client: &'a Client,
    op: &'static str,
    /// The guest being operated on, once looked up.
    guest: Option<GuestRef>,
    /// The VMID the operation is about (also before lookup, e.g. clone's new id).
    subject: Option<u32>,
}

type R<T> = Result<T, CallError>;

impl Ctx<'_> {
    async fn guest(&mut self, vmid: u32) -> R<GuestRef> {
        self.subject = Some(vmid);
        let g = self.client.guest(vmid).await?;
        self.guest = Some(g.clone());
        Ok(g)
    }

    /// Turns an API error into the user's one line.
    async fn explain(&self, e: super::client::ApiError) -> OpsError {
        if e.refused {
            let inner = e
                .message
                .strip_prefix("Permission check failed (")
                .and_then(|m| m.strip_suffix(')'))
                .unwrap_or(&e.message)
                .to_owned();
            // The guest the gate names (a clone's source, a disk's owner…), else ours.
            let named = first_guest_named(&inner);
            let who = match (&self.guest, named.or(self.subject)) {
                (Some(g), Some(v)) if g.vmid == v => Some(g.label()),
                (_, Some(v)) => {
                    // The guest may not exist yet (clone onto an id) or not be looked up.
                    match self.client.guest(v).await {
                        Ok(g) => Some(g.label()),
                        Err(_) => Some(format!("guest {v}")),
                    }
                }
                _ => None,
            };
            let line = match &who {
                Some(w) => format!("refused by pvegate: {} {w}: {inner}", self.op),
                None => format!("refused by pvegate: {}: {inner}", self.op),
            };
            return OpsError::Refused(line.replace('\n', " "));
        }
        let what = match &self.guest {
            Some(g) => format!("{} {}", self.op, g.label()),
            None => self.op.to_owned(),
        };
        let mut msg = e.message.clone();
        if msg.contains("QEMU guest agent is not running") {
            msg = "the QEMU guest agent is not running in the guest (install and start qemu-guest-agent; it may still be booting)".into();
        } else if msg.contains("No QEMU guest agent configured") {
            msg = "no QEMU guest agent configured (set agent=1 and install qemu-guest-agent in the guest)".into();
        }
        OpsError::Failed(format!("{what} failed: {} {msg}", e.status).replace('\n', " "))
    }

    async fn run(&mut self, op: &Op) -> R<Report> {
        match op {
            Op::List => self.list().await,
            Op::Status { vmid } => {
                let g = self.guest(*vmid).await?;
                let v = self
                    .client
                    .get(&format!("{}/status/current", g.path()), &[])
                    .await?;
                Ok(Report {
                    text: kv_table(&v),
                    json: v,
                })
            }
            Op::Config { vmid } => {
                let g = self.guest(*vmid).await?;
                let v = self
                    .client
                    .get(&format!("{}/config", g.path()), &[])
                    .await?;
                Ok(Report {
                    text: kv_table(&v),
                    json: v,
                })
            }
            Op::GetIp { vmid } => {
                let g = self.guest(*vmid).await?;
                let addrs = self.addresses(&g).await?;
                let rows: Vec<Vec<String>> = addrs
                    .iter()
                    .map(|a| {
                        vec![
                            a["iface"].as_str().unwrap_or("").to_owned(),
                            a["address"].as_str().unwrap_or("").to_owned(),
                            a["prefix"].to_string(),
                            a["family"].as_str().unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                let text = if rows.is_empty() {
                    format!("{} reports no address yet", g.label())
                } else {
                    table(&["IFACE", "ADDRESS", "PREFIX", "FAMILY"], &rows)
                };
                Ok(Report {
                    json: json!({"vmid": g.vmid, "name": g.name, "addresses": addrs}),
                    text,
                })
            }
            Op::Storage => self.storage().await,
            Op::NextVmid { range } => self.next_vmid(range.as_deref()).await,
            Op::Power { vmid, action, wait } => {
                let g = self.guest(*vmid).await?;
                let upid = self
                    .client
                    .call(
                        Method::POST,
                        &format!("{}/status/{}", g.path(), action.name()),
                        &[],
                    )
                    .await?;
                self.finish(&g, upid, *wait).await
            }
            Op::Destroy { vmid, wait } => {
                let g = self.guest(*vmid).await?;
                let upid = self
                    .client
                    .call(
                        Method::DELETE,
                        &g.path(),
                        &[
                            ("purge", "1".into()),
                            ("destroy-unreferenced-disks", "1".into()),
                        ],
                    )
                    .await?;
                self.finish(&g, upid, *wait).await
            }
            Op::Configure { vmid, settings } => {
                let g = self.guest(*vmid).await?;
                if settings.is_empty() {
                    return Err(
                        OpsError::Usage("configure needs at least one key=value".into()).into(),
                    );
                }
                let params: Vec<(&str, String)> = settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                let r = self
                    .client
                    .call(Method::PUT, &format!("{}/config", g.path()), &params)
                    .await?;
                let mut rep = self.finish(&g, r, true).await?;
                rep.json["settings"] = json!(settings
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<serde_json::Map<_, _>>());
                Ok(rep)
            }
            Op::Resize { vmid, disk, size } => {
                let g = self.guest(*vmid).await?;
                let r = self
                    .client
                    .call(
                        Method::PUT,
                        &format!("{}/resize", g.path()),
                        &[("disk", disk.clone()), ("size", size.clone())],
                    )
                    .await?;
                self.finish(&g, r, true).await
            }
            Op::CreateDisk {
                vmid,
                storage,
                size,
                bus,
                mountpoint,
            } => {
                self.create_disk(*vmid, storage, size, bus.as_deref(), mountpoint.as_deref())
                    .await
            }
            Op::Clone {
                source,
                newid,
                name,
                full,
                wait,
            } => {
                let g = self.guest(*source).await?;
                let mut params = vec![("newid", newid.to_string())];
                if let Some(n) = name {
                    params.push((if g.kind == "lxc" { "hostname" } else { "name" }, n.clone()));
                }
                if *full {
                    params.push(("full", "1".into()));
                }
                // A refusal of a clone is usually about the new id: name it.
                self.subject = Some(*newid);
                self.guest = None;
                let upid = self
                    .client
                    .call(Method::POST, &format!("{}/clone", g.path()), &params)
                    .await?;
                let mut rep = self.finish(&g, upid, *wait).await?;
                rep.json["newid"] = json!(newid);
                rep.text = format!("{} (new guest {newid})", rep.text);
                Ok(rep)
            }
            Op::Template { vmid } => {
                let g = self.guest(*vmid).await?;
                let r = self
                    .client
                    .call(Method::POST, &format!("{}/template", g.path()), &[])
                    .await?;
                self.finish(&g, r, true).await
            }
            Op::WaitSsh {
                vmid,
                timeout,
                port,
            } => self.wait_ssh(*vmid, *timeout, *port).await,
        }
    }

    /// Waits for a UPID answer (if any) and reports.
    async fn finish(&self, g: &GuestRef, answer: Value, wait: bool) -> R<Report> {
        let upid = answer
            .as_str()
            .filter(|s| s.starts_with("UPID:"))
            .map(str::to_owned);
        let mut json = json!({"vmid": g.vmid, "name": g.name, "operation": self.op});
        let text;
        match upid {
            Some(u) if wait => {
                let exit = self.client.wait_task(&g.node, &u).await?;
                json["upid"] = json!(u);
                json["status"] = json!(exit);
                text = format!("{} {}: {exit}", self.op, g.label());
            }
            Some(u) => {
                json["upid"] = json!(u);
                json["status"] = json!("started");
                text = format!("{} {}: started, task {u}", self.op, g.label());
            }
            None => {
                json["status"] = json!("OK");
                text = format!("{} {}: OK", self.op, g.label());
            }
        }
        Ok(Report { json, text })
    }

    async fn list(&mut self) -> R<Report> {
        let mut list = self.client.guests().await?;
        list.sort_by_key(|g| g.get("vmid").and_then(Value::as_u64).unwrap_or(0));
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|g| {
                let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let n = |k: &str| g.get(k).and_then(Value::as_u64).unwrap_or(0);
                vec![
                    n("vmid").to_string(),
                    s("name"),
                    s("type"),
                    s("node"),
                    s("status"),
                    if n("template") == 1 { "yes" } else { "" }.to_owned(),
                    n("maxcpu").to_string(),
                    human_bytes(n("maxmem")),
                    human_bytes(n("maxdisk")),
                    s("tags"),
                ]
            })
            .collect();
        Ok(Report {
            text: table(
                &[
                    "VMID", "NAME", "TYPE", "NODE", "STATUS", "TEMPLATE", "CPUS", "MEM", "DISK",
                    "TAGS",
                ],
                &rows,
            ),
            json: Value::Array(list),
        })
    }

    async fn storage(&mut self) -> R<Report> {
        let mut all = Vec::new();
        let mut rows = Vec::new();
        for node in self.client.nodes().await? {
            let v = self
                .client
                .get(&format!("/nodes/{}/storage", encode_segment(&node)), &[])
                .await?;
            for s in v.as_array().into_iter().flatten() {
                let st = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
                let used = match n("total") {
                    0 => String::new(),
                    t => format!("{:.0}%", n("used") as f64 * 100.0 / t as f64),
                };
                rows.push(vec![
                    node.clone(),
                    st("storage"),
                    st("type"),
                    st("content"),
                    human_bytes(n("avail")),
                    human_bytes(n("total")),
                    used,
                    if n("active") == 1 { "yes" } else { "no" }.to_owned(),
                ]);
                let mut s = s.clone();
                s["node"] = json!(node);
                all.push(s);
            }
        }
        Ok(Report {
            text: table(
                &[
                    "NODE", "STORAGE", "TYPE", "CONTENT", "AVAIL", "TOTAL", "USED", "ACTIVE",
                ],
                &rows,
            ),
            json: Value::Array(all),
        })
    }

    async fn next_vmid(&mut self, range: Option<&str>) -> R<Report> {
        let Some(range) = range else {
            let v = self.client.get("/cluster/nextid", &[]).await?;
            let id = v
                .as_str()
                .and_then(|s| s.parse::<u32>().ok())
                .or_else(|| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .ok_or_else(|| OpsError::Failed(format!("/cluster/nextid answered {v}")))?;
            return Ok(Report {
                json: json!({"vmid": id}),
                text: id.to_string(),
            });
        };
        let (lo, hi) = match self.client.settings.ranges.get(range) {
            Some(r) => *r,
            None if range.contains('-') => parse_range(range).map_err(OpsError::Usage)?,
            None => {
                let known: Vec<&String> = self.client.settings.ranges.keys().collect();
                return Err(OpsError::Usage(format!(
                    "unknown range {range:?}: give LOW-HIGH or a name from [ranges] in ops.toml (known: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    }
                ))
                .into());
            }
        };
        let used: std::collections::BTreeSet<u64> = self
            .client
            .guests()
            .await?
            .iter()
            .filter_map(|g| g.get("vmid").and_then(Value::as_u64))
            .collect();
        let mut checked = 0;
        for id in lo..=hi {
            if used.contains(&u64::from(id)) {
                continue;
            }
            // /cluster/nextid?vmid=N also sees ids that are reserved or in a pending create.
            match self
                .client
                .get("/cluster/nextid", &[("vmid", id.to_string())])
                .await
            {
                Ok(_) => {
                    return Ok(Report {
                        json: json!({"vmid": id, "range": [lo, hi]}),
                        text: id.to_string(),
                    })
                }
                Err(CallError::Api(e)) if e.status == 400 && !e.refused => {
                    checked += 1;
                    if checked > 1000 {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(OpsError::Failed(format!("no free VMID in {lo}-{hi}")).into())
    }

    /// Non-loopback, non-link-local addresses: [{iface, address, prefix, family}].
    async fn addresses(&self, g: &GuestRef) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if g.kind == "lxc" {
            let v = self
                .client
                .get(&format!("{}/interfaces", g.path()), &[])
                .await?;
            for i in v.as_array().into_iter().flatten() {
                let name = i.get("name").and_then(Value::as_str).unwrap_or("");
                for (key, fam) in [("inet", "ipv4"), ("inet6", "ipv6")] {
                    if let Some(cidr) = i.get(key).and_then(Value::as_str) {
                        let (a, p) = cidr.split_once('/').unwrap_or((cidr, ""));
                        push_addr(&mut out, name, a, p.parse().unwrap_or(0), fam);
                    }
                }
            }
        } else {
            let v = self
                .client
                .get(&format!("{}/agent/network-get-interfaces", g.path()), &[])
                .await?;
            let list = v.get("result").cloned().unwrap_or(v);
            for i in list.as_array().into_iter().flatten() {
                let name = i.get("name").and_then(Value::as_str).unwrap_or("");
                for a in i
                    .get("ip-addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let addr = a.get("ip-address").and_then(Value::as_str).unwrap_or("");
                    let fam = a
                        .get("ip-address-type")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let prefix = a.get("prefix").and_then(Value::as_u64).unwrap_or(0);
                    push_addr(&mut out, name, addr, prefix, fam);
                }
            }
        }
        Ok(out)
    }

    async fn create_disk(
        &mut self,
        vmid: u32,
        storage: &str,
        size: &str,
        bus: Option<&str>,
        mountpoint: Option<&str>,
    ) -> R<Report> {
        let g = self.guest(vmid).await?;
        let gib = size
            .trim_end_matches(['G', 'g'])
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                OpsError::Usage(format!(
                    "disk size {size:?}: give whole GiB, e.g. 32 or 32G"
                ))
            })?;
        if storage.is_empty()
            || !storage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(OpsError::Usage(format!("{storage:?} is not a storage id")).into());
        }
        let config = self
            .client
            .get(&format!("{}/config", g.path()), &[])
            .await?;
        let (prefix, max) = if g.kind == "lxc" {
            ("mp", 256)
        } else {
            match bus.unwrap_or("scsi") {
                "scsi" => ("scsi", 31),
                "virtio" => ("virtio", 16),
                "sata" => ("sata", 6),
                "ide" => ("ide", 4),
                b => {
                    return Err(OpsError::Usage(format!(
                        "bus {b:?}: choose scsi, virtio, sata or ide"
                    ))
                    .into())
                }
            }
        };
        let slot = (0..max)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| config.get(k).is_none())
            .ok_or_else(|| OpsError::Failed(format!("{} has no free {prefix} slot", g.label())))?;
        let value = if g.kind == "lxc" {
            let mp = mountpoint.map_or_else(|| format!("/mnt/{slot}"), str::to_owned);
            format!("{storage}:{gib},mp={mp}")
        } else {
            format!("{storage}:{gib}")
        };
        let r = self
            .client
            .call(
                Method::PUT,
                &format!("{}/config", g.path()),
                &[(slot.as_str(), value.clone())],
            )
            .await?;
        let mut rep = self.finish(&g, r, true).await?;
        rep.json["disk"] = json!(slot);
        rep.json["value"] = json!(value);
        rep.text = format!("{} as {slot}={value}", rep.text);
        Ok(rep)
    }

    async fn wait_ssh(&mut self, vmid: u32, timeout: Duration, port: u16) -> R<Report> {
        let g = self.guest(vmid).await?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no address reported yet");
        loop {
            // Each poll is bounded by what is left of the timeout (an agent call can hang).
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let polled = match tokio::time::timeout(left, self.addresses(&g)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Other(OpsError::Failed(
                    "the address query did not answer in time".into(),
                ))),
            };
            match polled {
                Ok(addrs) => {
                    // IPv4 first: most homelab guests are reached that way.
                    let mut ips: Vec<std::net::IpAddr> = addrs
                        .iter()
                        .filter_map(|a| a["address"].as_str()?.parse().ok())
                        .collect();
                    ips.sort_by_key(|ip| !ip.is_ipv4());
                    if ips.is_empty() {
                        last = "no address reported yet".into();
                    }
                    for ip in ips {
                        let sa = std::net::SocketAddr::new(ip, port);
                        let left = deadline.saturating_duration_since(Instant::now());
                        let t = left.min(Duration::from_secs(3));
                        match tokio::time::timeout(t, tokio::net::TcpStream::connect(sa)).await {
                            Ok(Ok(_)) => {
                                return Ok(Report {
                                    json: json!({"vmid": g.vmid, "name": g.name, "address": ip.to_string(), "port": port}),
                                    text: ip.to_string(),
                                });
                            }
                            Ok(Err(e)) => last = format!("{sa}: {e}"),
                            Err(_) => last = format!("{sa}: no answer"),
                        }
                    }
                }
                Err(CallError::Api(e)) if !e.refused => {
                    last = e.message.trim().to_owned();
                }
                Err(CallError::Other(OpsError::Failed(m))) => last = m,
                Err(e) => return Err(e),
            }
            if Instant::now() + Duration::from_secs(1) > deadline {
                return Err(OpsError::Failed(format!(
                    "wait-ssh {}: no SSH on port {port} within {} s (last: {last})",
                    g.label(),
                    timeout.as_secs()
                ))
                .into());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn push_addr(out: &mut Vec<Value>, iface: &str, addr: &str, prefix: u64, family: &str) {
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return;
    };
    // Loopback is `lo`'s; link-local addresses are not reachable from elsewhere.
    let skip = match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        std::net::IpAddr::V6(v6) => v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if skip || iface == "lo" || (ip.is_loopback() && iface.is_empty()) {
        return;
    }
    let family = if family.is_empty() {
        if ip.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        }
    } else {
        family
    };
    out.push(json!({"iface": iface, "address": addr, "prefix": prefix, "family": family}));
}

/// The first guest a gate message names: `VM N` or `CT N` as whole words, N a VMID (3 to 9
/// digits, no leading zero).
fn first_guest_named(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    let word = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    (0..b.len()).find_map(|i| {
        let kind = b.get(i..i + 3)?;
        if !(kind == b"VM " || kind == b"CT ") || (i > 0 && word(i - 1)) {
            return None;
        }
        let digits = b[i + 3..].iter().take_while(|c| c.is_ascii_digit()).count();
        let start = i + 3;
        if !(3..=9).contains(&digits) || b[start] == b'0' || word(start + digits) {
            return None;
        }
        text[start..start + digits].parse().ok()
    })
}

#[cfg(test)]
mod named_tests {
    use super::first_guest_named;

    #[test]
    fn the_first_whole_word_guest_is_found() {
        assert_eq!(
            first_guest_named("pvegate: VM 104 'doc1' is readonly: power.stop refused"),
            Some(104)
        );
        assert_eq!(first_guest_named("clone of CT 120 onto VM 130"), Some(120));
        assert_eq!(
            first_guest_named("XVM 104 and VM 0104 and VM 12 and VM 1234567890"),
            None
        );
        assert_eq!(first_guest_named("VM 104x then VM 109"), Some(109));
        assert_eq!(first_guest_named("nothing here"), None);
        assert_eq!(first_guest_named("VM 999999999"), Some(999_999_999));
    }
}
