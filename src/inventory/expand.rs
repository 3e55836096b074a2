//! Resolves what a request touches through the inventory: the guests a stored selection
//! (backup job, HA rule or group, `vzdump pool=`) selects now and after the change, and the
//! protected guests a dependency change reaches (a passthrough device or mapping handed to
//! another guest, a mapping changed or deleted, a storage removed or disabled). The result
//! is an [`Operation`] whose guests the policy judges as usual, so a refusal names the
//! protected guest.

use std::borrow::Cow;

use super::change::{Change, Device};
use super::snapshot::{BackupJob, Snapshot};
use crate::pve::{GuestSet, Operation, Vmid};

/// A selection of guests: some, or every guest (including future ones).
enum Sel {
    Some(Vec<Vmid>),
    All,
}

/// What a job selects. Proxmox keeps one of `vmid`, `pool` and `all` per job; should a job
/// (or a change) carry several, the union counts, so nothing selected escapes judgement.
fn job_selection(job: &BackupJob, snap: &Snapshot) -> Sel {
    if job.all {
        return Sel::All;
    }
    let mut v = job.vmids.clone();
    if let Some(p) = &job.pool {
        v.extend(snap.pool_members(p));
    }
    Sel::Some(v)
}

fn set_of(sels: &[Sel]) -> GuestSet {
    let mut g = GuestSet::None;
    for s in sels {
        match s {
            Sel::All => return GuestSet::All,
            Sel::Some(list) => g.extend(list.iter().copied()),
        }
    }
    g
}

/// The operation to judge for `op` with `change` in `snap`; `None` when the inventory
/// changes nothing about it.
pub fn expand(op: &Operation, change: &Change, snap: &Snapshot) -> Option<Operation> {
    let mut out = op.clone();
    match change {
        Change::GuestConfig { vmid, devices, .. } => {
            let mut owners = Vec::new();
            for d in devices {
                for (&other, u) in &snap.uses {
                    if other == *vmid {
                        continue;
                    }
                    let hit = match d {
                        Device::Pci(a) => {
                            u.pci.contains(a)
                                || u.mappings
                                    .iter()
                                    .any(|m| snap.mappings.get(m).is_some_and(|ds| ds.contains(a)))
                        }
                        Device::Usb(a) => {
                            u.usb.contains(a)
                                || u.mappings
                                    .iter()
                                    .any(|m| snap.mappings.get(m).is_some_and(|ds| ds.contains(a)))
                        }
                        Device::Mapping(m) => {
                            u.mappings.contains(m)
                                || snap.mappings.get(m).is_some_and(|ds| {
                                    ds.iter().any(|a| u.pci.contains(a) || u.usb.contains(a))
                                })
                        }
                    };
                    if hit {
                        owners.push(other);
                    }
                }
            }
            if owners.is_empty() {
                return None;
            }
            owners.sort_unstable();
            owners.dedup();
            out.guests.extend(owners.iter().copied());
            out.detail = Some(Cow::Owned(format!(
                "hands over a passthrough device of {}",
                list(&owners)
            )));
        }
        Change::Mapping { key } => {
            let users: Vec<Vmid> = sorted(snap.using_mapping(key));
            if users.is_empty() {
                return None;
            }
            out.guests.extend(users.iter().copied());
            out.detail = Some(Cow::Owned(format!(
                "mapping {key} is used by {}",
                list(&users)
            )));
        }
        Change::Storage { id } => {
            let users: Vec<Vmid> = sorted(snap.on_storage(id));
            if users.is_empty() {
                return None;
            }
            out.guests.extend(users.iter().copied());
            out.detail = Some(Cow::Owned(format!(
                "storage {id} holds disks of {}",
                list(&users)
            )));
        }
        Change::PoolBackup { pool } => {
            out.guests = set_of(&[Sel::Some(snap.pool_members(pool).collect())]);
            out.detail = Some(Cow::Owned(format!("pool {pool}: its members now")));
        }
        Change::PoolDelete { pool } => {
            out.guests.extend(snap.pool_members(pool));
        }
        Change::PoolMembers { .. } => return None,
        Change::BackupJob { id, delete, after } => {
            let job = snap.backup_jobs.get(id)?;
            let now = job_selection(job, snap);
            let later = if *delete {
                Sel::Some(Vec::new())
            } else {
                let mut j = job.clone();
                for k in &after.delete {
                    match k.as_str() {
                        "vmid" => j.vmids.clear(),
                        "pool" => j.pool = None,
                        "all" => j.all = false,
                        "exclude" => j.exclude.clear(),
                        _ => {}
                    }
                }
                if let Some(v) = &after.vmids {
                    j.vmids = v.clone();
                }
                if let Some(p) = &after.pool {
                    j.pool = Some(p.clone());
                }
                if let Some(a) = after.all {
                    j.all = a;
                }
                if let Some(e) = &after.exclude {
                    j.exclude = e.clone();
                    j.all = true;
                }
                job_selection(&j, snap)
            };
            out.guests = set_of(&[now, later]);
            out.detail = Some(Cow::Owned(format!(
                "backup job {id}: the guests it selects now and after the change"
            )));
        }
        Change::HaRule {
            id,
            delete,
            resources,
        } => {
            let rule = snap.ha_rules.get(id)?;
            let later = match (delete, resources) {
                (true, _) => Vec::new(),
                (false, Some(r)) => r.clone(),
                (false, None) => rule.vmids.clone(),
            };
            out.guests = set_of(&[Sel::Some(rule.vmids.clone()), Sel::Some(later)]);
            out.detail = Some(Cow::Owned(format!(
                "HA rule {id}: the guests it places now and after the change"
            )));
        }
        Change::HaGroup { id } => {
            let members: Vec<Vmid> = sorted(
                snap.ha_resources
                    .iter()
                    .filter(|(_, g)| g.as_deref() == Some(id.as_str()))
                    .map(|(&v, _)| v),
            );
            out.guests = set_of(&[Sel::Some(members)]);
            out.detail = Some(Cow::Owned(format!(
                "HA group {id}: the guests whose HA resources use it"
            )));
        }
    }
    Some(out)
}

