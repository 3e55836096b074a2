//! The cluster-wide configuration: resource pools, storages (`storage.cfg`), resource
//! mappings (PCI, USB, directory), backup jobs (`jobs.cfg`), HA resources, groups and rules,
//! and the datacenter options — the create/read/update/delete behind `/pools`, `/storage`,
//! `/cluster/mapping`, `/cluster/backup`, `/cluster/ha` and `/cluster/options`, and what the
//! rest of the sim asks of it (a guest's pool and HA state, the storages of a node, the
//! guests a backup job selects).
//!
//! Entries keep their properties as the API takes them (strings); they are rendered with
//! integers where Proxmox answers integers, and with a `digest` that changes on every write
//! and is checked when a write sends one back.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{lower_hex_digest, normalize_tags, parse_vmid, Guest, State};
use crate::auth::now;
use crate::params::{split_list, Params, ParamsExt};
use crate::reply::ApiError;
use crate::seed::{ClusterSeed, SimEntry};
use crate::{GuestKind, SimGuest};

/// An entry's properties, as strings.
pub(crate) type Props = BTreeMap<String, String>;

/// Properties Proxmox answers as integers.
const INT_KEYS: &[&str] = &[
    "all",
    "bwlimit",
    "disable",
    "enabled",
    "failback",
    "ionice",
    "live-migration-capable",
    "lockwait",
    "max_relocate",
    "max_restart",
    "mdev",
    "nofailback",
    "pigz",
    "repeat-missed",
    "restricted",
    "shared",
    "stopwait",
    "strict",
    "zstd",
];

/// Properties that hold a list (repeated in a form, an array in JSON).
const LIST_KEYS: &[&str] = &["map", "exclude-path"];

/// A resource pool.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pool {
    pub comment: String,
    pub vms: BTreeSet<u32>,
    pub storages: BTreeSet<String>,
}

/// One section-config file: entries by id.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// What an entry is called in messages (`storage`, `job`, `rule`, …).
    what: &'static str,
    entries: BTreeMap<String, Props>,
}

impl Table {
    fn new(what: &'static str, seed: &[SimEntry]) -> Self {
        let mut entries = BTreeMap::new();
        for e in seed {
            let mut props = Props::new();
            for (k, v) in &e.props {
                set_prop(&mut props, k, v);
            }
            entries.insert(e.id.clone(), props);
        }
        Table { what, entries }
    }

    fn get(&self, id: &str) -> Result<&Props, ApiError> {
        self.entries
            .get(id)
            .ok_or_else(|| ApiError::die(format!("{} '{id}' does not exist", self.what)))
    }

    fn insert_new(&mut self, id: &str, props: Props) -> Result<(), ApiError> {
        if self.entries.contains_key(id) {
            return Err(ApiError::die(format!(
                "{} '{id}' already defined",
                self.what
            )));
        }
        self.entries.insert(id.to_owned(), props);
        Ok(())
    }

    /// Applies a PUT: `digest` check, `delete` list, new values (not those in `fixed`).
    fn update(&mut self, id: &str, p: &Params, fixed: &[&str]) -> Result<(), ApiError> {
        let what = self.what;
        let props = self
            .entries
            .get_mut(id)
            .ok_or_else(|| ApiError::die(format!("{what} '{id}' does not exist")))?;
        check_digest(props, p)?;
        apply(props, p, fixed);
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<Props, ApiError> {
        self.entries
            .remove(id)
            .ok_or_else(|| ApiError::die(format!("{} '{id}' does not exist", self.what)))
    }

    /// Every entry rendered, with `id_key` holding the id.
    fn list(&self, id_key: &str) -> Vec<Value> {
        self.entries
            .iter()
            .map(|(id, p)| Value::Object(render(id_key, id, p)))
            .collect()
    }
}

fn check_digest(props: &Props, p: &Params) -> Result<(), ApiError> {
    match p.str("digest") {
        Some(d) if d != lower_hex_digest(props) => Err(ApiError::die(
            "detected modified configuration - file changed by other user? Try again.",
        )),
        _ => Ok(()),
    }
}

/// Stores `value` under `key`; list properties collect values (one per line).
fn set_prop(props: &mut Props, key: &str, value: &str) {
    if LIST_KEYS.contains(&key) {
        let entry = props.entry(key.to_owned()).or_default();
        for item in list_items(key, value) {
            if !entry.is_empty() {
                entry.push('\n');
            }
            entry.push_str(&item);
        }
    } else if key == "tags" {
        props.insert(key.to_owned(), normalize_tags(value));
    } else {
        props.insert(key.to_owned(), value.to_owned());
    }
}

/// The items of a list property: a JSON array's strings, or (from a form, whose repeated
/// values arrive joined with `,`) one item per `node=` for a mapping's `map`.
fn list_items(key: &str, value: &str) -> Vec<String> {
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(value) {
        return items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
    }
    if key != "map" {
        return value
            .split(['\0', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let mut out: Vec<String> = Vec::new();
    for part in value.split(['\0', '\n', ',']).filter(|s| !s.is_empty()) {
        match out.last_mut() {
            Some(cur) if !(part.starts_with("node=") && cur.contains("node=")) => {
                cur.push(',');
                cur.push_str(part);
            }
            _ => out.push(part.to_owned()),
        }
    }
    out
}

/// Applies `delete` and the given values, skipping `fixed` keys and API-only arguments.
fn apply(props: &mut Props, p: &Params, fixed: &[&str]) {
    if let Some(del) = p.str("delete") {
        for key in split_list(del) {
            props.remove(&key);
        }
    }
    for (k, v) in p {
        if fixed.contains(&k.as_str()) || matches!(k.as_str(), "digest" | "delete") {
            continue;
        }
        if let Some(v) = v {
            if LIST_KEYS.contains(&k.as_str()) {
                props.remove(k);
            }
            set_prop(props, k, v);
        }
    }
}

/// An entry as the API answers it: integers where Proxmox has them, lists as arrays, the
/// id under `id_key` (none when empty) and a `digest`.
fn render(id_key: &str, id: &str, props: &Props) -> Map<String, Value> {
    let mut m = Map::new();
    if !id_key.is_empty() {
        m.insert(id_key.to_owned(), json!(id));
    }
    for (k, v) in props {
        let value = if LIST_KEYS.contains(&k.as_str()) {
            Value::Array(v.split('\n').map(|s| json!(s)).collect())
        } else if INT_KEYS.contains(&k.as_str()) {
            v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
        } else {
            json!(v)
        };
        m.insert(k.clone(), value);
    }
    m.insert("digest".into(), json!(lower_hex_digest(props)));
    m
}

/// The `pve-configid` format: `^[a-z][a-z0-9_-]+$` (case-insensitive).
fn check_configid(param: &str, id: &str) -> Result<(), ApiError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            param,
            format!("invalid configuration ID '{id}'"),
        ))
    }
}

