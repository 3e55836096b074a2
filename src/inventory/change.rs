//! [`Change`]: the facts of a write that only the inventory can judge — what it does to a
//! guest's tags, name, pool or `protection` flag (sticky protection), which passthrough
//! devices it hands out, which stored selection (backup job, HA rule or group) or
//! dependency (resource mapping, storage) it changes. Read from the request by the inspect
//! layer, next to the [`Operation`](crate::pve::Operation).

use crate::pve::{ParamValue, Params, Route, Segment, Vmid};

use super::snapshot::{normalise_pci, sid_vmid, split_tags, split_vmids};

/// A passthrough device named in a guest config (`hostpciN`, `usbN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// A raw host PCI address (normalised, `0000:00:02.0`).
    Pci(String),
    /// A raw host USB device (`host=` value, lower case).
    Usb(String),
    /// A resource mapping, `pci/<id>` or `usb/<id>`.
    Mapping(String),
}

/// A new value for a stored selection: `Some` when the request sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub vmids: Option<Vec<Vmid>>,
    pub pool: Option<String>,
    pub all: Option<bool>,
    pub exclude: Option<Vec<Vmid>>,
    /// Keys of the `delete` list (`vmid`, `pool`, `exclude`…).
    pub delete: Vec<String>,
}

/// What a write does that needs the inventory to be judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `POST`/`PUT …/qemu|lxc/{vmid}/config`.
    GuestConfig {
        vmid: Vmid,
        /// The new tag list (`tags=`), lower case; `Some(vec![])` when deleted.
        tags: Option<Vec<String>>,
        /// The new name (`name`/`hostname`); `Some("")` when deleted.
        name: Option<String>,
        /// `protection=0` or `delete=protection`.
        clears_protection: bool,
        /// Passthrough devices it gives the guest.
        devices: Vec<Device>,
    },
    /// `PUT /pools/{poolid}` or `PUT /pools` (`poolid=`): members added or (`delete=1`)
    /// removed; `allow-move` moves them from their pool.
    PoolMembers {
        pool: String,
        vms: Vec<Vmid>,
        remove: bool,
    },
    /// `DELETE /pools/{poolid}` or `DELETE /pools?poolid=`.
    PoolDelete { pool: String },
    /// `POST /nodes/{node}/vzdump` or `POST /cluster/backup` with `pool=`.
    PoolBackup { pool: String },
    /// `PUT`/`DELETE /cluster/backup/{id}`.
    BackupJob {
        id: String,
        delete: bool,
        after: Selection,
    },
    /// `PUT`/`DELETE /cluster/ha/rules/{rule}`; `resources` when the request sets them.
    HaRule {
        id: String,
        delete: bool,
        resources: Option<Vec<Vmid>>,
    },
    /// `PUT`/`DELETE /cluster/ha/groups/{group}`.
    HaGroup { id: String },
    /// `PUT`/`DELETE /cluster/mapping/{pci|usb}/{id}` (key `pci/<id>`).
    Mapping { key: String },
    /// `DELETE /storage/{storage}`, or `PUT` with `disable=1` (or a changed node list).
    Storage { id: String },
}

fn one<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    match params.map.get(key) {
        Some(ParamValue::One(s)) => Some(s.strip_suffix('\n').unwrap_or(s)),
        _ => None,
    }
}

fn joined(params: &Params, key: &str) -> Option<String> {
    match params.map.get(key) {
        Some(ParamValue::One(s)) => Some(s.clone()),
        Some(ParamValue::Many(v)) => Some(v.join(",")),
        Some(ParamValue::Absent) => Some(String::new()),
        None => None,
    }
}

fn truthy(s: &str) -> bool {
    !matches!(
        s.to_ascii_lowercase().as_str(),
        "0" | "off" | "no" | "false"
    )
}

