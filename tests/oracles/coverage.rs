//! Catalogue coverage: every endpoint × method of the PVE 9.1 ∪ 8.4 schema has an action,
//! routes back to itself, and every guest-bearing parameter (per the schema's `vmid_ref`
//! hints and formats) is extracted by `inspect`.
//!
//! For each guest-bearing parameter, in every encoding the test knows for its kind, the test
//! puts a protected guest (104) in that parameter and an unprotected one (110) in all other
//! guest positions, and checks that 104 is found; then it puts 110 everywhere and checks
//! that 104 is not found (unless the endpoint reaches every guest by design).
//!
//! Run with `cargo test --test oracles -- --nocapture` for the summary.

use std::collections::BTreeMap;

use pvegate::pve::catalogue::{self, AllGuests, ApiMethod, Endpoint, Param};
use pvegate::pve::{inspect, Action, GuestSet, ParamValue, Params, Route, Segment};

const PROTECTED: u32 = 104;
const OTHER: u32 = 110;

/// POSTs with a guest parameter that are reads by design (documented in policies/README.md).
const READ_POSTS: &[&str] = &[
    "/nodes/{node}/qemu/{vmid}/agent/ping",
    "/nodes/{node}/qemu/{vmid}/agent/fsfreeze-status",
];

/// GETs that are not reads.
const ACTIVE_GETS: &[(&str, Action)] = &[
    (
        "/nodes/{node}/qemu/{vmid}/agent/exec-status",
        Action::AgentExec,
    ),
    (
        "/nodes/{node}/qemu/{vmid}/agent/file-read",
        Action::AgentFileRead,
    ),
    ("/nodes/{node}/qemu/{vmid}/vncwebsocket", Action::Console),
    ("/nodes/{node}/lxc/{vmid}/vncwebsocket", Action::Console),
    (
        "/nodes/{node}/qemu/{vmid}/mtunnelwebsocket",
        Action::Migrate,
    ),
    ("/nodes/{node}/lxc/{vmid}/mtunnelwebsocket", Action::Migrate),
    ("/nodes/{node}/vncwebsocket", Action::NodeShell),
];

fn volume_forms(g: u32) -> Vec<String> {
    vec![
        format!("local-lvm:vm-{g}-disk-0"),
        format!("local-zfs:subvol-{g}-disk-1"),
        format!("local-zfs:base-{g}-disk-0"),
        format!("local:{g}/vm-{g}-disk-0.qcow2"),
        format!("local:{g}/vm-999-disk-0.qcow2"),
        format!("local:100/base-100-disk-0.qcow2/{g}/vm-{g}-disk-0.qcow2"),
        format!("ceph:-{g}-x"),
        format!("local:backup/vzdump-qemu-{g}-2026_01_01-00_00_00.vma.zst"),
        format!("pbs:backup/ct/{g}/2026-01-01T00:00:00Z"),
        format!("/var/lib/vz/images/{g}/vm-{g}-disk-0.raw"),
    ]
}

/// The guest-reference kind the test derives from the schema facts (independently of the
/// library's own classification): the `vmid_ref` hint, else the format.
fn test_kind(p: &Param) -> Option<String> {
    if let Some(r) = &p.vmid_ref {
        return Some(r.clone());
    }
    match (p.format.as_deref(), p.items_format.as_deref()) {
        (Some("pve-vmid"), _) => Some("vmid".into()),
        (Some("pve-vmid-list"), _) => Some("vmid-list".into()),
        (_, Some("pve-vmid")) => Some("vmid-array".into()),
        (Some("pve-volume-id"), _) => Some("volume-id".into()),
        _ => None,
    }
}

