//! The inventory through the real binary against the simulated Proxmox: selectors
//! (`name` glob, `type`, `template`), sticky protection (rename, `protection` flag), adding
//! protection with no window, dependencies (passthrough devices, mappings, storages), stored
//! selections, failing closed on an unreadable or stale inventory (`/readyz`, metrics, no
//! secret anywhere), `validate` and `check`.
//!
//! pvegate's own inventory reads reach the sim too; "the upstream saw nothing" is checked on
//! the requests made with the client's credential.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pvegate_sim::{self as sim, SimConfig, SimHandle};

const INV_ID: &str = "pvegate@pve!gate";
const INV_SECRET: &str = "9f3c1e2a-inventory-secret-7d41";

struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn wait_log(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line containing {needle:?}; seen: {:#?}", self.seen);
    }

    /// Every stderr line so far (without waiting).
    fn drain_log(&mut self) -> &[String] {
        while let Ok(l) = self.log.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }
}

fn address_in(line: &str) -> SocketAddr {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["address"].as_str().unwrap().parse().unwrap()
}

async fn start_sim() -> SimHandle {
    let mut cfg = SimConfig::demo();
    cfg.tokens
        .push((INV_ID.to_string(), INV_SECRET.to_string()));
    sim::start(cfg).await.unwrap()
}

/// `pvegate serve` in front of `sim` with `policy`, `[inventory]` (token `secret`) and an
/// admin listener.
fn serve(sim: &SimHandle, policy: &str, secret: &str, inventory_extra: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    write("policy.toml", policy);
    write("token", &format!("{INV_ID}={secret}\n"));
    let cfg = write(
        "pvegate.toml",
        &format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n[policy]\nfiles = [\"policy.toml\"]\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n[inventory]\ntoken_file = \"token\"\n{inventory_extra}\n",
            sim.url
        ),
    );
    let (child, rx) = spawn_serve(&cfg, &[]);
    let mut s = Served {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        log: rx,
        seen: Vec::new(),
        dir,
    };
    s.admin = address_in(&s.wait_log("admin listener"));
    s.addr = address_in(&s.wait_log("pvegate listening"));
    s
}

/// The requests the sim received with the client's credential (not pvegate's own reads).
fn client_requests(sim: &SimHandle) -> Vec<String> {
    sim.recorder
        .requests()
        .into_iter()
        .filter(|r| {
            r.header("authorization")
                .is_some_and(|a| a.contains(sim::DEMO_TOKEN_ID))
        })
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

/// A refusal in the Proxmox shape that the sim never saw.
fn assert_denied(sim: &SimHandle, r: &RawResponse, needle: &str) {
    assert_eq!(
        r.status,
        403,
        "expected 403, got {} {}: {}",
        r.status,
        r.reason,
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.reason.starts_with("Permission check failed (pvegate: "),
        "{}",
        r.reason
    );
    assert!(r.reason.contains(needle), "{:?} lacks {needle:?}", r.reason);
    assert_eq!(
        r.json()["message"].as_str().unwrap(),
        format!("{}\n", r.reason)
    );
    assert!(
        client_requests(sim).is_empty(),
        "the sim saw a refused request: {:?}",
        client_requests(sim)
    );
}

fn assert_passed(sim: &SimHandle, r: &RawResponse, what: &str) {
    assert_eq!(
        r.status,
        200,
        "{what}: {} {}: {}",
        r.status,
        r.reason,
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        client_requests(sim).iter().any(|l| l.contains(what)),
        "{what} did not reach the sim: {:?}",
        client_requests(sim)
    );
    sim.recorder.clear();
}

/// Sets a guest config directly on the sim (not through pvegate).
async fn sim_config(sim: &SimHandle, vmid: u32, body: &str) {
    let addr: SocketAddr = sim.url.trim_start_matches("http://").parse().unwrap();
    let r = raw(
        addr,
        &form(
            "PUT",
            &format!("/api2/json/nodes/pve/qemu/{vmid}/config"),
            body,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.reason);
    sim.recorder.clear();
}

const SELECTORS: &str = r#"
[[guest]]
name = "doc*"
access = "readonly"
reason = "docs are precious"

[[guest]]
type = "lxc"
access = "managed"
deny = ["destroy"]

[[guest]]
template = true
access = "readonly"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_pick_guests_by_name_type_and_template() {
    let sim = start_sim().await;
    let s = serve(&sim, SELECTORS, INV_SECRET, "");
    sim.recorder.clear();

    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 104 (selected by name = \"doc*\") is readonly: power.stop refused (docs are precious)",
    );
    let r = raw(s.addr, &form("DELETE", "/api2/json/nodes/pve/lxc/120", "")).await;
    assert_denied(
        &sim,
        &r,
        "VM 120 (selected by type = \"lxc\"): destroy refused by policy",
    );
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/nodes/pve/qemu/9001/config", "memory=512"),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 9001 (selected by template = true) is readonly",
    );

    // What no selector refuses passes; reads always pass.
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/stop", ""),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/110/status/stop");
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/lxc/120/status/start", ""),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/lxc/120/status/start");
    let r = raw(s.addr, &get("/api2/json/nodes/pve/qemu/104/config")).await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/104/config");
}

