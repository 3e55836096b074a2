//! Tests of [`super::inspect`]: requests as clients send them, and the operation each becomes.

use super::*;
use http::Method;

fn segs(path: &str) -> Vec<crate::pve::Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(crate::pve::Segment::new)
        .collect()
}

fn params(pairs: &[(&str, Option<&str>)]) -> Params {
    let mut p = Params::default();
    for (k, v) in pairs {
        let val = match v {
            None => ParamValue::Absent,
            Some(s) => ParamValue::One(s.to_string()),
        };
        p.map.insert(k.to_string(), val);
    }
    p
}

fn op(m: Method, path: &str, pairs: &[(&str, Option<&str>)]) -> Result<Operation, InspectError> {
    inspect(&m, &segs(path), &params(pairs))
}

fn ok(m: Method, path: &str, pairs: &[(&str, Option<&str>)]) -> Operation {
    op(m, path, pairs).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn power_stop() {
    let o = ok(Method::POST, "/nodes/pve/qemu/104/status/stop", &[]);
    assert_eq!(
        o.route,
        Route::Known("/nodes/{node}/qemu/{vmid}/status/stop")
    );
    assert_eq!(o.action, Action::PowerStop);
    assert_eq!(o.guests, GuestSet::one(104));
    assert_eq!(o.detail, None);
}

#[test]
fn path_param_conflict() {
    assert!(ok(
        Method::POST,
        "/nodes/pve/qemu/104/status/stop",
        &[("vmid", Some("104"))]
    )
    .guests
    .contains(104));
    for v in [Some("110"), Some("0104"), None] {
        assert!(matches!(
            op(
                Method::POST,
                "/nodes/pve/qemu/104/status/stop",
                &[("vmid", v)]
            ),
            Err(InspectError::Malformed(_))
        ));
    }
}

#[test]
fn bad_guest_values_are_malformed() {
    assert!(op(Method::POST, "/nodes/pve/qemu/abc/status/stop", &[]).is_err());
    assert!(op(
        Method::POST,
        "/nodes/pve/qemu/110/clone",
        &[("newid", Some("1e2"))]
    )
    .is_err());
    assert!(op(
        Method::POST,
        "/nodes/pve/stopall",
        &[("vms", Some("100,x"))]
    )
    .is_err());
    assert!(op(
        Method::POST,
        "/cluster/ha/resources",
        &[("sid", Some("fence:1"))]
    )
    .is_err());
    assert!(op(Method::DELETE, "/nodes/pve/tasks/nonsense", &[]).is_err());
    assert!(op(Method::PATCH, "/version", &[]).is_err());
}

#[test]
fn bulk_lists() {
    let stop = "/nodes/pve/stopall";
    assert!(ok(Method::POST, stop, &[]).guests.is_all());
    assert!(ok(Method::POST, stop, &[("vms", None)]).guests.is_all());
    assert!(ok(Method::POST, stop, &[("vms", Some(""))])
        .guests
        .is_empty());
    assert_eq!(
        ok(Method::POST, stop, &[("vms", Some("100;104"))])
            .guests
            .listed(),
        &[100, 104]
    );
    let mut p = Params::default();
    p.map.insert(
        "vms".into(),
        ParamValue::Many(vec!["100".into(), "104".into()]),
    );
    let o = inspect(&Method::POST, &segs("/cluster/bulk-action/guest/start"), &p).unwrap();
    assert_eq!(o.guests.listed(), &[100, 104]);
    assert_eq!(o.action, Action::PowerStart);
    assert!(op(
        Method::POST,
        "/cluster/bulk-action/guest/start",
        &[("vms", Some("100,104"))]
    )
    .is_err());
}

#[test]
fn vzdump_selection() {
    let v = "/nodes/pve/vzdump";
    assert_eq!(
        ok(Method::POST, v, &[("vmid", Some("104"))]).guests,
        GuestSet::one(104)
    );
    assert!(ok(Method::POST, v, &[("all", Some("1"))]).guests.is_all());
    assert!(!ok(
        Method::POST,
        v,
        &[("all", Some("0")), ("vmid", Some("110"))]
    )
    .guests
    .is_all());
    assert!(ok(Method::POST, v, &[("exclude", Some(""))])
        .guests
        .is_all());
    assert!(ok(
        Method::POST,
        v,
        &[("pool", Some("p")), ("exclude", Some("104"))]
    )
    .guests
    .is_all());
    assert!(ok(
        Method::PUT,
        "/cluster/backup/job1",
        &[("schedule", Some("daily"))]
    )
    .guests
    .is_all());
    assert!(ok(Method::DELETE, "/cluster/backup/job1", &[])
        .guests
        .is_all());
    assert!(!ok(Method::GET, "/cluster/backup/job1", &[]).guests.is_all());
}

#[test]
fn create_and_restore() {
    let o = ok(
        Method::POST,
        "/nodes/pve/qemu",
        &[("vmid", Some("200")), ("scsi0", Some("local-lvm:32"))],
    );
    assert_eq!((o.action, o.guests), (Action::Create, GuestSet::one(200)));
    let o = ok(
        Method::POST,
        "/nodes/pve/qemu",
        &[
            ("vmid", Some("200")),
            ("archive", Some("pbs:backup/vm/104/2026-01-01T00:00:00Z")),
        ],
    );
    assert_eq!(o.action, Action::Restore);
    assert_eq!(o.guests.listed(), &[104, 200]);
    let o = ok(
        Method::POST,
        "/nodes/pve/lxc",
        &[
            ("vmid", Some("200")),
            ("restore", Some("1")),
            (
                "ostemplate",
                Some("local:backup/vzdump-lxc-104-2026_01_01-00_00_00.tar.zst"),
            ),
        ],
    );
    assert_eq!(o.action, Action::Restore);
    assert_eq!(o.guests.listed(), &[104, 200]);
}

#[test]
fn disks_in_config() {
    let o = ok(
        Method::PUT,
        "/nodes/pve/qemu/110/config",
        &[
            ("scsi3", Some("local-lvm:vm-104-disk-0,size=4G")),
            ("net0", Some("virtio,bridge=vmbr0")),
        ],
    );
    assert_eq!(o.guests.listed(), &[104, 110]);
    assert_eq!(o.action, Action::ConfigWrite);
    let o = ok(
        Method::PUT,
        "/nodes/pve/lxc/110/config",
        &[("mp0", Some("local-zfs:subvol-104-disk-0,mp=/x"))],
    );
    assert_eq!(o.guests.listed(), &[104, 110]);
}

#[test]
fn other_formats() {
    let o = ok(
        Method::DELETE,
        "/nodes/pve/storage/local/content/local:104/vm-200-disk-0.qcow2",
        &[],
    );
    assert_eq!(
        (o.action, o.guests.listed()),
        (Action::StorageContentDelete, &[104, 200][..])
    );
    let o = ok(Method::DELETE, "/cluster/replication/0104-0", &[]);
    assert_eq!(o.guests, GuestSet::one(104));
    let o = ok(
        Method::POST,
        "/cluster/ha/resources/104/migrate",
        &[("node", Some("b"))],
    );
    assert_eq!((o.action, o.guests), (Action::Migrate, GuestSet::one(104)));
    let o = ok(
        Method::DELETE,
        "/nodes/pve/tasks/UPID:pve:00001234:0000ABCD:65A1B2C3:qmstart:104:root@pam:",
        &[],
    );
    assert_eq!((o.action, o.guests), (Action::TaskStop, GuestSet::one(104)));
    let o = ok(
        Method::PUT,
        "/access/acl",
        &[("path", Some("/vms/104")), ("roles", Some("Admin"))],
    );
    assert_eq!(
        (o.action, o.guests),
        (Action::AccessWrite, GuestSet::one(104))
    );
    let o = ok(Method::PUT, "/pools/prod", &[("vms", Some("104,110"))]);
    assert_eq!(
        (o.action, o.guests.listed()),
        (Action::PoolWrite, &[104, 110][..])
    );
    let o = ok(Method::DELETE, "/nodes/pve/storage/pbs/prunebackups", &[]);
    assert!(o.guests.is_all());
    let o = ok(Method::POST, "/nodes/pve/termproxy", &[]);
    assert_eq!(o.action, Action::NodeShell);
    assert!(o.guests.is_all() && o.detail.is_some());
    let o = ok(
        Method::GET,
        "/nodes/pve/qemu/104/agent/exec-status",
        &[("pid", Some("1"))],
    );
    assert_eq!(o.action, Action::AgentExec);
}

#[test]
fn execute_nested() {
    let cmds = r#"[{"path":"qemu/104/status/stop","method":"POST"},
                   {"path":"qemu/110/config","method":"PUT","args":{"scsi1":"local:vm-120-disk-0"}}]"#;
    let o = ok(
        Method::POST,
        "/nodes/pve/execute",
        &[("commands", Some(cmds))],
    );
    assert_eq!(o.action, Action::NodeExecute);
    assert_eq!(o.guests.listed(), &[104, 110, 120]);
    assert!(o.detail.as_deref().unwrap_or("").contains("power.stop"));
    // A nested argument may not repeat a path parameter.
    let cmds = r#"[{"path":"qemu/104/status/stop","method":"POST","args":{"vmid":104}}]"#;
    assert!(matches!(
        op(
            Method::POST,
            "/nodes/pve/execute",
            &[("commands", Some(cmds))]
        ),
        Err(InspectError::Malformed(_))
    ));
    // Unknown nested writes are judged generously.
    let cmds = r#"[{"path":"qemu/104/brand-new","method":"POST"}]"#;
    assert!(ok(
        Method::POST,
        "/nodes/pve/execute",
        &[("commands", Some(cmds))]
    )
    .guests
    .contains(104));
    for bad in [
        r#"[1]"#,
        r#"[{"path":"version","method":"get"}]"#,
        r#"[{"path":"x","method":"GET","args":{"a":{"b":1}}}]"#,
    ] {
        assert!(
            matches!(
                op(
                    Method::POST,
                    "/nodes/pve/execute",
                    &[("commands", Some(bad))]
                ),
                Err(InspectError::Unjudgeable(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        op(
            Method::POST,
            "/nodes/pve/execute",
            &[("commands", Some("nope"))]
        ),
        Err(InspectError::Malformed(_))
    ));
    let inner = r#"[{"path":"qemu/104/status/stop","method":"POST"}]"#;
    let outer = serde_json::json!([{"path":"execute","method":"POST","args":{"commands":inner}}])
        .to_string();
    assert!(ok(
        Method::POST,
        "/nodes/pve/execute",
        &[("commands", Some(&outer))]
    )
    .guests
    .contains(104));
}

#[test]
fn family_entries_are_the_matching_keys() {
    let keys = [
        "", "scs", "scsi", "scsi0", "scsi00", "scsi1", "scsi10", "scsi1x", "scsi-1", "scsi!",
        "scsi/", "scsia", "scsj0", "SCSI0", "sata0", "unused0", "unused", "virtio15", "ide2",
        "mp0", "mp10", "mpx", "efidisk0", "net0", "~", "vmid", "z",
    ];
    let families: Vec<&Param> = catalogue::endpoints()
        .flat_map(|ep| ep.params.iter())
        .filter(|p| p.family().is_some())
        .collect();
    assert!(families.len() > 20);
    // Every subset of a sliding window of keys, over every family in the catalogue.
    for start in 0..keys.len() {
        for mask in 0u32..64 {
            let mut p = Params::default();
            for (i, k) in keys.iter().cycle().skip(start).take(6).enumerate() {
                if mask & (1 << i) != 0 {
                    p.map.insert(k.to_string(), ParamValue::One("x".into()));
                }
            }
            for fam in &families {
                let want: Vec<&String> = p.map.keys().filter(|k| fam.matches_key(k)).collect();
                let got: Vec<&String> = family_entries(&p, fam).map(|(k, _)| k).collect();
                assert_eq!(got, want, "{} over {:?}", fam.name, p.map.keys());
            }
        }
    }
}

#[test]
fn unknown_endpoints() {
    let o = ok(Method::GET, "/cluster/qemu/custom-cpu-models", &[]);
    assert_eq!((o.route.clone(), o.action), (Route::Unknown, Action::Read));
    let o = ok(Method::POST, "/nodes/pve/qemu/104/brand-new", &[]);
    assert_eq!((o.route.clone(), o.action), (Route::Unknown, Action::Write));
    assert!(o.guests.contains(104));
    assert!(o
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("unknown endpoint"));
    let o = ok(
        Method::POST,
        "/cluster/new",
        &[
            ("target-vmid", Some("105")),
            ("disk", Some("local:vm-106-disk-0")),
            ("sid", Some("ct:107")),
        ],
    );
    assert_eq!(o.guests.listed(), &[105, 106, 107]);
    // Volume ids in the path, spanning segments (a directory storage's owner folder).
    let o = ok(
        Method::POST,
        "/nodes/pve/brand-new/local:104/vm-200-disk-0.qcow2",
        &[],
    );
    assert_eq!(o.guests.listed(), &[104, 200]);
    let o = ok(Method::POST, "/cluster/new-thing/local:104/x", &[]);
    assert_eq!(o.guests.listed(), &[104]);
    // A known path with another method.
    let o = ok(Method::DELETE, "/nodes/pve/qemu/104/status/stop", &[]);
    assert_eq!((o.route.clone(), o.action), (Route::Unknown, Action::Write));
    assert!(o.guests.contains(104));
    assert!(o.detail.as_deref().unwrap_or("").contains("501"));
}