fn sorted(it: impl Iterator<Item = Vmid>) -> Vec<Vmid> {
    let mut v: Vec<Vmid> = it.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// How many guests a detail names before it counts the rest.
const LISTED: usize = 10;

/// `VM 104, VM 109`; past [`LISTED`] guests, the rest as a count (a storage of thousands of
/// guests would otherwise make an unreadable error and cost a string per guest).
fn list(v: &[Vmid]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (i, v) in v.iter().take(LISTED).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "VM {v}");
    }
    if v.len() > LISTED {
        let _ = write!(s, " and {} more", v.len() - LISTED);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::change::Selection;
    use crate::pve::Route;
    use serde_json::json;

    fn snap() -> Snapshot {
        let mut s = Snapshot::empty();
        s.set_resources(&json!([
            {"vmid":104,"type":"qemu","name":"doc1","node":"pve","pool":"core"},
            {"vmid":109,"type":"qemu","name":"igp","node":"pve"},
            {"vmid":110,"type":"qemu","name":"web","node":"pve","pool":"lab"}
        ]))
        .unwrap();
        s.set_config(
            109,
            &json!({"hostpci0":"mapping=igpu","scsi0":"tank:vm-109-disk-0"}),
        )
        .unwrap();
        s.set_mappings(
            "pci",
            &json!([{"id":"igpu","map":["node=pve,path=0000:00:02.0"]}]),
        )
        .unwrap();
        s.set_backup_jobs(&json!([{"id":"j1","vmid":"110"},{"id":"j2","all":1}]))
            .unwrap();
        s.set_ha_rules(&json!([{"rule":"r1","resources":"vm:110"}]))
            .unwrap();
        s
    }

    fn op(guests: GuestSet) -> Operation {
        Operation::new(Route::Unknown, "config.write".parse().unwrap(), guests)
    }

    #[test]
    fn dependencies_reach_the_owner() {
        let s = snap();
        let raw = Change::GuestConfig {
            vmid: 110,
            tags: None,
            name: None,
            clears_protection: false,
            devices: vec![Device::Pci("0000:00:02.0".into())],
        };
        let e = expand(&op(GuestSet::one(110)), &raw, &s).unwrap();
        assert_eq!(e.guests.listed(), &[109, 110]);
        let m = Change::Mapping {
            key: "pci/igpu".into(),
        };
        assert_eq!(
            expand(&op(GuestSet::None), &m, &s).unwrap().guests.listed(),
            &[109]
        );
        let st = Change::Storage { id: "tank".into() };
        assert_eq!(
            expand(&op(GuestSet::None), &st, &s)
                .unwrap()
                .guests
                .listed(),
            &[109]
        );
        let other = Change::Storage { id: "nfs".into() };
        assert!(expand(&op(GuestSet::None), &other, &s).is_none());
    }

    #[test]
    fn details_name_ten_guests_and_count_the_rest() {
        assert_eq!(list(&[104, 109]), "VM 104, VM 109");
        let many: Vec<Vmid> = (1..=5000).collect();
        assert_eq!(
            list(&many),
            "VM 1, VM 2, VM 3, VM 4, VM 5, VM 6, VM 7, VM 8, VM 9, VM 10 and 4990 more"
        );
    }

    #[test]
    fn stored_selections_now_and_after() {
        let s = snap();
        let edit = Change::BackupJob {
            id: "j1".into(),
            delete: false,
            after: Selection {
                vmids: Some(vec![104]),
                ..Selection::default()
            },
        };
        assert_eq!(
            expand(&op(GuestSet::All), &edit, &s)
                .unwrap()
                .guests
                .listed(),
            &[104, 110]
        );
        let del = Change::BackupJob {
            id: "j1".into(),
            delete: true,
            after: Selection::default(),
        };
        assert_eq!(
            expand(&op(GuestSet::All), &del, &s)
                .unwrap()
                .guests
                .listed(),
            &[110]
        );
        let all = Change::BackupJob {
            id: "j2".into(),
            delete: true,
            after: Selection::default(),
        };
        assert!(expand(&op(GuestSet::All), &all, &s)
            .unwrap()
            .guests
            .is_all());
        let unknown = Change::BackupJob {
            id: "nope".into(),
            delete: true,
            after: Selection::default(),
        };
        assert!(
            expand(&op(GuestSet::All), &unknown, &s).is_none(),
            "unknown job stays every guest"
        );
        let pool = Change::PoolBackup {
            pool: "core".into(),
        };
        assert_eq!(
            expand(&op(GuestSet::All), &pool, &s)
                .unwrap()
                .guests
                .listed(),
            &[104]
        );
        let r = Change::HaRule {
            id: "r1".into(),
            delete: false,
            resources: None,
        };
        assert_eq!(
            expand(&op(GuestSet::All), &r, &s).unwrap().guests.listed(),
            &[110]
        );
    }
}