/// Every encoding of guest `g` for a parameter of this kind; empty for kinds that cannot
/// carry a VMID (`pool`: membership is resolved server-side).
fn encodings(kind: &str, p: &Param, g: u32) -> Vec<ParamValue> {
    let one = |s: String| ParamValue::One(s);
    match kind {
        "vmid" => vec![one(g.to_string()), one(format!("{g}\n"))],
        "vmid-list" => vec![
            one(format!("100,{g}")),
            one(format!("100;{g}")),
            one(format!("100\u{a0}{g}")),
            one(format!("{g}\u{0}100")),
            ParamValue::Many(vec!["100".into(), g.to_string()]),
        ],
        "vmid-array" => vec![
            one(g.to_string()),
            ParamValue::Many(vec!["100".into(), g.to_string()]),
        ],
        "ha-sid" => vec![
            one(format!("vm:{g}")),
            one(format!("ct:{g}")),
            one(g.to_string()),
        ],
        "ha-sid-list" => vec![one(format!("vm:100,ct:{g}")), one(format!("vm:{g}"))],
        "replication-job-id" => vec![one(format!("{g}-0")), one(format!("0{g}-1"))],
        "upid" => vec![
            one(format!(
                "UPID:pve:00001234:0000ABCD:65A1B2C3:qmstart:{g}:root@pam:"
            )),
            one(format!(
                "UPID:pve:00001234:0000ABCD:65A1B2C3:imgdel:{g}@local:root@pam:"
            )),
        ],
        "volume-id" => volume_forms(g).into_iter().map(one).collect(),
        "acl-path" => vec![one(format!("/vms/{g}")), one(format!("//vms/{g}/"))],
        "nested-api-calls" => vec![
            one(format!(
                r#"[{{"path":"qemu/{g}/status/stop","method":"POST"}}]"#
            )),
            one(format!(
                r#"[{{"path":"version","method":"GET"}},{{"path":"lxc/{OTHER}/config","method":"PUT","args":{{"mp0":"local:{g}/subvol-{g}-disk-0.raw,mp=/x"}}}}]"#
            )),
        ],
        "pool" => vec![],
        r if r.starts_with("property-string:") => {
            let mut out = Vec::new();
            for vol in volume_forms(g) {
                for k in &p.volume_keys {
                    out.push(one(format!("{k}={vol},size=4G")));
                }
                if p.default_key.is_some() {
                    out.push(one(format!("{vol},size=4G")));
                }
            }
            out
        }
        other => panic!(
            "coverage test does not know guest kind {other:?} ({})",
            p.name
        ),
    }
}

fn request_key(p: &Param) -> String {
    match p.name.strip_suffix("[n]") {
        Some(prefix) => format!("{prefix}3"),
        None => p.name.clone(),
    }
}

fn neutral_path_value(ep: &Endpoint, name: &str) -> String {
    if let Some(p) = ep.params.iter().find(|p| p.name == name) {
        if let Some(kind) = test_kind(p) {
            if let Some(ParamValue::One(v)) = encodings(&kind, p, OTHER).into_iter().next() {
                return v;
            }
        }
    }
    match name {
        "node" => "pve".into(),
        "storage" => "local".into(),
        "cidr" => "10.0.0.0/24".into(),
        "pos" => "0".into(),
        _ => "x1".into(),
    }
}

/// Fills the template: `target` (if a path parameter) gets `value`, the others a neutral
/// value with the unprotected guest.
fn segments(ep: &Endpoint, target: Option<(&str, &str)>) -> Vec<Segment> {
    let mut out = Vec::new();
    for seg in ep.path.split('/').filter(|s| !s.is_empty()) {
        let v = match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            None => seg.to_string(),
            Some(name) => match target {
                Some((t, v)) if t == name => v.to_string(),
                _ => neutral_path_value(ep, name),
            },
        };
        // A rest-of-path value may contain `/`: send it as separate segments, like a client
        // that does not percent-encode it.
        out.extend(v.split('/').filter(|s| !s.is_empty()).map(Segment::from));
    }
    out
}

fn http_method(m: ApiMethod) -> http::Method {
    match m {
        ApiMethod::Get => http::Method::GET,
        ApiMethod::Post => http::Method::POST,
        ApiMethod::Put => http::Method::PUT,
        ApiMethod::Delete => http::Method::DELETE,
    }
}

fn guest_params(ep: &Endpoint) -> Vec<(&Param, String)> {
    ep.params
        .iter()
        .filter_map(|p| test_kind(p).map(|k| (p, k)))
        .collect()
}

/// Body/query with the unprotected guest in every guest-bearing non-path parameter except
/// `skip`, where the tested value goes.
fn base_params(ep: &Endpoint, skip: Option<&str>) -> Params {
    let mut params = Params::default();
    for (p, kind) in guest_params(ep) {
        if p.in_path || Some(p.name.as_str()) == skip || kind == "pool" {
            continue;
        }
        // Keep the "other guest" background minimal for selections that mean "all".
        if matches!(p.name.as_str(), "exclude") {
            continue;
        }
        if let Some(v) = encodings(&kind, p, OTHER).into_iter().next() {
            params.map.insert(request_key(p), v);
        }
    }
    params
}

struct Summary {
    endpoints: usize,
    by_version: BTreeMap<String, usize>,
    by_action: BTreeMap<&'static str, usize>,
    guest_params: usize,
    by_kind: BTreeMap<String, usize>,
    cases: usize,
    failures: Vec<String>,
}