fn required<'a>(p: &'a Params, key: &str) -> Result<&'a str, ApiError> {
    p.str(key).ok_or_else(|| ApiError::missing(key))
}

/// The props of a create call: everything but `skip`.
fn props_of(p: &Params, skip: &[&str]) -> Props {
    let mut props = Props::new();
    for (k, v) in p {
        if skip.contains(&k.as_str()) {
            continue;
        }
        if let Some(v) = v {
            set_prop(&mut props, k, v);
        }
    }
    props
}

/// Everything the cluster configures.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    pools: BTreeMap<String, Pool>,
    storages: Table,
    /// `pci`, `usb`, `dir`.
    mappings: BTreeMap<&'static str, Table>,
    backup: Table,
    ha_resources: Table,
    ha_groups: Table,
    ha_rules: Table,
    options: Props,
}

impl ClusterConfig {
    pub fn new(seed: &ClusterSeed, guests: &[SimGuest]) -> Self {
        let mut pools: BTreeMap<String, Pool> = seed
            .pools
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    Pool {
                        comment: p.comment.clone(),
                        vms: BTreeSet::new(),
                        storages: p.storages.iter().cloned().collect(),
                    },
                )
            })
            .collect();
        for g in guests {
            if let Some(pool) = &g.pool {
                pools.entry(pool.clone()).or_default().vms.insert(g.vmid);
            }
        }
        let mut mappings = BTreeMap::new();
        mappings.insert("pci", Table::new("mapping", &seed.pci_mappings));
        mappings.insert("usb", Table::new("mapping", &seed.usb_mappings));
        mappings.insert("dir", Table::new("mapping", &seed.dir_mappings));
        let mut options = Props::new();
        options.insert("keyboard".into(), "en-us".into());
        options.insert("console".into(), "html5".into());
        ClusterConfig {
            pools,
            storages: Table::new("storage", &seed.storages),
            mappings,
            backup: Table::new("job", &seed.backup_jobs),
            ha_resources: Table::new("resource", &seed.ha_resources),
            ha_groups: Table::new("group", &seed.ha_groups),
            ha_rules: Table::new("rule", &seed.ha_rules),
            options,
        }
    }
}

/// `vm:104`, `ct:120` or `104` → (`vm`|`ct`, vmid).
fn parse_sid(sid: &str) -> Result<(&str, u32), ApiError> {
    let (ty, id) = sid.split_once(':').unwrap_or(("", sid));
    let vmid = parse_vmid("sid", id)
        .map_err(|_| ApiError::param("sid", format!("unable to parse service id '{sid}'")))?;
    match ty {
        "" | "vm" | "ct" => Ok((ty, vmid)),
        _ => Err(ApiError::param(
            "sid",
            format!("unable to parse service id '{sid}'"),
        )),
    }
}

impl State {
    // ---- questions the rest of the sim asks ----

    /// The pool guest `vmid` belongs to.
    pub fn pool_of(&self, vmid: u32) -> Option<&str> {
        self.cluster
            .pools
            .iter()
            .find(|(_, p)| p.vms.contains(&vmid))
            .map(|(id, _)| id.as_str())
    }

    /// The pool storage `id` belongs to.
    pub fn storage_pool_of(&self, id: &str) -> Option<&str> {
        self.cluster
            .pools
            .iter()
            .find(|(_, p)| p.storages.contains(id))
            .map(|(pid, _)| pid.as_str())
    }

    /// The configuration of storage `id`.
    pub fn storage_config(&self, id: &str) -> Option<&Props> {
        self.cluster.storages.entries.get(id)
    }

    /// Whether storage `id` is disabled.
    pub fn storage_disabled(&self, id: &str) -> bool {
        self.storage_config(id)
            .is_some_and(|c| c.get("disable").is_some_and(|d| d == "1"))
    }

