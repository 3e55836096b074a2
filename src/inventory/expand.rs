//! Resolves what a request touches through the inventory: the guests a stored selection
//! (backup job, HA rule or group, `vzdump pool=`) selects now and after the change, and the
//! protected guests a dependency change reaches (a passthrough device or mapping handed to
//! another guest, a mapping changed or deleted, a storage removed or disabled). The result
//! is an [`Operation`] whose guests the policy judges as usual, so a refusal names the
//! protected guest.

use std::borrow::Cow;

use super::change::{Change, Device};
use super::snapshot::BackupJob;
use crate::policy::resolve::Resolved;
use crate::pve::{GuestSet, Judged, Operation, Vmid};

/// A selection of guests: some, or every guest (including future ones).
enum Sel<'a> {
    /// Guests named one by one (sorted, free of duplicates) and the pools or HA groups
    /// selected whole, as `(members, representatives)` from the index.
    Some {
        vmids: Vec<Vmid>,
        groups: Vec<(&'a [Vmid], &'a [Vmid])>,
    },
    All,
}

impl<'a> Sel<'a> {
    fn vmids(list: Vec<Vmid>) -> Self {
        Sel::Some {
            vmids: sorted(list.into_iter()),
            groups: Vec::new(),
        }
    }

    fn group(members: &'a [Vmid], reps: &'a [Vmid]) -> Self {
        Sel::Some {
            vmids: Vec::new(),
            groups: vec![(members, reps)],
        }
    }
}

/// What a job selects. Proxmox keeps one of `vmid`, `pool` and `all` per job; should a job
/// (or a change) carry several, the union counts, so nothing selected escapes judgement.
fn job_selection<'a>(job: &BackupJob, view: &'a Resolved) -> Sel<'a> {
    if job.all {
        return Sel::All;
    }
    let groups = match &job.pool {
        Some(p) => vec![(view.pool_members(p), view.pool_judged(p))],
        None => Vec::new(),
    };
    Sel::Some {
        vmids: sorted(job.vmids.iter().copied()),
        groups,
    }
}

/// The guests of `sels` together, and when a pool or HA group is among them, the subset to
/// judge in their place (the named guests and the groups' representatives).
fn set_of(sels: &[Sel], view: &Resolved) -> (GuestSet, Option<Judged>) {
    let mut named: Vec<&[Vmid]> = Vec::new();
    let mut groups: Vec<(&[Vmid], &[Vmid])> = Vec::new();
    for s in sels {
        match s {
            Sel::All => return (GuestSet::All, None),
            Sel::Some { vmids, groups: g } => {
                named.push(vmids);
                groups.extend(g.iter().copied());
            }
        }
    }
    let members: Vec<&[Vmid]> = named
        .iter()
        .copied()
        .chain(groups.iter().map(|g| g.0))
        .collect();
    let guests = match union(&members) {
        list if list.is_empty() => GuestSet::None,
        list => GuestSet::Some(list),
    };
    let judged = (!groups.is_empty()).then(|| {
        let reps: Vec<&[Vmid]> = named
            .iter()
            .copied()
            .chain(groups.iter().map(|g| g.1))
            .collect();
        Judged {
            view: view.id,
            guests: union(&reps),
        }
    });
    (guests, judged)
}

/// Adds a group of guests (`members`, with their representatives `reps`) to the guests
/// `out` already names.
fn add_group(out: &mut Operation, members: &[Vmid], reps: &[Vmid], view: &Resolved) {
    if out.guests.is_all() {
        return;
    }
    if reps.len() == members.len() {
        // Every member stands for itself (a device's few users): nothing to save.
        out.guests.extend(members.iter().copied());
        return;
    }
    let named = Sel::vmids(out.guests.listed().to_vec());
    (out.guests, out.judged) = set_of(&[named, Sel::group(members, reps)], view);
}

