//! The inventory's costs at 10,000 guests: a decision with selector rules in play
//! (`Policy::decide_in` on a resolved snapshot, beside plain `Policy::decide` as the
//! comparator), and one refresh of the snapshot (parse the `/cluster/resources` answer and
//! the stored selections, then index the selector matches: `Policy::resolve`), and
//! `Policy::resolve` alone on the full snapshot below (selector matches and the index of
//! pools, storages, mappings and devices).
//!
//! Then every other per-request path the inventory adds, each beside a comparator in the same
//! run, on a policy using every selector kind (`tags`, `pool`, `name`, `type`, `template`,
//! selectors narrowed by `vmids`, several parts ANDed), approvals and exemptions:
//! - `selector_kinds_10k`: `decide_in` for a guest matched by each kind, by all, by none;
//! - `sticky_10k`: `Policy::decide_with_change` (decision + sticky protection) beside
//!   `decide_in` of the same operation without its change;
//! - `stored_selections_10k`: `inventory::expand::expand` (backup jobs, HA rules and groups,
//!   `vzdump pool=`, passthrough devices, mappings, storages) and `decide_in` of what it
//!   returns, beside plain `decide` of the request's own operation;
//! - `approvals_10k`: `approval_needed_in` with the view beside `approval_needed` without;
//! - `request_path_10k`: what the authorize layer runs per request with `[inventory]`
//!   (`Inventory::prepare` + `Policy::judge_in` + `approval::gate::review`) beside what it runs
//!   without one (`Policy::judge` + `review`). Requests are read by the inspect layer's own
//!   functions (`parse_target`, `parse_urlencoded`/`parse_body`, `pve::inspect`,
//!   `inventory::change::extract`).
//!
//! `cargo bench --bench inventory`; see BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use pvegate::approval::gate::{self, Review};
use pvegate::inventory::gate::Prepared;
use pvegate::inventory::{expand, Change, Guest, GuestType, Inventory, InventoryConfig, Snapshot};
use pvegate::policy::resolve::Resolved;
use pvegate::policy::{Decision, Judgement, Mode, Policy};
use pvegate::pve::request::{self, BodyKind, Params, Target};
use pvegate::pve::{self, GuestSet, Operation, Route, Vmid};
use serde_json::json;

const GUESTS: u32 = 10_000;

/// `/cluster/resources?type=vm` of 10,000 guests: every 5th tagged prod, every 7th in pool
/// core, every 11th named db-…, every 4th an LXC, every 50th a template.
fn resources_json() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..GUESTS {
        let vmid = 1000 + i;
        let kind = if i % 4 == 0 { "lxc" } else { "qemu" };
        let name = if i % 11 == 0 {
            format!("db-{vmid}")
        } else {
            format!("web-{vmid}")
        };
        let mut tags = String::from("team-a");
        if i % 5 == 0 {
            tags.push_str(";prod");
        }
        let mut g = serde_json::json!({
            "id": format!("{kind}/{vmid}"), "vmid": vmid, "name": name, "node": format!("pve{}", i % 8),
            "type": kind, "status": "running", "tags": tags, "template": u8::from(i % 50 == 0),
            "maxmem": 4294967296u64, "mem": 1073741824u64, "maxcpu": 4, "cpu": 0.02, "uptime": 1234,
            "maxdisk": 34359738368u64, "disk": 0, "netin": 1, "netout": 1, "diskread": 1, "diskwrite": 1,
        });
        if i % 7 == 0 {
            g["pool"] = "core".into();
        }
        v.push(g);
    }
    serde_json::to_vec(&serde_json::json!({ "data": v })).unwrap()
}

fn policy() -> Policy {
    let src = r#"
[[guest]]
tags = ["prod"]
access = "readonly"
allow = ["snapshot.*"]

[[guest]]
pool = "core"
access = "managed"
deny = ["destroy"]

[[guest]]
name = "db-*"
access = "readonly"

[[guest]]
type = "lxc"
access = "managed"
deny = ["destroy"]

[[guest]]
template = true
access = "readonly"

[[guest]]
vmids = "20000-29999"
access = "readonly"

[[guest]]
vmid = 1001
access = "managed"
"#;
    Policy::from_toml_str("bench.toml", src).unwrap()
}