    /// The storages available on `node` (all, or those whose `nodes` names it).
    pub fn storage_ids_on(&self, node: &str) -> Vec<String> {
        self.cluster
            .storages
            .entries
            .iter()
            .filter(|(_, c)| {
                c.get("nodes")
                    .map_or(true, |n| split_list(n).iter().any(|x| x == node))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The HA state of a guest (`started`, `stopped`, …) when it is an HA resource.
    pub fn ha_state(&self, g: &Guest) -> Option<&str> {
        let sid = self.sid_of(g);
        self.cluster
            .ha_resources
            .entries
            .get(&sid)
            .map(|p| p.get("state").map_or("started", String::as_str))
    }

    fn sid_of(&self, g: &Guest) -> String {
        match g.kind {
            GuestKind::Qemu => format!("vm:{}", g.vmid),
            GuestKind::Lxc => format!("ct:{}", g.vmid),
        }
    }

    /// Adds a new guest to `pool` (create, clone, restore with `pool=`).
    pub fn join_pool(&mut self, vmid: u32, pool: &str) -> Result<(), ApiError> {
        let p = self
            .cluster
            .pools
            .get_mut(pool)
            .ok_or_else(|| ApiError::die(format!("pool '{pool}' does not exist")))?;
        p.vms.insert(vmid);
        Ok(())
    }

    /// Whether `pool` exists.
    pub fn pool_exists(&self, pool: &str) -> bool {
        self.cluster.pools.contains_key(pool)
    }

    /// A destroyed guest leaves its pool; with `purge` also backup jobs and HA.
    pub fn forget_guest(&mut self, vmid: u32, purge: bool) {
        for p in self.cluster.pools.values_mut() {
            p.vms.remove(&vmid);
        }
        if !purge {
            return;
        }
        let id = vmid.to_string();
        for props in self.cluster.backup.entries.values_mut() {
            if let Some(list) = props.get("vmid") {
                let rest: Vec<String> = split_list(list).into_iter().filter(|v| *v != id).collect();
                if rest.is_empty() {
                    props.remove("vmid");
                } else {
                    props.insert("vmid".into(), rest.join(","));
                }
            }
        }
        for sid in [format!("vm:{vmid}"), format!("ct:{vmid}")] {
            if self.cluster.ha_resources.entries.remove(&sid).is_some() {
                self.drop_from_rules(&sid);
            }
        }
    }

    /// Removes `sid` from every HA rule; rules left without resources are deleted.
    fn drop_from_rules(&mut self, sid: &str) {
        self.cluster.ha_rules.entries.retain(|_, props| {
            let Some(list) = props.get("resources") else {
                return true;
            };
            let rest: Vec<String> = split_list(list).into_iter().filter(|s| s != sid).collect();
            if rest.is_empty() {
                return false;
            }
            props.insert("resources".into(), rest.join(","));
            true
        });
    }

    // ---- pools ----

    fn pool_members(&self, pool: &Pool, ty: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        for vmid in &pool.vms {
            if let Some(g) = self.guests.get(vmid) {
                if ty.map_or(true, |t| t == g.type_name()) {
                    out.push(self.guest_resource(g));
                }
            }
        }
        if ty.map_or(true, |t| t == "storage") {
            for s in &pool.storages {
                for node in &self.nodes {
                    if self.storage_ids_on(node).contains(s) {
                        out.extend(self.storage_resource(s, node));
                    }
                }
            }
        }
        out
    }

    fn pool(&self, id: &str) -> Result<&Pool, ApiError> {
        self.cluster
            .pools
            .get(id)
            .ok_or_else(|| ApiError::die(format!("pool '{id}' does not exist")))
    }

    /// `GET /pools` (with `poolid`: that pool with its members, optionally of one `type`).
    pub fn pool_index(&self, p: &Params) -> Result<Value, ApiError> {
        if let Some(id) = p.str("poolid") {
            let pool = self.pool(id)?;
            return Ok(json!([{
                "poolid": id, "comment": pool.comment,
                "members": self.pool_members(pool, p.str("type")),
            }]));
        }
        if p.str("type").is_some() {
            return Err(ApiError::param(
                "type",
                "parameter 'type' requires parameter 'poolid'",
            ));
        }
        Ok(Value::Array(
            self.cluster
                .pools
                .iter()
                .map(|(id, pool)| json!({"poolid": id, "comment": pool.comment}))
                .collect(),
        ))
    }

    /// `GET /pools/{poolid}`.
    pub fn pool_read(&self, id: &str, p: &Params) -> Result<Value, ApiError> {
        let pool = self.pool(id)?;
        Ok(json!({
            "comment": pool.comment,
            "members": self.pool_members(pool, p.str("type")),
        }))
    }

    /// `POST /pools`.
    pub fn pool_create(&mut self, p: &Params) -> Result<(), ApiError> {
        let id = required(p, "poolid")?;
        let valid = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
        if !valid {
            return Err(ApiError::param(
                "poolid",
                format!("invalid format - pool id '{id}' contains illegal characters"),
            ));
        }
        if self.cluster.pools.contains_key(id) {
            return Err(ApiError::die(format!("pool '{id}' already exists")));
        }
        self.cluster.pools.insert(
            id.to_owned(),
            Pool {
                comment: p.str("comment").unwrap_or("").to_owned(),
                ..Pool::default()
            },
        );
        Ok(())
    }

    /// `PUT /pools` / `PUT /pools/{poolid}`: comment, add or (`delete=1`) remove `vms` and
    /// `storage`; a guest in another pool moves only with `allow-move`.
    pub fn pool_update(&mut self, id: &str, p: &Params) -> Result<(), ApiError> {
        self.pool(id)?;
        let remove = p.flag("delete");
        let allow_move = p.flag("allow-move");
        let mut vms = Vec::new();
        for v in p.str("vms").map(split_list).unwrap_or_default() {
            let vmid = parse_vmid("vms", &v)?;
            if !self.guests.contains_key(&vmid) {
                return Err(ApiError::die(format!("VM {vmid} does not exist")));
            }
            let current = self.pool_of(vmid);
            if remove {
                if current != Some(id) {
                    return Err(ApiError::die(format!("VM {vmid} is not a pool member")));
                }
            } else if current == Some(id) {
                return Err(ApiError::die(format!("VM {vmid} is already a pool member")));
            } else if let (Some(other), false) = (current, allow_move) {
                return Err(ApiError::die(format!(
                    "VM {vmid} belongs already to pool '{other}'"
                )));
            }
            vms.push(vmid);
        }
        let storages = p.str("storage").map(split_list).unwrap_or_default();
        for s in &storages {
            if self.storage_config(s).is_none() {
                return Err(ApiError::die(format!("storage '{s}' does not exist")));
            }
            let member = self
                .cluster
                .pools
                .get(id)
                .is_some_and(|pl| pl.storages.contains(s));
            if remove && !member {
                return Err(ApiError::die(format!("storage '{s}' is not a pool member")));
            }
            if !remove && member {
                return Err(ApiError::die(format!(
                    "storage '{s}' is already a pool member"
                )));
            }
        }
        for vmid in &vms {
            for pool in self.cluster.pools.values_mut() {
                pool.vms.remove(vmid);
            }
        }
        let pool = self
            .cluster
            .pools
            .get_mut(id)
            .ok_or_else(|| ApiError::die(format!("pool '{id}' does not exist")))?;
        if let Some(c) = p.str("comment") {
            pool.comment = c.to_owned();
        }
        for vmid in vms {
            if !remove {
                pool.vms.insert(vmid);
            }
        }
        for s in storages {
            if remove {
                pool.storages.remove(&s);
            } else {
                pool.storages.insert(s);
            }
        }
        Ok(())
    }

    /// `DELETE /pools?poolid=` / `DELETE /pools/{poolid}`: only an empty pool.
    pub fn pool_delete(&mut self, id: &str) -> Result<(), ApiError> {
        let pool = self.pool(id)?;
        if !pool.vms.is_empty() || !pool.storages.is_empty() {
            return Err(ApiError::die(format!("pool '{id}' is not empty")));
        }
        self.cluster.pools.remove(id);
        Ok(())
    }

    // ---- storages ----

    /// `GET /storage` (optionally one `type`).
    pub fn storage_index(&self, p: &Params) -> Value {
        let ty = p.str("type");
        Value::Array(
            self.cluster
                .storages
                .list("storage")
                .into_iter()
                .filter(|v| ty.map_or(true, |t| v["type"] == t))
                .collect(),
        )
    }

    /// `GET /storage/{storage}`.
    pub fn storage_read(&self, id: &str) -> Result<Value, ApiError> {
        let props = self.cluster.storages.get(id)?;
        Ok(Value::Object(render("storage", id, props)))
    }

    /// `POST /storage`.
    pub fn storage_create(&mut self, p: &Params) -> Result<Value, ApiError> {
        let id = required(p, "storage")?.to_owned();
        let ty = required(p, "type")?.to_owned();
        let valid = id.len() >= 2
            && id.starts_with(|c: char| c.is_ascii_alphabetic())
            && id.ends_with(|c: char| c.is_ascii_alphanumeric())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ApiError::param(
                "storage",
                format!("storage ID '{id}' contains illegal characters"),
            ));
        }
        const TYPES: &[&str] = &[
            "btrfs",
            "cephfs",
            "cifs",
            "dir",
            "esxi",
            "iscsi",
            "iscsidirect",
            "lvm",
            "lvmthin",
            "nfs",
            "pbs",
            "rbd",
            "zfs",
            "zfspool",
        ];
        if !TYPES.contains(&ty.as_str()) {
            return Err(ApiError::param(
                "type",
                format!("value '{ty}' does not have a value in the enumeration"),
            ));
        }
        let props = props_of(p, &["storage"]);
        if self.cluster.storages.entries.contains_key(&id) {
            return Err(ApiError::die(format!(
                "create storage failed: storage ID '{id}' already defined"
            )));
        }
        self.cluster.storages.insert_new(&id, props)?;
        Ok(json!({"storage": id, "type": ty}))
    }

    /// `PUT /storage/{storage}`.
    pub fn storage_update(&mut self, id: &str, p: &Params) -> Result<Value, ApiError> {
        if p.str("type").is_some() {
            return Err(ApiError::param("type", "property is not defined in schema and the schema does not allow additional properties"));
        }
        self.cluster.storages.update(id, p, &["storage", "type"])?;
        let ty = self
            .storage_config(id)
            .and_then(|c| c.get("type").cloned())
            .unwrap_or_default();
        Ok(json!({"storage": id, "type": ty}))
    }

    /// `DELETE /storage/{storage}` (Proxmox does not check whether guests use it).
    pub fn storage_delete(&mut self, id: &str) -> Result<(), ApiError> {
        self.cluster.storages.remove(id)?;
        for pool in self.cluster.pools.values_mut() {
            pool.storages.remove(id);
        }
        Ok(())
    }

    // ---- resource mappings ----

    fn mappings(&self, ty: &str) -> Result<&Table, ApiError> {
        self.cluster.mappings.get(ty).ok_or_else(|| {
            ApiError::new(
                501,
                format!("Method 'GET /cluster/mapping/{ty}' not implemented"),
            )
        })
    }

    fn mappings_mut(&mut self, ty: &str) -> Result<&mut Table, ApiError> {
        self.cluster.mappings.get_mut(ty).ok_or_else(|| {
            ApiError::new(
                501,
                format!("Method '/cluster/mapping/{ty}' not implemented"),
            )
        })
    }

    /// `GET /cluster/mapping/{pci,usb,dir}` (with `check-node`: the checks of that node).
    pub fn mapping_index(&self, ty: &str, p: &Params) -> Result<Value, ApiError> {
        let check = p.str("check-node").or_else(|| p.str("check_node"));
        let list = self
            .mappings(ty)?
            .list("id")
            .into_iter()
            .map(|mut v| {
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("digest");
                    obj.entry("description").or_insert(json!(""));
                    if let Some(node) = check {
                        let present = obj["map"].as_array().is_some_and(|m| {
                            m.iter().any(|e| {
                                e.as_str().is_some_and(|e| {
                                    e.split(',').any(|kv| kv == format!("node={node}"))
                                })
                            })
                        });
                        let checks = if present {
                            json!([])
                        } else {
                            json!([{"severity": "warning",
                                    "message": format!("No mapping for node {node}")}])
                        };
                        let key = if ty == "usb" { "errors" } else { "checks" };
                        obj.insert(key.into(), checks);
                    }
                }
                v
            })
            .collect();
        Ok(Value::Array(list))
    }

