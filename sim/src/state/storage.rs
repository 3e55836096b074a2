//! The node's storages and their content: listing, volume details, deletion, uploads.

use serde_json::{json, Value};

use super::{State, Volume};
use crate::auth::now;
use crate::params::{Params, ParamsExt};
use crate::reply::ApiError;
use crate::GuestKind;

impl State {
    /// Whether `storage` exists on the current node (configured, and not restricted to
    /// other nodes).
    pub fn storage_exists(&self, storage: &str) -> bool {
        self.storage_ids_on(&self.node)
            .iter()
            .any(|id| id == storage)
    }

    /// `storage` exists on this node and is enabled, or the error Proxmox gives.
    fn storage_usable(&self, storage: &str) -> Result<(), ApiError> {
        if !self.storage_exists(storage) {
            return Err(ApiError::die(format!("storage '{storage}' does not exist")));
        }
        if self.storage_disabled(storage) {
            return Err(ApiError::die(format!("storage '{storage}' is disabled")));
        }
        Ok(())
    }

    /// `GET /nodes/{node}/storage`.
    pub fn storages(&self, p: &Params) -> Value {
        let content = p.str("content");
        let wanted = p.str("storage");
        let only_enabled = p.flag("enabled");
        Value::Array(
            self.storage_ids_on(&self.node)
                .into_iter()
                .filter_map(|id| {
                    let cfg = self.storage_config(&id)?;
                    let enabled = !self.storage_disabled(&id);
                    let ty = cfg.get("type").cloned().unwrap_or_default();
                    let c = cfg.get("content").cloned().unwrap_or_default();
                    if content.is_some_and(|w| !c.split(',').any(|x| x == w))
                        || wanted.is_some_and(|w| w != id)
                        || (only_enabled && !enabled)
                    {
                        return None;
                    }
                    let shared = cfg.get("shared").is_some_and(|v| v == "1");
                    Some(if enabled {
                        json!({"storage": id, "type": ty, "content": c, "active": 1, "enabled": 1,
                               "shared": u8::from(shared), "total": 107_374_182_400u64,
                               "used": 21_474_836_480u64, "avail": 85_899_345_920u64,
                               "used_fraction": 0.2})
                    } else {
                        json!({"storage": id, "type": ty, "content": c, "active": 0, "enabled": 0,
                               "shared": u8::from(shared)})
                    })
                })
                .collect(),
        )
    }

    /// `GET /nodes/{node}/storage/{storage}/status`.
    pub fn storage_status(&self, storage: &str) -> Result<Value, ApiError> {
        if !self.storage_exists(storage) {
            return Err(ApiError::die(format!("storage '{storage}' does not exist")));
        }
        let cfg = self.storage_config(storage).cloned().unwrap_or_default();
        let enabled = !self.storage_disabled(storage);
        Ok(json!({
            "type": cfg.get("type").cloned().unwrap_or_default(),
            "content": cfg.get("content").cloned().unwrap_or_default(),
            "shared": u8::from(cfg.get("shared").is_some_and(|v| v == "1")),
            "active": u8::from(enabled), "enabled": u8::from(enabled),
            "total": 107_374_182_400u64, "used": 21_474_836_480u64, "avail": 85_899_345_920u64,
        }))
    }

    /// Every volume on `storage`.
    fn volumes_of(&self, storage: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let shared = self
            .storage_config(storage)
            .is_some_and(|c| c.get("shared").is_some_and(|v| v == "1"));
        for g in self.guests.values() {
            if g.node != self.node && !shared {
                continue;
            }
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
            if f.node == self.node && f.volid.split(':').next() == Some(storage) {
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
        self.storage_usable(storage)?;
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
        let node = self.node.clone();
        if let Some(pos) = self
            .files
            .iter()
            .position(|f| f.volid == volid && f.node == node)
        {
            self.files.remove(pos);
        } else {
            let owner = self
                .guests
                .values_mut()
                .filter(|g| g.node == node)
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
        self.storage_usable(storage)?;
        if !matches!(content, "iso" | "vztmpl" | "import") {
            return Err(ApiError::param(
                "content",
                format!("upload content type '{content}' not allowed"),
            ));
        }
        let allowed = self.storage_config(storage).is_some_and(|c| {
            c.get("content")
                .is_some_and(|c| c.split(',').any(|x| x == content))
        });
        if !allowed {
            return Err(ApiError::die(format!(
                "storage '{storage}' does not support content type '{content}'"
            )));
        }
        if filename.is_empty() || filename.contains('/') {
            return Err(ApiError::param("filename", "invalid filename"));
        }
        let volid = format!("{storage}:{content}/{filename}");
        let node = self.node.clone();
        self.files.retain(|f| f.volid != volid || f.node != node);
        let format = filename.rsplit('.').next().unwrap_or("raw").to_owned();
        self.files.push(Volume {
            node,
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
