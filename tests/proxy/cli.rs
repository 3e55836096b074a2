//! The real `pvegate` binary: `check` (decision, explanation, exit codes), `validate`
//! (file:line errors), `demo --tour-only`, and `serve` against the simulated Proxmox with a
//! pinned TLS upstream, including policy reload on SIGHUP and on file change.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A config dir with the homelab policy and an upstream that need not exist (for check).
fn offline_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "homelab.toml", HOMELAB);
    let cfg = write(
        dir.path(),
        "pvegate.toml",
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[policy]\nfiles = [\"homelab.toml\"]\n",
    );
    (dir, cfg)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_explains_and_exits_by_decision() {
    let (_dir, cfg) = offline_config();
    let cfg = cfg.to_str().unwrap();
    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "POST",
        "/api2/json/nodes/pve/qemu/104/status/stop",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("decision: deny"), "{out}");
    assert!(out.contains("rule:     guest 104 ("), "{out}");
    assert!(
        out.contains("endpoint: POST /nodes/{node}/qemu/{vmid}/status/stop"),
        "{out}"
    );
    assert!(out.contains("action:   power.stop"), "{out}");
    assert!(out.contains("guests:   104"), "{out}");
    assert!(out.contains("VM 104 'doc1' is readonly"), "{out}");

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "GET",
        "/api2/json/nodes/pve/qemu/104/status/current",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("decision: allow") && out.contains("action:   read"),
        "{out}"
    );

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "POST",
        "/nodes/pve/qemu/9001/clone",
        "--data",
        "newid=109",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("read as /api2/json/nodes/pve/qemu/9001/clone") && out.contains("109"),
        "{out}"
    );

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "PUT",
        "/api2/json/nodes/pve/qemu/110/config",
        "--data",
        r#"{"scsi1":"local-lvm:vm-104-disk-0"}"#,
        "--content-type",
        "application/json",
    ]);
    assert_eq!(code, 3, "a disk of 104 attached to 110 touches 104: {out}");

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "POST",
        "/api2/json/nodes/pve/qemu/110/status/start",
        "--as",
        "tofu@pve!ci",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("identity: tofu@pve!ci"), "{out}");

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "POST",
        "/api2/json/nodes/pve/qemu/110/newthing",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("unknown:") && out.contains("judged by every guest id"),
        "{out}"
    );

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "POST",
        "/api2/json/nodes/pve/qemu/104/newthing",
    ]);
    assert_eq!(
        code, 3,
        "an unknown write naming 104 is judged by it: {out}"
    );

    let (code, out, _) = run(&[
        "check",
        "--config",
        cfg,
        "POST",
        "/api2/json/nodes/pve/qemu/9001/clone",
        "--data",
        "newid=110&newid=104",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("decision: invalid (400"), "{out}");

    let (code, _, _) = run(&[
        "check",
        "--config",
        "/nonexistent.toml",
        "GET",
        "/api2/json/version",
    ]);
    assert_eq!(code, 2);
}

#[test]
fn validate_reports_file_and_line() {
    let (dir, cfg) = offline_config();
    let (code, out, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("ok:") && out.contains("2 guest rule(s)"),
        "{out}"
    );

    write(
        dir.path(),
        "homelab.toml",
        "[[guest]]\nvmid = 104\naccess = \"readonly\"\nallow = [\"power.stp\"]\n",
    );
    let (code, _, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("homelab.toml:4:") && err.contains("unknown action \"power.stp\""),
        "{err}"
    );

    write(dir.path(), "pvegate.toml", "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\nfingerprint = \"nope\"\n[policy]\nfiles = [\"homelab.toml\"]\n");
    let (code, _, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("pvegate.toml:5:") && err.contains("fingerprint"),
        "{err}"
    );
}

#[test]
fn demo_tour_runs_with_nothing_else() {
    let (code, out, err) = run(&["demo", "--tour-only", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "403 Permission check failed (pvegate: VM 104 'doc1' is readonly: power.stop refused"
        ),
        "{out}"
    );
    assert!(out.contains("upstream received 2 request(s)"), "{out}");
}

