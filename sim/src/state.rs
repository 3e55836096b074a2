//! What the simulated cluster knows: its guests (node, power state, config, snapshots), the
//! nodes' tasks (UPIDs, status, logs) and storage content, and the cluster configuration
//! (`cluster`: pools, storages, mappings, backup jobs, HA, options). A single node is a
//! cluster of one; node-local lookups are made on [`State::node`], which the router sets
//! for each call.
//!
//! Every change is applied at once; the task that reports it may still read `running` for
//! the first few polls (`SimConfig::task_running_polls`) so clients exercise their polling.
//! Error texts follow qemu-server / pve-container where clients look at them.
//!
//! This file holds the types and the guest lookup; the operations are `impl State` blocks by
//! concern: `tasks`, `node` (lists, resources, bulk actions), `guests` (status, power, config,
//! create/clone/destroy/migrate), `snapshots`, `agent` (guest agent, consoles), `storage`,
//! `cluster`.

mod agent;
mod cluster;
mod guests;
mod node;
mod snapshots;
mod storage;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::auth::now;
use super::reply::ApiError;
use super::{GuestKind, SimConfig, SimGuest};

/// One snapshot of a guest.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub name: String,
    pub description: String,
    pub snaptime: u64,
    pub parent: Option<String>,
    pub vmstate: bool,
}

/// One guest of the node.
#[derive(Debug, Clone)]
pub(crate) struct Guest {
    pub vmid: u32,
    /// The node it lives on.
    pub node: String,
    pub kind: GuestKind,
    pub name: String,
    pub running: bool,
    pub paused: bool,
    pub template: bool,
    pub started: u64,
    pub config: BTreeMap<String, String>,
    pub snapshots: Vec<Snapshot>,
    /// The snapshot the current state derives from.
    pub parent: Option<String>,
}

/// One task (worker) of the node.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub upid: String,
    /// The node that ran it.
    pub node: String,
    pub ttype: String,
    pub id: String,
    pub user: String,
    pub pid: u32,
    pub pstart: u32,
    pub starttime: u64,
    pub endtime: u64,
    /// `OK` or the error text.
    pub exitstatus: String,
    /// How many more status polls report `running`.
    pub polls_left: u32,
    /// Log lines without the final `TASK …` line.
    pub log: Vec<String>,
}

impl Task {
    fn running(&self) -> bool {
        self.polls_left > 0
    }

    /// The log as shown: while running without the final line.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.log.clone();
        if !self.running() {
            if self.exitstatus == "OK" {
                lines.push("TASK OK".into());
            } else {
                lines.push(format!("TASK ERROR: {}", self.exitstatus));
            }
        }
        lines
    }

    fn entry(&self) -> Value {
        let node = &self.node;
        let mut v = json!({
            "upid": self.upid, "node": node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.ttype, "id": self.id, "user": self.user,
        });
        if let Some((_, token)) = self.user.split_once('!') {
            v["tokenid"] = json!(token);
        }
        if !self.running() {
            v["endtime"] = json!(self.endtime);
            v["status"] = json!(self.exitstatus);
        }
        v
    }
}

/// A file on a storage (uploads and the seeded ISO/template).
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    /// The node whose (local) storage holds it.
    pub node: String,
    pub volid: String,
    pub content: String,
    pub format: String,
    pub size: u64,
    pub ctime: u64,
}

/// Disk keys in a guest config.
pub(crate) fn is_disk_key(key: &str) -> bool {
    let bus = key.trim_end_matches(|c: char| c.is_ascii_digit());
    bus != key
        && matches!(
            bus,
            "scsi" | "virtio" | "sata" | "ide" | "efidisk" | "tpmstate" | "mp" | "unused"
        )
        || key == "rootfs"
}

/// `32G` → bytes.
fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().unwrap_or(0.0);
    let mult: f64 = match unit {
        "K" | "k" => 1024.0,
        "M" | "m" => 1024.0 * 1024.0,
        "G" | "g" => 1024.0 * 1024.0 * 1024.0,
        "T" | "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    (n * mult) as u64
}

fn format_size(bytes: u64) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    if bytes % G == 0 {
        format!("{}G", bytes / G)
    } else if bytes % M == 0 {
        format!("{}M", bytes / M)
    } else {
        format!("{}K", bytes.div_ceil(1024))
    }
}

