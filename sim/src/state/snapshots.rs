//! A guest's snapshots: list, create, read, delete, rollback.

use serde_json::{json, Value};

use super::{Snapshot, State};
use crate::auth::now;
use crate::params::{Params, ParamsExt};
use crate::reply::ApiError;
use crate::GuestKind;

impl State {
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
}