const STICKY: &str = r#"
[[guest]]
name = "doc*"
access = "managed"
deny = ["destroy"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_protection_and_protection_added_at_once() {
    let sim = start_sim().await;
    let s = serve(&sim, STICKY, INV_SECRET, "");
    sim.recorder.clear();

    // The rule permits config changes, but not one that renames 104 out of it...
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/nodes/pve/qemu/104/config", "name=web1"),
    )
    .await;
    assert_denied(&sim, &r, "VM 104 is protected by guests name = \"doc*\"");
    assert!(
        r.reason.contains("the name that selects it"),
        "{}",
        r.reason
    );
    // ...or clears its protection flag (JSON body, `delete` list).
    let r = raw(
        s.addr,
        &json(
            "PUT",
            "/api2/json/nodes/pve/qemu/104/config",
            r#"{"delete":"protection"}"#,
        ),
    )
    .await;
    assert_denied(&sim, &r, "its protection flag");
    // Other changes pass, a rename that keeps the match too.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/nodes/pve/qemu/104/config",
            "memory=2048&name=docs2",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/104/config");
    assert_eq!(sim.guest(104).unwrap().name, "docs2");

    // Renaming 110 into the rule protects it from the very next request.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/nodes/pve/qemu/110/config",
            "name=doc-web",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/110/config");
    let r = raw(s.addr, &form("DELETE", "/api2/json/nodes/pve/qemu/110", "")).await;
    assert_denied(
        &sim,
        &r,
        "VM 110 (selected by name = \"doc*\"): destroy refused",
    );
}

const DEPENDS: &str = r#"
[settings]
host_devices = ["0000:00:*", "1234:5678"]