/// `size=` of a disk value.
fn disk_size(value: &str) -> u64 {
    value
        .split(',')
        .find_map(|p| p.strip_prefix("size="))
        .map_or(0, parse_size)
}

fn mac(vmid: u32, n: u32) -> String {
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        (vmid >> 8) & 0xff,
        vmid & 0xff,
        n & 0xff
    )
}

/// The guest's IPv4 address in the sim's 10.0.0.0/16 network.
pub(crate) fn guest_ip(vmid: u32) -> String {
    if vmid < 255 {
        format!("10.0.0.{vmid}")
    } else {
        format!("10.0.{}.{}", (vmid / 254) % 256, vmid % 254 + 1)
    }
}

fn default_config(
    kind: GuestKind,
    vmid: u32,
    name: &str,
    template: bool,
) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        c.insert(k.to_owned(), v);
    };
    let disk_prefix = if template { "base" } else { "vm" };
    match kind {
        GuestKind::Qemu => {
            set("name", name.to_owned());
            set("memory", "2048".into());
            set("cores", "2".into());
            set("sockets", "1".into());
            set("cpu", "x86-64-v2-AES".into());
            set("ostype", "l26".into());
            set("agent", "1".into());
            set("boot", "order=scsi0;net0".into());
            set("scsihw", "virtio-scsi-single".into());
            set(
                "scsi0",
                format!("local-lvm:{disk_prefix}-{vmid}-disk-0,iothread=1,size=32G"),
            );
            set(
                "net0",
                format!("virtio={},bridge=vmbr0,firewall=1", mac(vmid, 0)),
            );
            set(
                "smbios1",
                format!("uuid=00000000-0000-4000-8000-{vmid:012}"),
            );
            set("vmgenid", format!("00000000-0000-4000-9000-{vmid:012}"));
            if template {
                set("template", "1".into());
            }
        }
        GuestKind::Lxc => {
            set("hostname", name.to_owned());
            set("arch", "amd64".into());
            set("cores", "1".into());
            set("memory", "512".into());
            set("swap", "512".into());
            set("ostype", "debian".into());
            set(
                "rootfs",
                format!("local-lvm:{disk_prefix}-{vmid}-disk-0,size=8G"),
            );
            set(
                "net0",
                format!(
                    "name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth",
                    mac(vmid, 0)
                ),
            );
            set("unprivileged", "1".into());
            if template {
                set("template", "1".into());
            }
        }
    }
    c
}

impl Guest {
    fn new(g: &SimGuest, node: &str) -> Self {
        let mut config = default_config(g.kind, g.vmid, &g.name, g.template);
        if !g.tags.is_empty() {
            config.insert("tags".into(), normalize_tags(&g.tags.join(";")));
        }
        for (k, v) in &g.config {
            if v.is_empty() {
                config.remove(k);
            } else if k == "tags" {
                config.insert(k.clone(), normalize_tags(v));
            } else {
                config.insert(k.clone(), v.clone());
            }
        }
        Guest {
            vmid: g.vmid,
            node: g.node.clone().unwrap_or_else(|| node.to_owned()),
            kind: g.kind,
            name: g.name.clone(),
            running: g.running && !g.template,
            paused: false,
            template: g.template,
            started: now().saturating_sub(3600 + u64::from(g.vmid)),
            config,
            snapshots: Vec::new(),
            parent: None,
        }
    }

    /// The tags, split (`a;b` → `["a", "b"]`).
    pub fn tag_list(&self) -> Vec<String> {
        self.config
            .get("tags")
            .map(|t| split_tags(t))
            .unwrap_or_default()
    }

    /// `qemu` or `lxc`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }

    /// `VM 104` or `CT 120`, as in Proxmox messages.
    pub fn label(&self) -> String {
        match self.kind {
            GuestKind::Qemu => format!("VM {}", self.vmid),
            GuestKind::Lxc => format!("CT {}", self.vmid),
        }
    }

