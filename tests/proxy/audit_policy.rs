//! The real `pvegate` binary in production conditions: empty and half-written policies are
//! refused (validate, serve, file-watch reload), a reload that removes protection is warned
//! about, `validate` lists every error and foot-gun, shadow mode (whole policy and per rule)
//! forwards and audits `would-deny`, the audit cannot be silenced by log levels, goes to its
//! own file (reopened on SIGHUP) with the upstream status and duration, and a stalled stderr
//! reader never stops request handling.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const STOP_104: &str = "/api2/json/nodes/pve/qemu/104/status/stop";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A config for `policy.toml` in `dir`, upstream `url`, plus `extra` TOML.
fn config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{url}\"\n[policy]\nfiles = [\"policy.toml\"]\n{extra}"
    );
    write(dir, "pvegate.toml", &text)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    /// Waits for a log line containing every one of `needles`.
    fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if needles.iter().all(|n| line.contains(n)) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line containing {needles:?}");
    }

    /// The audit line of the next request to `path` with this decision, parsed.
    fn audit(&self, path: &str, decision: &str) -> serde_json::Value {
        let line = self.wait_log(&[
            "\"target\":\"pvegate::audit\"",
            &format!("\"path\":\"{path}\""),
            &format!("\"decision\":\"{decision}\""),
        ]);
        serde_json::from_str(&line).unwrap()
    }

    fn hup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }
}

fn serve_with(cfg: &Path, env: &[(&str, &str)]) -> Served {
    let (child, rx) = spawn_serve(cfg, env);
    let mut served = Served {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
        log: rx,
    };
    let line = served.wait_log(&["pvegate listening"]);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    served.addr = v["address"].as_str().unwrap().parse().unwrap();
    served
}

fn serve(cfg: &Path) -> Served {
    serve_with(cfg, &[])
}

async fn sim() -> pvegate_sim::SimHandle {
    pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap()
}

#[test]
fn validate_and_serve_refuse_an_empty_policy_unless_declared() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "http://127.0.0.1:9", "");
    let cfg_s = cfg.to_str().unwrap();
    for empty in [
        "",
        "# all commented out\n",
        "[settings]\nexempt = [\"root@pam\"]\n",
    ] {
        write(dir.path(), "policy.toml", empty);
        let (code, out, err) = run(&["validate", "--config", cfg_s]);
        assert_eq!(code, 2, "{empty:?}: {out} {err}");
        assert!(
            err.contains("policy.toml:1: ") && err.contains("refuses nothing"),
            "{err}"
        );
        let (code, _, err) = run(&["serve", "--config", cfg_s]);
        assert_ne!(code, 0, "serve must not start on an empty policy");
        assert!(err.contains("refuses nothing"), "{err}");
    }
    write(
        dir.path(),
        "policy.toml",
        "[settings]\nallow_empty = true\n",
    );
    let (code, out, err) = run(&["validate", "--config", cfg_s]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        err.contains("warning: ") && err.contains("refuses nothing"),
        "{err}"
    );
}

