//! Trying pvegate before pointing real tools at it, through the real binary: `pvegate sim`
//! (its printed URL, fingerprint, token and login work, also behind `pvegate serve`),
//! `pvegate demo --policy/--config` (the user's policy decides; the tour stands apart from the
//! audit lines; the printed `check` line works from anywhere), `pvegate policy show`, shell
//! completions and man pages, `--version`, and refusals that name their rule and end with a
//! hint (through the real stack, upstream untouched).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_pvegate");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    run_in(Path::new("."), args)
}

/// A child process whose stdout and stderr lines arrive on channels; killed on drop.
struct Proc {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn spawn(args: &[&str], cwd: &Path) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    Proc { child, out, err }
}

/// Collects lines from `rx` up to and including one containing `needle`.
fn until(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(needle);
                got.push(line);
                if done {
                    return got;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line containing {needle:?}; got {got:#?}");
}

/// The value after `key` on the line that starts with it (after indentation).
fn field(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix(key)
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {key:?} line in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_prints_what_works_alone_and_behind_serve() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let sim = spawn(&["sim", "--ca-out", ca.to_str().unwrap()], dir.path());
    let banner = until(&sim.out, "Ctrl-C to stop");
    let url = field(&banner, "url ");
    let fingerprint = field(&banner, "fingerprint ");
    let token = field(&banner, "api token ");
    let login = field(&banner, "ticket login ");
    assert!(url.starts_with("https://127.0.0.1:"), "{banner:#?}");
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    assert!(token.starts_with("PVEAPIToken=root@pam!"), "{token}");
    let words: Vec<&str> = login.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{login}");
    let (user, password) = (words[1], words[3]);

    // The printed token works, a wrong one does not, over TLS verified by the written CA.
    let cert = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()
        .unwrap();
    let res = client
        .get(format!("{url}/api2/json/nodes/pve/qemu"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("doc1"));
    let res = client
        .get(format!("{url}/api2/json/nodes/pve/qemu"))
        .header("Authorization", format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The printed login gets a ticket.
    let res = client
        .post(format!("{url}/api2/json/access/ticket"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(
        v["data"]["ticket"].as_str().unwrap().starts_with("PVE:"),
        "{v}"
    );
    until(&sim.out, "received POST /api2/json/access/ticket");

    // pvegate serve pinned to the printed fingerprint reaches it, and refuses for 104.
    write(dir.path(), "homelab.toml", HOMELAB);
    let cfg = write(
        dir.path(),
        "pvegate.toml",
        &format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"{url}\"\nfingerprint = \"{fingerprint}\"\n[policy]\nfiles = [\"homelab.toml\"]\n"
        ),
    );
    let serve = spawn(&["serve", "--config", cfg.to_str().unwrap()], dir.path());
    let log = until(&serve.err, "pvegate listening");
    let v: serde_json::Value = serde_json::from_str(log.last().unwrap()).unwrap();
    let gate = v["address"].as_str().unwrap().to_string();
    let plain = reqwest::Client::new();
    let ok = plain
        .get(format!(
            "http://{gate}/api2/json/nodes/pve/qemu/104/status/current"
        ))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = plain
        .post(format!(
            "http://{gate}/api2/json/nodes/pve/qemu/104/status/stop"
        ))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    until(
        &sim.out,
        "received GET /api2/json/nodes/pve/qemu/104/status/current",
    );
    // The refused stop never reached the simulator: the next thing it receives is our marker.
    plain
        .get(format!("http://{gate}/api2/json/version"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let next = until(&sim.out, "received GET /api2/json/version");
    assert!(
        next.iter().all(|l| !l.contains("status/stop")),
        "the refused stop reached the sim: {next:#?}"
    );
}

/// `pvegate sim --cluster 3`: three nodes on their own ports, each answering for the others;
/// `stop pve2` typed on stdin takes pve2 down (the others report it offline and forward
/// nothing to it), `start pve2` brings it back on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_cluster_runs_three_nodes_and_stops_one_on_command() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("cluster-ca.pem");
    let mut child = Command::new(BIN)
        .args(["sim", "--cluster", "3", "--ca-out", ca.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let proc = Proc { child, out, err };
    let banner = until(&proc.out, "Ctrl-C to stop");
    let mut urls = Vec::new();
    for name in ["pve1", "pve2", "pve3"] {
        let line = field(&banner, &format!("node {name}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((words[0], words[2]), ("url", "fingerprint"), "{line}");
        assert!(words[1].starts_with("https://127.0.0.1:"), "{line}");
        urls.push(words[1].to_owned());
    }
    let token = field(&banner, "api token ");
    assert!(
        field(&banner, "guests ").contains("109 igp on pve2"),
        "{banner:#?}"
    );
    let cert = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()
        .unwrap();
    let get = |url: String| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let r = client
                .get(url)
                .header("Authorization", &token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    // pve1 answers for pve2's guest; every node's certificate chains to the written CA.
    for url in &urls {
        let (status, v) = get(format!(
            "{url}/api2/json/nodes/pve2/qemu/109/status/current"
        ))
        .await;
        assert_eq!(status, 200, "{url}: {v}");
    }
    until(
        &proc.out,
        "pve3 received GET /api2/json/nodes/pve2/qemu/109/status/current",
    );

    writeln!(stdin, "stop pve2").unwrap();
    until(&proc.out, "node pve2 stopped");
    let (_, status) = get(format!("{}/api2/json/cluster/status", urls[0])).await;
    let pve2 = status["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "pve2")
        .unwrap()
        .clone();
    assert_eq!(pve2["online"], 0, "{status}");
    let (code, _) = get(format!(
        "{}/api2/json/nodes/pve2/qemu/109/status/current",
        urls[0]
    ))
    .await;
    assert_eq!(code, 595);
    assert!(client
        .get(format!("{}/api2/json/version", urls[1]))
        .send()
        .await
        .is_err());

    writeln!(stdin, "start pve2").unwrap();
    until(&proc.out, "node pve2 started");
    let (code, _) = get(format!(
        "{}/api2/json/nodes/pve2/qemu/109/status/current",
        urls[1]
    ))
    .await;
    assert_eq!(code, 200);
    drop(proc);
}

#[test]
fn sim_rejects_bad_flags() {
    let (code, _, err) = run(&["sim", "--listen", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--listen"), "{err}");
    let (code, _, err) = run(&["sim", "--plain", "--ca-out", "/tmp/x.pem"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = run(&["sim", "--ca-out", "/nonexistent-dir/ca.pem"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ca-out /nonexistent-dir/ca.pem"), "{err}");
    let (code, _, err) = run(&["sim", "--cluster", "12"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--cluster 12: give a number of nodes from 1 to 9"),
        "{err}"
    );
    let (code, _, err) = run(&["sim", "--cluster", "three"]);
    assert_eq!(code, 2, "{err}");
}

const MY_POLICY: &str = r#"[settings]
hint = "ask @ops in #infra"

[[guest]]
vmid = 500
name = "vault"
access = "readonly"

[[guest]]
vmids = "600-699"
name = "lab"
access = "readonly"
hint = "lab guests change only through the lab pipeline"
"#;

#[test]
fn demo_runs_the_users_policy() {
    let dir = tempfile::tempdir().unwrap();
    let pol = write(dir.path(), "mine.toml", MY_POLICY);
    let (code, out, err) = run(&[
        "demo",
        "--tour-only",
        "--listen",
        "127.0.0.1:0",
        "--policy",
        pol.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "policy             {}",
            pol.canonicalize().unwrap().display()
        )),
        "{out}"
    );
    // The user's guests are refused with their rule and hint; 104 is no longer protected.
    assert!(
        out.contains("403 Permission check failed (pvegate: VM 500 'vault' is readonly: power.stop refused; hint: ask @ops in #infra)"),
        "{out}"
    );
    assert!(
        out.contains("VM 600 (range 600-699 'lab') is readonly: power.stop refused; hint: lab guests change only through the lab pipeline"),
        "{out}"
    );
    let stop_104 = out
        .split("POST   /api2/json/nodes/pve/qemu/104/status/stop\n")
        .nth(1)
        .unwrap();
    assert!(stop_104.trim_start().starts_with("-> 200"), "{out}");
    assert!(err.is_empty(), "the tour prints nothing else: {err}");

    // The same policy through --config.
    let cfg = write(
        dir.path(),
        "pvegate.toml",
        "[listen]\naddress = \"0.0.0.0:8006\"\n[upstream]\nurl = \"https://10.0.0.1:8006\"\nfingerprint = \"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\"\n[policy]\nfiles = [\"mine.toml\"]\n",
    );
    let (code, out, err) = run(&[
        "demo",
        "--tour-only",
        "--listen",
        "127.0.0.1:0",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("VM 500 'vault' is readonly"), "{out}");
}

#[test]
fn demo_reports_bad_policy_and_config_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[guest]]\nvmid = 500\naccess = \"readonly\"\nhint = \"VM does not exist\"\n",
    );
    let (code, _, err) = run(&["demo", "--tour-only", "--policy", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.toml:4:") && err.contains("does not exist"),
        "{err}"
    );
    let (code, _, err) = run(&["demo", "--policy", "/nonexistent/p.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/p.toml: cannot read"), "{err}");
    let cfg = write(dir.path(), "c.toml", "[listen]\naddres = \"x\"\n");
    let (code, _, err) = run(&["demo", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("c.toml:2"), "{err}");
    let (code, _, err) = run(&["demo", "--config", "a.toml", "--policy", "b.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tour_then_audit_lines_and_a_check_line_that_works_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let demo = spawn(&["demo", "--listen", "127.0.0.1:0"], dir.path());
    let banner = until(&demo.out, "Audit events follow");
    let base = banner
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("pvegate "))
        .map(|v| v.trim().to_string())
        .find(|v| v.starts_with("http://"))
        .unwrap_or_else(|| panic!("no pvegate URL in {banner:#?}"));
    // The printed check line points at a config that exists and works from another directory.
    let check = banner
        .iter()
        .find(|l| l.trim_start().starts_with("pvegate check --config "))
        .unwrap();
    let args: Vec<&str> = check.split_whitespace().skip(1).collect();
    let (code, out, err) = run_in(Path::new("/"), &args);
    assert_eq!(code, 3, "{check}: {out}{err}");
    assert!(out.contains("decision: deny"), "{out}");
    let show = banner
        .iter()
        .find(|l| l.trim_start().starts_with("pvegate policy show --config "))
        .unwrap();
    let args: Vec<&str> = show.split_whitespace().skip(1).collect();
    let (code, out, _) = run_in(Path::new("/"), &args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("guest 104 'doc1'  readonly"), "{out}");
    // Now a request of ours. The tour's own audit lines were held back while the tour printed
    // and follow it on stderr (the audit is never silenced), then ours.
    let res = reqwest::Client::new()
        .get(format!(
            "{base}/api2/json/nodes/pve/qemu/110/status/current"
        ))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let before = until(&demo.err, "qemu/110/status/current");
    assert!(
        before
            .iter()
            .any(|l| l.contains("104/status/stop") && l.contains("decision=deny")),
        "the tour's audit lines are missing: {before:#?}"
    );
}

#[test]
fn policy_show_lists_rules_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.toml",
        &format!("{MY_POLICY}\n[[guest]]\nvmid = 110\naccess = \"managed\"\ndeny = [\"destroy\", \"power.*\"]\nexempt = [\"tofu@pve!*\"]\n"),
    );
    let cfg = write(
        dir.path(),
        "c.toml",
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[policy]\nfiles = [\"p.toml\"]\n",
    );
    let (code, out, err) = run(&["policy", "show", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let p = dir.path().join("p.toml").display().to_string();
    assert!(
        out.contains(&format!("{p}:5  guest 500 'vault'  readonly")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{p}:10  guests 600-699 'lab'  readonly")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{p}:16  guest 110  managed")),
        "{out}"
    );
    assert!(out.contains("refuses  every change ("), "{out}");
    assert!(out.contains("power.start, power.stop"), "{out}");
    assert!(out.contains("exempt   tofu@pve!*"), "{out}");
    assert!(out.contains("hint            ask @ops in #infra"), "{out}");
    // Rules print in VMID order.
    assert!(
        out.find("guest 110").unwrap() < out.find("guest 500").unwrap(),
        "{out}"
    );

    let bad = write(
        dir.path(),
        "bad.toml",
        "[[guest]]\nvmid = 5\naccess = \"readonly\"\n",
    );
    let cfg2 = write(
        dir.path(),
        "c2.toml",
        "[listen]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[policy]\nfiles = [\"bad.toml\"]\n",
    );
    let (code, _, err) = run(&["policy", "show", "--config", cfg2.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    let (code, _, err) = run(&["policy", "show"]);
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef pvegate"),
        ("fish", "complete -c pvegate"),
    ] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        for sub in ["serve", "check", "validate", "demo", "sim", "policy"] {
            assert!(out.contains(sub), "{shell} lacks {sub}");
        }
    }
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("possible values"), "{err}");
    let (code, out, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(out.contains(".TH pvegate 1"), "{out}");
    assert!(out.contains("demo") && out.contains("sim"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("man1");
    let (code, _, err) = run(&["man", "--dir", d.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "pvegate.1",
        "pvegate-serve.1",
        "pvegate-policy-show.1",
        "pvegate-sim.1",
    ] {
        let text = std::fs::read_to_string(d.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    let file = write(dir.path(), "f", "");
    let (code, _, err) = run(&["man", "--dir", file.join("x").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot write the man page"), "{err}");
}

#[test]
fn version_names_commit_and_proxmox_versions() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("pvegate {}\n", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(
        out.contains("catalogue: Proxmox VE 9.1") && out.contains("Proxmox VE 8.4"),
        "{out}"
    );
    let commit = out
        .lines()
        .find_map(|l| l.strip_prefix("commit:"))
        .unwrap()
        .trim()
        .to_string();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(h) => assert_eq!(commit, h, "{out}"),
        None => assert_eq!(commit, "unknown", "{out}"),
    }
    let (_, short, _) = run(&["-V"]);
    assert_eq!(
        short.trim(),
        format!(
            "pvegate {} (git {commit}, Proxmox VE API 9.1, 8.4)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

const HINTED: &str = r#"[settings]
default_access = "readonly"
hint = "ask @ops in #infra"

[[guest]]
vmid = 110
access = "managed"

[[guest]]
vmids = "9000-9099"
name = "templates"
access = "managed"
deny = ["destroy"]
hint = "templates are rebuilt by packer; open a ticket"
"#;

#[tokio::test]
async fn refusals_name_their_rule_and_end_with_the_hint() {
    let g = start_with(Opts {
        policy: HINTED.into(),
        ..Opts::default()
    })
    .await;
    let r = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/500/status/stop", ""),
    )
    .await;
    assert_denied_json(
        &g,
        &r,
        "VM 500 is readonly by default_access: power.stop refused; hint: ask @ops in #infra)",
    );
    let r = raw(
        g.addr,
        &form("DELETE", "/api2/json/nodes/pve/qemu/9001", ""),
    )
    .await;
    assert_denied_json(
        &g,
        &r,
        "VM 9001 (range 9000-9099 'templates'): destroy refused by policy; hint: templates are rebuilt by packer; open a ticket)",
    );
    let r = raw(g.addr, &form("POST", "/api2/extjs/nodes/pve/stopall", "")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["success"], 0);
    assert_eq!(v["status"], 403);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("including unlisted guests, which are readonly by default_access: power.stop refused; hint: ask @ops in #infra"),
        "{m}"
    );
    for banned in [
        "already running",
        "already exists",
        "does not exist",
        "got timeout",
    ] {
        assert!(!m.contains(banned) && !r.reason.contains(banned));
    }
    assert_eq!(g.sim.recorder.len(), 0, "{:?}", g.sim.recorder.requests());
    // The managed guest still works.
    let r = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.reason);
}