    fn name_key(&self) -> &'static str {
        match self.kind {
            GuestKind::Qemu => "name",
            GuestKind::Lxc => "hostname",
        }
    }

    fn status(&self) -> &'static str {
        if self.running {
            "running"
        } else {
            "stopped"
        }
    }

    fn maxmem(&self) -> u64 {
        self.config
            .get("memory")
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(512)
            * 1024
            * 1024
    }

    fn cpus(&self) -> u64 {
        let cores = self
            .config
            .get("cores")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1u64);
        let sockets = self
            .config
            .get("sockets")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1u64);
        cores * sockets
    }

    fn maxdisk(&self) -> u64 {
        let key = match self.kind {
            GuestKind::Qemu => self.config.get("boot").and_then(|b| {
                b.strip_prefix("order=")
                    .and_then(|o| o.split(';').next())
                    .map(str::to_owned)
            }),
            GuestKind::Lxc => Some("rootfs".to_owned()),
        };
        key.and_then(|k| self.config.get(&k))
            .map_or(0, |v| disk_size(v))
    }

    fn uptime(&self) -> u64 {
        if self.running {
            now().saturating_sub(self.started)
        } else {
            0
        }
    }

    fn agent_enabled(&self) -> bool {
        self.config.get("agent").is_some_and(|a| {
            a.split(',')
                .any(|p| p == "1" || p == "enabled=1" || p == "enabled=true")
        })
    }

    /// Counters shared by lists, `status/current` and `cluster/resources`.
    fn stats(&self) -> Map<String, Value> {
        let maxmem = self.maxmem();
        let running = self.running;
        let v = json!({
            "vmid": self.vmid,
            "name": self.name,
            "status": self.status(),
            "uptime": self.uptime(),
            "cpus": self.cpus(),
            "cpu": if running { 0.0123 } else { 0.0 },
            "maxmem": maxmem,
            "mem": if running { maxmem / 3 } else { 0 },
            "maxdisk": self.maxdisk(),
            "disk": 0,
            "netin": if running { 123_456 } else { 0 },
            "netout": if running { 65_432 } else { 0 },
            "diskread": if running { 1_048_576 } else { 0 },
            "diskwrite": if running { 524_288 } else { 0 },
        });
        let Value::Object(mut m) = v else {
            return Map::new();
        };
        if running {
            m.insert("pid".into(), json!(10_000 + self.vmid));
        }
        if let Some(lock) = self.config.get("lock") {
            m.insert("lock".into(), json!(lock));
        }
        if let Some(tags) = self.config.get("tags") {
            m.insert("tags".into(), json!(tags));
        }
        m
    }

    /// Disk volumes in the config: (key, volid, size).
    fn volumes(&self) -> Vec<(String, String, u64)> {
        self.config
            .iter()
            .filter(|(k, _)| is_disk_key(k))
            .filter_map(|(k, v)| {
                let volid = v.split(',').next()?;
                (volid.contains(':') && !v.contains("media=cdrom"))
                    .then(|| (k.clone(), volid.to_owned(), disk_size(v)))
            })
            .collect()
    }
}

/// Everything the cluster knows (one node is a cluster of one).
pub(crate) struct State {
    /// The node the current call runs on: the router sets it for every call (the node named
    /// in `/nodes/{node}/…`, else the node that received the request). Tasks are created on
    /// it and node-local lookups (guests, storage content, tasks) are made on it.
    pub node: String,
    /// The cluster's nodes, in order.
    pub nodes: Vec<String>,
    /// Nodes that are stopped (cluster mode).
    pub offline: BTreeSet<String>,
    /// Each node's certificate fingerprint (`ssl_fingerprint`).
    pub fingerprints: BTreeMap<String, String>,
    guests: BTreeMap<u32, Guest>,
    cluster: cluster::ClusterConfig,
    tasks: Vec<Task>,
    files: Vec<Volume>,
    next_pid: u32,
    pstart: u32,
    running_polls: u32,
}

/// Keys of a config write that are arguments, not config.
const NOT_CONFIG: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "force",
    "background_delay",
    "start",
    "storage",
    "ostemplate",
    "password",
    "ssh-public-keys",
    "restore",
    "unique",
    "pool",
    "archive",
    "live-restore",
    "ignore-unpack-errors",
];