#[test]
fn every_endpoint_is_covered() {
    let mut s = Summary {
        endpoints: 0,
        by_version: BTreeMap::new(),
        by_action: BTreeMap::new(),
        guest_params: 0,
        by_kind: BTreeMap::new(),
        cases: 0,
        failures: Vec::new(),
    };
    for ep in catalogue::endpoints() {
        let id = format!("{} {}", ep.method.as_str(), ep.path);
        let method = http_method(ep.method);
        s.endpoints += 1;
        for v in &ep.versions {
            *s.by_version.entry(v.clone()).or_default() += 1;
        }

        // 1. Every endpoint has an action.
        let Some(action) = ep.action else {
            s.failures
                .push(format!("{id}: no action (add a rule in src/pve/action.rs)"));
            continue;
        };
        *s.by_action.entry(action.as_str()).or_default() += 1;

        // 2. It routes back to itself with neutral values, and inspects without error.
        let neutral_segments = segments(ep, None);
        let neutral = inspect(&method, &neutral_segments, &base_params(ep, None));
        match &neutral {
            Ok(op) if op.route == Route::Known(ep.path.as_str()) => {}
            other => s
                .failures
                .push(format!("{id}: neutral request gave {other:?}")),
        }

        // 3. Not-read rules.
        let gp = guest_params(ep);
        let has_guest_param = gp.iter().any(|(_, k)| k != "pool");
        if ep.method != ApiMethod::Get
            && has_guest_param
            && action.is_read()
            && !READ_POSTS.contains(&ep.path.as_str())
        {
            s.failures
                .push(format!("{id}: modifies a guest but is classified read"));
        }
        if ep.method == ApiMethod::Get {
            if let Some((_, want)) = ACTIVE_GETS.iter().find(|(t, _)| *t == ep.path) {
                if action != *want {
                    s.failures
                        .push(format!("{id}: expected {want}, got {action}"));
                }
            } else if ep.websocket {
                s.failures.push(format!("{id}: websocket GET not reviewed"));
            }
        }

        // 4. "Every guest" endpoints.
        if ep.all_guests_when_omitted || ep.all_guests != AllGuests::Never {
            let mut p = base_params(ep, None);
            match ep.all_guests {
                AllGuests::VmsOmitted => drop(p.map.remove("vms")),
                AllGuests::VmidOmitted => drop(p.map.remove("vmid")),
                AllGuests::Vzdump => {
                    p.map.remove("vmid");
                    p.map.insert("all".into(), ParamValue::One("1".into()));
                }
                _ => {}
            }
            match inspect(&method, &neutral_segments, &p) {
                Ok(op) if op.guests == GuestSet::All => {}
                other => s
                    .failures
                    .push(format!("{id}: selection omitted gave {other:?}")),
            }
        }

        // 5. Every guest-bearing parameter, in every encoding.
        for (p, kind) in &gp {
            let protected = encodings(kind, p, PROTECTED);
            let unprotected = encodings(kind, p, OTHER);
            if protected.is_empty() {
                continue; // `pool`: no VMID in the value (vzdump's pool is checked below)
            }
            s.guest_params += 1;
            *s.by_kind.entry(kind.clone()).or_default() += 1;
            for (value, neutral_value) in protected.iter().zip(unprotected.iter().cycle()) {
                for (v, want_protected) in [(value, true), (neutral_value, false)] {
                    s.cases += 1;
                    let (segs, params) = if p.in_path {
                        let ParamValue::One(text) = v else { continue };
                        // A newline or other whitespace cannot reach a path segment.
                        if text.chars().any(|c| c.is_whitespace() || c == '\0') {
                            continue;
                        }
                        (segments(ep, Some((&p.name, text))), base_params(ep, None))
                    } else {
                        let mut params = base_params(ep, Some(&p.name));
                        params.map.insert(request_key(p), v.clone());
                        (neutral_segments.clone(), params)
                    };
                    let what = format!("{id}: {}={v:?}", p.name);
                    match inspect(&method, &segs, &params) {
                        Ok(op) => {
                            if op.route != Route::Known(ep.path.as_str()) {
                                s.failures.push(format!("{what}: routed to {:?}", op.route));
                            } else if want_protected && !op.guests.contains(PROTECTED) {
                                s.failures.push(format!(
                                    "{what}: guest {PROTECTED} not found ({})",
                                    op.guests
                                ));
                            } else if !want_protected && op.guests.contains(PROTECTED) {
                                let by_design =
                                    op.guests.is_all() && ep.all_guests != AllGuests::Never;
                                if !by_design {
                                    s.failures
                                        .push(format!("{what}: found {PROTECTED} ({})", op.guests));
                                }
                            }
                        }
                        Err(e) => s.failures.push(format!("{what}: error {e}")),
                    }
                }
            }
        }

        // vzdump/backup jobs: a pool cannot be resolved offline, so it means every guest.
        if ep.all_guests == AllGuests::Vzdump {
            let mut p = base_params(ep, None);
            p.map.remove("vmid");
            p.map.insert("pool".into(), ParamValue::One("prod".into()));
            match inspect(&method, &neutral_segments, &p) {
                Ok(op) if op.guests.is_all() => {}
                other => s.failures.push(format!("{id}: pool= gave {other:?}")),
            }
        }
    }

    println!("catalogue coverage");
    println!("  endpoints (endpoint x method): {}", s.endpoints);
    for (v, n) in &s.by_version {
        println!("    in PVE {v}: {n}");
    }
    println!("  guest-bearing parameters checked: {}", s.guest_params);
    for (k, n) in &s.by_kind {
        println!("    {k}: {n}");
    }
    println!("  inspect cases: {}", s.cases);
    println!("  endpoints by action:");
    for a in Action::ALL {
        if let Some(n) = s.by_action.get(a.as_str()) {
            println!("    {:<24} {n}", a.as_str());
        }
    }
    if !s.failures.is_empty() {
        for f in &s.failures {
            eprintln!("FAIL {f}");
        }
        panic!("{} coverage failures", s.failures.len());
    }
}