#[test]
fn validate_lists_every_error_and_the_foot_guns() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "[[guest]]\nvmid = 99\naccess = \"readonly\"\n\n[[guest]]\nvmid = 104\naccess = \"sometimes\"\n\n[[guest]]\nvmid = 105\naccess = \"readonly\"\nallow = [\"power.stp\"]\n";
    write(dir.path(), "policy.toml", policy);
    let cfg = config(dir.path(), "http://127.0.0.1:9", "");
    let (code, _, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 3, "{err}");
    for at in ["policy.toml:2:", "policy.toml:7:", "policy.toml:12:"] {
        assert!(errors.iter().any(|e| e.contains(at)), "{at} missing: {err}");
    }

    let policy = "[settings]\ndeny_actions = [\"read\"]\nexempt = [\"*@pam\"]\n\n[[guest]]\nvmid = 110\naccess = \"managed\"\ndeny = [\"read\", \"destroy\"]\n";
    write(dir.path(), "policy.toml", policy);
    let cfg = config(dir.path(), "https://127.0.0.1:9", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[policy]", "insecure = true\n[policy]");
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "warnings alone keep it usable: {out} {err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    for (at, needle) in [
        ("policy.toml:2:", "every read is refused"),
        ("policy.toml:3:", "can never match"),
        ("policy.toml:8:", "never refuses reads"),
        ("pvegate.toml:5:", "insecure"),
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(at) && w.contains(needle)),
            "{at} {needle}: {err}"
        );
    }
    assert!(out.contains("4 warning(s)"), "{out}");

    // System roots for an https upstream: said, not refused.
    write(dir.path(), "policy.toml", HOMELAB);
    let cfg = config(dir.path(), "https://127.0.0.1:9", "");
    let (code, _, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("pvegate.toml:4:") && err.contains("system root"),
        "{err}"
    );

    // A log level typo is an error at its line (it used to silence the audit).
    let cfg = config(
        dir.path(),
        "http://127.0.0.1:9",
        "[log]\nlevel = \"verbose\"\n",
    );
    let (code, _, err) = run(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pvegate.toml:8:") && err.contains("verbose"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_policy_keeps_the_last_good_one_and_removal_is_warned() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", HOMELAB);
    let cfg = config(dir.path(), &sim.url, "");
    let served = serve(&cfg);

    // An editor truncates the file and takes its time writing it.
    std::fs::write(&policy, "").unwrap();
    let line = served.wait_log(&["policy reload failed"]);
    assert!(
        line.contains("ERROR") && line.contains("refuses nothing"),
        "{line}"
    );
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 403, "{} {}", r.status, r.reason);
    let v = served.audit(STOP_104, "deny");
    assert_eq!(v["generation"], 1);
    assert!(sim.recorder.is_empty(), "a refused request reached Proxmox");

    // Half a file: a parse error, same outcome.
    std::fs::write(&policy, "[[guest]]\nvmid = 104\naccess = \"read").unwrap();
    served.wait_log(&["policy reload failed"]);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 403);
    assert!(sim.recorder.is_empty());

    // The full new file: 104 released, 109 kept. The release is warned about by name.
    std::fs::write(&policy, "[[guest]]\nvmid = 109\naccess = \"readonly\"\n").unwrap();
    let warn = served.wait_log(&["removes protection"]);
    assert!(warn.contains("WARN") && warn.contains("VM 104"), "{warn}");
    assert!(!warn.contains("VM 109"), "{warn}");
    served.wait_log(&["policy reloaded", "\"generation\":2"]);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(served.audit(STOP_104, "allow")["generation"], 2);
    assert_eq!(sim.recorder.len(), 1);
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/109/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(sim.recorder.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_forwards_what_it_would_refuse_and_says_so() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.toml", HOMELAB);
    let cfg = config(dir.path(), &sim.url, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[policy]", "[policy]\nmode = \"shadow\"");
    std::fs::write(&cfg, text).unwrap();

    let (code, out, _) = run(&["check", "--config", cfg.to_str().unwrap(), "POST", STOP_104]);
    assert_eq!(code, 0, "a would-deny is forwarded: {out}");
    assert!(out.contains("decision: would-deny (shadow"), "{out}");
    assert!(out.contains("VM 104 'doc1' is readonly"), "{out}");

    let served = serve(&cfg);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert!(sim.recorder.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(sim.recorder.last().unwrap().path(), STOP_104);
    let v = served.audit(STOP_104, "would-deny");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("VM 104 'doc1' is readonly"),
        "{v}"
    );
    assert!(
        v["rule"].as_str().unwrap().starts_with("guest 104 ("),
        "{v}"
    );
    assert_eq!(v["upstream_status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_only_logs_and_the_others_still_refuse() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy.toml",
        "[[guest]]\nvmid = 104\naccess = \"readonly\"\nmode = \"shadow\"\n\n[[guest]]\nvmid = 109\naccess = \"readonly\"\n",
    );
    let cfg = config(dir.path(), &sim.url, "");
    let (code, out, _) = run(&["check", "--config", cfg.to_str().unwrap(), "POST", STOP_104]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would-deny"), "{out}");

    let served = serve(&cfg);
    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(served.audit(STOP_104, "would-deny")["generation"], 1);
    assert_eq!(sim.recorder.len(), 1);

    let stop_109 = "/api2/json/nodes/pve/qemu/109/status/stop";
    let r = raw(served.addr, &form("POST", stop_109, "")).await;
    assert_eq!(r.status, 403);
    served.audit(stop_109, "deny");
    // A bulk stop naming both: the enforced rule wins over the shadow one.
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/stopall", "vms=104,109"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(sim.recorder.len(), 1, "refused requests reached Proxmox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_ignores_log_levels_and_records_the_outcome() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.toml", HOMELAB);
    let cfg = config(dir.path(), &sim.url, "[log]\nlevel = \"warn\"\n");
    // At warn level the INFO "listening" line is filtered out too: the port comes from a probe
    // listener instead.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:0", &addr.to_string());
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let served = Served {
        child,
        addr,
        log: rx,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "pvegate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 403);
    let v = served.audit(STOP_104, "deny");
    assert_eq!(v["status"], 403);
    assert!(v["upstream_status"].is_null(), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("is readonly"), "{v}");
    assert_eq!(v["identity"], "root@pam!tofu");

    // Allowed, and Proxmox refuses it with a 500: the audit says so, with the duration.
    let bad_node = "/api2/json/nodes/nope/qemu/110/status/stop";
    let r = raw(served.addr, &form("POST", bad_node, "")).await;
    assert_eq!(r.status, 500, "{} {}", r.status, r.reason);
    let v = served.audit(bad_node, "allow");
    assert_eq!(v["status"], 500);
    assert_eq!(v["upstream_status"], 500);
    assert!(v["duration_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["action"], "power.stop");

    // Never the query, never the credential.
    let r = raw(
        served.addr,
        &get("/api2/json/nodes/pve/qemu/110/vncwebsocket?port=5900&vncticket=SECRETTICKET"),
    )
    .await;
    assert!(r.status >= 400, "{} {}", r.status, r.reason);
    let line = served.wait_log(&["\"target\":\"pvegate::audit\"", "vncwebsocket"]);
    assert!(
        !line.contains("SECRETTICKET") && !line.contains("11111111-2222"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_carry_no_colour_codes_into_a_pipe() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.toml", HOMELAB);
    let cfg = config(dir.path(), &sim.url, "[log]\nformat = \"text\"\n");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("pvegate listening"))
        .unwrap();
    let addr: std::net::SocketAddr = listening
        .split("address=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let r = raw(addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 403);
    let audit = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("pvegate::audit"))
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        audit.contains("decision=deny") && audit.contains("status=403"),
        "{audit}"
    );
    for l in [&listening, &audit] {
        assert!(!l.contains('\u{1b}'), "colour codes in a pipe: {l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_file_is_reopened_on_sighup() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.toml", HOMELAB);
    let cfg = config(dir.path(), &sim.url, "[audit]\nfile = \"audit.log\"\n");
    let served = serve(&cfg);
    let log = dir.path().join("audit.log");
    let wait_file = |p: &Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle} not in {}: {text}",
                p.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let r = raw(served.addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 403);
    let first = wait_file(&log, "\"decision\":\"deny\"");
    assert_eq!(first.lines().count(), 1, "{first}");

    // logrotate: rename, then SIGHUP.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    served.hup();
    served.wait_log(&["policy reloaded"]);
    let r = raw(
        served.addr,
        &get("/api2/json/nodes/pve/qemu/104/status/current"),
    )
    .await;
    assert_eq!(r.status, 200);
    let second = wait_file(&log, "\"decision\":\"allow\"");
    assert!(!second.contains("\"decision\":\"deny\""), "{second}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("\"decision\":\"allow\""), "{old}");
    // Audit lines go to the file only; diagnostics stay on stderr.
    while let Ok(line) = served.log.try_recv() {
        assert!(!line.contains("pvegate::audit"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_stderr_reader_never_stops_the_proxy() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.toml", HOMELAB);
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let cfg = config(dir.path(), &sim.url, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:0", &addr.to_string());
    std::fs::write(&cfg, text).unwrap();
    // stderr is a pipe nobody reads (yet).
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "pvegate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4,000 requests with 1 KB paths: about 5 MB of audit lines, far more than the pipe
    // (64 KiB) and the queue (2 MiB) hold.
    let client = reqwest::Client::new();
    let long = "x".repeat(1000);
    let mut answered = 0;
    for batch in 0..500 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let url = format!("http://{addr}/api2/json/cluster/{long}/{batch}/{i}");
            let c = client.clone();
            set.spawn(async move {
                c.get(url)
                    .header("Authorization", TOKEN)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map(|r| r.status())
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().expect("every request is answered");
            answered += 1;
        }
    }
    assert_eq!(answered, 4000);
    // A refusal is still enforced with the log stalled.
    let r = raw(addr, &form("POST", STOP_104, "")).await;
    assert_eq!(r.status, 403);

    // The reader comes back: the log resumes and says how many lines were lost.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut report = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("log lines were dropped") => {
                report = Some(line);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let report = report.expect("a line reports the dropped lines");
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["level"], "WARN");
    assert!(v["dropped"].as_u64().unwrap() > 0, "{report}");
}
