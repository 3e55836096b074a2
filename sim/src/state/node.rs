//! Node-wide and cluster-wide views and actions: the guest lists, `cluster/resources`,
//! `cluster/status`, `nextid`, bulk power actions.

/// The cluster's name in `cluster/status`.
pub(crate) const CLUSTER_NAME: &str = "pvegate-sim";

use serde_json::{json, Value};

use super::{parse_vmid, Guest, State};
use crate::params::{split_list, Params, ParamsExt};
use crate::reply::ApiError;
use crate::GuestKind;

impl State {
    /// `GET /nodes/{node}/{qemu,lxc}`.
    pub fn list(&self, kind: GuestKind) -> Value {
        Value::Array(
            self.guests
                .values()
                .filter(|g| g.kind == kind && g.node == self.node)
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

    /// One guest's entry in `GET /cluster/resources` (and pool member lists).
    pub fn guest_resource(&self, g: &Guest) -> Value {
        let mut m = g.stats();
        let t = g.type_name();
        m.insert("id".into(), json!(format!("{t}/{}", g.vmid)));
        m.insert("type".into(), json!(t));
        m.insert("node".into(), json!(g.node));
        m.insert("template".into(), json!(u8::from(g.template)));
        m.insert("maxcpu".into(), json!(g.cpus()));
        m.remove("cpus");
        if let Some(pool) = self.pool_of(g.vmid) {
            m.insert("pool".into(), json!(pool));
        }
        if let Some(state) = self.ha_state(g) {
            m.insert("hastate".into(), json!(state));
        }
        if self.offline.contains(&g.node) {
            // Proxmox shows what it last knew, with an unknown status.
            m.insert("status".into(), json!("unknown"));
        }
        Value::Object(m)
    }

    /// One storage's entry in `GET /cluster/resources` on `node`.
    pub fn storage_resource(&self, id: &str, node: &str) -> Option<Value> {
        let s = self.storage_config(id)?;
        let ty = s.get("type").map_or("dir", String::as_str);
        let content = s.get("content").map_or("", String::as_str);
        let disabled = s.get("disable").is_some_and(|d| d == "1");
        let status = if disabled || self.offline.contains(node) {
            "unknown"
        } else {
            "available"
        };
        let mut v = json!({
            "id": format!("storage/{node}/{id}"), "type": "storage", "storage": id,
            "node": node, "status": status, "plugintype": ty, "content": content,
            "shared": u8::from(s.get("shared").is_some_and(|v| v == "1")),
            "disk": 21_474_836_480u64, "maxdisk": 107_374_182_400u64,
        });
        if let Some(pool) = self.storage_pool_of(id) {
            v["pool"] = json!(pool);
        }
        Some(v)
    }

    /// `GET /cluster/resources` (optionally `type=vm|node|storage|sdn`).
    pub fn resources(&self, filter: Option<&str>) -> Value {
        let mut out = Vec::new();
        if filter.map_or(true, |f| f == "node") {
            for node in &self.nodes {
                out.push(self.node_entry(node));
            }
        }
        if filter.map_or(true, |f| f == "vm") {
            for g in self.guests.values() {
                out.push(self.guest_resource(g));
            }
        }
        if filter.map_or(true, |f| f == "storage") {
            for node in &self.nodes {
                for id in self.storage_ids_on(node) {
                    out.extend(self.storage_resource(&id, node));
                }
            }
        }
        if filter.map_or(true, |f| f == "sdn") {
            for node in &self.nodes {
                out.push(json!({
                    "id": format!("sdn/{node}/localnetwork"), "type": "sdn", "sdn": "localnetwork",
                    "node": node, "status": if self.offline.contains(node) { "unknown" } else { "ok" },
                }));
            }
        }
        Value::Array(out)
    }

    /// A node's entry in `GET /nodes` and `cluster/resources`.
    pub fn node_entry(&self, node: &str) -> Value {
        let fingerprint = self.fingerprints.get(node).cloned().unwrap_or_default();
        if self.offline.contains(node) {
            return json!({
                "id": format!("node/{node}"), "node": node, "type": "node",
                "status": "offline", "level": "", "ssl_fingerprint": fingerprint,
            });
        }
        json!({
            "id": format!("node/{node}"), "node": node, "type": "node",
            "status": "online", "level": "", "cpu": 0.031, "maxcpu": 8,
            "mem": 6_442_450_944u64, "maxmem": 34_359_738_368u64,
            "disk": 10_737_418_240u64, "maxdisk": 107_374_182_400u64,
            "uptime": 864_000, "ssl_fingerprint": fingerprint, "cgroup-mode": 2,
        })
    }

    /// `GET /cluster/status`: the cluster entry, then one entry per node.
    pub fn cluster_status(&self, local: &str) -> Value {
        let online = self.nodes.len() - self.offline.len();
        let mut out = vec![json!({
            "id": "cluster", "type": "cluster", "name": CLUSTER_NAME,
            "nodes": self.nodes.len(), "quorate": u8::from(online * 2 > self.nodes.len()),
            "version": self.nodes.len() + 1,
        })];
        for (i, node) in self.nodes.iter().enumerate() {
            out.push(json!({
                "id": format!("node/{node}"), "type": "node", "name": node,
                "ip": format!("127.0.0.{}", i + 1), "level": "",
                "local": u8::from(node == local), "nodeid": i + 1,
                "online": u8::from(!self.offline.contains(node)),
            }));
        }
        Value::Array(out)
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
            .filter(|g| !g.template && g.node == self.node)
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
}
