//! The inventory's costs at 10,000 guests: a decision with selector rules in play
//! (`Policy::decide_in` on a resolved snapshot, beside plain `Policy::decide` as the
//! comparator), and one refresh of the snapshot (parse the `/cluster/resources` answer and
//! the stored selections, then index the selector matches: `Policy::resolve`).
//!
//! `cargo bench --bench inventory`; see BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use pvegate::inventory::Snapshot;
use pvegate::policy::Policy;
use pvegate::pve::{GuestSet, Operation, Route};

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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
