//! One guest: its status, power actions, config (read, write, resize), create, clone, destroy,
//! template.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{
    disk_size, format_size, is_disk_key, lower_hex_digest, mac, normalize_tags, parse_size,
    parse_vmid, Guest, State, NOT_CONFIG,
};
use crate::auth::now;
use crate::params::{split_list, Params, ParamsExt};
use crate::reply::ApiError;
use crate::GuestKind;

impl State {
    /// `GET …/{vmid}/status/current`.
    pub fn status_current(&self, kind: GuestKind, vmid: u32) -> Result<Value, ApiError> {
        let g = self.guest(kind, vmid)?;
        let mut m = g.stats();
        let ha = match self.ha_state(g) {
            Some(state) => json!({"managed": 1, "state": state}),
            None => json!({"managed": 0}),
        };
        m.insert("ha".into(), ha);
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
                let v = if k == "tags" {
                    normalize_tags(v)
                } else {
                    v.clone()
                };
                g.config.insert(k.clone(), v);
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
        if let Some(pool) = p.str("pool") {
            if !self.pool_exists(pool) {
                return Err(ApiError::die(format!("pool '{pool}' does not exist")));
            }
        }
        let mut config = BTreeMap::new();
        config.insert(name_key.to_owned(), name.clone());
        for (k, v) in p {
            if let Some(v) = v {
                if !NOT_CONFIG.contains(&k.as_str()) {
                    let v = if k == "tags" {
                        normalize_tags(v)
                    } else {
                        v.clone()
                    };
                    config.insert(k.clone(), v);
                }
            }
        }
        let start = p.flag("start");
        let guest = Guest {
            vmid,
            node: self.node.clone(),
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
        if let Some(pool) = p.str("pool") {
            self.join_pool(vmid, pool)?;
        }
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
        if let Some(pool) = p.str("pool") {
            if !self.pool_exists(pool) {
                return Err(ApiError::die(format!("pool '{pool}' does not exist")));
            }
        }
        let target = match p.str("target") {
            Some(t) if !self.nodes.iter().any(|n| n == t) => {
                return Err(ApiError::param(
                    "target",
                    format!("no such cluster node '{t}'"),
                ))
            }
            Some(t) => t.to_owned(),
            None => self.node.clone(),
        };
        self.guests.insert(
            newid,
            Guest {
                vmid: newid,
                node: target,
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
        if let Some(pool) = p.str("pool") {
            self.join_pool(newid, pool)?;
        }
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
    pub fn destroy(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        purge: bool,
        user: &str,
    ) -> Result<String, ApiError> {
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
        self.forget_guest(vmid, purge);
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

    /// `POST …/{vmid}/migrate`: the guest moves to `target` (running guests only `online`,
    /// QEMU; containers with `restart`).
    pub fn migrate(
        &mut self,
        kind: GuestKind,
        vmid: u32,
        p: &Params,
        user: &str,
    ) -> Result<String, ApiError> {
        let target = p
            .str("target")
            .ok_or_else(|| ApiError::missing("target"))?
            .to_owned();
        if !self.nodes.contains(&target) {
            return Err(ApiError::param(
                "target",
                format!("no such cluster node '{target}'"),
            ));
        }
        if target == self.node {
            return Err(ApiError::param("target", "target is local node."));
        }
        if self.offline.contains(&target) {
            return Err(ApiError::die(format!("target node '{target}' is offline")));
        }
        let g = self.guest_mut(kind, vmid)?;
        let label = g.label();
        let live = match kind {
            GuestKind::Qemu => p.flag("online"),
            GuestKind::Lxc => p.flag("restart"),
        };
        if g.running && !live {
            return Err(ApiError::die(match kind {
                GuestKind::Qemu => "can't migrate running VM without --online".to_owned(),
                GuestKind::Lxc => format!("{label} is running - use online migration"),
            }));
        }
        g.node = target.clone();
        let ttype = match kind {
            GuestKind::Qemu => "qmigrate",
            GuestKind::Lxc => "vzmigrate",
        };
        Ok(self.task(
            ttype,
            &vmid.to_string(),
            user,
            Ok(vec![format!(
                "migration of {label} to node '{target}' finished"
            )]),
        ))
    }
}