/// The union of sorted, duplicate-free lists, sorted and free of duplicates: merged, not
/// sorted again (a pool selected before and after a change is the same list twice).
fn union(lists: &[&[Vmid]]) -> Vec<Vmid> {
    let mut distinct: Vec<&[Vmid]> = Vec::with_capacity(lists.len());
    for &l in lists {
        if !l.is_empty() && !distinct.iter().any(|d| std::ptr::eq(*d, l)) {
            distinct.push(l);
        }
    }
    let mut out: Vec<Vmid> = match distinct.first() {
        Some(first) => first.to_vec(),
        None => return Vec::new(),
    };
    for l in &distinct[1..] {
        out = merge(&out, l);
    }
    out
}

/// Two sorted, duplicate-free lists merged into one.
fn merge(a: &[Vmid], b: &[Vmid]) -> Vec<Vmid> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The operation to judge for `op` with `change` in `snap`; `None` when the inventory
/// changes nothing about it.
///
/// Pools, storages, mappings and devices are looked up in the index `view` holds (see
/// [`Resolved`]), built from `view.snapshot`: the same guests a walk of the snapshot finds.
pub fn expand(op: &Operation, change: &Change, view: &Resolved) -> Option<Operation> {
    let snap = &*view.snapshot;
    let mut out = op.clone();
    match change {
        Change::GuestConfig { vmid, devices, .. } => {
            let mut owners = Vec::new();
            for d in devices {
                let of = match d {
                    Device::Pci(a) => view.pci_owners(a),
                    Device::Usb(a) => view.usb_owners(a),
                    Device::Mapping(m) => view.using_mapping(m),
                };
                owners.extend(of.iter().copied().filter(|&other| other != *vmid));
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
            let users = view.using_mapping(key);
            if users.is_empty() {
                return None;
            }
            add_group(&mut out, users, view.using_mapping_judged(key), view);
            out.detail = Some(Cow::Owned(format!(
                "mapping {key} is used by {}",
                list(users)
            )));
        }
        Change::Storage { id } => {
            let users = view.on_storage(id);
            if users.is_empty() {
                return None;
            }
            add_group(&mut out, users, view.on_storage_judged(id), view);
            out.detail = Some(Cow::Owned(format!(
                "storage {id} holds disks of {}",
                list(users)
            )));
        }
        Change::PoolBackup { pool } => {
            // The pool is what the backup takes (vzdump reads `pool` before `vmid` and
            // `all`), so its members replace the request's every-guest reading.
            out.guests = GuestSet::None;
            add_group(
                &mut out,
                view.pool_members(pool),
                view.pool_judged(pool),
                view,
            );
            out.detail = Some(Cow::Owned(format!("pool {pool}: its members now")));
        }
        Change::PoolDelete { pool } => {
            add_group(
                &mut out,
                view.pool_members(pool),
                view.pool_judged(pool),
                view,
            );
        }
        Change::PoolMembers { .. } => return None,
        Change::BackupJob { id, delete, after } => {
            let job = snap.backup_jobs.get(id)?;
            let now = job_selection(job, view);
            let later = if *delete {
                Sel::vmids(Vec::new())
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
                job_selection(&j, view)
            };
            (out.guests, out.judged) = set_of(&[now, later], view);
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
            (out.guests, out.judged) =
                set_of(&[Sel::vmids(rule.vmids.clone()), Sel::vmids(later)], view);
            out.detail = Some(Cow::Owned(format!(
                "HA rule {id}: the guests it places now and after the change"
            )));
        }
        Change::HaGroup { id } => {
            out.guests = GuestSet::None;
            add_group(
                &mut out,
                view.ha_group_members(id),
                view.ha_group_judged(id),
                view,
            );
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
    use crate::inventory::Snapshot;
    use crate::policy::Policy;
    use crate::pve::Route;
    use serde_json::json;
    use std::sync::Arc;

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

    /// [`snap`] resolved (under a policy without rules: only the index matters here).
    fn view() -> Resolved {
        resolved(snap())
    }

    fn resolved(s: Snapshot) -> Resolved {
        Policy::from_toml_str("t.toml", "[settings]\nallow_empty = true\n")
            .unwrap()
            .resolve(Arc::new(s), 0)
    }

    fn op(guests: GuestSet) -> Operation {
        Operation::new(Route::Unknown, "config.write".parse().unwrap(), guests)
    }

    #[test]
    fn dependencies_reach_the_owner() {
        let s = view();
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
        let s = view();
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

    /// The guests of `snap` that own device `d`, by a walk of every guest's uses (what
    /// `expand` did before the index): the reference the index must agree with.
    fn scan_owners(snap: &Snapshot, d: &Device) -> Vec<Vmid> {
        let via_mapping = |u: &crate::inventory::snapshot::Uses, a: &str| {
            u.mappings.iter().any(|m| {
                snap.mappings
                    .get(m)
                    .is_some_and(|ds| ds.iter().any(|x| x == a))
            })
        };
        sorted(
            snap.uses
                .iter()
                .filter(|(_, u)| match d {
                    Device::Pci(a) => u.pci.contains(a) || via_mapping(u, a),
                    Device::Usb(a) => u.usb.contains(a) || via_mapping(u, a),
                    Device::Mapping(m) => {
                        u.mappings.contains(m)
                            || snap.mappings.get(m).is_some_and(|ds| {
                                ds.iter().any(|a| u.pci.contains(a) || u.usb.contains(a))
                            })
                    }
                })
                .map(|(&v, _)| v),
        )
    }

    #[test]
    fn the_index_finds_what_a_walk_finds() {
        let mut s = Snapshot::empty();
        s.set_resources(&json!([
            {"vmid":101,"type":"qemu","node":"pve","pool":"core"},
            {"vmid":102,"type":"qemu","node":"pve","pool":"core"},
            {"vmid":103,"type":"lxc","node":"pve","pool":"lab"},
            {"vmid":104,"type":"qemu","node":"pve"},
            {"vmid":105,"type":"qemu","node":"pve","pool":"lab"},
            {"vmid":106,"type":"qemu","node":"pve","pool":"edge"},
            {"vmid":108,"type":"qemu","node":"pve"}
        ]))
        .unwrap();
        s.set_mappings(
            "pci",
            &json!([
                {"id":"igpu","map":["node=pve,path=0000:00:02.0","node=pve2,path=0000:00:02.1"]},
                {"id":"nic","map":["node=pve,path=0000:03:00.0"]}
            ]),
        )
        .unwrap();
        s.set_mappings(
            "usb",
            &json!([{"id":"dongle","map":["node=pve,id=1234:5678"]}]),
        )
        .unwrap();
        let configs = [
            // a mapping with two devices
            (
                101,
                json!({"scsi0":"tank:vm-101-disk-0","hostpci0":"mapping=igpu"}),
            ),
            // one of them raw: a use of the mapping too
            (
                102,
                json!({"scsi0":"local:vm-102-disk-0","efidisk0":"tank:vm-102-disk-1",
                         "hostpci0":"0000:00:02.1"}),
            ),
            (
                103,
                json!({"rootfs":"nfs:subvol-103-disk-0","usb0":"host=1234:5678"}),
            ),
            (
                104,
                json!({"scsi0":"local:vm-104-disk-0","usb0":"mapping=dongle"}),
            ),
            // a device both raw and through a mapping, in one guest
            (
                105,
                json!({"scsi0":"tank:vm-105-disk-0","hostpci0":"0000:03:00.0",
                         "hostpci1":"mapping=nic"}),
            ),
            // configs read of a guest the resources do not list (yet)
            (
                107,
                json!({"scsi0":"tank:vm-107-disk-0","hostpci0":"mapping=gone"}),
            ),
        ];
        for (vmid, c) in &configs {
            s.set_config(*vmid, c).unwrap();
        }
        // 104 and 108 are in no pool; 108's config was not read.
        let v = resolved(s);
        let snap = &*v.snapshot;

        assert_eq!(v.pool_members("core"), &[101, 102]);
        assert_eq!(v.pool_members("lab"), &[103, 105]);
        assert_eq!(v.on_storage("tank"), &[101, 102, 105, 107]);
        assert_eq!(v.using_mapping("pci/igpu"), &[101, 102]);
        assert_eq!(v.using_mapping("usb/dongle"), &[103, 104]);
        assert_eq!(v.using_mapping("pci/gone"), &[107]);
        assert_eq!(v.pci_owners("0000:00:02.1"), &[101, 102]);
        assert_eq!(v.pci_owners("0000:03:00.0"), &[105]);
        assert_eq!(v.usb_owners("1234:5678"), &[103, 104]);

        let mut pools: Vec<&str> = snap
            .guests
            .values()
            .filter_map(|g| g.pool.as_deref())
            .collect();
        let mut storages: Vec<&str> = snap.uses.values().flat_map(|u| u.storages.iter()).collect();
        let mut keys: Vec<&str> = snap.mappings.keys().map(String::as_str).collect();
        keys.extend(snap.uses.values().flat_map(|u| u.mappings.iter()));
        let mut devices: Vec<&str> = snap
            .mappings
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        devices.extend(
            snap.uses
                .values()
                .flat_map(|u| u.pci.iter().chain(u.usb.iter())),
        );
        for l in [&mut pools, &mut storages, &mut keys, &mut devices] {
            l.push("none-such");
            l.sort_unstable();
            l.dedup();
        }
        assert_eq!(
            (pools.len(), storages.len(), keys.len(), devices.len()),
            (4, 4, 5, 5)
        );
        for p in pools {
            assert_eq!(v.pool_members(p), sorted(snap.pool_members(p)), "pool {p}");
        }
        for st in storages {
            assert_eq!(
                v.on_storage(st),
                sorted(snap.on_storage(st)),
                "storage {st}"
            );
        }
        for k in keys {
            assert_eq!(
                v.using_mapping(k),
                sorted(snap.using_mapping(k)),
                "mapping {k}"
            );
            let m = Device::Mapping(k.into());
            assert_eq!(v.using_mapping(k), scan_owners(snap, &m), "mapping {k}");
        }
        for d in devices {
            let (pci, usb) = (Device::Pci(d.into()), Device::Usb(d.into()));
            assert_eq!(v.pci_owners(d), scan_owners(snap, &pci), "PCI device {d}");
            assert_eq!(v.usb_owners(d), scan_owners(snap, &usb), "USB device {d}");
            // and through `expand`, handed to each guest in turn (its own use left out)
            for &vmid in snap.guests.keys() {
                for dev in [&pci, &usb] {
                    let c = Change::GuestConfig {
                        vmid,
                        tags: None,
                        name: None,
                        clears_protection: false,
                        devices: vec![dev.clone()],
                    };
                    let others: Vec<Vmid> = scan_owners(snap, dev)
                        .into_iter()
                        .filter(|&o| o != vmid)
                        .collect();
                    let got = expand(&op(GuestSet::one(vmid)), &c, &v);
                    match got {
                        None => assert!(others.is_empty(), "{dev:?} to {vmid}: {others:?}"),
                        Some(e) => {
                            let mut want = others.clone();
                            want.push(vmid);
                            assert_eq!(e.guests.listed(), sorted(want.into_iter()), "{dev:?}");
                            assert_eq!(
                                e.detail.as_deref(),
                                Some(
                                    format!("hands over a passthrough device of {}", list(&others))
                                        .as_str()
                                )
                            );
                        }
                    }
                }
            }
        }
    }

    /// A snapshot of `n` guests spread pseudo-randomly over pools, tags, names, types and
    /// HA groups, with backup jobs of pools.
    fn mixed(n: u32, seed: u64) -> Snapshot {
        let mut x = seed;
        let mut next = move |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let mut guests = Vec::new();
        let mut ha = Vec::new();
        for i in 0..n {
            let vmid = 1000 + i;
            let pool = ["core", "lab", "edge", ""][next(4) as usize];
            let tags = ["prod", "edge", "prod;web", "dev", ""][next(5) as usize];
            let name = ["db1", "web", "dbx", "app"][next(4) as usize];
            let kind = ["qemu", "lxc"][next(2) as usize];
            let mut g = json!({"vmid":vmid,"type":kind,"node":"pve","name":name,"tags":tags});
            if !pool.is_empty() {
                g["pool"] = json!(pool);
            }
            guests.push(g);
            match next(3) {
                0 => ha.push(json!({"sid":format!("vm:{vmid}"),"group":"g1"})),
                1 => ha.push(json!({"sid":format!("vm:{vmid}"),"group":"g2"})),
                _ => {}
            }
        }
        let mut s = Snapshot::empty();
        s.set_resources(&json!(guests)).unwrap();
        s.set_ha_resources(&json!(ha)).unwrap();
        s.set_mappings(
            "pci",
            &json!([{"id":"igpu","map":["node=pve,path=0000:00:02.0"]}]),
        )
        .unwrap();
        // Configs read: disks on tank or local, some with the mapped device.
        for i in (0..n).filter(|i| i % 3 != 1) {
            let vmid = 1000 + i;
            let store = ["tank", "local"][next(2) as usize];
            let mut c = json!({"scsi0": format!("{store}:vm-{vmid}-disk-0")});
            if next(4) == 0 {
                c["hostpci0"] = json!("mapping=igpu");
            }
            s.set_config(vmid, &c).unwrap();
        }
        s.set_backup_jobs(&json!([
            {"id":"jcore","pool":"core"},
            {"id":"jlab","pool":"lab"},
            {"id":"jlist","vmid":"1003,1100,1001"}
        ]))
        .unwrap();
        s
    }

    const MIXED_POLICY: &str = r#"
[[guest]]
tags = ["prod"]
access = "readonly"
allow = ["snapshot.*"]
exempt = ["ci@pve!*"]

[[guest]]
pool = "core"
access = "managed"
deny = ["destroy", "power.*"]
approve = ["config.write"]

[[guest]]
name = "db*"
access = "readonly"
approve = ["snapshot.rollback"]
approvers = 2

[[guest]]
tags = ["edge"]
pool = "lab"
access = "managed"
deny = ["destroy"]

[[guest]]
vmids = "1100-1149"
access = "managed"
deny = ["migrate"]
approve = ["power.stop"]

[[guest]]
vmid = 1007
access = "managed"

[[guest]]
type = "lxc"
access = "managed"
deny = ["config.write"]
mode = "shadow"
"#;

    /// Judging a pool's or HA group's representatives gives what judging every member gives:
    /// the same verdict naming the same guest and rule, the same approvals, the same sticky
    /// refusal, for every action and identity tried (the reference clears `judged`).
    #[test]
    fn representatives_judge_like_every_member() {
        use crate::policy::Mode;
        let p = Policy::from_toml_str("t.toml", MIXED_POLICY).unwrap();
        let actions = [
            "destroy",
            "power.stop",
            "power.start",
            "config.write",
            "snapshot.create",
            "snapshot.rollback",
            "migrate",
            "backup",
        ];
        let identities = [None, Some("ci@pve!tofu"), Some("ops@pam")];
        let mut compared = 0;
        for seed in 1..=6 {
            let v = p.resolve(Arc::new(mixed(400, seed)), 0);
            assert!(v.pool_judged("core").len() < v.pool_members("core").len() / 4);
            assert!(v.on_storage_judged("tank").len() < v.on_storage("tank").len() / 4);
            for g in ["g1", "g2", "g3"] {
                let walk = sorted(
                    v.snapshot
                        .ha_resources
                        .iter()
                        .filter(|(_, x)| x.as_deref() == Some(g))
                        .map(|(&vmid, _)| vmid),
                );
                assert_eq!(v.ha_group_members(g), walk, "HA group {g}");
            }
            let after = |vmids: Option<Vec<Vmid>>, pool: Option<&str>| Selection {
                vmids,
                pool: pool.map(Into::into),
                ..Selection::default()
            };
            let changes = [
                Change::PoolBackup {
                    pool: "core".into(),
                },
                Change::PoolBackup { pool: "lab".into() },
                Change::PoolBackup {
                    pool: "none".into(),
                },
                Change::PoolDelete {
                    pool: "edge".into(),
                },
                Change::PoolDelete { pool: "lab".into() },
                Change::HaGroup { id: "g1".into() },
                Change::HaGroup { id: "g2".into() },
                Change::Storage { id: "tank".into() },
                Change::Storage { id: "local".into() },
                Change::Mapping {
                    key: "pci/igpu".into(),
                },
                Change::BackupJob {
                    id: "jcore".into(),
                    delete: false,
                    after: Selection::default(),
                },
                Change::BackupJob {
                    id: "jcore".into(),
                    delete: false,
                    after: after(None, Some("lab")),
                },
                Change::BackupJob {
                    id: "jlist".into(),
                    delete: false,
                    after: after(Some(vec![1101, 1002]), Some("edge")),
                },
                Change::BackupJob {
                    id: "jlab".into(),
                    delete: true,
                    after: Selection::default(),
                },
            ];
            for ch in &changes {
                for a in actions {
                    let o = op_with(a, GuestSet::one(1005));
                    let fast = expand(&o, ch, &v).unwrap();
                    let mut walk = fast.clone();
                    walk.judged = None;
                    if let Some(j) = &fast.judged {
                        assert!(j.guests.iter().all(|g| fast.guests.contains(*g)));
                    }
                    for id in identities {
                        assert_eq!(
                            p.judge_in(&fast, Some(ch), id, Mode::Enforce, Some(&v)),
                            p.judge_in(&walk, Some(ch), id, Mode::Enforce, Some(&v)),
                            "{ch:?} {a} {id:?}"
                        );
                        assert_eq!(
                            p.approval_needed_in(&fast, id, Some(&v)),
                            p.approval_needed_in(&walk, id, Some(&v)),
                            "{ch:?} {a} {id:?}"
                        );
                        compared += 1;
                    }
                }
            }
            // Pool delete: the representatives' sticky check against every member's.
            for pool in ["core", "lab", "edge"] {
                let every = Change::PoolMembers {
                    pool: pool.into(),
                    vms: v.pool_members(pool).to_vec(),
                    remove: true,
                };
                let delete = Change::PoolDelete { pool: pool.into() };
                for id in identities {
                    assert_eq!(p.sticky(&delete, id, &v), p.sticky(&every, id, &v));
                }
            }
            // A view built again is another view: its judged subset is not trusted.
            let other = p.resolve(Arc::clone(&v.snapshot), 0);
            let fast = expand(&op_with("destroy", GuestSet::None), &changes[0], &v).unwrap();
            assert_eq!(
                fast.to_judge(fast.guests.listed(), Some(other.id)),
                fast.guests.listed()
            );
        }
        assert!(compared > 1000);
    }

    /// The guests whose configs a refresh reads: the same without a view as with one.
    #[test]
    fn protected_guests_without_a_view_match_is_protected() {
        let p = Policy::from_toml_str("t.toml", MIXED_POLICY).unwrap();
        for seed in 1..=4 {
            let s = Arc::new(mixed(300, seed));
            let v = p.resolve(Arc::clone(&s), 0);
            let walk = sorted(
                s.guests
                    .keys()
                    .copied()
                    .filter(|&g| p.is_protected(g, Some(&v))),
            );
            assert!(!walk.is_empty() && walk.len() < s.guests.len());
            assert_eq!(p.protected_guests(&s), walk);
        }
    }

    fn op_with(action: &str, guests: GuestSet) -> Operation {
        Operation::new(Route::Unknown, action.parse().unwrap(), guests)
    }
}
