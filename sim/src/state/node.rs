//! Node-wide views and actions: the guest lists, `cluster/resources`, `nextid`, bulk power actions.

use serde_json::{json, Value};

use super::{parse_vmid, State, STORAGES};
use crate::params::{split_list, Params, ParamsExt};
use crate::reply::ApiError;
use crate::GuestKind;

impl State {
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
        if filter.is_none_or(|f| f == "node") {
            out.push(self.node_entry(fingerprint));
        }
        if filter.is_none_or(|f| f == "vm") {
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
        if filter.is_none_or(|f| f == "storage") {
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
            .filter(|g| wanted.as_ref().is_none_or(|w| w.contains(&g.vmid)))
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