[[guest]]
vmid = 109
name = "igp"
access = "readonly"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_protected_guest_depends_on_is_protected() {
    let sim = start_sim().await;
    sim_config(
        &sim,
        109,
        "hostpci0=0000:00:02.0,pcie%3D1&hostpci1=mapping%3Dnic&usb0=host%3D1234:5678&scsi0=tank:vm-109-disk-0,size%3D8G",
    )
    .await;
    let s = serve(&sim, DEPENDS, INV_SECRET, "");
    sim.recorder.clear();

    for (body, what) in [
        ("hostpci0=0000:00:02.0", "raw PCI address"),
        ("hostpci0=00:02.0,pcie%3D1", "short PCI address"),
        ("hostpci3=mapping%3Dnic", "mapping"),
        ("usb1=host%3D1234:5678", "USB device"),
    ] {
        let r = raw(
            s.addr,
            &form("PUT", "/api2/json/nodes/pve/qemu/110/config", body),
        )
        .await;
        assert!(
            r.reason
                .contains("VM 109 'igp' is readonly: config.write refused"),
            "{what}: {}",
            r.reason
        );
        assert_denied(&sim, &r, "VM 109 'igp'");
    }
    let r = raw(
        s.addr,
        &form("DELETE", "/api2/json/cluster/mapping/pci/nic", ""),
    )
    .await;
    assert_denied(&sim, &r, "VM 109 'igp' is readonly");
    assert!(
        r.reason.contains("[mapping pci/nic is used by VM 109]"),
        "{}",
        r.reason
    );
    let r = raw(s.addr, &form("DELETE", "/api2/json/storage/tank", "")).await;
    assert_denied(&sim, &r, "VM 109 'igp' is readonly");
    assert!(
        r.reason.contains("[storage tank holds disks of VM 109]"),
        "{}",
        r.reason
    );
    let r = raw(s.addr, &form("PUT", "/api2/json/storage/tank", "disable=1")).await;
    assert_denied(&sim, &r, "VM 109 'igp' is readonly");

    // Devices, mappings and storages no protected guest uses are free.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/nodes/pve/qemu/110/config",
            "hostpci0=0000:00:03.0",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/110/config");
    let r = raw(s.addr, &form("DELETE", "/api2/json/storage/local", "")).await;
    assert_passed(&sim, &r, "/storage/local");
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/storage/local-lvm", "disable=1"),
    )
    .await;
    assert_passed(&sim, &r, "/storage/local-lvm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_inventory_fails_closed_without_leaking_the_token() {
    let sim = start_sim().await;
    let wrong = "00000000-wrong-secret-4242";
    let mut s = serve(&sim, SELECTORS, wrong, "");
    s.wait_log("inventory could not be read");
    sim.recorder.clear();

    // Writes that need the inventory are refused, saying why.
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/stop", ""),
    )
    .await;
    assert_denied(&sim, &r, "the inventory has not been read yet");
    assert!(r.reason.contains("HTTP 401"), "{}", r.reason);
    // Reads pass.
    let r = raw(s.addr, &get("/api2/json/nodes/pve/qemu/110/status/current")).await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/110/status/current");

    // /readyz says not ready and why; metrics show it.
    let mut body = String::new();
    for _ in 0..100 {
        let r = raw(s.admin, "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n").await;
        body = String::from_utf8_lossy(&r.body).into_owned();
        if r.status == 503 && body.contains("inventory") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        body.contains("the inventory has not been read yet"),
        "{body}"
    );
    let m = raw(s.admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let m = String::from_utf8_lossy(&m.body).into_owned();
    assert!(m.contains("pvegate_inventory_loaded 0"), "{m}");
    assert!(m.contains("pvegate_inventory_fresh 0"), "{m}");
    assert!(
        m.contains("pvegate_inventory_refresh_failures_total"),
        "{m}"
    );

    // The secret is nowhere: not in the refusal, /readyz, metrics or any log line.
    for text in [r.reason.as_str(), body.as_str(), m.as_str()] {
        assert!(!text.contains(wrong) && !text.contains(INV_SECRET));
    }
    for line in s.drain_log() {
        assert!(!line.contains(wrong), "secret in log: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_inventory_refuses_writes_after_max_age() {
    let sim = start_sim().await;
    let mut s = serve(
        &sim,
        SELECTORS,
        INV_SECRET,
        "refresh_secs = 1\nmax_age_secs = 2\n",
    );
    s.wait_log("inventory read");
    let m = raw(s.admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let m = String::from_utf8_lossy(&m.body).into_owned();
    assert!(m.contains("pvegate_inventory_loaded 1"), "{m}");
    assert!(m.contains("pvegate_inventory_age_seconds"), "{m}");
    assert!(m.contains("pvegate_inventory_guests 5"), "{m}");
    // The periodic refreshes (each on a thread of its own) keep it fresh past max_age_secs.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let m = raw(s.admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let m = String::from_utf8_lossy(&m.body).into_owned();
    assert!(m.contains("pvegate_inventory_fresh 1"), "{m}");
    assert!(
        m.contains("pvegate_inventory_refresh_failures_total 0"),
        "{m}"
    );
    sim.shutdown();
    // Once the last good reading is older than max_age_secs, writes are refused as stale.
    let mut last = String::new();
    for _ in 0..100 {
        let r = raw(
            s.addr,
            &form("POST", "/api2/json/nodes/pve/qemu/110/status/stop", ""),
        )
        .await;
        last = r.reason.clone();
        if r.status == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.contains("the inventory is stale: last read"), "{last}");
    assert!(last.contains("max_age_secs = 2"), "{last}");
    let _ = s.dir.path();
}

fn write_files(dir: &Path, policy: &str, inventory: &str, upstream: &str) -> PathBuf {
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    std::fs::write(dir.join("token"), format!("{INV_ID}={INV_SECRET}\n")).unwrap();
    let cfg = dir.join("pvegate.toml");
    std::fs::write(
        &cfg,
        format!("[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{upstream}\"\n[policy]\nfiles = [\"policy.toml\"]\n{inventory}"),
    )
    .unwrap();
    cfg
}

#[test]
fn selectors_without_inventory_are_a_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_files(dir.path(), SELECTORS, "", "http://127.0.0.1:1");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pvegate"))
        .args(["validate", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.toml:4: this rule selects guests by name = \"doc*\" and needs the inventory: add an [inventory] section"),
        "{err}"
    );
    assert!(
        err.contains("policy.toml:8:") && err.contains("policy.toml:13:"),
        "{err}"
    );
    // With [inventory] it validates.
    let cfg = write_files(
        dir.path(),
        SELECTORS,
        "[inventory]\ntoken_file = \"token\"\n",
        "http://127.0.0.1:1",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pvegate"))
        .args(["validate", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_policy_show_say_which_rule_matched_and_through_which_selector() {
    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let policy =
        format!("{SELECTORS}\n[[guest]]\nvmid = 110\naccess = \"managed\"\ndeny = [\"destroy\"]\n");
    let cfg = write_files(
        dir.path(),
        &policy,
        "[inventory]\ntoken_file = \"token\"\n",
        &sim.url,
    );
    let run = |args: Vec<String>| {
        let bin = env!("CARGO_BIN_EXE_pvegate");
        std::thread::spawn(move || std::process::Command::new(bin).args(args).output().unwrap())
    };
    let c = cfg.to_str().unwrap().to_string();
    let out = run(vec![
        "check".into(),
        "--config".into(),
        c.clone(),
        "POST".into(),
        "/nodes/pve/qemu/104/status/stop".into(),
    ])
    .join()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("decision: deny"), "{text}");
    assert!(
        text.contains("matched:  VM 104 'doc1': guests name = \"doc*\" (")
            && text.contains("through name \"doc1\" ~ \"doc*\""),
        "{text}"
    );
    let out = run(vec![
        "check".into(),
        "--config".into(),
        c.clone(),
        "POST".into(),
        "/nodes/pve/qemu/110/status/stop".into(),
    ])
    .join()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("matched:  VM 110 'tofu-web': guest 110 (") && text.contains("through vmid"),
        "{text}"
    );

    let out = run(vec!["policy".into(), "show".into(), "--config".into(), c])
        .join()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Guests now (from the inventory):"), "{text}");
    assert!(text.contains("VM 120 'scratch-ct' (protected):"), "{text}");
    assert!(text.contains("through type lxc"), "{text}");
    assert!(
        text.contains("VM 9001 'debian-tmpl' (protected):"),
        "{text}"
    );
}

/// The demo's cluster: 104 (tag prod, pool production), 109 (tag prod, `hostpci0:
/// mapping=igpu`), 110 (tag tofu, pool lab), 120 (LXC, pool lab); backup jobs `backup-prod`
/// (104,109) and `backup-lab` (pool lab); HA rules `prod-pin` (vm:104) and `lab-apart`
/// (ct:120, vm:110); mapping `igpu` (0000:00:02.0).
const CLUSTER: &str = r#"
[settings]
host_devices = ["0000:00:*"]

[[guest]]
tags = ["prod"]
access = "readonly"

[[guest]]
pool = "lab"
access = "managed"
deny = ["destroy"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_selections_are_judged_by_the_guests_they_select() {
    let sim = start_sim().await;
    let s = serve(&sim, CLUSTER, INV_SECRET, "");
    sim.recorder.clear();

    // A backup job of lab guests only may be edited and deleted; the production one not.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/cluster/backup/backup-lab",
            "comment=weekly",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/cluster/backup/backup-lab");
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/cluster/backup/backup-prod", "comment=x"),
    )
    .await;
    assert_denied(&sim, &r, "is readonly: backup refused");
    // ...nor may a change make a job select a protected guest.
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/cluster/backup/backup-lab", "vmid=104"),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 104 (selected by tags = [\"prod\"]) is readonly",
    );
    let r = raw(
        s.addr,
        &form("DELETE", "/api2/json/cluster/backup/backup-prod", ""),
    )
    .await;
    assert_denied(&sim, &r, "is readonly");

    // vzdump by pool: the pool's members now.
    let r = raw(
        s.addr,
        &form(
            "POST",
            "/api2/json/nodes/pve/vzdump",
            "pool=production&storage=local",
        ),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 104 (selected by tags = [\"prod\"]) is readonly: backup refused",
    );
    let r = raw(
        s.addr,
        &form(
            "POST",
            "/api2/json/nodes/pve/vzdump",
            "pool=lab&storage=local",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/vzdump");

    // HA rules: by their resources now and after the change.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/cluster/ha/rules/lab-apart",
            "comment=apart",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/cluster/ha/rules/lab-apart");
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/cluster/ha/rules/lab-apart",
            "resources=vm%3A110,vm%3A104",
        ),
    )
    .await;
    assert_denied(&sim, &r, "VM 104");
    let r = raw(
        s.addr,
        &form("DELETE", "/api2/json/cluster/ha/rules/prod-pin", ""),
    )
    .await;
    assert_denied(&sim, &r, "VM 104");
}

/// A pool whose members are governed by different rules: pool `lab` holds 110 (VM, the pool
/// rule only) and 120 (LXC, the pool rule and a readonly type rule). Requests that reach the
/// whole pool are judged by one member per set of rules, and still refuse for the member
/// that refuses, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_members_under_different_rules_refuses_for_the_protected_one() {
    let sim = start_sim().await;
    let policy = format!("{CLUSTER}\n[[guest]]\ntype = \"lxc\"\naccess = \"readonly\"\n");
    let s = serve(&sim, &policy, INV_SECRET, "");
    sim.recorder.clear();
    let lxc = "VM 120 (selected by type = \"lxc\") is readonly: backup refused";
    let r = raw(
        s.addr,
        &form(
            "POST",
            "/api2/json/nodes/pve/vzdump",
            "pool=lab&storage=local",
        ),
    )
    .await;
    assert_denied(&sim, &r, lxc);
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/cluster/backup/backup-lab",
            "comment=weekly",
        ),
    )
    .await;
    assert_denied(&sim, &r, lxc);
    // 110 alone (the pool rule permits backups) passes.
    let r = raw(
        s.addr,
        &form(
            "POST",
            "/api2/json/nodes/pve/vzdump",
            "vmid=110&storage=local",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/vzdump");
    // A job moved from the pool to 110 still selects 120 now: refused.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/cluster/backup/backup-lab",
            "vmid=110&delete=pool",
        ),
    )
    .await;
    assert_denied(&sim, &r, lxc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_pools_and_mappings_of_the_simulated_cluster() {
    let sim = start_sim().await;
    let policy = format!(
        "{CLUSTER}\n[[guest]]\ntags = [\"tofu\"]\naccess = \"managed\"\ndeny = [\"destroy\"]\n"
    );
    let s = serve(&sim, &policy, INV_SECRET, "");
    sim.recorder.clear();

    // Tags and pools select.
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 104 (selected by tags = [\"prod\"]) is readonly",
    );
    let r = raw(s.addr, &form("DELETE", "/api2/json/nodes/pve/lxc/120", "")).await;
    assert_denied(
        &sim,
        &r,
        "VM 120 (selected by pool = \"lab\"): destroy refused",
    );
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/lxc/120/status/start", ""),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/lxc/120/status/start");

    // Sticky: the tag and the pool stay.
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/nodes/pve/qemu/110/config", "tags=web"),
    )
    .await;
    assert_denied(&sim, &r, "the tag that selects it");
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/pools/lab", "vms=120&delete=1"),
    )
    .await;
    assert_denied(&sim, &r, "its membership of the pool that selects it");
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/pools", "poolid=lab&vms=110&delete=1"),
    )
    .await;
    assert_denied(&sim, &r, "VM 110 is protected");
    // Keeping the tag while adding one passes.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/nodes/pve/qemu/110/config",
            "tags=tofu%3Bweb",
        ),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/110/config");

    // Adding protection: tag 120 prod, and at once it is readonly.
    let r = raw(
        s.addr,
        &form("PUT", "/api2/json/nodes/pve/lxc/120/config", "tags=prod"),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/lxc/120/config");
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/lxc/120/status/start", ""),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 120 (selected by tags = [\"prod\"]) is readonly: power.start refused",
    );

    // 109's iGPU: by raw address, by mapping, and the mapping itself.
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/nodes/pve/qemu/110/config",
            "hostpci1=0000:00:02.0",
        ),
    )
    .await;
    assert_denied(
        &sim,
        &r,
        "VM 109 (selected by tags = [\"prod\"]) is readonly: config.write refused",
    );
    assert!(
        r.reason.contains("passthrough device of VM 109"),
        "{}",
        r.reason
    );
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/nodes/pve/qemu/110/config",
            "hostpci1=mapping%3Digpu",
        ),
    )
    .await;
    assert_denied(&sim, &r, "VM 109");
    let r = raw(
        s.addr,
        &form(
            "PUT",
            "/api2/json/cluster/mapping/pci/igpu",
            "description=x",
        ),
    )
    .await;
    assert_denied(&sim, &r, "VM 109");
    let r = raw(
        s.addr,
        &form("DELETE", "/api2/json/cluster/mapping/pci/igpu", ""),
    )
    .await;
    assert_denied(&sim, &r, "[mapping pci/igpu is used by VM 109]");
    // The USB mapping no protected guest uses is free.
    let r = raw(
        s.addr,
        &form("DELETE", "/api2/json/cluster/mapping/usb/zigbee", ""),
    )
    .await;
    assert_passed(&sim, &r, "/cluster/mapping/usb/zigbee");
}

