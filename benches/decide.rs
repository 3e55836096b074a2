//! The decision path of one request, as the inspect and authorize layers run it:
//! `parse_target` -> `parse_urlencoded` / `parse_body` (+ `Params::merge`) -> `pve::inspect`
//! -> `Policy::decide`, on realistic requests, against a policy protecting 10,000 guests
//! (10,000 `[[guest]]` entries plus 100 ranges of 100). Also `decide` alone.
//!
//! `cargo bench --bench decide` (results in `target/criterion/`); see BENCHMARKS.md.
//! Under `cargo test --benches` criterion runs each benchmark once, as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use pvegate::policy::{Decision, Policy};
use pvegate::pve::request::{self, BodyKind, Params, Target};
use pvegate::pve::{self, Operation};

/// 10,000 single-guest rules (vmids 1000-10999, every third readonly, the rest managed with a
/// deny list), 100 ranges of 100 (20000-29999), exempt identities and denied actions.
fn big_policy() -> Policy {
    let mut src = String::from(
        "[settings]\n\
         deny_actions = [\"node.execute\"]\n\
         exempt = [\"breakglass@pam\", \"admin@pve!*\"]\n\n",
    );
    for i in 0..10_000u32 {
        let vmid = 1000 + i;
        if i % 3 == 0 {
            src.push_str(&format!(
                "[[guest]]\nvmid = {vmid}\nname = \"vm{vmid}\"\naccess = \"readonly\"\n\
                 reason = \"production\"\nallow = [\"snapshot.*\", \"backup\"]\n\n"
            ));
        } else {
            src.push_str(&format!(
                "[[guest]]\nvmid = {vmid}\naccess = \"managed\"\ndeny = [\"destroy\"]\n\
                 exempt = [\"ops@pve!*\"]\n\n"
            ));
        }
    }
    for r in 0..100u32 {
        let lo = 20_000 + r * 100;
        let access = if r % 2 == 0 { "readonly" } else { "managed" };
        src.push_str(&format!(
            "[[guest]]\nvmids = \"{lo}-{}\"\naccess = \"{access}\"\n\n",
            lo + 99
        ));
    }
    let p = Policy::from_toml_str("bench.toml", &src).expect("bench policy compiles");
    assert_eq!(p.rules().len(), 10_100);
    p
}

/// One request as it reaches the inspect layer.
struct Req {
    name: &'static str,
    method: Method,
    target: String,
    body: Option<(BodyKind, String)>,
    identity: Option<&'static str>,
}

fn requests() -> Vec<Req> {
    let vms: Vec<String> = (0..20).map(|i| (1100 + i * 7).to_string()).collect();
    let form = |s: &str| Some((BodyKind::Form, s.to_string()));
    vec![
        Req {
            name: "status_poll_get",
            method: Method::GET,
            target: "/api2/json/nodes/pve/qemu/1104/status/current".into(),
            body: None,
            identity: Some("tofu@pve!ci"),
        },
        Req {
            name: "config_put_disk",
            method: Method::PUT,
            target: "/api2/json/nodes/pve/qemu/1110/config".into(),
            body: form(
                "scsi1=local-lvm%3Avm-1110-disk-1%2Csize%3D32G%2Ciothread%3D1&memory=4096\
                 &net0=virtio%2Cbridge%3Dvmbr0&digest=0123456789abcdef",
            ),
            identity: Some("tofu@pve!ci"),
        },
        Req {
            name: "config_put_json",
            method: Method::PUT,
            target: "/api2/extjs/nodes/pve/qemu/1110/config".into(),
            body: Some((
                BodyKind::Json,
                r#"{"scsi1":"local-lvm:vm-1110-disk-1,size=32G","memory":4096,"onboot":true}"#
                    .into(),
            )),
            identity: Some("root@pam"),
        },
        Req {
            name: "clone_newid",
            method: Method::POST,
            target: "/api2/json/nodes/pve/qemu/15001/clone".into(),
            body: form("newid=1124&name=web-3&full=1&target=pve&storage=local-lvm"),
            identity: Some("tofu@pve!ci"),
        },
        Req {
            name: "stopall_vms_list",
            method: Method::POST,
            target: "/api2/json/nodes/pve/stopall".into(),
            body: form(&format!("vms={}&force-stop=1", vms.join("%2C"))),
            identity: None,
        },
        Req {
            name: "volume_delete",
            method: Method::DELETE,
            target:
                "/api2/json/nodes/pve/storage/local-lvm/content/local-lvm:vm-1106-disk-0?delay=5"
                    .into(),
            body: None,
            identity: Some("tofu@pve!ci"),
        },
        Req {
            name: "unknown_endpoint",
            method: Method::POST,
            target: "/api2/json/nodes/pve/qemu/1106/brand-new-call".into(),
            body: form("target-vmid=1107&mode=fast"),
            identity: Some("tofu@pve!ci"),
        },
        Req {
            name: "range_guest_stop",
            method: Method::POST,
            target: "/api2/json/nodes/pve/lxc/20050/status/stop".into(),
            body: None,
            identity: Some("tofu@pve!ci"),
        },
    ]
}

/// The whole path, as `pve::reader::inspect_request` + `Authorize` run it.
fn decision_path(policy: &Policy, r: &Req) -> Decision {
    let (target, query) = request::parse_target(&r.target).expect("target");
    let Target::Api { segments, .. } = target else {
        unreachable!("bench targets are API paths")
    };
    let query = request::parse_urlencoded(query.unwrap_or("").as_bytes()).expect("query");
    let params = match &r.body {
        Some((kind, body)) => Params::merge(
            request::parse_body(*kind, body.as_bytes()).expect("body"),
            query,
        ),
        None => query,
    };
    let op = pve::inspect(&r.method, &segments, &params).expect("inspect");
    policy.decide(&op, r.identity)
}

fn operation(r: &Req) -> Operation {
    let (target, query) = request::parse_target(&r.target).unwrap();
    let Target::Api { segments, .. } = target else {
        unreachable!()
    };
    let query = request::parse_urlencoded(query.unwrap_or("").as_bytes()).unwrap();
    let params = match &r.body {
        Some((kind, body)) => {
            Params::merge(request::parse_body(*kind, body.as_bytes()).unwrap(), query)
        }
        None => query,
    };
    pve::inspect(&r.method, &segments, &params).unwrap()
}

fn benches(c: &mut Criterion) {
    let policy = big_policy();
    let reqs = requests();
    // The decisions the benchmark measures are the expected ones.
    let expect = [
        ("status_poll_get", true),
        ("config_put_disk", true),
        ("config_put_json", true),
        ("clone_newid", true),
        ("stopall_vms_list", false),
        ("volume_delete", true),
        ("unknown_endpoint", true),
        ("range_guest_stop", false),
    ];
    for (r, (name, allowed)) in reqs.iter().zip(expect) {
        assert_eq!(r.name, name);
        let d = decision_path(&policy, r);
        assert_eq!(matches!(d, Decision::Allow(_)), allowed, "{name}: {d:?}");
    }

    let mut g = c.benchmark_group("decision_path");
    for r in &reqs {
        g.bench_function(r.name, |b| {
            b.iter(|| decision_path(black_box(&policy), black_box(r)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decide");
    for r in &reqs {
        let op = operation(r);
        g.bench_function(r.name, |b| {
            b.iter(|| black_box(&policy).decide(black_box(&op), black_box(r.identity)))
        });
    }
    g.finish();
}

criterion_group! {
    name = decide;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(decide);