    /// `GET /cluster/mapping/{type}/{id}`.
    pub fn mapping_read(&self, ty: &str, id: &str) -> Result<Value, ApiError> {
        let props = self.mappings(ty)?.get(id)?;
        Ok(Value::Object(render("id", id, props)))
    }

    /// `POST /cluster/mapping/{type}`.
    pub fn mapping_create(&mut self, ty: &str, p: &Params) -> Result<(), ApiError> {
        let id = required(p, "id")?.to_owned();
        check_configid("id", &id)?;
        let props = props_of(p, &["id"]);
        if !props.contains_key("map") {
            return Err(ApiError::missing("map"));
        }
        self.mappings_mut(ty)?.insert_new(&id, props)
    }

    /// `PUT /cluster/mapping/{type}/{id}`.
    pub fn mapping_update(&mut self, ty: &str, id: &str, p: &Params) -> Result<(), ApiError> {
        self.mappings_mut(ty)?.update(id, p, &["id"])
    }

    /// `DELETE /cluster/mapping/{type}/{id}`.
    pub fn mapping_delete(&mut self, ty: &str, id: &str) -> Result<(), ApiError> {
        self.mappings_mut(ty)?.remove(id).map(|_| ())
    }

    // ---- backup jobs ----

    /// `GET /cluster/backup`.
    pub fn backup_index(&self) -> Value {
        let next = next_run();
        Value::Array(
            self.cluster
                .backup
                .list("id")
                .into_iter()
                .map(|mut v| {
                    if v["enabled"] != json!(0) {
                        v["next-run"] = json!(next);
                    }
                    v
                })
                .collect(),
        )
    }