const APPROVE_BY_TAG: &str = r#"
[[guest]]
tags = ["prod"]
access = "managed"
approve = ["power.stop"]
"#;

/// `approve` on a rule that selects guests by tag: a stop of a `prod` guest waits for an
/// approval (and never reaches Proxmox before it), passes once when approved; a guest
/// without the tag needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_on_a_tag_rule_holds_the_tagged_guests_only() {
    let sim = start_sim().await;
    let approvals = "\n[approvals]\ndir = \"approvals\"\nkey_file = \"approvals.key\"\n";
    let s = serve(&sim, APPROVE_BY_TAG, INV_SECRET, approvals);
    sim.recorder.clear();

    let stop = form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", "");
    let r = raw(s.addr, &stop).await;
    assert_denied(&sim, &r, "needs approval");
    let id = r
        .reason
        .split("approval id ")
        .nth(1)
        .and_then(|t| t.split([';', ' ']).next())
        .expect("the refusal carries the approval id")
        .to_string();
    assert!(id.starts_with("ap-"), "{id}");

    // 110 carries no `prod` tag: no approval needed.
    let r = raw(
        s.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/stop", ""),
    )
    .await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/110/status/stop");

    let out = std::process::Command::new(BIN)
        .arg("approve")
        .arg(&id)
        .arg("--config")
        .arg(s.dir.path().join("pvegate.toml"))
        .args(["--as", "alice@pve"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = raw(s.addr, &stop).await;
    assert_passed(&sim, &r, "/nodes/pve/qemu/104/status/stop");
    // Once only.
    let r = raw(s.addr, &stop).await;
    assert_denied(&sim, &r, "needs approval");
}
