//! [`Snapshot`]: what pvegate knows about the cluster at one moment — every guest (vmid,
//! name, node, type, tags, pool, template flag, status) and what guests use (disk storages,
//! passthrough devices, resource mappings), plus the stored selections (backup jobs, HA
//! resources, groups and rules) — parsed from the Proxmox API's JSON answers.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use compact_str::CompactString;
use serde_json::Value;

use crate::pve::Vmid;

/// QEMU or LXC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestType {
    Qemu,
    Lxc,
}

impl GuestType {
    /// `qemu` or `lxc`, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        }
    }

    /// Parses `qemu` / `lxc`.
    pub fn parse(s: &str) -> Option<GuestType> {
        match s {
            "qemu" => Some(GuestType::Qemu),
            "lxc" => Some(GuestType::Lxc),
            _ => None,
        }
    }
}

/// One guest as `/cluster/resources` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    pub vmid: Vmid,
    pub name: String,
    pub node: String,
    pub kind: GuestType,
    /// Lower-cased tags (Proxmox compares tags case-insensitively by default).
    pub tags: Vec<String>,
    pub pool: Option<String>,
    pub template: bool,
    pub status: String,
}

/// A small set of names, sorted and without duplicates, in one allocation: most guests use
/// one or two storages and no device, and a `BTreeSet` allocates a whole tree node (~300
/// bytes) for one name; names up to 24 bytes are stored inline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names(Vec<CompactString>);

impl Names {
    /// Adds `name` (once).
    pub fn insert(&mut self, name: impl AsRef<str>) {
        let name = name.as_ref();
        if let Err(at) = self.0.binary_search_by(|n| n.as_str().cmp(name)) {
            self.0.insert(at, CompactString::from(name));
        }
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(CompactString::as_str)
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a guest's config says it uses (read only for guests whose dependencies matter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    /// Storages holding its disks and mount points.
    pub storages: Names,
    /// Raw host PCI addresses (`0000:00:02.0`, normalised to the full form, lower case).
    pub pci: Names,
    /// Raw host USB devices (`host=` values, lower case).
    pub usb: Names,
    /// Resource mapping ids (`mapping=`), as `pci/<id>` or `usb/<id>`.
    pub mappings: Names,
    /// `protection: 1` in its config.
    pub protection: bool,
}

/// A stored backup job (`/cluster/backup`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupJob {
    pub id: String,
    pub vmids: Vec<Vmid>,
    pub pool: Option<String>,
    pub all: bool,
    pub exclude: Vec<Vmid>,
    pub node: Option<String>,
}

/// An HA rule (`/cluster/ha/rules`) or group (through the resources that name it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HaRule {
    pub id: String,
    pub vmids: Vec<Vmid>,
}

/// The cluster as pvegate last read it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub guests: HashMap<Vmid, Guest>,
    /// Dependencies of the guests whose configs were read.
    pub uses: HashMap<Vmid, Uses>,
    /// Resource mappings: `pci/<id>` / `usb/<id>` -> the raw devices they map to.
    pub mappings: HashMap<String, Vec<String>>,
    /// Storage ids -> disabled.
    pub storages: HashMap<String, bool>,
    pub backup_jobs: HashMap<String, BackupJob>,
    /// HA resources: vmid -> group (if any).
    pub ha_resources: HashMap<Vmid, Option<String>>,
    pub ha_rules: HashMap<String, HaRule>,
    /// When this snapshot was complete.
    pub loaded_at: Instant,
    /// The same moment in wall-clock time (for messages and metrics).
    pub loaded_wall: SystemTime,
}

/// An answer of the API that does not have the expected shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what}: unexpected answer shape ({why})")]
pub struct ShapeError {
    pub what: &'static str,
    pub why: String,
}

fn shape(what: &'static str, why: impl Into<String>) -> ShapeError {
    ShapeError {
        what,
        why: why.into(),
    }
}

