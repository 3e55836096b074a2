//! Real clients from the package registries, unmodified, through pvegate (TLS to clients with
//! a throw-away CA, the simulated Proxmox pinned by fingerprint behind it):
//!
//! - `prometheus-pve-exporter` (PyPI): its own `pve_exporter` server scrapes `/pve` through
//!   pvegate; every collector's read passes and the metrics come out (`pve_up`,
//!   `pve_guest_info`, `pve_version_info`, …).
//! - proxmoxer 2.0.1, 2.1.0, 2.2.0 (each installed with `pip install --target` into
//!   `target/clients/`): `tests/clients/proxmoxer_suite.py` runs against each, token and
//!   ticket auth (2.3.0, the version in `.venv`, runs in `tests/clients_proxmoxer.rs`).
//! - Ansible's `community.proxmox` collection (the `ansible` package from PyPI): the
//!   playbooks of `tests/clients/ansible/`, token and password auth.
//! - cv4pve-api-javascript (npm) on Node: `tests/clients/node/suite.mjs`.
//!
//! Each checks on the simulator's request log that the requests pvegate refused never arrived.
//! The Python packages are in `tests/clients/requirements.txt` (installed into `.venv` by
//! `.ci/run`, or by the test itself when missing); the npm package is pinned by
//! `tests/clients/node/package-lock.json` and installed by `npm ci` into that folder's
//! `node_modules` (gitignored) when missing.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::clients::{repo_root, start_tls_pinned, TlsGate};
use common::HOMELAB;
use pvegate_sim::{SimConfig, DEMO_PASSWORD, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET, DEMO_USER};

/// Runs `cmd` to completion within `limit`, or panics saying what did not finish.
async fn run(
    mut cmd: tokio::process::Command,
    what: &str,
    limit: Duration,
) -> std::process::Output {
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"))
}

/// `.venv/bin/python` able to import `module`, installing `tests/clients/requirements.txt`
/// (creating the venv first) when it cannot.
async fn venv_python(module: &str) -> PathBuf {
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    let importable = |py: PathBuf| async move {
        let mut c = tokio::process::Command::new(py);
        c.args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().await.is_ok_and(|s| s.success())
    };
    if python.exists() && importable(python.clone()).await {
        return python;
    }
    if !python.exists() {
        let mut c = tokio::process::Command::new("python3");
        c.args(["-m", "venv", ".venv"]).current_dir(root);
        let out = run(c, "python3 -m venv .venv", Duration::from_secs(120)).await;
        assert!(out.status.success(), "python3 -m venv .venv failed");
    }
    eprintln!("installing tests/clients/requirements.txt into .venv (for {module})");
    let mut c = tokio::process::Command::new(root.join(".venv/bin/pip"));
    c.args(["install", "-q", "-r", "tests/clients/requirements.txt"])
        .current_dir(root);
    let out = run(c, "pip install", Duration::from_secs(600)).await;
    assert!(
        out.status.success(),
        "pip install -r tests/clients/requirements.txt failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        importable(python.clone()).await,
        "{module} not importable after pip install"
    );
    python
}