fn delete_list(params: &Params) -> Vec<String> {
    joined(params, "delete")
        .map(|d| {
            d.split([',', ';', ' ', '\n'])
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The path parameters of `template` filled from `segments` (`{vmid}` -> `104`).
fn path_param<'a>(template: &str, segments: &'a [Segment], name: &str) -> Option<&'a str> {
    let want = format!("{{{name}}}");
    template
        .split('/')
        .filter(|s| !s.is_empty())
        .zip(segments)
        .find(|(t, _)| *t == want)
        .map(|(_, s)| s.as_str())
}

/// Reads the [`Change`] of a request, if it has one. `segments` are the decoded path
/// segments after `/api2/<format>`; a value that cannot be read is an error (400), never
/// "no change".
pub fn extract(
    method: &http::Method,
    route: &Route,
    segments: &[Segment],
    params: &Params,
) -> Result<Option<Change>, String> {
    let Route::Known(t) = route else {
        return Ok(None);
    };
    let t = *t;
    let is = |m: &http::Method| method == m;
    let (put, post, delete) = (
        is(&http::Method::PUT),
        is(&http::Method::POST),
        is(&http::Method::DELETE),
    );
    let pp = |name: &str| path_param(t, segments, name).map(str::to_string);
    let change = match t {
        "/nodes/{node}/qemu/{vmid}/config" | "/nodes/{node}/lxc/{vmid}/config" if put || post => {
            let vmid: Vmid = pp("vmid")
                .and_then(|v| v.parse().ok())
                .ok_or("the VMID in the path is not a number")?;
            let del = delete_list(params);
            let name_key = if t.contains("/lxc/") {
                "hostname"
            } else {
                "name"
            };
            let tags = match joined(params, "tags") {
                Some(s) => Some(split_tags(&s)),
                None if del.iter().any(|k| k == "tags") => Some(Vec::new()),
                None => None,
            };
            let name = match one(params, name_key) {
                Some(n) => Some(n.to_string()),
                None if del.iter().any(|k| k == name_key) => Some(String::new()),
                None => None,
            };
            let clears_protection = del.iter().any(|k| k == "protection")
                || one(params, "protection").is_some_and(|p| !truthy(p));
            let mut devices = Vec::new();
            for (k, v) in &params.map {
                let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
                if (base != "hostpci" && base != "usb") || base.len() == k.len() {
                    continue;
                }
                let ParamValue::One(v) = v else { continue };
                devices.extend(devices_of(base == "hostpci", v));
            }
            Some(Change::GuestConfig {
                vmid,
                tags,
                name,
                clears_protection,
                devices,
            })
        }
        "/pools/{poolid}" | "/pools" if put => {
            let pool = pp("poolid")
                .or_else(|| one(params, "poolid").map(str::to_string))
                .ok_or("no 'poolid'")?;
            let vms = match joined(params, "vms") {
                Some(v) => split_vmids(&v)?,
                None => Vec::new(),
            };
            let remove = one(params, "delete").is_some_and(truthy);
            Some(Change::PoolMembers { pool, vms, remove })
        }
        "/pools/{poolid}" | "/pools" if delete => {
            let pool = pp("poolid")
                .or_else(|| one(params, "poolid").map(str::to_string))
                .ok_or("no 'poolid'")?;
            Some(Change::PoolDelete { pool })
        }
        "/nodes/{node}/vzdump" | "/cluster/backup" if post => {
            one(params, "pool").map(|p| Change::PoolBackup {
                pool: p.to_string(),
            })
        }
        "/cluster/backup/{id}" if put || delete => {
            let after = Selection {
                vmids: joined(params, "vmid")
                    .map(|v| split_vmids(&v))
                    .transpose()?,
                pool: one(params, "pool").map(str::to_string),
                all: one(params, "all").map(truthy),
                exclude: joined(params, "exclude")
                    .map(|v| split_vmids(&v))
                    .transpose()?,
                delete: delete_list(params),
            };
            Some(Change::BackupJob {
                id: pp("id").ok_or("no job id")?,
                delete,
                after,
            })
        }
        "/cluster/ha/rules/{rule}" if put || delete => {
            let resources = match joined(params, "resources") {
                Some(r) => Some(
                    r.split([',', ';', ' '])
                        .filter(|s| !s.is_empty())
                        .map(|s| sid_vmid(s).ok_or(format!("HA resource {s:?} is not a guest")))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            Some(Change::HaRule {
                id: pp("rule").ok_or("no rule id")?,
                delete,
                resources,
            })
        }
        "/cluster/ha/groups/{group}" if put || delete => Some(Change::HaGroup {
            id: pp("group").ok_or("no group id")?,
        }),
        "/cluster/mapping/pci/{id}" | "/cluster/mapping/usb/{id}" if put || delete => {
            let kind = if t.contains("/pci/") { "pci" } else { "usb" };
            Some(Change::Mapping {
                key: format!("{kind}/{}", pp("id").ok_or("no mapping id")?),
            })
        }
        "/storage/{storage}" if delete => Some(Change::Storage {
            id: pp("storage").ok_or("no storage id")?,
        }),
        "/storage/{storage}" if put => {
            let disables = one(params, "disable").is_some_and(truthy)
                || params.map.contains_key("nodes")
                || delete_list(params).iter().any(|k| k == "nodes");
            disables.then(|| Change::Storage {
                id: pp("storage").unwrap_or_default(),
            })
        }
        _ => None,
    };
    Ok(change)
}

/// The devices one `hostpciN`/`usbN` value gives a guest.
fn devices_of(pci: bool, value: &str) -> Vec<Device> {
    let mut out = Vec::new();
    for (i, part) in value.split(',').enumerate() {
        let (k, v) = match part.split_once('=') {
            Some(kv) => kv,
            None if i == 0 && pci => ("host", part),
            None => continue,
        };
        match k {
            "mapping" => out.push(Device::Mapping(format!(
                "{}/{v}",
                if pci { "pci" } else { "usb" }
            ))),
            "host" if pci => out.extend(v.split(';').map(|d| Device::Pci(normalise_pci(d)))),
            "host" => out.push(Device::Usb(v.to_ascii_lowercase())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn params(kv: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in kv {
            p.map.insert(k.to_string(), ParamValue::One(v.to_string()));
        }
        p
    }

    fn segs(path: &str) -> Vec<Segment> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(Segment::new)
            .collect()
    }

    #[test]
    fn guest_config_facts() {
        let c = extract(
            &Method::PUT,
            &Route::Known("/nodes/{node}/qemu/{vmid}/config"),
            &segs("nodes/pve/qemu/110/config"),
            &params(&[
                ("tags", "Web;dev"),
                ("delete", "protection,name"),
                ("hostpci0", "0000:00:02.0,pcie=1"),
                ("hostpci1", "mapping=igpu"),
                ("usb0", "host=1234:5678"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c,
            Change::GuestConfig {
                vmid: 110,
                tags: Some(vec!["web".into(), "dev".into()]),
                name: Some(String::new()),
                clears_protection: true,
                devices: vec![
                    Device::Pci("0000:00:02.0".into()),
                    Device::Mapping("pci/igpu".into()),
                    Device::Usb("1234:5678".into()),
                ],
            }
        );
    }

    #[test]
    fn pools_jobs_mappings_storages() {
        let pool = extract(
            &Method::PUT,
            &Route::Known("/pools"),
            &segs("pools"),
            &params(&[("poolid", "prod"), ("vms", "104,110"), ("delete", "1")]),
        )
        .unwrap();
        assert_eq!(
            pool,
            Some(Change::PoolMembers {
                pool: "prod".into(),
                vms: vec![104, 110],
                remove: true
            })
        );
        let job = extract(
            &Method::PUT,
            &Route::Known("/cluster/backup/{id}"),
            &segs("cluster/backup/backup-1"),
            &params(&[("vmid", "110")]),
        )
        .unwrap();
        assert!(
            matches!(job, Some(Change::BackupJob { ref id, delete: false, ref after }) if id == "backup-1" && after.vmids == Some(vec![110]))
        );
        let m = extract(
            &Method::DELETE,
            &Route::Known("/cluster/mapping/pci/{id}"),
            &segs("cluster/mapping/pci/igpu"),
            &Params::default(),
        )
        .unwrap();
        assert_eq!(
            m,
            Some(Change::Mapping {
                key: "pci/igpu".into()
            })
        );
        let s = extract(
            &Method::PUT,
            &Route::Known("/storage/{storage}"),
            &segs("storage/tank"),
            &params(&[("disable", "1")]),
        )
        .unwrap();
        assert_eq!(s, Some(Change::Storage { id: "tank".into() }));
        let s = extract(
            &Method::PUT,
            &Route::Known("/storage/{storage}"),
            &segs("storage/tank"),
            &params(&[("comment", "x")]),
        )
        .unwrap();
        assert_eq!(s, None);
        assert!(extract(
            &Method::PUT,
            &Route::Known("/cluster/backup/{id}"),
            &segs("cluster/backup/b"),
            &params(&[("vmid", "abc")]),
        )
        .is_err());
    }
}