    /// `GET /cluster/backup/{id}`.
    pub fn backup_read(&self, id: &str) -> Result<Value, ApiError> {
        let props = self.cluster.backup.get(id)?;
        Ok(Value::Object(render("id", id, props)))
    }

    fn check_backup(&self, props: &Props) -> Result<(), ApiError> {
        let selects = ["vmid", "pool", "all"]
            .iter()
            .filter(|k| props.get(**k).is_some_and(|v| !v.is_empty() && v != "0"))
            .count();
        if selects == 0 {
            return Err(ApiError::die(
                "please specify either 'vmid', 'pool' or 'all'",
            ));
        }
        if let Some(pool) = props.get("pool") {
            if !self.pool_exists(pool) {
                return Err(ApiError::die(format!("pool '{pool}' does not exist")));
            }
        }
        if let Some(s) = props.get("storage") {
            if self.storage_config(s).is_none() {
                return Err(ApiError::die(format!("storage '{s}' does not exist")));
            }
        }
        Ok(())
    }

    /// `POST /cluster/backup`; an id is generated when none is given.
    pub fn backup_create(&mut self, p: &Params) -> Result<(), ApiError> {
        let id = match p.str("id") {
            Some(id) => {
                check_configid("id", id)?;
                id.to_owned()
            }
            None => format!(
                "backup-{:08x}-{:04x}",
                now() as u32,
                self.cluster.backup.entries.len() & 0xffff
            ),
        };
        let mut props = props_of(p, &["id"]);
        props.insert("type".into(), "vzdump".into());
        props.entry("enabled".into()).or_insert_with(|| "1".into());
        props
            .entry("schedule".into())
            .or_insert_with(|| "00:00".into());
        self.check_backup(&props)?;
        self.cluster.backup.insert_new(&id, props)
    }

    /// `PUT /cluster/backup/{id}`.
    pub fn backup_update(&mut self, id: &str, p: &Params) -> Result<(), ApiError> {
        let mut props = self.cluster.backup.get(id)?.clone();
        check_digest(&props, p)?;
        apply(&mut props, p, &["id", "type"]);
        self.check_backup(&props)?;
        self.cluster.backup.entries.insert(id.to_owned(), props);
        Ok(())
    }

    /// `DELETE /cluster/backup/{id}`.
    pub fn backup_delete(&mut self, id: &str) -> Result<(), ApiError> {
        self.cluster.backup.remove(id).map(|_| ())
    }