struct Served {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Waits for a log line containing `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line containing {needle:?}");
    }
}

fn serve(cfg: &Path) -> Served {
    let (child, rx) = spawn_serve(cfg, &[]);
    let mut served = Served {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
        log: rx,
    };
    let line = served.wait_log("pvegate listening");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    served.addr = v["address"].as_str().unwrap().parse().unwrap();
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_pins_the_upstream_and_reloads_the_policy() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig {
        tls: true,
        ..pvegate_sim::SimConfig::demo()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "homelab.toml", HOMELAB);
    let cfg = write(
        dir.path(),
        "pvegate.toml",
        &format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\nfingerprint = \"{}\"\n[policy]\nfiles = [\"homelab.toml\"]\n",
            sim.url,
            sim.fingerprint.clone().unwrap()
        ),
    );
    let served = serve(&cfg);

    // Allowed: reaches the pinned TLS upstream. Denied: never does. Both audited, no secrets.
    let r = raw(
        served.addr,
        &get("/api2/json/nodes/pve/qemu/104/status/current"),
    )
    .await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let allow = served.wait_log("\"decision\":\"allow\"");
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 403);
    let deny = served.wait_log("\"decision\":\"deny\"");
    assert_eq!(sim.recorder.len(), 1);
    for line in [&allow, &deny] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["identity"], "root@pam!tofu");
        assert!(v["timestamp"].is_string() && v["client"].is_string());
        assert!(
            !line.contains("11111111-2222"),
            "token secret in the audit log: {line}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&deny).unwrap();
    assert_eq!(v["endpoint"], "/nodes/{node}/qemu/{vmid}/status/stop");
    assert_eq!(v["guests"], "104");
    assert_eq!(v["action"], "power.stop");

    // A broken policy leaves the last good one in force.
    std::fs::write(&policy, "[[guest]]\nvmid = 104\naccess = \"sometimes\"\n").unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status();
    served.wait_log("policy reload failed");
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 403);

    // Releasing 104 takes effect on SIGHUP.
    std::fs::write(&policy, "[[guest]]\nvmid = 109\naccess = \"readonly\"\n").unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status();
    served.wait_log("policy reloaded");
    sim.recorder.clear();
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(sim.recorder.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_wrong_pin_with_502() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig {
        tls: true,
        ..pvegate_sim::SimConfig::demo()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "homelab.toml", HOMELAB);
    let wrong = vec!["AA"; 32].join(":");
    let cfg = write(
        dir.path(),
        "pvegate.toml",
        &format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\nfingerprint = \"{wrong}\"\n[policy]\nfiles = [\"homelab.toml\"]\n",
            sim.url
        ),
    );
    let served = serve(&cfg);
    let r = raw(served.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 502);
    assert!(r.message().contains("fingerprint"), "{}", r.message());
    assert_eq!(sim.recorder.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_verifies_the_upstream_by_ca_bundle() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig {
        tls: true,
        ..pvegate_sim::SimConfig::demo()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "homelab.toml", HOMELAB);
    write(
        dir.path(),
        "pve-root-ca.pem",
        sim.ca_pem.as_deref().unwrap(),
    );
    let trusted = write(
        dir.path(),
        "ca.toml",
        &format!("[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\nca = \"pve-root-ca.pem\"\n[policy]\nfiles = [\"homelab.toml\"]\n", sim.url),
    );
    let served = serve(&trusted);
    let r = raw(served.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    drop(served);

    // Without the CA (system roots only) the simulated node's certificate is not trusted.
    let untrusted = write(
        dir.path(),
        "roots.toml",
        &format!("[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n[policy]\nfiles = [\"homelab.toml\"]\n", sim.url),
    );
    let served = serve(&untrusted);
    sim.recorder.clear();
    let r = raw(served.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 502, "{} {}", r.status, r.reason);
    assert_eq!(sim.recorder.len(), 0);
}