fn list<'a>(what: &'static str, v: &'a Value) -> Result<&'a Vec<Value>, ShapeError> {
    v.as_array().ok_or_else(|| shape(what, "not a list"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A number or numeric string (Proxmox writes both).
fn int_of(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

fn flag(v: &Value, key: &str) -> bool {
    int_of(v, key).is_some_and(|n| n != 0)
}

/// Splits a Proxmox tag list (`;`, `,` or spaces) into lower-cased tags.
pub fn split_tags(s: &str) -> Vec<String> {
    s.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Splits a VMID list (`104,110`, `;` or whitespace); an unreadable entry is an error.
pub fn split_vmids(s: &str) -> Result<Vec<Vmid>, String> {
    s.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Vmid>()
                .map_err(|_| format!("{t:?} is not a VMID"))
        })
        .collect()
}

/// Reads an HA sid (`vm:104`, `ct:104`, `104`).
pub fn sid_vmid(sid: &str) -> Option<Vmid> {
    let n = sid
        .strip_prefix("vm:")
        .or_else(|| sid.strip_prefix("ct:"))
        .unwrap_or(sid);
    n.parse().ok()
}

impl Snapshot {
    /// An empty snapshot loaded now.
    pub fn empty() -> Snapshot {
        Snapshot {
            guests: HashMap::new(),
            uses: HashMap::new(),
            mappings: HashMap::new(),
            storages: HashMap::new(),
            backup_jobs: HashMap::new(),
            ha_resources: HashMap::new(),
            ha_rules: HashMap::new(),
            loaded_at: Instant::now(),
            loaded_wall: SystemTime::now(),
        }
    }

    /// Reads a whole `GET /cluster/resources?type=vm` answer (the JSON bytes, envelope
    /// included) straight into guests, without building a JSON tree first (a 10,000-guest
    /// answer is about 4 MB).
    pub fn set_resources_json(&mut self, body: &[u8]) -> Result<(), ShapeError> {
        const W: &str = "/cluster/resources";
        let env: typed::Envelope<'_> =
            serde_json::from_slice(body).map_err(|e| shape(W, e.to_string()))?;
        let mut guests = HashMap::with_capacity(env.data.len());
        for r in env.data {
            let Some(kind) = r.kind.as_deref() else {
                return Err(shape(W, "an entry without 'type'"));
            };
            let Some(kind) = GuestType::parse(kind) else {
                continue;
            };
            let vmid = r
                .vmid
                .and_then(|v| Vmid::try_from(v).ok())
                .ok_or_else(|| shape(W, "a guest without a readable 'vmid'"))?;
            guests.insert(
                vmid,
                Guest {
                    vmid,
                    name: r.name.as_deref().unwrap_or("").to_string(),
                    node: r.node.as_deref().unwrap_or("").to_string(),
                    kind,
                    tags: r.tags.as_deref().map(split_tags).unwrap_or_default(),
                    pool: r
                        .pool
                        .as_deref()
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                    template: r.template.is_some_and(|t| t != 0),
                    status: r.status.as_deref().unwrap_or("").to_string(),
                },
            );
        }
        self.guests = guests;
        Ok(())
    }

    /// Reads `GET /cluster/resources?type=vm` (`data`).
    pub fn set_resources(&mut self, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "/cluster/resources";
        let mut guests = HashMap::new();
        for r in list(W, data)? {
            let kind = match str_of(r, "type") {
                Some(t) => match GuestType::parse(t) {
                    Some(k) => k,
                    None => continue, // nodes, storages, pools, sdn
                },
                None => return Err(shape(W, "an entry without 'type'")),
            };
            let vmid = int_of(r, "vmid")
                .and_then(|v| Vmid::try_from(v).ok())
                .ok_or_else(|| shape(W, "a guest without a readable 'vmid'"))?;
            guests.insert(
                vmid,
                Guest {
                    vmid,
                    name: str_of(r, "name").unwrap_or("").to_string(),
                    node: str_of(r, "node").unwrap_or("").to_string(),
                    kind,
                    tags: str_of(r, "tags").map(split_tags).unwrap_or_default(),
                    pool: str_of(r, "pool")
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                    template: flag(r, "template"),
                    status: str_of(r, "status").unwrap_or("").to_string(),
                },
            );
        }
        self.guests = guests;
        Ok(())
    }

    /// Reads `GET /cluster/mapping/pci` or `/usb` (`data`); `kind` is `pci` or `usb`.
    pub fn set_mappings(&mut self, kind: &str, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "/cluster/mapping";
        self.mappings
            .retain(|k, _| !k.starts_with(&format!("{kind}/")));
        for m in list(W, data)? {
            let id = str_of(m, "id").ok_or_else(|| shape(W, "a mapping without 'id'"))?;
            let mut devices = Vec::new();
            let entries: Vec<&str> = match m.get("map") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => Vec::new(),
            };
            for e in entries {
                for part in e.split(',') {
                    match part.split_once('=') {
                        Some(("path", p)) if kind == "pci" => devices.push(normalise_pci(p)),
                        Some(("path", p)) => devices.push(p.to_ascii_lowercase()),
                        Some(("id", i)) if kind == "usb" => devices.push(i.to_ascii_lowercase()),
                        _ => {}
                    }
                }
            }
            self.mappings.insert(format!("{kind}/{id}"), devices);
        }
        Ok(())
    }

    /// Reads `GET /storage` (`data`).
    pub fn set_storages(&mut self, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "/storage";
        self.storages.clear();
        for s in list(W, data)? {
            let id = str_of(s, "storage").ok_or_else(|| shape(W, "a storage without 'storage'"))?;
            self.storages.insert(id.to_string(), flag(s, "disable"));
        }
        Ok(())
    }

    /// Reads `GET /cluster/backup` (`data`).
    pub fn set_backup_jobs(&mut self, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "/cluster/backup";
        self.backup_jobs.clear();
        for j in list(W, data)? {
            let id = str_of(j, "id").ok_or_else(|| shape(W, "a job without 'id'"))?;
            let vmids = match j.get("vmid") {
                Some(Value::String(s)) => split_vmids(s).map_err(|e| shape(W, e))?,
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| Vmid::try_from(n).ok())
                    .map(|v| vec![v])
                    .ok_or_else(|| shape(W, "unreadable 'vmid'"))?,
                _ => Vec::new(),
            };
            let exclude = match str_of(j, "exclude") {
                Some(s) => split_vmids(s).map_err(|e| shape(W, e))?,
                None => Vec::new(),
            };
            self.backup_jobs.insert(
                id.to_string(),
                BackupJob {
                    id: id.to_string(),
                    vmids,
                    pool: str_of(j, "pool").map(str::to_string),
                    // `exclude` (even empty) implies `all`.
                    all: flag(j, "all") || j.get("exclude").is_some(),
                    exclude,
                    node: str_of(j, "node").map(str::to_string),
                },
            );
        }
        Ok(())
    }

    /// Reads `GET /cluster/ha/resources` (`data`).
    pub fn set_ha_resources(&mut self, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "/cluster/ha/resources";
        self.ha_resources.clear();
        for r in list(W, data)? {
            let sid = str_of(r, "sid").ok_or_else(|| shape(W, "a resource without 'sid'"))?;
            let vmid = sid_vmid(sid).ok_or_else(|| shape(W, format!("sid {sid:?}")))?;
            self.ha_resources
                .insert(vmid, str_of(r, "group").map(str::to_string));
        }
        Ok(())
    }

    /// Reads `GET /cluster/ha/rules` (`data`; Proxmox VE 9).
    pub fn set_ha_rules(&mut self, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "/cluster/ha/rules";
        self.ha_rules.clear();
        for r in list(W, data)? {
            let id = str_of(r, "rule").ok_or_else(|| shape(W, "a rule without 'rule'"))?;
            let mut vmids = Vec::new();
            if let Some(res) = str_of(r, "resources") {
                for sid in res.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                    vmids.push(sid_vmid(sid).ok_or_else(|| shape(W, format!("sid {sid:?}")))?);
                }
            }
            self.ha_rules.insert(
                id.to_string(),
                HaRule {
                    id: id.to_string(),
                    vmids,
                },
            );
        }
        Ok(())
    }

    /// Reads one guest's `GET …/config` (`data`).
    pub fn set_config(&mut self, vmid: Vmid, data: &Value) -> Result<(), ShapeError> {
        const W: &str = "guest config";
        let obj = data.as_object().ok_or_else(|| shape(W, "not an object"))?;
        let mut uses = Uses {
            protection: flag(data, "protection"),
            ..Uses::default()
        };
        for (k, v) in obj {
            let Some(s) = v.as_str() else { continue };
            config_uses(k, s, &mut uses);
        }
        self.uses.insert(vmid, uses);
        Ok(())
    }

    /// The guests of `pool`.
    pub fn pool_members(&self, pool: &str) -> impl Iterator<Item = Vmid> + '_ {
        let pool = pool.to_string();
        self.guests
            .values()
            .filter(move |g| g.pool.as_deref() == Some(pool.as_str()))
            .map(|g| g.vmid)
    }

    /// The guests whose configs were read and that use `storage`.
    pub fn on_storage<'a>(&'a self, storage: &'a str) -> impl Iterator<Item = Vmid> + 'a {
        self.uses
            .iter()
            .filter(move |(_, u)| u.storages.contains(storage))
            .map(|(&v, _)| v)
    }

    /// The guests whose configs were read and that use mapping `key` (`pci/<id>`) or one of
    /// its devices.
    pub fn using_mapping<'a>(&'a self, key: &'a str) -> impl Iterator<Item = Vmid> + 'a {
        let devices = self.mappings.get(key);
        self.uses
            .iter()
            .filter(move |(_, u)| {
                u.mappings.contains(key)
                    || devices.is_some_and(|d| {
                        d.iter()
                            .any(|dev| u.pci.contains(dev) || u.usb.contains(dev))
                    })
            })
            .map(|(&v, _)| v)
    }
}

