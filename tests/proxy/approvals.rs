//! Approvals and waivers through the real `pvegate` binary against the simulated Proxmox:
//! a request that needs approval is refused with an id, passes once after approval and is
//! refused again; changed parameters, self-approval, expiry, tampered and replayed grants are
//! refused; grants survive a restart and are used once across two replicas sharing the state
//! directory; two approvers over the authenticated admin listener; waivers are audited, listed
//! and expire; the webhook gets the JSON. Every refusal is checked on the client's side and on
//! the simulator's request log.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_pvegate");
const STOP_104: &str = "/api2/json/nodes/pve/qemu/104/status/stop";
const CONFIG_110: &str = "/api2/json/nodes/pve/qemu/110/config";

const POLICY: &str = r#"
[[guest]]
vmid = 104
name = "doc1"
access = "readonly"
approve = ["power.stop"]

[[guest]]
vmid = 110
access = "managed"
approve = ["config.write"]

[[guest]]
vmid = 120
access = "managed"
approve = ["config.write"]
approvers = 2

[[guest]]
vmid = 109
access = "readonly"
"#;

/// Strings bpg's provider reads as success or retry: never in a refusal.
const TRIGGERS: [&str; 4] = [
    "already running",
    "already exists",
    "does not exist",
    "got timeout",
];

struct Setup {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    audit: PathBuf,
}

fn setup(upstream: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{upstream}\"\n[policy]\nfiles = [\"policy.toml\"]\n[audit]\nfile = \"audit.log\"\n[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"tokens\"\n[approvals]\ndir = \"state\"\nkey_file = \"approvals.key\"\n{extra}"
    );
    let cfg = dir.path().join("pvegate.toml");
    std::fs::write(&cfg, text).unwrap();
    let audit = dir.path().join("audit.log");
    Setup { dir, cfg, audit }
}

struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(cfg: &Path) -> Served {
    let (child, rx) = spawn_serve(cfg, &[]);
    let mut admin = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if line.contains("admin listener") {
            admin = v["address"].as_str().map(|a| a.parse().unwrap());
        }
        if line.contains("pvegate listening") {
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return Served {
                child,
                addr: v["address"].as_str().unwrap().parse().unwrap(),
                admin: admin.expect("admin listener line"),
            };
        }
    }
    panic!("pvegate serve did not start");
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pvegate approve|reject ID --config cfg ARGS…`.
fn decide(s: &Setup, verb: &str, id: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![verb, id, "--config", s.cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

/// Waits for an audit line containing every needle; returns it parsed.
fn audit_line(file: &Path, needles: &[&str]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return serde_json::from_str(l).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no audit line with {needles:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The approval id in a refusal, checked for its shape.
fn approval_id(r: &RawResponse) -> String {
    assert_eq!(r.status, 403, "{} {}", r.status, r.reason);
    let m = r.reason.clone();
    assert!(m.starts_with("Permission check failed (pvegate: "), "{m}");
    for t in TRIGGERS {
        assert!(!m.contains(t), "{m}");
    }
    let id = m
        .split("approval id ")
        .nth(1)
        .and_then(|s| s.get(..15))
        .unwrap_or_else(|| panic!("no approval id in {m}"))
        .to_string();
    assert!(m.contains(&format!("pvegate approve {id}")), "{m}");
    assert_eq!(r.json()["message"].as_str().unwrap(), format!("{m}\n"));
    id
}

/// Requests Proxmox received, but for the admin listener's health probes.
fn forwarded(sim: &pvegate_sim::SimHandle) -> usize {
    sim.recorder
        .requests()
        .iter()
        .filter(|r| r.path() != "/api2/json/version")
        .count()
}

/// The last forwarded request's path.
fn last_path(sim: &pvegate_sim::SimHandle) -> String {
    sim.recorder
        .requests()
        .iter()
        .rev()
        .find(|r| r.path() != "/api2/json/version")
        .map(|r| r.path().to_string())
        .unwrap_or_default()
}

async fn sim() -> pvegate_sim::SimHandle {
    pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_request_passes_once_and_only_unchanged() {
    let sim = sim().await;
    let s = setup(&sim.url, "");
    let cfg = s.cfg.to_str().unwrap();
    // `check` says so offline.
    let (code, out, _) = run(&["check", "--config", cfg, "POST", STOP_104]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("approval: needed from 1 approver"), "{out}");

    let served = serve(&s.cfg);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    let id = approval_id(&r);
    assert!(
        r.reason.contains("power.stop on VM 104 needs approval"),
        "{}",
        r.reason
    );
    assert_eq!(
        forwarded(&sim),
        0,
        "a request waiting for approval reached Proxmox"
    );
    let line = audit_line(&s.audit, &["\"decision\":\"deny\"", &id]);
    assert_eq!(line["approval"], id.as_str());
    assert_eq!(line["identity"], "root@pam!tofu");
    audit_line(
        &s.audit,
        &["\"message\":\"approval\"", "\"event\":\"requested\"", &id],
    );
    // Asking again waits under the same id.
    let again = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(approval_id(&again), id);
    assert!(again.reason.contains("still waiting"));
    // The web UI's shape: HTTP 200, success 0, status 403.
    let ext = raw(
        served.addr,
        &form("POST", "/api2/extjs/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_eq!(ext.status, 200);
    let v = ext.json();
    assert_eq!(
        (v["success"].as_i64(), v["status"].as_i64()),
        (Some(0), Some(403))
    );
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("pvegate approve ap-"));

    // Listed with who, what and where.
    let (code, out, _) = run(&["approvals", "--config", cfg]);
    assert_eq!(code, 0);
    let row = out
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{out}"));
    for want in ["root@pam!tofu", "POST", STOP_104, "power.stop", "104"] {
        assert!(row.contains(want), "{row}");
    }
    // The requester cannot approve, with the token's user or the user itself.
    for me in ["root@pam!tofu", "root@pam"] {
        let (code, _, err) = decide(&s, "approve", &id, &["--as", me]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("self-approval"), "{err}");
    }
    let (code, out, err) = decide(&s, "approve", &id, &["--as", "alice@pam"]);
    assert_eq!(code, 0, "{out}{err}");
    audit_line(&s.audit, &["\"event\":\"approved\"", &id, "alice@pam"]);

    // A changed parameter is another request: refused, nothing forwarded.
    let changed = raw(served.addr, &form("POST", STOP_104, "timeout=5")).await;
    assert_ne!(approval_id(&changed), id);
    assert_eq!(forwarded(&sim), 0);

    // The approved request passes, once.
    let ok = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_ne!(ok.status, 403, "{}", ok.reason);
    assert_eq!(forwarded(&sim), 1);
    assert_eq!(last_path(&sim), STOP_104);
    let line = audit_line(&s.audit, &["\"decision\":\"allow\"", &id]);
    assert_eq!(line["approval"], id.as_str());
    let next = raw(served.addr, &form("POST", STOP_104, "")).await;
    let next_id = approval_id(&next);
    assert_ne!(next_id, id);
    assert_eq!(
        forwarded(&sim),
        1,
        "a used grant let a second request through"
    );
    // A used grant cannot be approved again.
    let (code, _, err) = decide(&s, "approve", &id, &["--as", "bob@pam"]);
    assert_eq!(code, 3, "{err}");

    // Rejection: the request stays refused.
    let (code, _, err) = decide(
        &s,
        "reject",
        &next_id,
        &["--as", "bob@pam", "--reason", "not today"],
    );
    assert_eq!(code, 0, "{err}");
    audit_line(&s.audit, &["\"event\":\"rejected\"", &next_id]);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_ne!(approval_id(&r), next_id);
    assert_eq!(forwarded(&sim), 1);

    // Counted.
    let metrics = reqwest::get(format!("http://{}/metrics", served.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "pvegate_approvals_total{event=\"requested\"}",
        "pvegate_approvals_total{event=\"used\"} 1",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_survive_restart_are_used_once_across_replicas_and_resist_tampering() {
    let sim = sim().await;
    let s = setup(&sim.url, "");
    let put = || form("PUT", CONFIG_110, "memory=2048&cores=2");
    let reordered = || form("PUT", CONFIG_110, "cores=2&memory=2048");

    let first = serve(&s.cfg);
    let id = approval_id(&raw(first.addr, &put()).await);
    drop(first);
    // Approved while no pvegate runs; used by a new process.
    let (code, _, err) = decide(&s, "approve", &id, &["--as", "alice@pam"]);
    assert_eq!(code, 0, "{err}");
    let a = serve(&s.cfg);
    let b = serve(&s.cfg);
    // The same request (its body reordered) to two replicas at once: exactly one passes.
    let (qa, qb) = (reordered(), reordered());
    let (ra, rb) = tokio::join!(raw(a.addr, &qa), raw(b.addr, &qb));
    let passed = [&ra, &rb].iter().filter(|r| r.status == 200).count();
    assert_eq!(passed, 1, "{} / {}", ra.reason, rb.reason);
    assert_eq!(forwarded(&sim), 1);
    let refused = if ra.status == 200 { &rb } else { &ra };
    let replay_id = approval_id(refused);
    assert_ne!(replay_id, id);
    // After a restart the used grant is still used.
    drop(a);
    let c = serve(&s.cfg);
    assert_eq!(approval_id(&raw(c.addr, &put()).await), replay_id);
    assert_eq!(forwarded(&sim), 1);

    // Widened: the approved request's record edited to a longer grant and another identity.
    let (code, _, err) = decide(&s, "approve", &replay_id, &["--as", "alice@pam"]);
    assert_eq!(code, 0, "{err}");
    let file = s.dir.path().join(format!("state/{replay_id}.request.json"));
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text
        .replace("\"grant_secs\": 900", "\"grant_secs\": 9000000")
        .replace("root@pam!tofu", "root@pam!other");
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    let r = raw(c.addr, &put()).await;
    let forged_id = approval_id(&r);
    assert_ne!(forged_id, replay_id);
    assert_eq!(forwarded(&sim), 1, "a tampered grant let a request through");

    // A forged approval file (signed with another key) does not count.
    let forged = format!(
        "{{\"payload\":{{\"kind\":\"approve\",\"id\":\"{forged_id}\",\"digest\":\"x\",\"by\":\"mallory@pam\",\"at\":1,\"reason\":null}},\"sig\":\"{}\"}}",
        "00".repeat(32)
    );
    std::fs::write(
        s.dir
            .path()
            .join(format!("state/{forged_id}.approved.0000000000000000.json")),
        forged,
    )
    .unwrap();
    assert_eq!(approval_id(&raw(c.addr, &put()).await), forged_id);
    assert_eq!(forwarded(&sim), 1);
    let (code, out, _) = run(&["approvals", "--config", s.cfg.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == forged_id.as_str())
        .unwrap();
    assert_eq!(item["status"], "pending");
    assert_eq!(item["approved_by"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_expire_and_stay_refused() {
    let sim = sim().await;
    let s = setup(&sim.url, "pending_ttl = \"1s\"\n");
    let served = serve(&s.cfg);
    let id = approval_id(&raw(served.addr, &form("POST", STOP_104, "")).await);
    // The sweeper reports the expiry once.
    let line = audit_line(&s.audit, &["\"event\":\"expired\"", &id]);
    assert_eq!(line["action"], "power.stop");
    let (code, _, err) = decide(&s, "approve", &id, &["--as", "alice@pam"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("expired"), "{err}");
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_ne!(approval_id(&r), id);
    assert_eq!(forwarded(&sim), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_over_the_authenticated_admin_listener() {
    let sim = sim().await;
    let s = setup(&sim.url, "");
    let tokens = "# approvers\nalice@pam aaaaaaaaaaaaaaaaaaaaaaaa\nbob@pve bbbbbbbbbbbbbbbbbbbbbbbb\nroot@pam rrrrrrrrrrrrrrrrrrrrrrrr\n";
    std::fs::write(s.dir.path().join("tokens"), tokens).unwrap();
    for (who, t) in [("alice", "a"), ("bob", "b"), ("root", "r")] {
        std::fs::write(s.dir.path().join(who), t.repeat(24)).unwrap();
    }
    let served = serve(&s.cfg);
    let put = || form("PUT", "/api2/json/nodes/pve/lxc/120/config", "memory=1024");
    let r = raw(served.addr, &put()).await;
    let id = approval_id(&r);
    assert!(r.reason.contains("2 distinct approvers"), "{}", r.reason);

    let http = reqwest::Client::new();
    let base = format!("http://{}", served.admin);
    // No token, a wrong token: nothing.
    let res = http.get(format!("{base}/approvals")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .post(format!("{base}/approvals/{id}/approve"))
        .bearer_auth("x".repeat(24))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(format!("{base}/approvals"))
        .bearer_auth("a".repeat(24))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["data"][0]["id"], id.as_str());
    assert_eq!(v["data"][0]["approvers"], 2);

    let remote = |who: &str, verb: &str, id: &str| {
        let f = s.dir.path().join(who);
        decide(
            &s,
            verb,
            id,
            &["--token-file", f.to_str().unwrap(), "--url", &base],
        )
    };
    // The requester's own token cannot approve.
    let (code, _, err) = remote("root", "approve", &id);
    assert_eq!(code, 3, "{err}");
    let (code, out, err) = remote("alice", "approve", &id);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending"), "{out}");
    // One approval of two: still refused.
    let r = raw(served.addr, &put()).await;
    assert_eq!(approval_id(&r), id);
    assert!(r.reason.contains("still waiting"));
    // alice twice does not make two.
    let (code, _, _) = remote("alice", "approve", &id);
    assert_eq!(code, 3);
    let (code, out, err) = remote("bob", "approve", &id);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("approved"), "{out}");
    assert_eq!(forwarded(&sim), 0);
    let ok = raw(served.addr, &put()).await;
    assert_eq!(ok.status, 200, "{}", ok.reason);
    assert_eq!(forwarded(&sim), 1);
    let line = audit_line(&s.audit, &["\"event\":\"approved\"", "bob@pve", &id]);
    assert_eq!(line["status"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waivers_are_audited_listed_revocable_and_expire() {
    let sim = sim().await;
    let s = setup(&sim.url, "");
    let cfg = s.cfg.to_str().unwrap();
    let served = serve(&s.cfg);
    let stop_109 = "/api2/json/nodes/pve/qemu/109/status/stop";
    assert_eq!(
        raw(served.addr, &form("POST", stop_109, "")).await.status,
        403
    );
    let (code, out, err) = run(&[
        "waive",
        "--config",
        cfg,
        "--guest",
        "109",
        "--actions",
        "power.*",
        "--for",
        "3s",
        "--reason",
        "kernel update",
        "--as",
        "alice@pam",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.split(':').next().unwrap().trim().to_string();
    assert!(id.starts_with("wv-"), "{out}");
    audit_line(
        &s.audit,
        &["\"message\":\"waiver\"", "\"event\":\"created\"", &id],
    );
    let (code, shown, _) = run(&["policy", "show", "--config", cfg]);
    assert_eq!(code, 0);
    assert!(
        shown.contains(&id) && shown.contains("kernel update"),
        "{shown}"
    );

    let ok = raw(served.addr, &form("POST", stop_109, "")).await;
    assert_eq!(ok.status, 200, "{}", ok.reason);
    assert_eq!(forwarded(&sim), 1);
    let line = audit_line(
        &s.audit,
        &["\"decision\":\"allow\"", &format!("\"waiver\":\"{id}\"")],
    );
    assert!(line["exemption"]
        .as_str()
        .unwrap()
        .contains("kernel update"));
    // Outside its scope: another action, another guest.
    let cfg_109 = "/api2/json/nodes/pve/qemu/109/config";
    assert_eq!(
        raw(served.addr, &form("PUT", cfg_109, "memory=1"))
            .await
            .status,
        403
    );
    assert_eq!(forwarded(&sim), 1);
    // It expires by itself: reported once, then refused.
    audit_line(&s.audit, &["\"event\":\"expired\"", &id]);
    let r = raw(served.addr, &form("POST", stop_109, "")).await;
    assert_eq!(r.status, 403);
    assert_eq!(forwarded(&sim), 1);

    // Revoked: refused at once.
    let (_, out, _) = run(&[
        "waive",
        "--config",
        cfg,
        "--identity",
        "root@pam!*",
        "--actions",
        "power.stop",
        "--for",
        "1h",
        "--reason",
        "test",
        "--as",
        "alice@pam",
    ]);
    let id2 = out.split(':').next().unwrap().trim().to_string();
    assert_eq!(
        raw(served.addr, &form("POST", stop_109, "")).await.status,
        200
    );
    let (code, _, err) = run(&[
        "waive",
        "--config",
        cfg,
        "--revoke",
        &id2,
        "--as",
        "alice@pam",
    ]);
    assert_eq!(code, 0, "{err}");
    audit_line(&s.audit, &["\"event\":\"revoked\"", &id2]);
    let r = raw(served.addr, &form("POST", stop_109, "")).await;
    assert_eq!(r.status, 403, "a revoked waiver still applied");
    assert_eq!(forwarded(&sim), 2);
    let metrics = reqwest::get(format!("http://{}/metrics", served.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pvegate_waivers_total{event=\"used\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_the_pending_request_without_secrets() {
    let sim = sim().await;
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut c, _) = hook.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head and the Content-Length body.
            loop {
                let n = c.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = c
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            let _ = tx.send(String::from_utf8_lossy(&buf).to_string()).await;
        }
    });
    let s = setup(
        &sim.url,
        &format!(
            "webhook = \"http://{hook_addr}/pvegate?token=hooksecret\"\nwebhook_timeout_secs = 2\n"
        ),
    );
    let served = serve(&s.cfg);
    let id = approval_id(&raw(served.addr, &form("POST", STOP_104, "")).await);
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("webhook in time")
        .unwrap();
    assert!(
        got.starts_with("POST /pvegate?token=hooksecret HTTP/1.1"),
        "{got}"
    );
    let body: serde_json::Value =
        serde_json::from_str(got.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["identity"], "root@pam!tofu");
    assert_eq!(body["action"], "power.stop");
    assert_eq!(body["guests"], "104");
    assert_eq!(body["path"], STOP_104);
    assert!(body["expires"].as_str().unwrap().ends_with('Z'));
    assert!(body["approve"]
        .as_str()
        .unwrap()
        .starts_with(&format!("pvegate approve {id}")));
    // No credential of the client, no signature, no key.
    let raw_body = got.split_once("\r\n\r\n").unwrap().1;
    assert!(!raw_body.contains("11111111-2222"), "{raw_body}");
    assert!(!raw_body.contains("sig"), "{raw_body}");
    assert_eq!(forwarded(&sim), 0);
    // A webhook that is down never holds up a request.
    drop(served);
    let s2 = setup(
        &sim.url,
        "webhook = \"http://127.0.0.1:9/down\"\nwebhook_timeout_secs = 1\n",
    );
    let served = serve(&s2.cfg);
    let started = Instant::now();
    approval_id(&raw(served.addr, &form("POST", STOP_104, "")).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    // …and its failure is counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = reqwest::get(format!("http://{}/metrics", served.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("pvegate_approvals_total{event=\"webhook_failed\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook failure not counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn bad_settings_and_ids_are_refused_clearly() {
    let s = setup(
        "http://127.0.0.1:9",
        "grant_ttl = \"soon\"\nwebhook = \"ftp://x/y\"\n",
    );
    let cfg = s.cfg.to_str().unwrap();
    let (code, _, err) = run(&["validate", "--config", cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pvegate.toml:15: approvals.grant_ttl \"soon\""),
        "{err}"
    );
    assert!(
        err.contains("pvegate.toml:16: approvals.webhook \"ftp://x/y\""),
        "{err}"
    );

    let s = setup("http://127.0.0.1:9", "");
    let cfg = s.cfg.to_str().unwrap();
    std::fs::write(
        s.dir.path().join("policy.toml"),
        "[[guest]]\nvmid = 104\naccess = \"managed\"\napprove = [\"read\"]\napprovers = 9\n",
    )
    .unwrap();
    let (code, _, err) = run(&["validate", "--config", cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("policy.toml:4: approve = [\"read\"]"), "{err}");
    assert!(err.contains("policy.toml:5: approvers = 9"), "{err}");
    std::fs::write(s.dir.path().join("policy.toml"), POLICY).unwrap();
    let (code, out, _) = run(&["policy", "show", "--config", cfg]);
    assert_eq!(code, 0);
    assert!(
        out.contains("approve  power.stop (need 1 approver(s)"),
        "{out}"
    );
    assert!(
        out.contains("approve  config.write (need 2 approver(s)"),
        "{out}"
    );

    // Nothing asked for yet: nothing listed.
    let (code, out, _) = run(&["approvals", "--config", cfg]);
    assert_eq!((code, out.trim()), (0, "no requests wait for approval"));
    // Waivers need what they cover, for how long and why.
    let (code, _, err) = run(&["waive", "--config", cfg, "--guest", "104", "--as", "a@pam"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&[
        "waive",
        "--config",
        cfg,
        "--actions",
        "power.*",
        "--for",
        "1h",
        "--reason",
        "x",
        "--as",
        "a@pam",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--guest"), "{err}");
    // The state exists now (waive created it); ids are checked before use.
    for (id, needle) in [
        ("../../etc/passwd", "not an approval id"),
        ("ap-0123456789ab", "no approval request"),
    ] {
        let (code, _, err) = decide(&s, "approve", id, &["--as", "alice@pam"]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains(needle), "{err}");
    }
    let (code, _, err) = run(&[
        "waive", "--config", cfg, "--revoke", "wv-nope", "--as", "a@pam",
    ]);
    assert_eq!(code, 3, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_approval_state_such_requests_are_refused() {
    // The in-process stack without approvals (as `stack::build` assembles it): fail closed.
    let g = start_with(Opts {
        policy: POLICY.to_string(),
        ..Opts::default()
    })
    .await;
    let r = raw(g.addr, &form("POST", STOP_104, "")).await;
    assert_denied_json(
        &g,
        &r,
        "power.stop needs approval, but pvegate cannot record",
    );
    for t in TRIGGERS {
        assert!(!r.reason.contains(t), "{}", r.reason);
    }
    // What needs no approval is unaffected.
    let ok = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/start", ""),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_forwards_and_a_waiver_lifts_the_approval() {
    let sim = sim().await;
    let s = setup(&sim.url, "");
    let text = std::fs::read_to_string(&s.cfg).unwrap().replace(
        "files = [\"policy.toml\"]",
        "files = [\"policy.toml\"]\nmode = \"shadow\"",
    );
    std::fs::write(&s.cfg, text).unwrap();
    let served = serve(&s.cfg);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_ne!(r.status, 403, "{}", r.reason);
    assert_eq!(forwarded(&sim), 1);
    let line = audit_line(&s.audit, &["\"decision\":\"would-deny\"", STOP_104]);
    assert!(
        line["reason"].as_str().unwrap().contains("needs approval"),
        "{line}"
    );
    drop(served);

    // Enforcing again: a waiver covers the approval as well.
    let s = setup(&sim.url, "");
    let cfg = s.cfg.to_str().unwrap();
    let served = serve(&s.cfg);
    approval_id(&raw(served.addr, &form("POST", STOP_104, "")).await);
    let (code, out, err) = run(&[
        "waive",
        "--config",
        cfg,
        "--guest",
        "104",
        "--actions",
        "power.stop",
        "--for",
        "10m",
        "--reason",
        "maintenance window",
        "--as",
        "alice@pam",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.split(':').next().unwrap().trim().to_string();
    let ok = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_ne!(ok.status, 403, "{}", ok.reason);
    assert_eq!(forwarded(&sim), 2);
    audit_line(
        &s.audit,
        &["\"decision\":\"allow\"", &format!("\"waiver\":\"{id}\"")],
    );
}