#[test]
fn unknown_write_is_judged_generously() {
    let segs: Vec<Segment> = ["nodes", "pve", "qemu", "104", "future-thing"]
        .iter()
        .map(|&s| Segment::from(s))
        .collect();
    let op = inspect(&http::Method::POST, &segs, &Params::default()).unwrap();
    assert_eq!(op.route, Route::Unknown);
    assert_eq!(op.action, Action::Write);
    assert!(op.guests.contains(PROTECTED));
}

// ---------------------------------------------------------------------------------------------
// Host-reaching parameters (issue 9)
// ---------------------------------------------------------------------------------------------

/// The host-reaching parameters reviewed against qemu-server and pve-container, per endpoint
/// family: (endpoint, parameter, kind). A schema change that adds one makes the generator
/// flag it (`unreviewed`) and fails `every_host_fact_is_reviewed`; one that drops or renames
/// one fails here.
const HOST_PARAMS: &[(&str, &str, &str)] = &[
    ("/nodes/{node}/qemu", "scsi[n]", "paths"),
    ("/nodes/{node}/qemu", "virtio[n]", "paths"),
    ("/nodes/{node}/qemu", "ide[n]", "paths"),
    ("/nodes/{node}/qemu", "sata[n]", "paths"),
    ("/nodes/{node}/qemu", "efidisk0", "paths"),
    ("/nodes/{node}/qemu", "tpmstate0", "paths"),
    ("/nodes/{node}/qemu", "serial[n]", "paths"),
    ("/nodes/{node}/qemu", "parallel[n]", "paths"),
    ("/nodes/{node}/qemu", "archive", "paths"),
    ("/nodes/{node}/qemu", "cdrom", "paths"),
    ("/nodes/{node}/qemu", "args", "args"),
    ("/nodes/{node}/qemu", "hookscript", "hookscript"),
    ("/nodes/{node}/qemu", "hostpci[n]", "pci"),
    ("/nodes/{node}/qemu", "usb[n]", "usb"),
    ("/nodes/{node}/qemu/{vmid}/config", "scsi[n]", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "virtio[n]", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "ide[n]", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "sata[n]", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "efidisk0", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "tpmstate0", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "serial[n]", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "parallel[n]", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "cdrom", "paths"),
    ("/nodes/{node}/qemu/{vmid}/config", "args", "args"),
    (
        "/nodes/{node}/qemu/{vmid}/config",
        "hookscript",
        "hookscript",
    ),
    ("/nodes/{node}/qemu/{vmid}/config", "hostpci[n]", "pci"),
    ("/nodes/{node}/qemu/{vmid}/config", "usb[n]", "usb"),
    ("/nodes/{node}/lxc", "rootfs", "paths"),
    ("/nodes/{node}/lxc", "mp[n]", "paths"),
    ("/nodes/{node}/lxc", "dev[n]", "paths"),
    ("/nodes/{node}/lxc", "ostemplate", "paths"),
    ("/nodes/{node}/lxc", "hookscript", "hookscript"),
    ("/nodes/{node}/lxc/{vmid}/config", "rootfs", "paths"),
    ("/nodes/{node}/lxc/{vmid}/config", "mp[n]", "paths"),
    ("/nodes/{node}/lxc/{vmid}/config", "dev[n]", "paths"),
    (
        "/nodes/{node}/lxc/{vmid}/config",
        "hookscript",
        "hookscript",
    ),
];