    /// The guests a backup job selects now: its `vmid` list, its pool's members, or every
    /// guest but `exclude` (`all=1`), limited to `node` when set.
    pub fn backup_selection(&self, props: &Props) -> Vec<u32> {
        let node = props.get("node");
        let on_node = |g: &Guest| node.map_or(true, |n| g.node == *n);
        let mut out: Vec<u32> = if props.get("all").is_some_and(|a| a == "1") {
            let exclude: BTreeSet<String> = props
                .get("exclude")
                .map(|e| split_list(e).into_iter().collect())
                .unwrap_or_default();
            self.guests
                .values()
                .filter(|g| !g.template && !exclude.contains(&g.vmid.to_string()))
                .filter(|g| on_node(g))
                .map(|g| g.vmid)
                .collect()
        } else if let Some(pool) = props.get("pool") {
            self.cluster
                .pools
                .get(pool)
                .map(|p| {
                    p.vms
                        .iter()
                        .filter(|v| self.guests.get(v).is_some_and(&on_node))
                        .copied()
                        .collect()
                })
                .unwrap_or_default()
        } else {
            props
                .get("vmid")
                .map(|l| {
                    split_list(l)
                        .iter()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// `GET /cluster/backup/{id}/included_volumes`.
    pub fn backup_included(&self, id: &str) -> Result<Value, ApiError> {
        let props = self.cluster.backup.get(id)?;
        let children: Vec<Value> = self
            .backup_selection(props)
            .into_iter()
            .map(|vmid| match self.guests.get(&vmid) {
                Some(g) => {
                    let vols: Vec<Value> = g
                        .volumes()
                        .into_iter()
                        .filter(|(k, _, _)| !k.starts_with("unused"))
                        .map(|(k, volid, _)| {
                            let excluded = g
                                .config
                                .get(&k)
                                .is_some_and(|v| v.split(',').any(|p| p == "backup=0"));
                            json!({"id": k, "name": volid, "included": !excluded,
                                   "reason": if excluded { "disabled" } else { "default" }})
                        })
                        .collect();
                    json!({"id": vmid, "name": g.name, "type": g.type_name(), "children": vols})
                }
                None => json!({"id": vmid, "type": "unknown", "children": []}),
            })
            .collect();
        Ok(json!({ "children": children }))
    }

    // ---- HA ----

    /// The canonical sid (`vm:104`) of `sid`, checking the guest exists and its type fits.
    fn canonical_sid(&self, sid: &str) -> Result<String, ApiError> {
        let (ty, vmid) = parse_sid(sid)?;
        let Some(g) = self.guests.get(&vmid) else {
            return Err(ApiError::die(format!(
                "unable to find guest {vmid} - it does not exist"
            )));
        };
        let want = match g.kind {
            GuestKind::Qemu => "vm",
            GuestKind::Lxc => "ct",
        };
        if !ty.is_empty() && ty != want {
            return Err(ApiError::param(
                "sid",
                format!("wrong type '{ty}' for guest {vmid} (it is '{want}')"),
            ));
        }
        Ok(format!("{want}:{vmid}"))
    }

    /// `GET /cluster/ha/resources` (optionally `type=vm|ct`).
    pub fn ha_resource_index(&self, p: &Params) -> Value {
        let ty = p.str("type");
        Value::Array(
            self.cluster
                .ha_resources
                .entries
                .iter()
                .filter(|(sid, _)| ty.map_or(true, |t| sid.starts_with(&format!("{t}:"))))
                .map(|(sid, props)| Value::Object(ha_resource_render(sid, props)))
                .collect(),
        )
    }

    /// `GET /cluster/ha/resources/{sid}`.
    pub fn ha_resource_read(&self, sid: &str) -> Result<Value, ApiError> {
        let (ty, vmid) = parse_sid(sid)?;
        let sid = if ty.is_empty() {
            self.canonical_sid(&vmid.to_string())?
        } else {
            sid.to_owned()
        };
        let props = self.cluster.ha_resources.get(&sid)?;
        Ok(Value::Object(ha_resource_render(&sid, props)))
    }

    /// `POST /cluster/ha/resources`.
    pub fn ha_resource_create(&mut self, p: &Params) -> Result<(), ApiError> {
        let sid = self.canonical_sid(required(p, "sid")?)?;
        if let Some(t) = p.str("type") {
            if !sid.starts_with(&format!("{t}:")) {
                return Err(ApiError::param("type", format!("wrong type for '{sid}'")));
            }
        }
        if let Some(group) = p.str("group") {
            self.cluster.ha_groups.get(group)?;
        }
        let props = props_of(p, &["sid", "type"]);
        if self.cluster.ha_resources.entries.contains_key(&sid) {
            return Err(ApiError::die(format!(
                "resource ID '{sid}' already defined"
            )));
        }
        self.cluster.ha_resources.insert_new(&sid, props)
    }

    /// `PUT /cluster/ha/resources/{sid}`.
    pub fn ha_resource_update(&mut self, sid: &str, p: &Params) -> Result<(), ApiError> {
        let sid = self.canonical_sid(sid)?;
        if let Some(group) = p.str("group") {
            self.cluster.ha_groups.get(group)?;
        }
        self.cluster.ha_resources.update(&sid, p, &["sid", "type"])
    }

    /// `DELETE /cluster/ha/resources/{sid}` (`purge`, default on: also out of every rule).
    pub fn ha_resource_delete(&mut self, sid: &str, p: &Params) -> Result<(), ApiError> {
        let sid = self.canonical_sid(sid)?;
        self.cluster.ha_resources.remove(&sid)?;
        if p.str("purge").map_or(true, |v| v == "1" || v == "true") {
            self.drop_from_rules(&sid);
        }
        Ok(())
    }

    /// `GET /cluster/ha/groups`.
    pub fn ha_group_index(&self) -> Value {
        Value::Array(
            self.cluster
                .ha_groups
                .list("group")
                .into_iter()
                .map(|mut v| {
                    v["type"] = json!("group");
                    v
                })
                .collect(),
        )
    }

    /// `GET /cluster/ha/groups/{group}`.
    pub fn ha_group_read(&self, id: &str) -> Result<Value, ApiError> {
        let props = self.cluster.ha_groups.get(id)?;
        let mut m = render("group", id, props);
        m.insert("type".into(), json!("group"));
        Ok(Value::Object(m))
    }

    /// `POST /cluster/ha/groups`.
    pub fn ha_group_create(&mut self, p: &Params) -> Result<(), ApiError> {
        let id = required(p, "group")?.to_owned();
        check_configid("group", &id)?;
        required(p, "nodes")?;
        let props = props_of(p, &["group", "type"]);
        self.cluster.ha_groups.insert_new(&id, props)
    }

    /// `PUT /cluster/ha/groups/{group}`.
    pub fn ha_group_update(&mut self, id: &str, p: &Params) -> Result<(), ApiError> {
        self.cluster.ha_groups.update(id, p, &["group", "type"])
    }

    /// `DELETE /cluster/ha/groups/{group}`: not while a resource uses it.
    pub fn ha_group_delete(&mut self, id: &str) -> Result<(), ApiError> {
        self.cluster.ha_groups.get(id)?;
        if let Some((sid, _)) = self
            .cluster
            .ha_resources
            .entries
            .iter()
            .find(|(_, p)| p.get("group").is_some_and(|g| g == id))
        {
            return Err(ApiError::die(format!("ha group '{id}' is used by '{sid}'")));
        }
        self.cluster.ha_groups.remove(id).map(|_| ())
    }

    /// `GET /cluster/ha/rules` (optionally one `type`, or the rules naming `resource`).
    pub fn ha_rule_index(&self, p: &Params) -> Result<Value, ApiError> {
        let ty = p.str("type");
        let resource = match p.str("resource") {
            Some(r) => Some(self.canonical_sid(r)?),
            None => None,
        };
        Ok(Value::Array(
            self.cluster
                .ha_rules
                .entries
                .iter()
                .enumerate()
                .filter(|(_, (_, props))| {
                    ty.map_or(true, |t| props.get("type").is_some_and(|x| x == t))
                })
                .filter(|(_, (_, props))| {
                    resource.as_ref().map_or(true, |r| {
                        props
                            .get("resources")
                            .is_some_and(|l| split_list(l).contains(r))
                    })
                })
                .map(|(i, (id, props))| {
                    let mut m = render("rule", id, props);
                    m.insert("order".into(), json!(i + 1));
                    Value::Object(m)
                })
                .collect(),
        ))
    }

    /// `GET /cluster/ha/rules/{rule}`.
    pub fn ha_rule_read(&self, id: &str) -> Result<Value, ApiError> {
        let props = self.cluster.ha_rules.get(id)?;
        Ok(Value::Object(render("rule", id, props)))
    }

    /// Normalises and checks a rule's `resources` (every one an existing guest) and the
    /// properties its `type` needs.
    fn check_rule(&self, props: &mut Props) -> Result<(), ApiError> {
        let ty = props.get("type").cloned().unwrap_or_default();
        let list = props
            .get("resources")
            .cloned()
            .ok_or_else(|| ApiError::missing("resources"))?;
        let mut sids = BTreeSet::new();
        for r in split_list(&list) {
            sids.insert(self.canonical_sid(&r)?);
        }
        if sids.is_empty() {
            return Err(ApiError::missing("resources"));
        }
        match ty.as_str() {
            "node-affinity" => {
                let nodes = props
                    .get("nodes")
                    .ok_or_else(|| ApiError::missing("nodes"))?;
                for entry in split_list(nodes) {
                    let name = entry.split(':').next().unwrap_or("");
                    if !self.nodes.iter().any(|n| n == name) {
                        return Err(ApiError::param(
                            "nodes",
                            format!("unknown node '{name}'"),
                        ));
                    }
                }
            }
            "resource-affinity" => {
                if !props
                    .get("affinity")
                    .is_some_and(|a| a == "positive" || a == "negative")
                {
                    return Err(ApiError::missing("affinity"));
                }
                if sids.len() < 2 {
                    return Err(ApiError::param(
                        "resources",
                        "a resource affinity rule needs at least two resources",
                    ));
                }
            }
            other => {
                return Err(ApiError::param(
                    "type",
                    format!("value '{other}' does not have a value in the enumeration 'node-affinity, resource-affinity'"),
                ))
            }
        }
        props.insert(
            "resources".into(),
            sids.into_iter().collect::<Vec<_>>().join(","),
        );
        Ok(())
    }

    /// `POST /cluster/ha/rules`.
    pub fn ha_rule_create(&mut self, p: &Params) -> Result<(), ApiError> {
        let id = required(p, "rule")?.to_owned();
        check_configid("rule", &id)?;
        required(p, "type")?;
        let mut props = props_of(p, &["rule"]);
        self.check_rule(&mut props)?;
        self.cluster.ha_rules.insert_new(&id, props)
    }

    /// `PUT /cluster/ha/rules/{rule}` (`type` must stay the same).
    pub fn ha_rule_update(&mut self, id: &str, p: &Params) -> Result<(), ApiError> {
        let mut props = self.cluster.ha_rules.get(id)?.clone();
        if let Some(t) = p.str("type") {
            if props.get("type").is_some_and(|x| x != t) {
                return Err(ApiError::param("type", "rule type cannot be changed"));
            }
        }
        check_digest(&props, p)?;
        apply(&mut props, p, &["rule", "type"]);
        self.check_rule(&mut props)?;
        self.cluster.ha_rules.entries.insert(id.to_owned(), props);
        Ok(())
    }

    /// `DELETE /cluster/ha/rules/{rule}`.
    pub fn ha_rule_delete(&mut self, id: &str) -> Result<(), ApiError> {
        self.cluster.ha_rules.remove(id).map(|_| ())
    }

    /// `GET /cluster/ha/status/current`.
    pub fn ha_status(&self) -> Value {
        let ts = now();
        let master = self
            .nodes
            .iter()
            .find(|n| !self.offline.contains(*n))
            .cloned()
            .unwrap_or_default();
        let mut out = vec![
            json!({"id": "quorum", "type": "quorum", "node": master, "status": "OK", "quorate": 1}),
            json!({"id": "master", "type": "master", "node": master,
                   "status": format!("{master} (active, {ts})"), "timestamp": ts}),
        ];
        for node in &self.nodes {
            let up = !self.offline.contains(node);
            out.push(json!({
                "id": format!("lrm:{node}"), "type": "lrm", "node": node, "timestamp": ts,
                "status": if up { format!("{node} (active, {ts})") } else { format!("{node} (old timestamp - dead?, {ts})") },
            }));
        }
        for (sid, props) in &self.cluster.ha_resources.entries {
            let Ok((_, vmid)) = parse_sid(sid) else {
                continue;
            };
            let Some(g) = self.guests.get(&vmid) else {
                continue;
            };
            let req = props.get("state").map_or("started", String::as_str);
            let state = if self.offline.contains(&g.node) {
                "fence"
            } else if g.running {
                "started"
            } else {
                "stopped"
            };
            out.push(json!({
                "id": format!("service:{sid}"), "type": "service", "sid": sid, "node": g.node,
                "state": state, "crm_state": state, "request_state": req,
                "status": format!("{sid} ({}, {state})", g.node),
                "max_restart": 1, "max_relocate": 1, "failback": 1,
            }));
        }
        Value::Array(out)
    }

    // ---- datacenter options ----

    /// `GET /cluster/options`.
    pub fn cluster_options(&self) -> Value {
        let mut m = render("", "", &self.cluster.options);
        m.remove("digest");
        Value::Object(m)
    }

    /// `PUT /cluster/options`.
    pub fn cluster_options_set(&mut self, p: &Params) -> Result<(), ApiError> {
        check_digest(&self.cluster.options, p)?;
        apply(&mut self.cluster.options, p, &[]);
        Ok(())
    }
}

fn ha_resource_render(sid: &str, props: &Props) -> Map<String, Value> {
    let mut m = render("sid", sid, props);
    let ty = sid.split(':').next().unwrap_or("vm");
    m.insert("type".into(), json!(ty));
    m.entry("state").or_insert(json!("started"));
    m
}

/// A plausible `next-run` (the next full hour).
fn next_run() -> u64 {
    (now() / 3600 + 1) * 3600
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn demo() -> State {
        State::new(&SimConfig::demo())
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn map_lists_from_forms_and_json() {
        assert_eq!(
            list_items(
                "map",
                "node=a,path=0000:00:02.0,id=8086:46a6,node=b,path=0000:01:00.0"
            ),
            vec![
                "node=a,path=0000:00:02.0,id=8086:46a6",
                "node=b,path=0000:01:00.0"
            ]
        );
        assert_eq!(
            list_items("map", r#"["node=a,path=x","node=b,path=y"]"#),
            vec!["node=a,path=x", "node=b,path=y"]
        );
    }

    #[test]
    fn pools_join_move_and_empty() {
        let mut s = demo();
        assert_eq!(s.pool_of(104), Some("production"));
        assert_eq!(s.pool_of(110), Some("lab"));
        // A guest in another pool moves only with allow-move.
        let e = s
            .pool_update("production", &params(&[("vms", "110")]))
            .unwrap_err();
        assert!(
            e.message.contains("belongs already to pool 'lab'"),
            "{}",
            e.message
        );
        s.pool_update(
            "production",
            &params(&[("vms", "110"), ("allow-move", "1")]),
        )
        .unwrap();
        assert_eq!(s.pool_of(110), Some("production"));
        assert!(s.pool_delete("production").is_err());
        s.pool_update(
            "production",
            &params(&[("vms", "104,110"), ("delete", "1")]),
        )
        .unwrap();
        assert_eq!(s.pool_of(104), None);
        s.pool_delete("production").unwrap();
        assert!(!s.pool_exists("production"));
    }

    #[test]
    fn backup_selection_follows_pools_and_exclusions() {
        let mut s = demo();
        let lab = s.cluster.backup.get("backup-lab").unwrap().clone();
        assert_eq!(s.backup_selection(&lab), vec![110, 120]);
        s.join_pool(130, "lab").unwrap();
        // A guest that does not exist is not selected.
        assert_eq!(s.backup_selection(&lab), vec![110, 120]);
        let all = params(&[("all", "1"), ("exclude", "104,109")]);
        s.backup_create(&params(&[
            ("id", "everything"),
            ("all", "1"),
            ("exclude", "104,109"),
        ]))
        .unwrap();
        let props = props_of(&all, &[]);
        assert_eq!(s.backup_selection(&props), vec![110, 120]);
        assert!(s
            .backup_create(&params(&[("id", "nothing"), ("storage", "local")]))
            .is_err());
    }

    #[test]
    fn ha_rules_normalise_resources_and_follow_purges() {
        let mut s = demo();
        s.ha_rule_create(&params(&[
            ("rule", "pair"),
            ("type", "resource-affinity"),
            ("resources", "110,vm:104"),
            ("affinity", "positive"),
        ]))
        .unwrap();
        assert_eq!(
            s.ha_rule_read("pair").unwrap()["resources"],
            "vm:104,vm:110"
        );
        let e = s
            .ha_rule_create(&params(&[
                ("rule", "bad"),
                ("type", "node-affinity"),
                ("resources", "vm:104"),
                ("nodes", "nosuchnode"),
            ]))
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.errors.as_ref().unwrap()["nodes"]
                .as_str()
                .unwrap()
                .contains("unknown node"),
            "{e:?}"
        );
        s.ha_resource_delete("vm:110", &Params::new()).unwrap();
        // `pair` lost vm:110 and keeps vm:104; `lab-apart` keeps ct:120.
        assert_eq!(s.ha_rule_read("pair").unwrap()["resources"], "vm:104");
        assert_eq!(s.ha_rule_read("lab-apart").unwrap()["resources"], "ct:120");
    }

    #[test]
    fn digests_guard_updates() {
        let mut s = demo();
        let d = s.mapping_read("pci", "igpu").unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        s.mapping_update(
            "pci",
            "igpu",
            &params(&[("description", "x"), ("digest", &d)]),
        )
        .unwrap();
        assert!(s
            .mapping_update(
                "pci",
                "igpu",
                &params(&[("description", "y"), ("digest", &d)])
            )
            .is_err());
        assert_eq!(
            s.mapping_read("pci", "igpu").unwrap()["map"][0],
            "node=pve,path=0000:00:02.0,id=8086:46a6,iommugroup=2"
        );
    }
}