fn refresh(body: &[u8], p: &Policy) -> usize {
    let mut s = Snapshot::empty();
    s.set_resources_json(body).unwrap();
    let r = p.resolve(Arc::new(s), 0);
    r.matches(1000).len()
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let body = resources_json();
    let mut s = Snapshot::empty();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    s.set_resources(&v["data"]).unwrap();
    let view = p.resolve(Arc::new(s), 0);

    let op = |action: &str, guests: GuestSet| {
        Operation::new(
            Route::Known("/nodes/{node}/qemu/{vmid}/status/stop"),
            action.parse().unwrap(),
            guests,
        )
    };
    let cases = [
        (
            "tagged guest, denied",
            op("power.stop", GuestSet::one(1005)),
        ),
        ("two selectors match", op("power.stop", GuestSet::one(1000))),
        ("no selector matches", op("power.stop", GuestSet::one(1003))),
        (
            "stopall 20 guests",
            op("power.stop", (1001..1021).collect::<GuestSet>()),
        ),
    ];
    let mut g = c.benchmark_group("decide_10k_guests");
    for (name, o) in &cases {
        g.bench_function(format!("with selectors: {name}"), |b| {
            b.iter(|| black_box(p.decide_in(black_box(o), Some("ci@pve!tofu"), Some(&view))))
        });
        g.bench_function(format!("plain decide (comparator): {name}"), |b| {
            b.iter(|| black_box(p.decide(black_box(o), Some("ci@pve!tofu"))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("refresh_10k_guests");
    g.sample_size(20);
    g.bench_function("parse /cluster/resources + index selectors", |b| {
        b.iter(|| black_box(refresh(black_box(&body), &p)))
    });
    g.bench_function("parse into a JSON tree only (comparator)", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(v["data"].as_array().map(Vec::len))
        })
    });
    // The index alone, on the snapshot the other groups judge by (configs read, pools,
    // storages, mappings, devices), as `Inventory::view` builds it after each refresh.
    let full = Policy::from_toml_str("full.toml", FULL_POLICY).unwrap();
    let snap = Arc::new(full_snapshot(&body, &full));
    g.bench_function("Policy::resolve alone, full snapshot", |b| {
        b.iter(|| {
            black_box(
                full.resolve(Arc::clone(black_box(&snap)), 0)
                    .matches(1000)
                    .len(),
            )
        })
    });
    g.finish();
}

/// Every selector kind, approvals and exemptions: the policy the other groups judge by.
const FULL_POLICY: &str = r#"
[settings]
approve = ["snapshot.rollback"]
exempt = ["breakglass@pam"]

[[guest]]
tags = ["prod", "critical"]
access = "readonly"
allow = ["snapshot.*"]
approve = ["power.*"]

[[guest]]
pool = "core"
access = "managed"
deny = ["destroy"]
exempt = ["ops@pve!*"]

[[guest]]
name = "db-*"
access = "readonly"

[[guest]]
type = "lxc"
access = "managed"
deny = ["destroy"]

[[guest]]
template = true
vmids = "1000-39999"
access = "readonly"

[[guest]]
name = "app-*"
type = "qemu"
tags = ["team-b"]
access = "managed"
deny = ["destroy"]

[[guest]]
vmids = "20000-29999"
access = "readonly"

[[guest]]
vmid = 1001
access = "managed"
"#;

/// Guests made to match one selector kind each (30001-30006, 30009), all of them (30007)
/// or none (30008), added to the 10,000.
/// vmid, name, type, tags, pool, template.
type Crafted = (
    Vmid,
    &'static str,
    GuestType,
    &'static str,
    Option<&'static str>,
    bool,
);

const CRAFTED: &[Crafted] = &[
    (30001, "web-30001", GuestType::Qemu, "prod", None, false),
    (
        30002,
        "web-30002",
        GuestType::Qemu,
        "team-a",
        Some("core"),
        false,
    ),
    (30003, "db-30003", GuestType::Qemu, "team-a", None, false),
    (30004, "web-30004", GuestType::Lxc, "team-a", None, false),
    (30005, "web-30005", GuestType::Qemu, "team-a", None, true),
    (30006, "app-30006", GuestType::Qemu, "team-b", None, false),
    (
        30007,
        "db-30007",
        GuestType::Lxc,
        "prod;team-b",
        Some("core"),
        true,
    ),
    (30008, "web-30008", GuestType::Qemu, "team-a", None, false),
    (30009, "web-30009", GuestType::Qemu, "critical", None, false),
];

/// The 10,000 guests of [`resources_json`] plus [`CRAFTED`], every 13th guest outside pool
/// core in pool lab (no rule names it), and what the inventory reads besides: two storages
/// and an unused one (and scratch, used by 1,000 guests that permit its removal), a PCI mapping, backup jobs (a list of 20, pool core, pool lab, all),
/// 500 HA resources in two groups and an HA rule, and the configs of the guests the policy
/// protects (as `Fetcher::snapshot` reads them): a disk on local-lvm, every 10th a mount on
/// tank, three with passthrough devices.
fn full_snapshot(body: &[u8], p: &Policy) -> Snapshot {
    let mut s = Snapshot::empty();
    s.set_resources_json(body).unwrap();
    for g in s.guests.values_mut() {
        if g.pool.is_none() && (g.vmid - 1000) % 13 == 0 {
            g.pool = Some("lab".into());
        }
    }
    for &(vmid, name, kind, tags, pool, template) in CRAFTED {
        s.guests.insert(
            vmid,
            Guest {
                vmid,
                name: name.into(),
                node: "pve0".into(),
                kind,
                tags: pvegate::inventory::split_tags(tags),
                pool: pool.map(Into::into),
                template,
                status: "running".into(),
            },
        );
    }
    s.set_mappings(
        "pci",
        &json!([{"id": "igpu", "map": ["node=pve0,path=0000:00:02.0"]}]),
    )
    .unwrap();
    s.set_mappings("usb", &json!([])).unwrap();
    s.set_storages(&json!([{"storage": "local-lvm"}, {"storage": "tank"}, {"storage": "scratch"}, {"storage": "nfs-iso"}]))
        .unwrap();
    let list: Vec<String> = (0..20).map(|i| (1000 + i * 37).to_string()).collect();
    s.set_backup_jobs(&json!([
        {"id": "job-list", "vmid": list.join(",")},
        {"id": "job-core", "pool": "core"},
        {"id": "job-lab", "pool": "lab"},
        {"id": "job-all", "all": 1, "exclude": "1003"},
    ]))
    .unwrap();
    let ha: Vec<serde_json::Value> = (0..500)
        .map(|i| {
            json!({"sid": format!("vm:{}", 1000 + i * 20), "group": if i % 2 == 0 { "g1" } else { "g2" }})
        })
        .collect();
    s.set_ha_resources(&serde_json::Value::Array(ha)).unwrap();
    s.set_ha_rules(&json!([{"rule": "r1", "resources": "vm:1005,vm:1010,vm:1015"}]))
        .unwrap();
    let tmp = Arc::new(s.clone());
    let view = p.resolve(tmp, 0);
    let mut protected: Vec<Vmid> = s
        .guests
        .keys()
        .copied()
        .filter(|&v| p.is_protected(v, Some(&view)))
        .collect();
    protected.sort_unstable();
    // Storage scratch: 1,000 guests whose rules all permit storage changes (a delete of it
    // must judge every user, none refuses).
    let mut scratch = 0;
    for v in protected {
        let mut c = json!({"scsi0": format!("local-lvm:vm-{v}-disk-0,size=32G"), "memory": "4096"});
        if v % 10 == 0 {
            c["mp0"] = format!("tank:subvol-{v}-disk-1,mp=/srv").into();
        }
        let write = op_on("storage.write", GuestSet::one(v));
        if scratch < 1000 && !deny(p.decide_in(&write, None, Some(&view))) {
            c["mp1"] = format!("scratch:subvol-{v}-disk-2,mp=/tmp/x").into();
            scratch += 1;
        }
        match v {
            1005 => c["hostpci0"] = "mapping=igpu,pcie=1".into(),
            1010 => c["hostpci0"] = "0000:01:00.0".into(),
            1015 => c["usb0"] = "host=1234:5678".into(),
            30002 => c["protection"] = 1.into(),
            _ => {}
        }
        s.set_config(v, &c).unwrap();
    }
    s
}

/// A request as the inspect layer reads it: its operation and its inventory change.
type Inspected = (Operation, Option<Change>);

fn inspected(method: Method, target: &str, form: Option<&str>) -> Inspected {
    let (t, query) = request::parse_target(target).expect("target");
    let Target::Api { segments, .. } = t else {
        unreachable!("bench targets are API paths")
    };
    let query = request::parse_urlencoded(query.unwrap_or("").as_bytes()).expect("query");
    let params = match form {
        Some(b) => Params::merge(
            request::parse_body(BodyKind::Form, b.as_bytes()).expect("body"),
            query,
        ),
        None => query,
    };
    let op = pve::inspect(&method, &segments, &params).expect("inspect");
    let change = if method == Method::GET {
        None
    } else {
        pvegate::inventory::change::extract(&method, &op.route, &segments, &params).expect("change")
    };
    (op, change)
}

fn op_on(action: &str, guests: GuestSet) -> Operation {
    Operation::new(
        Route::Known("/nodes/{node}/qemu/{vmid}/status/stop"),
        action.parse().unwrap(),
        guests,
    )
}

/// What the authorize layer decides for one inspected request with `[inventory]`
/// (`layer/authorize.rs`: prepare, judge, review; no approval state, as without
/// `[approval]`).
fn with_inventory(
    inv: &Inventory,
    policy: &Arc<Policy>,
    op: &Operation,
    change: Option<&Change>,
    identity: Option<&str>,
    mode: Mode,
) -> (Judgement, bool) {
    let prepared = inv.prepare(op, change, policy);
    let (j, review) = match &prepared {
        Prepared::NotNeeded => {
            let j = policy.judge(op, identity, mode);
            (j, gate::review(None, policy, j, op, identity, None))
        }
        Prepared::Ready { view, op: expanded } => {
            let op = expanded.as_ref().unwrap_or(op);
            let j = policy.judge_in(op, change, identity, mode, Some(view));
            (j, gate::review(None, policy, j, op, identity, Some(view)))
        }
        Prepared::Stale(_) => unreachable!("the bench inventory is fresh"),
    };
    (j, matches!(review, Review::Approval(_)))
}

/// The same without `[inventory]`: judge and review only.
fn without_inventory(
    policy: &Policy,
    op: &Operation,
    identity: Option<&str>,
    mode: Mode,
) -> (Judgement, bool) {
    let j = policy.judge(op, identity, mode);
    let review = gate::review(None, policy, j, op, identity, None);
    (j, matches!(review, Review::Approval(_)))
}

fn deny(d: Decision) -> bool {
    matches!(d, Decision::Deny(_))
}

fn bench_paths(c: &mut Criterion) {
    let id = Some("ci@pve!tofu");
    let body = resources_json();
    let policy = Arc::new(Policy::from_toml_str("full.toml", FULL_POLICY).unwrap());
    let snap = full_snapshot(&body, &policy);
    assert_eq!(snap.guests.len(), 10_009);
    let inv = Inventory::new(&InventoryConfig {
        token_file: "unused".into(),
        refresh: Duration::from_secs(10),
        // The snapshot must not go stale while the benchmark runs.
        max_age: Duration::from_secs(86_400),
    });
    inv.install(snap);
    let view: Arc<Resolved> = inv.view(&policy).unwrap();
    eprintln!(
        "index of pools, HA groups, storages, mappings and devices: ~{} KiB",
        view.uses_heap_bytes() / 1024
    );
    assert_eq!(view.on_storage("scratch").len(), 1000);
    let v = Some(&*view);
    let p = &*policy;

    // --- every selector kind: decide_in, a single guest, destroy ---
    let destroy = |vmid| op_on("destroy", GuestSet::one(vmid));
    // 20 guests none of whose rules refuses power.start (checked to the last)
    let pass20: GuestSet = (1001..1100)
        .filter(|i| (i - 1000) % 11 != 0 && (i - 1000) % 50 != 0)
        .take(20)
        .collect();
    let kinds: Vec<(&str, Operation, bool)> = vec![
        ("tags (first of the list)", destroy(30001), true),
        ("tags (second of the list)", destroy(30009), true),
        ("pool", destroy(30002), true),
        ("name glob", destroy(30003), true),
        ("type", destroy(30004), true),
        ("template + vmids", destroy(30005), true),
        ("name + type + tags (AND)", destroy(30006), true),
        ("all six selector rules match", destroy(30007), true),
        ("no selector matches", destroy(30008), false),
        ("vmid rule wins over selectors", destroy(1001), false),
        ("range rule, guest not in inventory", destroy(20050), true),
        (
            "20 guests, every rule checked",
            op_on("power.start", pass20.clone()),
            false,
        ),
        (
            "every guest (GuestSet::All)",
            op_on("destroy", GuestSet::All),
            true,
        ),
    ];
    let mut g = c.benchmark_group("selector_kinds_10k");
    for (name, o, denied) in &kinds {
        assert_eq!(deny(p.decide_in(o, id, v)), *denied, "{name}");
        g.bench_function(format!("decide_in: {name}"), |b| {
            b.iter(|| black_box(p.decide_in(black_box(o), black_box(id), black_box(v))))
        });
        g.bench_function(format!("plain decide (comparator): {name}"), |b| {
            b.iter(|| black_box(p.decide(black_box(o), black_box(id))))
        });
    }
    g.finish();

    // --- sticky protection: decide_with_change vs decide_in without the change ---
    // 20 guests that only managed rules (or none) select: the pool change is judged to the end
    let pool_add: Vec<String> = (1001..1100)
        .filter(|i| (i - 1000) % 5 != 0 && (i - 1000) % 11 != 0)
        .take(20)
        .map(|v| v.to_string())
        .collect();
    let sticky: Vec<(&str, Inspected, bool)> = vec![
        (
            "rename past a name rule (refused)",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30006/config",
                Some("name=web-30006"),
            ),
            true,
        ),
        (
            "retag keeping the selected tag",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30006/config",
                Some("tags=team-b%3Bweb"),
            ),
            false,
        ),
        (
            "clear protection of a protected guest (refused)",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30002/config",
                Some("protection=0"),
            ),
            true,
        ),
        (
            "retag a guest no rule selects",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30008/config",
                Some("tags=team-a%3Bweb&memory=8192"),
            ),
            false,
        ),
        (
            "add 20 guests to pool core",
            inspected(
                Method::PUT,
                "/api2/json/pools/core",
                Some(&format!("vms={}", pool_add.join("%2C"))),
            ),
            false,
        ),
        (
            "remove a guest from pool core (refused)",
            inspected(
                Method::PUT,
                "/api2/json/pools/core",
                Some("vms=30002&delete=1"),
            ),
            true,
        ),
        (
            "delete pool core (refused)",
            inspected(Method::DELETE, "/api2/json/pools/core", None),
            true,
        ),
        (
            "delete pool lab (no rule selects it)",
            inspected(Method::DELETE, "/api2/json/pools/lab", None),
            false,
        ),
    ];
    let mut g = c.benchmark_group("sticky_10k");
    for (name, (o, ch), denied) in &sticky {
        let ch = ch.as_ref();
        assert!(ch.is_some(), "{name}: no change read");
        assert_eq!(deny(p.decide_with_change(o, ch, id, v)), *denied, "{name}");
        g.bench_function(format!("decide_with_change: {name}"), |b| {
            b.iter(|| {
                black_box(p.decide_with_change(
                    black_box(o),
                    black_box(ch),
                    black_box(id),
                    black_box(v),
                ))
            })
        });
        g.bench_function(format!("decide_in, no change (comparator): {name}"), |b| {
            b.iter(|| black_box(p.decide_in(black_box(o), black_box(id), black_box(v))))
        });
    }
    g.finish();

    // --- stored selections and dependencies: expand + decide_in vs plain decide ---
    let selections: Vec<(&str, Inspected)> = vec![
        (
            "backup job of 20 vmids, edited",
            inspected(
                Method::PUT,
                "/api2/json/cluster/backup/job-list",
                Some("vmid=1001%2C1002&schedule=daily"),
            ),
        ),
        (
            "backup job of pool core, edited",
            inspected(
                Method::PUT,
                "/api2/json/cluster/backup/job-core",
                Some("schedule=daily"),
            ),
        ),
        (
            "backup job of every guest, deleted",
            inspected(Method::DELETE, "/api2/json/cluster/backup/job-all", None),
        ),
        (
            "vzdump pool=lab",
            inspected(
                Method::POST,
                "/api2/json/nodes/pve0/vzdump",
                Some("pool=lab&storage=local"),
            ),
        ),
        (
            "HA rule, resources changed",
            inspected(
                Method::PUT,
                "/api2/json/cluster/ha/rules/r1",
                Some("resources=vm%3A1005%2Cvm%3A1020"),
            ),
        ),
        (
            "HA group of 250 guests",
            inspected(
                Method::PUT,
                "/api2/json/cluster/ha/groups/g1",
                Some("nodes=pve0"),
            ),
        ),
        (
            "config write handing out a mapped PCI device",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30008/config",
                Some("hostpci0=0000%3A00%3A02.0"),
            ),
        ),
        (
            "config write without devices",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30008/config",
                Some("memory=8192"),
            ),
        ),
        (
            "PCI mapping changed",
            inspected(
                Method::PUT,
                "/api2/json/cluster/mapping/pci/igpu",
                Some("description=x"),
            ),
        ),
        (
            "storage tank deleted",
            inspected(Method::DELETE, "/api2/json/storage/tank", None),
        ),
        (
            "storage scratch deleted (1,000 users, none refuses)",
            inspected(Method::DELETE, "/api2/json/storage/scratch", None),
        ),
    ];
    let mut g = c.benchmark_group("stored_selections_10k");
    for (name, (o, ch)) in &selections {
        let ch = ch
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no change read"));
        let judged = |o: &Operation, ch: &Change| match expand::expand(o, ch, &view) {
            Some(e) => p.decide_in(&e, id, v),
            None => p.decide_in(o, id, v),
        };
        let _ = judged(o, ch);
        g.bench_function(format!("expand + decide_in: {name}"), |b| {
            b.iter(|| black_box(judged(black_box(o), black_box(ch))))
        });
        g.bench_function(format!("expand alone: {name}"), |b| {
            b.iter(|| black_box(expand::expand(black_box(o), black_box(ch), &view)))
        });
        g.bench_function(format!("plain decide (comparator): {name}"), |b| {
            b.iter(|| black_box(p.decide(black_box(o), black_box(id))))
        });
    }
    g.finish();

    // --- approvals: approval_needed_in with the view vs approval_needed without ---
    let tagged20: GuestSet = (1000..1200).filter(|i| i % 5 == 0).take(20).collect();
    let approvals: Vec<(&str, Operation, Option<&str>, bool)> = vec![
        (
            "tag rule asks (power.stop)",
            op_on("power.stop", GuestSet::one(30001)),
            id,
            true,
        ),
        (
            "20 tagged guests (power.stop)",
            op_on("power.stop", tagged20),
            id,
            true,
        ),
        (
            "settings ask (snapshot.rollback)",
            op_on("snapshot.rollback", GuestSet::one(30008)),
            id,
            true,
        ),
        (
            "no rule asks",
            op_on("config.write", GuestSet::one(30008)),
            id,
            false,
        ),
        (
            "every guest (power.stop)",
            op_on("power.stop", GuestSet::All),
            id,
            true,
        ),
        (
            "exempt identity",
            op_on("power.stop", GuestSet::one(30001)),
            Some("breakglass@pam"),
            false,
        ),
    ];
    let mut g = c.benchmark_group("approvals_10k");
    for (name, o, who, needed) in &approvals {
        assert_eq!(
            p.approval_needed_in(o, *who, v).is_some(),
            *needed,
            "{name}"
        );
        g.bench_function(format!("approval_needed_in: {name}"), |b| {
            b.iter(|| black_box(p.approval_needed_in(black_box(o), black_box(*who), black_box(v))))
        });
        g.bench_function(format!("approval_needed (comparator): {name}"), |b| {
            b.iter(|| black_box(p.approval_needed(black_box(o), black_box(*who))))
        });
    }
    g.finish();

    // --- the authorize layer's whole decision for one request ---
    let stop20: Vec<String> = (1001..1021).map(|v| v.to_string()).collect();
    let requests: Vec<(&str, Inspected, Mode)> = vec![
        (
            "stop a tagged guest (needs approval)",
            inspected(
                Method::POST,
                "/api2/json/nodes/pve0/qemu/30001/status/stop",
                None,
            ),
            Mode::Enforce,
        ),
        (
            "stop a guest no selector matches",
            inspected(
                Method::POST,
                "/api2/json/nodes/pve0/qemu/30008/status/stop",
                None,
            ),
            Mode::Enforce,
        ),
        (
            "destroy a pool core guest (refused)",
            inspected(Method::DELETE, "/api2/json/nodes/pve0/qemu/30002", None),
            Mode::Enforce,
        ),
        (
            "stopall 20 guests",
            inspected(
                Method::POST,
                "/api2/json/nodes/pve0/stopall",
                Some(&format!("vms={}", stop20.join("%2C"))),
            ),
            Mode::Enforce,
        ),
        (
            "retag keeping the selected tag",
            inspected(
                Method::PUT,
                "/api2/json/nodes/pve0/qemu/30006/config",
                Some("tags=team-b%3Bweb"),
            ),
            Mode::Enforce,
        ),
        (
            "backup job of 20 vmids, edited",
            inspected(
                Method::PUT,
                "/api2/json/cluster/backup/job-list",
                Some("vmid=1001%2C1002&schedule=daily"),
            ),
            Mode::Enforce,
        ),
        (
            "vzdump pool=lab",
            inspected(
                Method::POST,
                "/api2/json/nodes/pve0/vzdump",
                Some("pool=lab&storage=local"),
            ),
            Mode::Enforce,
        ),
        (
            "status read",
            inspected(
                Method::GET,
                "/api2/json/nodes/pve0/qemu/30001/status/current",
                None,
            ),
            Mode::Enforce,
        ),
        (
            "destroy a pool core guest, shadow mode",
            inspected(Method::DELETE, "/api2/json/nodes/pve0/qemu/30002", None),
            Mode::Shadow,
        ),
    ];
    let mut g = c.benchmark_group("request_path_10k");
    for (name, (o, ch), mode) in &requests {
        let ch = ch.as_ref();
        let _ = with_inventory(&inv, &policy, o, ch, id, *mode);
        g.bench_function(format!("with [inventory]: {name}"), |b| {
            b.iter(|| {
                black_box(with_inventory(
                    &inv,
                    &policy,
                    black_box(o),
                    black_box(ch),
                    black_box(id),
                    *mode,
                ))
            })
        });
        g.bench_function(format!("without [inventory] (comparator): {name}"), |b| {
            b.iter(|| black_box(without_inventory(p, black_box(o), black_box(id), *mode)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_paths);
criterion_main!(benches);