/// Every request the sim received that names a readonly guest (104, 109) in a change.
fn refused_that_arrived(g: &TlsGate) -> Vec<String> {
    g.sim
        .recorder
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .filter(|r| {
            let path = percent_encoding::percent_decode_str(r.path()).decode_utf8_lossy();
            let body = r.body_text();
            [104, 109].iter().any(|v| {
                path.contains(&format!("/qemu/{v}"))
                    || path.contains(&format!("/lxc/{v}"))
                    || body.contains(&format!("newid={v}"))
                    || body.contains(&format!("\"newid\":{v}"))
            })
        })
        .map(|r| format!("{} {} {}", r.method, r.target, r.body_text()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pve_exporter_scrapes_through_pvegate() {
    let python = venv_python("pve_exporter").await;
    let g = start_tls_pinned(SimConfig::demo(), HOMELAB).await;
    let (user, token) = DEMO_TOKEN_ID.split_once('!').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pve.yml");
    std::fs::write(
        &cfg,
        format!(
            "default:\n  user: {user}\n  token_name: {token}\n  token_value: {DEMO_TOKEN_SECRET}\n  port: {}\n  verify_ssl: {}\n",
            g.front.addr.port(),
            g.pki.ca_pem.display()
        ),
    )
    .unwrap();
    // The exporter's own HTTP server (gunicorn) on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exporter = python.parent().unwrap().join("pve_exporter");
    let _child = tokio::process::Command::new(&exporter)
        .arg("--config.file")
        .arg(&cfg)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pve_exporter starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/pve?target=127.0.0.1&cluster=1&node=1");
    let mut scraped = None;
    for _ in 0..150 {
        match http.get(&url).send().await {
            Ok(res) => {
                scraped = Some((res.status().as_u16(), res.text().await.unwrap_or_default()));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let (status, text) = scraped.expect("pve_exporter answered within 15 s");
    assert_eq!(status, 200, "{text}");
    for series in [
        "pve_up{id=\"node/pve\"} 1.0",
        "pve_up{id=\"qemu/104\"} 1.0",
        "pve_version_info{",
        "pve_node_info{",
        "pve_guest_info{",
        "pve_cpu_usage_ratio{",
        "pve_memory_size_bytes{",
        "pve_disk_size_bytes{",
        "pve_storage_shared{",
        "pve_subscription_info{",
        "pve_cluster_info{",
        "# TYPE pve_onboot_status gauge",
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    // Readonly guests are read like any other.
    assert!(text.contains("id=\"qemu/109\""), "{text}");

    // The exporter only reads, everything it asked for arrived, with its token.
    let recorded = g.sim.recorder.requests();
    assert!(recorded.len() >= 5, "{recorded:?}");
    for r in &recorded {
        assert_eq!(r.method, "GET", "{} {}", r.method, r.target);
        assert!(
            r.header("authorization")
                .is_some_and(|a| a.starts_with(&format!("PVEAPIToken={DEMO_TOKEN_ID}="))),
            "{}",
            r.target
        );
    }
    for path in [
        "/api2/json/cluster/status",
        "/api2/json/cluster/resources",
        "/api2/json/version",
    ] {
        assert!(
            recorded.iter().any(|r| r.path() == path),
            "{path} was not read"
        );
    }
    assert!(refused_that_arrived(&g).is_empty());
}

/// proxmoxer `version` importable from `target/clients/proxmoxer-<version>` (installed there
/// with `pip install --target` when missing; `requests` comes from `.venv`).
async fn proxmoxer_dir(python: &Path, version: &str) -> PathBuf {
    let dir = repo_root().join(format!("target/clients/proxmoxer-{version}"));
    let marker = dir.join(format!("proxmoxer-{version}.dist-info"));
    if marker.exists() {
        return dir;
    }
    let mut c = tokio::process::Command::new(python);
    c.args([
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--upgrade",
        "--target",
    ])
    .arg(&dir)
    .arg(format!("proxmoxer=={version}"));
    let out = run(
        c,
        "pip install --target proxmoxer",
        Duration::from_secs(300),
    )
    .await;
    assert!(
        out.status.success(),
        "pip install proxmoxer=={version} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists(), "no {}", marker.display());
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmoxer_2_0_to_2_2_through_pvegate() {
    let python = venv_python("requests").await;
    let (token_user, token_name) = DEMO_TOKEN_ID.split_once('!').unwrap();
    for version in ["2.0.1", "2.1.0", "2.2.0"] {
        let dir = proxmoxer_dir(&python, version).await;
        let g = start_tls_pinned(SimConfig::demo(), HOMELAB).await;
        let mut c = tokio::process::Command::new(&python);
        c.arg(repo_root().join("tests/clients/proxmoxer_suite.py"))
            .env("PYTHONPATH", &dir)
            .env("PVEGATE_EXPECT_PROXMOXER", version)
            .env("PVEGATE_HOST", "127.0.0.1")
            .env("PVEGATE_PORT", g.front.addr.port().to_string())
            .env("PVEGATE_CA", &g.pki.ca_pem)
            .env("PVE_TOKEN_USER", token_user)
            .env("PVE_TOKEN_NAME", token_name)
            .env("PVE_TOKEN_VALUE", DEMO_TOKEN_SECRET)
            .env("PVE_USER", DEMO_USER)
            .env("PVE_PASSWORD", DEMO_PASSWORD)
            .env("PVE_NODE", "pve")
            .env("PVE_POLL_INTERVAL", "0.05");
        let out = run(c, "proxmoxer suite", Duration::from_secs(240)).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "proxmoxer {version} suite failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let summary: serde_json::Value = serde_json::from_str(
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("SUMMARY "))
                .unwrap_or_else(|| panic!("no SUMMARY line\n{stdout}\n{stderr}")),
        )
        .unwrap();
        let results = summary["results"].as_array().unwrap();
        assert_eq!(
            results.len(),
            2,
            "proxmoxer {version}: token and ticket runs"
        );
        for r in results {
            assert_eq!(r["allowed_changes"], 18, "proxmoxer {version}: {r}");
            assert_eq!(r["refused_changes"], 28, "proxmoxer {version}: {r}");
            assert_eq!(r["reads"], 27, "proxmoxer {version}: {r}");
        }
        assert!(
            refused_that_arrived(&g).is_empty(),
            "proxmoxer {version}: {:?}",
            refused_that_arrived(&g)
        );
        eprintln!("proxmoxer {version}: ok");
    }
}

/// `tests/clients/node` with its `node_modules` installed (`npm ci`, from the lock file).
async fn node_suite_dir() -> PathBuf {
    let dir = repo_root().join("tests/clients/node");
    if dir
        .join("node_modules/@corsinvest/cv4pve-api-javascript/package.json")
        .exists()
    {
        return dir;
    }
    eprintln!("installing tests/clients/node (npm ci)");
    let mut c = tokio::process::Command::new("npm");
    c.args(["ci", "--no-audit", "--no-fund", "--quiet"])
        .current_dir(&dir);
    let out = run(c, "npm ci", Duration::from_secs(300)).await;
    assert!(
        out.status.success(),
        "npm ci in tests/clients/node failed (Node and npm: apt-get install nodejs npm): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cv4pve_api_javascript_on_node_through_pvegate() {
    let dir = node_suite_dir().await;
    let g = start_tls_pinned(SimConfig::demo(), HOMELAB).await;
    let (user, realm) = DEMO_USER.split_once('@').unwrap();
    let mut c = tokio::process::Command::new("node");
    c.arg(dir.join("suite.cjs"))
        .current_dir(&dir)
        .env("PVEGATE_HOST", "127.0.0.1")
        .env("PVEGATE_PORT", g.front.addr.port().to_string())
        .env("PVE_USER", user)
        .env("PVE_REALM", realm)
        .env("PVE_PASSWORD", DEMO_PASSWORD)
        .env("PVE_TOKEN", format!("{DEMO_TOKEN_ID}={DEMO_TOKEN_SECRET}"))
        .env("PVE_NODE", "pve")
        .env("PVE_CLONE_IDS", "141,142");
    let out = run(c, "node suite.cjs", Duration::from_secs(180)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("SUMMARY "))
            .unwrap_or_else(|| panic!("no SUMMARY line\n{stdout}\n{stderr}")),
    )
    .unwrap();
    assert!(
        out.status.success() && summary["failures"].as_array().unwrap().is_empty(),
        "cv4pve suite failed: {:#}\n{stderr}",
        summary["failures"]
    );
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "token and ticket runs");
    for r in results {
        assert_eq!(r["reads"], 12, "{r}");
        assert_eq!(r["allowed"], 10, "{r}");
        assert_eq!(r["refused"].as_array().unwrap().len(), 18, "{r}");
    }
    // Nothing refused arrived; the allowed changes did, with the client's JSON bodies.
    assert!(
        refused_that_arrived(&g).is_empty(),
        "{:?}",
        refused_that_arrived(&g)
    );
    let recorded = g.sim.recorder.requests();
    for r in results
        .iter()
        .flat_map(|r| r["refused"].as_array().unwrap())
    {
        let (m, p) = (r["method"].as_str().unwrap(), r["path"].as_str().unwrap());
        if !p.ends_with("/clone") {
            assert!(
                !recorded.iter().any(|x| x.method == m && x.path() == p),
                "refused {m} {p} reached Proxmox"
            );
        }
    }
    let json_posts = recorded
        .iter()
        .filter(|r| r.method == "POST" && r.header("content-type") == Some("application/json"))
        .count();
    assert!(json_posts >= 10, "{json_posts} JSON POSTs");
    for new in [141, 142] {
        assert!(recorded.iter().any(
            |r| r.method == "DELETE" && r.path() == format!("/api2/json/nodes/pve/qemu/{new}")
        ));
        assert!(g.sim.guest(new).is_none(), "clone {new} was deleted");
    }
    assert!(recorded.iter().any(|r| r
        .header("cookie")
        .is_some_and(|c| c.contains("PVEAuthCookie="))
        && r.header("csrfpreventiontoken").is_some()));
    assert!(g.sim.guest(104).unwrap().running, "104 untouched");
}

/// The `ok=… changed=… failed=… ignored=…` numbers of the play recap for `localhost`.
fn recap(stdout: &str) -> std::collections::HashMap<String, u64> {
    let line = stdout
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("no play recap in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// `PROXMOX_*` environment variables for the modules' credentials.
type Credentials = Vec<(&'static str, String)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ansible_community_proxmox_playbooks_through_pvegate() {
    let python = venv_python("ansible_collections.community.proxmox").await;
    let playbook_cmd = python.parent().unwrap().join("ansible-playbook");
    let g = start_tls_pinned(SimConfig::demo(), HOMELAB).await;
    let home = tempfile::tempdir().unwrap();
    let (token_user, token_name) = DEMO_TOKEN_ID.split_once('!').unwrap();
    let modes: [(&str, u32, Credentials); 2] = [
        (
            "token",
            151,
            vec![
                ("PROXMOX_USER", token_user.to_string()),
                ("PROXMOX_TOKEN_ID", token_name.to_string()),
                ("PROXMOX_TOKEN_SECRET", DEMO_TOKEN_SECRET.to_string()),
            ],
        ),
        (
            "password",
            152,
            vec![
                ("PROXMOX_USER", DEMO_USER.to_string()),
                ("PROXMOX_PASSWORD", DEMO_PASSWORD.to_string()),
            ],
        ),
    ];
    for (mode, clone_id, creds) in modes {
        let mut c = tokio::process::Command::new(&playbook_cmd);
        c.arg("-i")
            .arg("localhost,")
            .arg("-c")
            .arg("local")
            .arg(repo_root().join("tests/clients/ansible/playbook.yml"))
            .arg("-e")
            .arg(format!(
                "pve_host=127.0.0.1 pve_port={} auth_mode={mode} clone_id={clone_id} ansible_python_interpreter={}",
                g.front.addr.port(),
                python.display()
            ))
            .env("REQUESTS_CA_BUNDLE", &g.pki.ca_pem)
            .env("HOME", home.path())
            .env("ANSIBLE_LOCAL_TEMP", home.path().join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_PYTHON_INTERPRETER", &python)
            .envs(creds.iter().map(|(k, v)| (*k, v.as_str())));
        let out = run(c, "ansible-playbook", Duration::from_secs(300)).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "ansible-playbook ({mode}) failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let numbers = recap(&stdout);
        assert_eq!(numbers["failed"], 0, "{mode}: {stdout}");
        assert_eq!(numbers["ignored"], 5, "{mode}: five refusals\n{stdout}");
        assert!(numbers["changed"] >= 8, "{mode}: {numbers:?}\n{stdout}");
        let refused: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("\"msg\": \"REFUSED "))
            .collect();
        assert_eq!(refused.len(), 5, "{mode}: {stdout}");
        for msg in refused {
            assert!(
                msg.contains("Permission check failed (pvegate: VM "),
                "{msg}"
            );
        }
        assert!(g.sim.guest(clone_id).is_none(), "clone {clone_id} removed");
        eprintln!("ansible ({mode}): {numbers:?}");
    }
    // Nothing refused arrived; the allowed changes did.
    assert!(
        refused_that_arrived(&g).is_empty(),
        "{:?}",
        refused_that_arrived(&g)
    );
    let recorded = g.sim.recorder.requests();
    for (method, path) in [
        ("POST", "/api2/json/nodes/pve/qemu/110/status/shutdown"),
        ("POST", "/api2/json/nodes/pve/qemu/110/status/start"),
        ("POST", "/api2/json/nodes/pve/qemu/110/status/reboot"),
        ("POST", "/api2/json/nodes/pve/qemu/110/snapshot"),
        ("POST", "/api2/json/nodes/pve/qemu/9001/clone"),
        ("DELETE", "/api2/json/nodes/pve/qemu/151"),
        ("DELETE", "/api2/json/nodes/pve/qemu/152"),
    ] {
        assert!(
            recorded
                .iter()
                .any(|r| r.method == method && r.path() == path),
            "{method} {path} did not arrive"
        );
    }
    assert!(recorded
        .iter()
        .any(|r| r.method == "POST" && r.path() == "/api2/json/access/ticket"));
    let doc1 = g.sim.guest(104).unwrap();
    assert!(doc1.running, "104 untouched");
}