/// Volume-bearing guest config parameters that cannot take a host path (their schema format
/// is `pve-volume-id`, which requires `storage:name`).
const VOLUME_ONLY: &[&str] = &["unused[n]", "cicustom"];

/// A value of each kind that reaches the host, for the request key `key`.
fn host_value(kind: &str, p: &Param) -> String {
    match kind {
        "paths" => match (&p.host_default, p.host_keys.first()) {
            (Some(_), _) | (None, None) => "/dev/sdb".to_string(),
            (None, Some(k)) => format!("{k}=/dev/sdb"),
        },
        "pci" => "0000:01:00.0".into(),
        "usb" => "host=046d:c52b".into(),
        "args" => "-hda /dev/sdb".into(),
        "hookscript" => "local:snippets/hook.pl".into(),
        other => panic!("no test value for host kind {other}"),
    }
}

#[test]
fn every_host_fact_is_reviewed() {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for ep in catalogue::endpoints() {
        for p in &ep.params {
            let Some(fact) = p.host.as_deref() else {
                continue;
            };
            let id = format!("{} {} {}", ep.method.as_str(), ep.path, p.name);
            if pvegate::pve::host::HostKind::from_fact(fact).is_none() {
                failures.push(format!(
                    "{id}: host fact {fact:?} — review it and classify it in tools/gen_catalogue.py (HOST_BY_NAME / HOST_INDIRECT)"
                ));
                continue;
            }
            seen.push((ep.path.as_str(), p.name.as_str(), fact));
            // Every sub-key of the fact is a sub-key the schema gives for volumes or paths.
            if fact == "paths"
                && p.host_keys.is_empty()
                && p.format.as_deref() == Some("property-string")
            {
                failures.push(format!("{id}: a property string without host_keys"));
            }
            // The value reaches the host through inspect, in a request of its endpoint.
            let mut params = Params::default();
            params
                .map
                .insert(request_key(p), ParamValue::One(host_value(fact, p)));
            match inspect(&http_method(ep.method), &segments(ep, None), &params) {
                Ok(op) if !op.host.is_empty() => {}
                other => failures.push(format!("{id}: host value not found: {other:?}")),
            }
            // A volume id does not.
            if fact == "paths" {
                let mut params = Params::default();
                params.map.insert(
                    request_key(p),
                    ParamValue::One("local-lvm:vm-110-disk-0".into()),
                );
                if let Ok(op) = inspect(&http_method(ep.method), &segments(ep, None), &params) {
                    if !op.host.is_empty() {
                        failures.push(format!("{id}: a volume id read as a host value"));
                    }
                }
            }
        }
        // Disk-like parameters of guest configs carry host facts (or are reviewed as
        // volume-only).
        if ep.path.starts_with("/nodes/{node}/qemu") || ep.path.starts_with("/nodes/{node}/lxc") {
            for p in &ep.params {
                if !p.volume_keys.is_empty()
                    && p.host.is_none()
                    && !VOLUME_ONLY.contains(&p.name.as_str())
                {
                    failures.push(format!(
                        "{} {} {}: volume-bearing but no host fact",
                        ep.method.as_str(),
                        ep.path,
                        p.name
                    ));
                }
            }
        }
    }
    for &(path, name, kind) in HOST_PARAMS {
        if !seen
            .iter()
            .any(|&(p, n, k)| p == path && n == name && k == kind)
        {
            failures.push(format!(
                "{path} {name}: expected host kind {kind}, not in the catalogue"
            ));
        }
    }
    for &(path, name, kind) in &seen {
        if !HOST_PARAMS
            .iter()
            .any(|&(p, n, k)| p == path && n == name && k == kind)
        {
            failures.push(format!(
                "{path} {name} ({kind}): a host-reaching parameter not in HOST_PARAMS; review it"
            ));
        }
    }
    if !failures.is_empty() {
        panic!("host coverage failures:\n{}", failures.join("\n"));
    }
}
