//! What the simulated node knows: its guests (power state, config, snapshots), its tasks
//! (UPIDs, status, logs) and its storage content.
//!
//! Every change is applied at once; the task that reports it may still read `running` for
//! the first few polls (`SimConfig::task_running_polls`) so clients exercise their polling.
//! Error texts follow qemu-server / pve-container where clients look at them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::auth::now;
use super::params::{split_list, Params, ParamsExt};
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

    fn entry(&self, node: &str) -> Value {
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
    pub volid: String,
    pub content: String,
    pub format: String,
    pub size: u64,
    pub ctime: u64,
}

/// The node's storages: (id, type, content types).
const STORAGES: &[(&str, &str, &str)] = &[
    ("local", "dir", "iso,vztmpl,backup,snippets,import"),
    ("local-lvm", "lvmthin", "images,rootdir"),
];

/// Disk keys in a guest config.
fn is_disk_key(key: &str) -> bool {
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
    fn new(g: &SimGuest) -> Self {
        Guest {
            vmid: g.vmid,
            kind: g.kind,
            name: g.name.clone(),
            running: g.running,
            paused: false,
            template: g.template,
            started: now().saturating_sub(3600 + u64::from(g.vmid)),
            config: default_config(g.kind, g.vmid, &g.name, g.template),
            snapshots: Vec::new(),
            parent: None,
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

/// Everything the node knows.
pub(crate) struct State {
    pub node: String,
    guests: BTreeMap<u32, Guest>,
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
        State {
            node: cfg.node.clone(),
            guests: cfg.guests.iter().map(|g| (g.vmid, Guest::new(g))).collect(),
            tasks: Vec::new(),
            files: vec![
                Volume {
                    volid: "local:iso/debian-12.7.0-amd64-netinst.iso".into(),
                    content: "iso".into(),
                    format: "iso".into(),
                    size: 661_651_456,
                    ctime: ts.saturating_sub(86_400),
                },
                Volume {
                    volid: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
                    content: "vztmpl".into(),
                    format: "tzst".into(),
                    size: 126_009_591,
                    ctime: ts.saturating_sub(86_400),
                },
            ],
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
            Some(g) if g.kind == kind => Ok(g),
            _ => Err(self.missing(kind, vmid)),
        }
    }

    fn guest_mut(&mut self, kind: GuestKind, vmid: u32) -> Result<&mut Guest, ApiError> {
        let missing = self.missing(kind, vmid);
        match self.guests.get_mut(&vmid) {
            Some(g) if g.kind == kind => Ok(g),
            _ => Err(missing),
        }
    }

    // ---- tasks -------------------------------------------------------------------------

    /// Creates a finished task; returns its UPID.
    pub fn task(
        &mut self,
        ttype: &str,
        id: &str,
        user: &str,
        outcome: Result<Vec<String>, String>,
    ) -> String {
        self.next_pid += 1;
        let starttime = now();
        let pid = self.next_pid;
        let upid = format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{ttype}:{id}:{user}:",
            self.node, pid, self.pstart, starttime
        );
        let (log, exitstatus) = match outcome {
            Ok(log) => (log, "OK".to_owned()),
            Err(e) => (Vec::new(), e),
        };
        self.tasks.push(Task {
            upid: upid.clone(),
            ttype: ttype.to_owned(),
            id: id.to_owned(),
            user: user.to_owned(),
            pid,
            pstart: self.pstart,
            starttime,
            endtime: starttime + 1,
            exitstatus,
            polls_left: self.running_polls,
            log,
        });
        upid
    }

    fn find_task(&mut self, upid: &str) -> Result<&mut Task, ApiError> {
        let upid = upid.trim_end_matches('\n');
        let parts: Vec<&str> = upid.split(':').collect();
        if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
            return Err(ApiError::param(
                "upid",
                format!("unable to parse worker upid '{upid}'"),
            ));
        }
        if parts[1] != self.node {
            return Err(ApiError::die(format!(
                "no such task - wrong node '{}'",
                parts[1]
            )));
        }
        self.tasks
            .iter_mut()
            .find(|t| t.upid == upid)
            .ok_or_else(|| {
                ApiError::die(format!(
                    "unable to open file '/var/log/pve/tasks/{}' - No such file or directory",
                    upid
                ))
            })
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`; counts a poll.
    pub fn task_status(&mut self, upid: &str) -> Result<Value, ApiError> {
        let node = self.node.clone();
        let t = self.find_task(upid)?;
        let mut v = t.entry(&node);
        if t.running() {
            v["status"] = json!("running");
            t.polls_left -= 1;
        } else {
            v["status"] = json!("stopped");
            v["exitstatus"] = json!(t.exitstatus);
        }
        Ok(v)
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`: (lines from `start`, at most `limit`; total).
    pub fn task_log(
        &mut self,
        upid: &str,
        start: usize,
        limit: usize,
    ) -> Result<(Value, usize), ApiError> {
        let t = self.find_task(upid)?;
        let lines = t.lines();
        let total = lines.len();
        let data: Vec<Value> = lines
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, l)| json!({"n": i + 1, "t": l}))
            .collect();
        Ok((Value::Array(data), total))
    }

    /// The task's log lines, for `download=1`.
    pub fn task_log_text(&mut self, upid: &str) -> Result<String, ApiError> {
        let t = self.find_task(upid)?;
        let mut s = t.lines().join("\n");
        s.push('\n');
        Ok(s)
    }

    /// `DELETE /nodes/{node}/tasks/{upid}`.
    pub fn task_stop(&mut self, upid: &str) -> Result<(), ApiError> {
        let t = self.find_task(upid)?;
        if t.running() {
            t.polls_left = 0;
            t.exitstatus = "interrupted by signal".into();
        }
        Ok(())
    }

    /// `GET /nodes/{node}/tasks`, newest first.
    pub fn task_list(&self, p: &Params) -> Value {
        let vmid = p.str("vmid");
        let typefilter = p.str("typefilter");
        let userfilter = p.str("userfilter");
        let errors = p.flag("errors");
        let start: usize = p.str("start").and_then(|s| s.parse().ok()).unwrap_or(0);
        let limit: usize = p.str("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
        let list: Vec<Value> = self
            .tasks
            .iter()
            .rev()
            .filter(|t| vmid.map_or(true, |v| t.id == v))
            .filter(|t| typefilter.map_or(true, |f| t.ttype == f))
            .filter(|t| userfilter.map_or(true, |u| t.user.contains(u)))
            .filter(|t| !errors || (!t.running() && t.exitstatus != "OK"))
            .skip(start)
            .take(limit)
            .map(|t| t.entry(&self.node))
            .collect();
        Value::Array(list)
    }

    // ---- lists -------------------------------------------------------------------------

    /// `GET /nodes/{node}/{qemu,lxc}`.
    pub fn list(&self, kind: GuestKind) -> Value {
        Value::Array(
            self.guests
                .values()
                .filter(|g| g.kind == kind)
                .map(|g| {
                    let mut m = g.stats();
                    if g.template {
                        m.insert("template".into(), json!(1));
                    }
                    if kind == GuestKind::Lxc {
                        m.insert("type".into(), json!("lxc"));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// `GET /cluster/resources` (optionally `type=vm|node|storage`).
    pub fn resources(&self, filter: Option<&str>, fingerprint: &str) -> Value {
        let mut out = Vec::new();
        if filter.map_or(true, |f| f == "node") {
            out.push(self.node_entry(fingerprint));
        }
        if filter.map_or(true, |f| f == "vm") {
            for g in self.guests.values() {
                let mut m = g.stats();
                let t = match g.kind {
                    GuestKind::Qemu => "qemu",
                    GuestKind::Lxc => "lxc",
                };
                m.insert("id".into(), json!(format!("{t}/{}", g.vmid)));
                m.insert("type".into(), json!(t));
                m.insert("node".into(), json!(self.node));
                m.insert("template".into(), json!(u8::from(g.template)));
                m.insert("maxcpu".into(), json!(g.cpus()));
                m.remove("cpus");
                out.push(Value::Object(m));
            }
        }
        if filter.map_or(true, |f| f == "storage") {
            for (id, ty, content) in STORAGES {
                out.push(json!({
                    "id": format!("storage/{}/{id}", self.node), "type": "storage", "storage": id,
                    "node": self.node, "status": "available", "plugintype": ty, "content": content,
                    "shared": 0, "disk": 21_474_836_480u64, "maxdisk": 107_374_182_400u64,
                }));
            }
        }
        Value::Array(out)
    }

    /// The node's entry in `GET /nodes` and `cluster/resources`.
    pub fn node_entry(&self, fingerprint: &str) -> Value {
        json!({
            "id": format!("node/{}", self.node), "node": self.node, "type": "node",
            "status": "online", "level": "", "cpu": 0.031, "maxcpu": 8,
            "mem": 6_442_450_944u64, "maxmem": 34_359_738_368u64,
            "disk": 10_737_418_240u64, "maxdisk": 107_374_182_400u64,
            "uptime": 864_000, "ssl_fingerprint": fingerprint,
        })
    }

    /// `GET /cluster/nextid` (with an optional `vmid` to check).
    pub fn nextid(&self, want: Option<&str>) -> Result<Value, ApiError> {
        if let Some(w) = want {
            let vmid = parse_vmid("vmid", w)?;
            if self.guests.contains_key(&vmid) {
                return Err(ApiError::param("vmid", format!("VM {vmid} already exists")));
            }
            return Ok(json!(vmid.to_string()));
        }
        let mut id = 100;
        while self.guests.contains_key(&id) {
            id += 1;
        }
        Ok(json!(id.to_string()))
    }

    // ---- one guest -----------------------------------------------------------------------

    /// `GET …/{vmid}/status/current`.
    pub fn status_current(&self, kind: GuestKind, vmid: u32) -> Result<Value, ApiError> {
        let g = self.guest(kind, vmid)?;
        let mut m = g.stats();
        m.insert("ha".into(), json!({"managed": 0}));
        match kind {
            GuestKind::Qemu => {
                let qmp = if !g.running {
                    "stopped"
                } else if g.paused {
                    "paused"
                } else {
                    "running"
                };
                m.insert("qmpstatus".into(), json!(qmp));
                if g.agent_enabled() {
                    m.insert("agent".into(), json!(1));
                }
                if g.running {
                    m.insert("running-machine".into(), json!("pc-i440fx-9.2+pve1"));
                    m.insert("running-qemu".into(), json!("9.2.0"));
                }
                if g.template {
                    m.insert("template".into(), json!(1));
                }
            }
            GuestKind::Lxc => {
                m.insert("type".into(), json!("lxc"));
                if g.template {
                    m.insert("template".into(), json!(1));
                }
            }
        }
        Ok(Value::Object(m))
    }

    /// `POST …/{vmid}/status/{action}`; returns the UPID.
    pub fn power(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        action: &str,
        user: &str,
    ) -> Result<String, ApiError> {
        let prefix = match kind {
            GuestKind::Qemu => "qm",
            GuestKind::Lxc => "vz",
        };
        let g = self.guest_mut(kind, vmid)?;
        let label = g.label();
        let outcome: Result<Vec<String>, String> = match action {
            "start" => {
                if g.template {
                    return Err(ApiError::die(match kind {
                        GuestKind::Qemu => "you can't start a vm if it's a template".to_owned(),
                        GuestKind::Lxc => format!("{label} is a template"),
                    }));
                }
                if g.running {
                    Err(format!("{label} already running"))
                } else {
                    g.running = true;
                    g.paused = false;
                    g.started = now();
                    Ok(vec![format!("starting {label}")])
                }
            }
            "stop" => {
                g.running = false;
                g.paused = false;
                Ok(vec![format!("stopping {label}")])
            }
            "shutdown" => {
                if g.running {
                    g.running = false;
                    g.paused = false;
                    Ok(vec![format!("shutting down {label}")])
                } else {
                    Err(format!("{label} not running"))
                }
            }
            "reboot" | "suspend" | "resume" | "reset" => {
                if !g.running {
                    return Err(ApiError::die(format!("{label} not running")));
                }
                match action {
                    "suspend" => g.paused = true,
                    "resume" => g.paused = false,
                    _ => {
                        g.paused = false;
                        g.started = now();
                    }
                }
                Ok(vec![format!("{action} {label}")])
            }
            _ => {
                return Err(ApiError::new(
                    501,
                    format!("Method 'POST /status/{action}' not implemented"),
                ))
            }
        };
        let ttype = match action {
            "reset" => "qmreset".to_owned(),
            a => format!("{prefix}{a}"),
        };
        Ok(self.task(&ttype, &vmid.to_string(), user, outcome))
    }

    /// `GET …/{vmid}/config`.
    pub fn config(&self, kind: GuestKind, vmid: u32) -> Result<Value, ApiError> {
        let g = self.guest(kind, vmid)?;
        let mut m: Map<String, Value> = g
            .config
            .iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "memory" | "cores" | "sockets" | "agent" | "template" | "swap"
                        if v.parse::<u64>().is_ok() =>
                    {
                        json!(v.parse::<u64>().unwrap_or(0))
                    }
                    _ => json!(v),
                };
                (k.clone(), v)
            })
            .collect();
        m.insert("digest".into(), json!(lower_hex_digest(&g.config)));
        Ok(Value::Object(m))
    }

    /// `GET …/{vmid}/pending`.
    pub fn pending(&self, kind: GuestKind, vmid: u32) -> Result<Value, ApiError> {
        let g = self.guest(kind, vmid)?;
        Ok(Value::Array(
            g.config
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect(),
        ))
    }

    /// `POST/PUT …/{vmid}/config`: checks `digest`, applies `delete` and the new values.
    pub fn set_config(&mut self, kind: GuestKind, vmid: u32, p: &Params) -> Result<(), ApiError> {
        let g = self.guest_mut(kind, vmid)?;
        if let Some(d) = p.str("digest") {
            if d != lower_hex_digest(&g.config) {
                return Err(ApiError::die(
                    "detected modified configuration - file changed by other user? Try again.",
                ));
            }
        }
        if let Some(lock) = g.config.get("lock") {
            if !p.flag("skiplock") {
                return Err(ApiError::die(format!("{} is locked ({lock})", g.label())));
            }
        }
        if let Some(del) = p.str("delete") {
            for key in split_list(del) {
                g.config.remove(&key);
            }
        }
        for (k, v) in p {
            if NOT_CONFIG.contains(&k.as_str()) {
                continue;
            }
            if let Some(v) = v {
                g.config.insert(k.clone(), v.clone());
            }
        }
        let name_key = g.name_key();
        if let Some(n) = g.config.get(name_key) {
            g.name = n.clone();
        }
        Ok(())
    }

    /// `PUT …/{vmid}/resize`.
    pub fn resize(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        p: &Params,
        user: &str,
    ) -> Result<String, ApiError> {
        let disk = p
            .str("disk")
            .ok_or_else(|| ApiError::missing("disk"))?
            .to_owned();
        let size = p
            .str("size")
            .ok_or_else(|| ApiError::missing("size"))?
            .to_owned();
        let g = self.guest_mut(kind, vmid)?;
        let label = g.label();
        let Some(value) = g.config.get(&disk).cloned() else {
            return Err(ApiError::die(format!("disk '{disk}' does not exist")));
        };
        let old = disk_size(&value);
        let new = match size.strip_prefix('+') {
            Some(delta) => old + parse_size(delta),
            None => parse_size(&size),
        };
        if new < old {
            return Err(ApiError::die(format!(
                "unable to shrink disk size ({} < {})",
                format_size(new),
                format_size(old)
            )));
        }
        let rebuilt: Vec<String> = value
            .split(',')
            .filter(|p| !p.starts_with("size="))
            .map(str::to_owned)
            .chain(std::iter::once(format!("size={}", format_size(new))))
            .collect();
        g.config.insert(disk.clone(), rebuilt.join(","));
        Ok(self.task(
            "resize",
            &vmid.to_string(),
            user,
            Ok(vec![format!(
                "resize {label} {disk} to {}",
                format_size(new)
            )]),
        ))
    }

    /// `POST /nodes/{node}/{qemu,lxc}` (create or restore).
    pub fn create(&mut self, kind: GuestKind, p: &Params, user: &str) -> Result<String, ApiError> {
        let vmid = parse_vmid(
            "vmid",
            p.str("vmid").ok_or_else(|| ApiError::missing("vmid"))?,
        )?;
        if self.guests.contains_key(&vmid) {
            return Err(ApiError::die(format!(
                "unable to create {} {vmid} - VM {vmid} already exists on node '{}'",
                match kind {
                    GuestKind::Qemu => "VM",
                    GuestKind::Lxc => "CT",
                },
                self.node
            )));
        }
        let name_key = match kind {
            GuestKind::Qemu => "name",
            GuestKind::Lxc => "hostname",
        };
        let name = p.str(name_key).map_or_else(
            || {
                format!(
                    "{}{vmid}",
                    if kind == GuestKind::Qemu { "VM" } else { "CT" }
                )
            },
            str::to_owned,
        );
        let mut config = BTreeMap::new();
        config.insert(name_key.to_owned(), name.clone());
        for (k, v) in p {
            if let Some(v) = v {
                if !NOT_CONFIG.contains(&k.as_str()) {
                    config.insert(k.clone(), v.clone());
                }
            }
        }
        let start = p.flag("start");
        let guest = Guest {
            vmid,
            kind,
            name,
            running: start,
            paused: false,
            template: p.flag("template"),
            started: now(),
            config,
            snapshots: Vec::new(),
            parent: None,
        };
        self.guests.insert(vmid, guest);
        let ttype = match kind {
            GuestKind::Qemu => "qmcreate",
            GuestKind::Lxc => "vzcreate",
        };
        Ok(self.task(
            ttype,
            &vmid.to_string(),
            user,
            Ok(vec![format!("created guest {vmid}")]),
        ))
    }

    /// `POST …/{vmid}/clone`.
    pub fn clone_guest(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        p: &Params,
        user: &str,
    ) -> Result<String, ApiError> {
        let newid = parse_vmid(
            "newid",
            p.str("newid").ok_or_else(|| ApiError::missing("newid"))?,
        )?;
        let src = self.guest(kind, vmid)?.clone();
        if self.guests.contains_key(&newid) {
            return Err(ApiError::die(format!(
                "unable to create VM {newid}: config file already exists"
            )));
        }
        let name = p
            .str(match kind {
                GuestKind::Qemu => "name",
                GuestKind::Lxc => "hostname",
            })
            .map_or_else(|| format!("Copy-of-VM-{}", src.name), str::to_owned);
        let mut config = BTreeMap::new();
        for (k, v) in &src.config {
            if k == "template" || k == "lock" {
                continue;
            }
            let v = if is_disk_key(k) {
                v.replace(&format!("base-{vmid}-disk-"), &format!("vm-{newid}-disk-"))
                    .replace(&format!("vm-{vmid}-disk-"), &format!("vm-{newid}-disk-"))
            } else if k.starts_with("net") {
                v.replace(&mac(vmid, 0), &mac(newid, 0))
            } else {
                v.clone()
            };
            config.insert(k.clone(), v);
        }
        config.insert(src.name_key().to_owned(), name.clone());
        if let Some(d) = p.str("description") {
            config.insert("description".into(), d.to_owned());
        }
        self.guests.insert(
            newid,
            Guest {
                vmid: newid,
                kind,
                name,
                running: false,
                paused: false,
                template: false,
                started: now(),
                config,
                snapshots: Vec::new(),
                parent: None,
            },
        );
        let ttype = match kind {
            GuestKind::Qemu => "qmclone",
            GuestKind::Lxc => "vzclone",
        };
        let full = if p.flag("full") { "full" } else { "linked" };
        Ok(self.task(
            ttype,
            &vmid.to_string(),
            user,
            Ok(vec![format!(
                "create {full} clone of drive scsi0 (local-lvm:vm-{vmid}-disk-0)"
            )]),
        ))
    }

    /// `DELETE …/{vmid}`.
    pub fn destroy(&mut self, kind: GuestKind, vmid: u32, user: &str) -> Result<String, ApiError> {
        let g = self.guest(kind, vmid)?;
        if g.running {
            return Err(ApiError::die(match kind {
                GuestKind::Qemu => format!("VM {vmid} is running - destroy failed"),
                GuestKind::Lxc => format!("CT {vmid} is running - unable to destroy"),
            }));
        }
        if let Some(lock) = g.config.get("lock") {
            return Err(ApiError::die(format!("{} is locked ({lock})", g.label())));
        }
        if g.config.get("protection").is_some_and(|p| p == "1") {
            return Err(ApiError::die(format!(
                "can't remove {} - protection mode enabled",
                g.label()
            )));
        }
        let vols: Vec<String> = g.volumes().into_iter().map(|(_, v, _)| v).collect();
        self.guests.remove(&vmid);
        let ttype = match kind {
            GuestKind::Qemu => "qmdestroy",
            GuestKind::Lxc => "vzdestroy",
        };
        let log = vols
            .iter()
            .map(|v| format!("  Logical volume \"{}\" successfully removed.", v))
            .collect();
        Ok(self.task(ttype, &vmid.to_string(), user, Ok(log)))
    }

    /// `POST …/{vmid}/template`.
    pub fn template(&mut self, kind: GuestKind, vmid: u32, user: &str) -> Result<String, ApiError> {
        let g = self.guest_mut(kind, vmid)?;
        if g.running {
            return Err(ApiError::die(format!("{} is running", g.label())));
        }
        g.template = true;
        g.config.insert("template".into(), "1".into());
        let keys: Vec<String> = g
            .config
            .keys()
            .filter(|k| is_disk_key(k))
            .cloned()
            .collect();
        for k in keys {
            if let Some(v) = g.config.get_mut(&k) {
                *v = v.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
            }
        }
        let ttype = match kind {
            GuestKind::Qemu => "qmtemplate",
            GuestKind::Lxc => "vztemplate",
        };
        Ok(self.task(ttype, &vmid.to_string(), user, Ok(Vec::new())))
    }

    // ---- snapshots -----------------------------------------------------------------------

    /// `GET …/{vmid}/snapshot`.
    pub fn snapshots(&self, kind: GuestKind, vmid: u32) -> Result<Value, ApiError> {
        let g = self.guest(kind, vmid)?;
        let mut list: Vec<Value> = g
            .snapshots
            .iter()
            .map(|s| {
                let mut v =
                    json!({"name": s.name, "description": s.description, "snaptime": s.snaptime});
                if let Some(p) = &s.parent {
                    v["parent"] = json!(p);
                }
                if s.vmstate {
                    v["vmstate"] = json!(1);
                }
                v
            })
            .collect();
        let mut current = json!({"name": "current", "description": "You are here!", "running": u8::from(g.running)});
        if let Some(p) = &g.parent {
            current["parent"] = json!(p);
        }
        list.push(current);
        Ok(Value::Array(list))
    }

    /// `POST …/{vmid}/snapshot`.
    pub fn snapshot_create(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        p: &Params,
        user: &str,
    ) -> Result<String, ApiError> {
        let name = p
            .str("snapname")
            .ok_or_else(|| ApiError::missing("snapname"))?
            .to_owned();
        let g = self.guest_mut(kind, vmid)?;
        if name == "current" || g.snapshots.iter().any(|s| s.name == name) {
            return Err(ApiError::die(format!(
                "snapshot name '{name}' already used"
            )));
        }
        g.snapshots.push(Snapshot {
            name: name.clone(),
            description: p.str("description").unwrap_or("").to_owned(),
            snaptime: now(),
            parent: g.parent.clone(),
            vmstate: p.flag("vmstate"),
        });
        g.parent = Some(name.clone());
        let ttype = match kind {
            GuestKind::Qemu => "qmsnapshot",
            GuestKind::Lxc => "vzsnapshot",
        };
        Ok(self.task(
            ttype,
            &vmid.to_string(),
            user,
            Ok(vec![format!("snapshot '{name}' created")]),
        ))
    }

    /// `GET …/{vmid}/snapshot/{name}`: the subdirectories, or an error if it is unknown.
    pub fn snapshot_get(&self, kind: GuestKind, vmid: u32, name: &str) -> Result<Value, ApiError> {
        let g = self.guest(kind, vmid)?;
        if !g.snapshots.iter().any(|s| s.name == name) {
            return Err(ApiError::die(format!("snapshot '{name}' does not exist")));
        }
        Ok(json!([{"subdir": "config"}, {"subdir": "rollback"}]))
    }

    /// `DELETE …/{vmid}/snapshot/{name}`.
    pub fn snapshot_delete(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        name: &str,
        user: &str,
    ) -> Result<String, ApiError> {
        let g = self.guest_mut(kind, vmid)?;
        let Some(pos) = g.snapshots.iter().position(|s| s.name == name) else {
            return Err(ApiError::die(format!("snapshot '{name}' does not exist")));
        };
        let removed = g.snapshots.remove(pos);
        for s in &mut g.snapshots {
            if s.parent.as_deref() == Some(name) {
                s.parent = removed.parent.clone();
            }
        }
        if g.parent.as_deref() == Some(name) {
            g.parent = removed.parent;
        }
        let ttype = match kind {
            GuestKind::Qemu => "qmdelsnapshot",
            GuestKind::Lxc => "vzdelsnapshot",
        };
        Ok(self.task(ttype, &vmid.to_string(), user, Ok(Vec::new())))
    }

    /// `POST …/{vmid}/snapshot/{name}/rollback`.
    pub fn snapshot_rollback(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        name: &str,
        user: &str,
    ) -> Result<String, ApiError> {
        let g = self.guest_mut(kind, vmid)?;
        let Some(s) = g.snapshots.iter().find(|s| s.name == name) else {
            return Err(ApiError::die(format!("snapshot '{name}' does not exist")));
        };
        if !s.vmstate {
            g.running = false;
        }
        g.parent = Some(name.to_owned());
        let ttype = match kind {
            GuestKind::Qemu => "qmrollback",
            GuestKind::Lxc => "vzrollback",
        };
        Ok(self.task(ttype, &vmid.to_string(), user, Ok(Vec::new())))
    }

    // ---- guest agent ---------------------------------------------------------------------

    /// `…/qemu/{vmid}/agent/{command}`.
    pub fn agent(&self, vmid: u32, command: &str, p: &Params) -> Result<Value, ApiError> {
        let g = self.guest(GuestKind::Qemu, vmid)?;
        if !g.config.contains_key("agent") || !g.agent_enabled() {
            return Err(ApiError::die("No QEMU guest agent configured"));
        }
        if !g.running {
            return Err(ApiError::die(format!("VM {vmid} is not running")));
        }
        if g.paused {
            return Err(ApiError::die("QEMU guest agent is not running"));
        }
        Ok(match command {
            "network-get-interfaces" => json!({"result": [
                {
                    "name": "lo",
                    "hardware-address": "00:00:00:00:00:00",
                    "ip-addresses": [
                        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                        {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}
                    ],
                    "statistics": {"rx-bytes": 0, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 0,
                                   "tx-bytes": 0, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 0}
                },
                {
                    "name": "eth0",
                    "hardware-address": mac(vmid, 0).to_ascii_lowercase(),
                    "ip-addresses": [
                        {"ip-address": guest_ip(vmid), "ip-address-type": "ipv4", "prefix": 24},
                        {"ip-address": format!("fe80::be24:11ff:fe{:02x}:{:02x}{:02x}", (vmid >> 8) & 0xff, vmid & 0xff, 0),
                         "ip-address-type": "ipv6", "prefix": 64}
                    ],
                    "statistics": {"rx-bytes": 123_456, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 1000,
                                   "tx-bytes": 65_432, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 800}
                }
            ]}),
            "get-osinfo" => json!({"result": {
                "id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 12 (bookworm)",
                "version": "12 (bookworm)", "version-id": "12", "kernel-release": "6.1.0-26-amd64",
                "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1", "machine": "x86_64"
            }}),
            "get-host-name" => json!({"result": {"host-name": g.name}}),
            "info" => json!({"result": {"version": "7.2.0", "supported_commands": []}}),
            "get-time" => json!({"result": now() * 1_000_000_000}),
            "get-timezone" => json!({"result": {"offset": 0, "zone": "UTC"}}),
            "get-users" | "get-fsinfo" | "get-vcpus" | "get-memory-blocks" => json!({"result": []}),
            "exec" => json!({"pid": 4242 + vmid}),
            "exec-status" => json!({"exited": 1, "exitcode": 0, "out-data": ""}),
            "file-read" => json!({"content": "", "truncated": false, "bytes-read": 0}),
            "file-write" | "set-user-password" => Value::Null,
            _ => {
                let _ = p;
                json!({"result": {}})
            }
        })
    }

    // ---- consoles ------------------------------------------------------------------------

    /// Checks that a console can be opened on `vmid`.
    pub fn console_ok(&self, kind: GuestKind, vmid: u32) -> Result<(), ApiError> {
        let g = self.guest(kind, vmid)?;
        if !g.running {
            return Err(ApiError::die(format!("{} not running", g.label())));
        }
        Ok(())
    }

    // ---- bulk ------------------------------------------------------------------------------

    /// `POST /nodes/{node}/{startall,stopall,suspendall}`.
    pub fn bulk(&mut self, action: &str, p: &Params, user: &str) -> String {
        let wanted: Option<Vec<u32>> = p.str("vms").map(|v| {
            split_list(v)
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect()
        });
        let ids: Vec<u32> = self
            .guests
            .values()
            .filter(|g| !g.template)
            .filter(|g| wanted.as_ref().map_or(true, |w| w.contains(&g.vmid)))
            .map(|g| g.vmid)
            .collect();
        let mut log = Vec::new();
        for id in ids {
            let Some(g) = self.guests.get(&id) else {
                continue;
            };
            let kind = g.kind;
            let sub = match (action, g.running) {
                ("startall", false) => Some("start"),
                ("stopall", true) => Some("stop"),
                ("suspendall", true) if kind == GuestKind::Qemu => Some("suspend"),
                _ => None,
            };
            if let Some(sub) = sub {
                let label = g.label();
                if self.power(kind, id, sub, user).is_ok() {
                    log.push(format!("{sub} {label}"));
                }
            }
        }
        self.task(action, "", user, Ok(log))
    }

    // ---- storage ---------------------------------------------------------------------------

    /// Whether `storage` exists.
    pub fn storage_exists(&self, storage: &str) -> bool {
        STORAGES.iter().any(|(id, _, _)| *id == storage)
    }

    /// `GET /nodes/{node}/storage`.
    pub fn storages(&self) -> Value {
        Value::Array(
            STORAGES
                .iter()
                .map(|(id, ty, content)| {
                    json!({"storage": id, "type": ty, "content": content, "active": 1, "enabled": 1,
                           "shared": 0, "total": 107_374_182_400u64, "used": 21_474_836_480u64,
                           "avail": 85_899_345_920u64, "used_fraction": 0.2})
                })
                .collect(),
        )
    }

    /// Every volume on `storage`.
    fn volumes_of(&self, storage: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for g in self.guests.values() {
            for (_, volid, size) in g.volumes() {
                if volid.split(':').next() == Some(storage) {
                    out.push(json!({
                        "volid": volid, "vmid": g.vmid, "size": size, "format": "raw",
                        "content": if g.kind == GuestKind::Lxc { "rootdir" } else { "images" },
                        "ctime": g.started,
                    }));
                }
            }
        }
        for f in &self.files {
            if f.volid.split(':').next() == Some(storage) {
                out.push(json!({
                    "volid": f.volid, "size": f.size, "format": f.format, "content": f.content,
                    "ctime": f.ctime,
                }));
            }
        }
        out
    }

    /// `GET /nodes/{node}/storage/{storage}/content`.
    pub fn content(&self, storage: &str, p: &Params) -> Result<Value, ApiError> {
        if !self.storage_exists(storage) {
            return Err(ApiError::die(format!("storage '{storage}' does not exist")));
        }
        let content = p.str("content");
        let vmid: Option<u64> = p.str("vmid").and_then(|v| v.parse().ok());
        Ok(Value::Array(
            self.volumes_of(storage)
                .into_iter()
                .filter(|v| content.map_or(true, |c| v["content"] == c))
                .filter(|v| vmid.map_or(true, |id| v["vmid"] == id))
                .collect(),
        ))
    }

    /// `GET /nodes/{node}/storage/{storage}/content/{volume}`.
    pub fn volume_info(&self, storage: &str, volume: &str) -> Result<Value, ApiError> {
        let volid = full_volid(storage, volume);
        self.volumes_of(storage)
            .into_iter()
            .find(|v| v["volid"] == volid.as_str())
            .map(|v| {
                json!({"path": format!("/dev/pve/{}", volid.split(':').nth(1).unwrap_or("")),
                            "size": v["size"], "used": v["size"], "format": v["format"]})
            })
            .ok_or_else(|| ApiError::die(format!("no such volume '{volid}'")))
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`.
    pub fn delete_volume(
        &mut self,
        storage: &str,
        volume: &str,
        user: &str,
    ) -> Result<String, ApiError> {
        let volid = full_volid(storage, volume);
        if let Some(pos) = self.files.iter().position(|f| f.volid == volid) {
            self.files.remove(pos);
        } else {
            let owner = self
                .guests
                .values_mut()
                .find(|g| g.volumes().iter().any(|(_, v, _)| *v == volid));
            let Some(g) = owner else {
                return Err(ApiError::die(format!("no such volume '{volid}'")));
            };
            let key = g
                .volumes()
                .into_iter()
                .find(|(_, v, _)| *v == volid)
                .map(|(k, _, _)| k);
            if let Some(k) = key {
                if k.starts_with("unused") {
                    g.config.remove(&k);
                } else {
                    return Err(ApiError::die(format!(
                        "unable to delete '{volid}' - volume is still in use (referenced by VM {})",
                        g.vmid
                    )));
                }
            }
        }
        Ok(self.task(
            "imgdel",
            &volid,
            user,
            Ok(vec![format!("removed volume '{volid}'")]),
        ))
    }

    /// Registers an uploaded file; returns the UPID of its `imgcopy` task.
    pub fn add_upload(
        &mut self,
        storage: &str,
        content: &str,
        filename: &str,
        size: u64,
        user: &str,
    ) -> Result<String, ApiError> {
        if !self.storage_exists(storage) {
            return Err(ApiError::die(format!("storage '{storage}' does not exist")));
        }
        if !matches!(content, "iso" | "vztmpl" | "import") {
            return Err(ApiError::param(
                "content",
                format!("upload content type '{content}' not allowed"),
            ));
        }
        let allowed = STORAGES
            .iter()
            .any(|(id, _, c)| *id == storage && c.split(',').any(|x| x == content));
        if !allowed {
            return Err(ApiError::die(format!(
                "storage '{storage}' does not support content type '{content}'"
            )));
        }
        if filename.is_empty() || filename.contains('/') {
            return Err(ApiError::param("filename", "invalid filename"));
        }
        let volid = format!("{storage}:{content}/{filename}");
        self.files.retain(|f| f.volid != volid);
        let format = filename.rsplit('.').next().unwrap_or("raw").to_owned();
        self.files.push(Volume {
            volid: volid.clone(),
            content: content.to_owned(),
            format,
            size,
            ctime: now(),
        });
        let dir = match content {
            "iso" => "template/iso",
            "vztmpl" => "template/cache",
            _ => "import",
        };
        let log = vec![
            "starting file import from: /var/tmp/pveupload-sim".to_owned(),
            format!("target node: {}", self.node),
            format!("target file: /var/lib/vz/{dir}/{filename}"),
            format!("file size is: {size}"),
            "finished file import successfully".to_owned(),
        ];
        Ok(self.task("imgcopy", "", user, Ok(log)))
    }
}

/// `local:iso/x.iso`, or `iso/x.iso` on storage `local`.
fn full_volid(storage: &str, volume: &str) -> String {
    if volume.contains(':') {
        volume.to_owned()
    } else {
        format!("{storage}:{volume}")
    }
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
        let e = s.destroy(GuestKind::Qemu, 110, "root@pam").unwrap_err();
        assert_eq!(e.message, "VM 110 is running - destroy failed\n");
        s.destroy(GuestKind::Qemu, 130, "root@pam").unwrap();
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