/// The typed shape of `/cluster/resources` entries: only the fields pvegate reads, strings
/// borrowed from the answer where they need no unescaping.
mod typed {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Envelope<'a> {
        #[serde(borrow)]
        pub data: Vec<Resource<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Resource<'a> {
        #[serde(rename = "type", borrow, default)]
        pub kind: Option<Cow<'a, str>>,
        #[serde(default, deserialize_with = "flex_int")]
        pub vmid: Option<i64>,
        #[serde(borrow, default)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub node: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub tags: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub pool: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub status: Option<Cow<'a, str>>,
        #[serde(default, deserialize_with = "flex_int")]
        pub template: Option<i64>,
    }

    /// A number Proxmox may write as a number, a numeric string or a boolean.
    fn flex_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a numeric string or a boolean")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).ok())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok((v.fract() == 0.0).then_some(v as i64))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(i64::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(v.trim().parse().ok())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_any(V)
    }
}

/// `0000:00:02.0` for `00:02.0` or `0000:00:02.0`; a device address without function
/// (`00:02`, all functions) keeps its form. Lower case.
pub fn normalise_pci(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    if p.matches(':').count() == 1 {
        format!("0000:{p}")
    } else {
        p
    }
}

/// Adds what one config line (`key: value`) uses.
pub fn config_uses(key: &str, value: &str, uses: &mut Uses) {
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    let is_disk = matches!(
        base,
        "scsi" | "sata" | "ide" | "virtio" | "efidisk" | "tpmstate" | "rootfs" | "mp" | "unused"
    ) && key != "scsihw";
    if is_disk {
        let first = value.split(',').next().unwrap_or("");
        let vol = first.strip_prefix("volume=").unwrap_or(first);
        if let Some((storage, _)) = vol.split_once(':') {
            if !storage.is_empty() && !storage.starts_with('/') {
                uses.storages.insert(storage);
            }
        }
        return;
    }
    if base == "hostpci" || base == "usb" {
        let kind = if base == "hostpci" { "pci" } else { "usb" };
        for (i, part) in value.split(',').enumerate() {
            let (k, v) = match part.split_once('=') {
                Some(kv) => kv,
                None if i == 0 && kind == "pci" => ("host", part),
                None => continue,
            };
            match (k, kind) {
                ("mapping", _) => {
                    uses.mappings.insert(format!("{kind}/{v}"));
                }
                ("host", "pci") => {
                    for d in v.split(';') {
                        uses.pci.insert(normalise_pci(d));
                    }
                }
                ("host", _) => {
                    uses.usb.insert(v.to_ascii_lowercase());
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_tags_pools_templates() {
        let mut s = Snapshot::empty();
        s.set_resources(&json!([
            {"id":"qemu/104","vmid":104,"name":"doc1","node":"pve","type":"qemu","status":"running","tags":"Prod;web","pool":"core","template":0},
            {"id":"lxc/120","vmid":"120","name":"ct","node":"pve","type":"lxc","status":"stopped"},
            {"id":"node/pve","type":"node","node":"pve"},
            {"id":"qemu/9001","vmid":9001,"name":"tmpl","node":"pve","type":"qemu","template":1}
        ]))
        .unwrap();
        assert_eq!(s.guests.len(), 3);
        assert_eq!(s.guests[&104].tags, vec!["prod", "web"]);
        assert_eq!(s.guests[&104].pool.as_deref(), Some("core"));
        assert!(s.guests[&9001].template);
        assert_eq!(s.guests[&120].kind, GuestType::Lxc);
        assert!(s.set_resources(&json!({"x":1})).is_err());
        let mut t = Snapshot::empty();
        t.set_resources_json(
            br#"{"data":[{"vmid":"104","type":"qemu","name":"d\u006fc1","tags":"Prod;web","pool":"core","template":0,"maxmem":1},
                         {"type":"node","node":"pve"},{"vmid":9001.0,"type":"lxc","template":true}]}"#,
        )
        .unwrap();
        assert_eq!(t.guests[&104].name, "doc1");
        assert_eq!(t.guests[&104].tags, vec!["prod", "web"]);
        assert!(t.guests[&9001].template);
        assert!(t
            .set_resources_json(br#"{"data":[{"type":"qemu"}]}"#)
            .is_err());
        assert!(t.set_resources_json(br#"{"x":[]}"#).is_err());
        assert!(s.set_resources(&json!([{"type":"qemu"}])).is_err());
    }

    #[test]
    fn config_dependencies() {
        let mut s = Snapshot::empty();
        s.set_config(
            109,
            &json!({"scsi0":"local-lvm:vm-109-disk-0,size=32G","scsihw":"virtio-scsi-pci",
                    "hostpci0":"0000:00:02.0,pcie=1","hostpci1":"mapping=igpu","usb0":"host=1234:5678",
                    "efidisk0":"tank:vm-109-disk-1","ide2":"none,media=cdrom","protection":1}),
        )
        .unwrap();
        let u = &s.uses[&109];
        assert!(u.storages.contains("local-lvm") && u.storages.contains("tank"));
        assert_eq!(u.storages.len(), 2);
        assert!(u.pci.contains("0000:00:02.0"));
        assert!(u.mappings.contains("pci/igpu"));
        assert!(u.usb.contains("1234:5678"));
        assert!(u.protection);
        let mut l = Uses::default();
        config_uses("hostpci0", "00:02.0", &mut l);
        config_uses("mp0", "volume=nas:subvol-1-disk-0,mp=/x", &mut l);
        config_uses("mp1", "/srv/host,mp=/y", &mut l);
        assert!(l.pci.contains("0000:00:02.0"));
        assert_eq!(l.storages.iter().collect::<Vec<_>>(), vec!["nas"]);
    }

    #[test]
    fn jobs_rules_mappings() {
        let mut s = Snapshot::empty();
        s.set_backup_jobs(&json!([
            {"id":"backup-a","vmid":"104,110","schedule":"daily"},
            {"id":"backup-b","all":1,"exclude":"104"},
            {"id":"backup-c","pool":"lab"}
        ]))
        .unwrap();
        assert_eq!(s.backup_jobs["backup-a"].vmids, vec![104, 110]);
        assert!(s.backup_jobs["backup-b"].all);
        assert_eq!(s.backup_jobs["backup-c"].pool.as_deref(), Some("lab"));
        s.set_ha_rules(&json!([{"rule":"r1","type":"node-affinity","resources":"vm:104,ct:120"}]))
            .unwrap();
        assert_eq!(s.ha_rules["r1"].vmids, vec![104, 120]);
        s.set_ha_resources(&json!([{"sid":"vm:110","group":"g1"}]))
            .unwrap();
        assert_eq!(s.ha_resources[&110].as_deref(), Some("g1"));
        s.set_mappings(
            "pci",
            &json!([{"id":"igpu","map":["node=pve,path=0000:00:02.0,id=8086:46a6"]}]),
        )
        .unwrap();
        assert_eq!(s.mappings["pci/igpu"], vec!["0000:00:02.0"]);
        s.set_config(109, &json!({"hostpci0":"0000:00:02.0"}))
            .unwrap();
        assert_eq!(s.using_mapping("pci/igpu").collect::<Vec<_>>(), vec![109]);
    }
}