fn lower_hex_digest(config: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in config {
        h.update(k.as_bytes());
        h.update(b": ");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    let hex = super::record::hex(&h.finalize());
    hex[..40].to_owned()
}

impl State {
    /// The state described by `cfg`.
    pub fn new(cfg: &SimConfig) -> Self {
        let ts = now();
        let nodes = cfg.node_names();
        let first = nodes.first().cloned().unwrap_or_else(|| cfg.node.clone());
        let mut files = Vec::new();
        for node in &nodes {
            files.push(Volume {
                node: node.clone(),
                volid: "local:iso/debian-12.7.0-amd64-netinst.iso".into(),
                content: "iso".into(),
                format: "iso".into(),
                size: 661_651_456,
                ctime: ts.saturating_sub(86_400),
            });
            files.push(Volume {
                node: node.clone(),
                volid: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
                content: "vztmpl".into(),
                format: "tzst".into(),
                size: 126_009_591,
                ctime: ts.saturating_sub(86_400),
            });
        }
        let guests: BTreeMap<u32, Guest> = cfg
            .guests
            .iter()
            .map(|g| (g.vmid, Guest::new(g, &first)))
            .collect();
        let cluster = cluster::ClusterConfig::new(&cfg.cluster, &cfg.guests);
        State {
            node: first,
            nodes,
            offline: BTreeSet::new(),
            fingerprints: BTreeMap::new(),
            guests,
            cluster,
            tasks: Vec::new(),
            files,
            next_pid: 0x0001_2000,
            pstart: 0x0000_4A3F,
            running_polls: cfg.task_running_polls,
        }
    }

    /// The guests as [`SimGuest`]s.
    pub fn sim_guests(&self) -> Vec<SimGuest> {
        self.guests
            .values()
            .map(|g| SimGuest {
                vmid: g.vmid,
                name: g.name.clone(),
                kind: g.kind,
                running: g.running,
                template: g.template,
                tags: g.tag_list(),
                pool: self.pool_of(g.vmid).map(str::to_owned),
                node: Some(g.node.clone()),
                config: g
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect()
    }

    fn missing(&self, kind: GuestKind, vmid: u32) -> ApiError {
        let dir = match kind {
            GuestKind::Qemu => "qemu-server",
            GuestKind::Lxc => "lxc",
        };
        ApiError::die(format!(
            "Configuration file 'nodes/{}/{dir}/{vmid}.conf' does not exist",
            self.node
        ))
    }

    /// The guest `vmid` of `kind`, or Proxmox's "Configuration file … does not exist".
    pub fn guest(&self, kind: GuestKind, vmid: u32) -> Result<&Guest, ApiError> {
        match self.guests.get(&vmid) {
            Some(g) if g.kind == kind && g.node == self.node => Ok(g),
            _ => Err(self.missing(kind, vmid)),
        }
    }

    fn guest_mut(&mut self, kind: GuestKind, vmid: u32) -> Result<&mut Guest, ApiError> {
        let missing = self.missing(kind, vmid);
        let node = self.node.clone();
        match self.guests.get_mut(&vmid) {
            Some(g) if g.kind == kind && g.node == node => Ok(g),
            _ => Err(missing),
        }
    }
}

/// Splits a tag list on `;`, `,` and white space.
pub(crate) fn split_tags(v: &str) -> Vec<String> {
    v.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Tags as Proxmox stores them: unique, sorted, joined with `;`.
pub(crate) fn normalize_tags(v: &str) -> String {
    let set: BTreeSet<String> = split_tags(v).into_iter().collect();
    set.into_iter().collect::<Vec<_>>().join(";")
}

/// `pve-vmid`: `^[1-9][0-9]{2,8}$` (a trailing newline passes, as with Perl's `$`).
pub(crate) fn parse_vmid(param: &str, s: &str) -> Result<u32, ApiError> {
    let t = s.strip_suffix('\n').unwrap_or(s);
    let ok =
        (3..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) && !t.starts_with('0');
    if !ok {
        return Err(ApiError::param(
            param,
            "value does not match the regex pattern",
        ));
    }
    t.parse()
        .map_err(|_| ApiError::param(param, "value does not match the regex pattern"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;

    fn demo() -> State {
        State::new(&SimConfig::demo())
    }

    #[test]
    fn vmid_format() {
        assert_eq!(parse_vmid("vmid", "104").unwrap(), 104);
        assert_eq!(parse_vmid("vmid", "104\n").unwrap(), 104);
        assert!(parse_vmid("vmid", "0104").is_err());
        assert!(parse_vmid("vmid", "99").is_err());
        assert!(parse_vmid("vmid", "1000000000").is_err());
    }

    #[test]
    fn power_and_tasks() {
        let mut s = demo();
        let upid = s.power(GuestKind::Qemu, 110, "stop", "root@pam").unwrap();
        assert!(upid.starts_with("UPID:pve:"));
        assert!(upid.ends_with(":qmstop:110:root@pam:"));
        assert_eq!(
            s.status_current(GuestKind::Qemu, 110).unwrap()["status"],
            "stopped"
        );
        // First poll: running, then stopped/OK.
        assert_eq!(s.task_status(&upid).unwrap()["status"], "running");
        let st = s.task_status(&upid).unwrap();
        assert_eq!(st["status"], "stopped");
        assert_eq!(st["exitstatus"], "OK");
        let again = s.power(GuestKind::Qemu, 104, "start", "root@pam").unwrap();
        s.task_stop(&again).unwrap();
        let e = s
            .power(GuestKind::Qemu, 999, "start", "root@pam")
            .unwrap_err();
        assert_eq!(
            e.message,
            "Configuration file 'nodes/pve/qemu-server/999.conf' does not exist\n"
        );
        assert!(s.power(GuestKind::Qemu, 120, "start", "root@pam").is_err());
    }

    #[test]
    fn clone_config_and_destroy() {
        let mut s = demo();
        let mut p = Params::new();
        p.insert("newid".into(), Some("130".into()));
        p.insert("name".into(), Some("web2".into()));
        s.clone_guest(GuestKind::Qemu, 9001, &p, "root@pam")
            .unwrap();
        let cfg = s.config(GuestKind::Qemu, 130).unwrap();
        assert_eq!(cfg["name"], "web2");
        assert!(cfg["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:vm-130-disk-0"));
        let mut p = Params::new();
        p.insert("memory".into(), Some("4096".into()));
        p.insert("delete".into(), Some("agent,vmgenid".into()));
        p.insert(
            "digest".into(),
            Some(cfg["digest"].as_str().unwrap().to_owned()),
        );
        s.set_config(GuestKind::Qemu, 130, &p).unwrap();
        let cfg = s.config(GuestKind::Qemu, 130).unwrap();
        assert_eq!(cfg["memory"], 4096);
        assert!(cfg.get("agent").is_none());
        // A stale digest is refused.
        assert!(s.set_config(GuestKind::Qemu, 130, &p).is_err());
        let e = s
            .destroy(GuestKind::Qemu, 110, false, "root@pam")
            .unwrap_err();
        assert_eq!(e.message, "VM 110 is running - destroy failed\n");
        s.destroy(GuestKind::Qemu, 130, false, "root@pam").unwrap();
        assert!(s.guest(GuestKind::Qemu, 130).is_err());
    }

    #[test]
    fn agent_answers_only_when_running() {
        let mut s = demo();
        let v = s
            .agent(110, "network-get-interfaces", &Params::new())
            .unwrap();
        assert_eq!(
            v["result"][1]["ip-addresses"][0]["ip-address"],
            "10.0.0.110"
        );
        s.power(GuestKind::Qemu, 110, "stop", "root@pam").unwrap();
        assert!(s
            .agent(110, "network-get-interfaces", &Params::new())
            .is_err());
    }

    #[test]
    fn resize_and_snapshots() {
        let mut s = demo();
        let mut p = Params::new();
        p.insert("disk".into(), Some("scsi0".into()));
        p.insert("size".into(), Some("+8G".into()));
        s.resize(GuestKind::Qemu, 104, &p, "root@pam").unwrap();
        let cfg = s.config(GuestKind::Qemu, 104).unwrap();
        assert!(cfg["scsi0"].as_str().unwrap().ends_with("size=40G"));
        let mut p = Params::new();
        p.insert("snapname".into(), Some("before".into()));
        s.snapshot_create(GuestKind::Qemu, 104, &p, "root@pam")
            .unwrap();
        assert!(s
            .snapshot_create(GuestKind::Qemu, 104, &p, "root@pam")
            .is_err());
        let list = s.snapshots(GuestKind::Qemu, 104).unwrap();
        assert_eq!(list[1]["parent"], "before");
        s.snapshot_rollback(GuestKind::Qemu, 104, "before", "root@pam")
            .unwrap();
        s.snapshot_delete(GuestKind::Qemu, 104, "before", "root@pam")
            .unwrap();
        assert_eq!(
            s.snapshots(GuestKind::Qemu, 104)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
