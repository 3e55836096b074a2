//! proxmoxer (the real package from PyPI, in the repo's `.venv`) works through pvegate.
//!
//! The simulated Proxmox serves HTTPS and is pinned by fingerprint; pvegate speaks TLS to the
//! client with a certificate from a throw-away CA that proxmoxer verifies (`verify_ssl=<ca.pem>`).
//! `tests/clients/proxmoxer_suite.py` runs the same calls with API-token auth and with ticket
//! auth (cookie + CSRF): listings, status, start/stop/shutdown/reboot, config updates, resize,
//! snapshots, clone and delete, an ISO upload (multipart), task polling on managed guests (all
//! succeed); reads of the
//! readonly guests 104/109 (succeed) and every kind of change to them (each raises
//! `ResourceException` naming the guest and pvegate). This test then checks on the sim's
//! recorder that none of the refused calls reached Proxmox, that the allowed ones did, and that
//! the client's `Host` and `Accept-Encoding` arrived unchanged (pveproxy gzips what it answers).
//!
//! When `.venv` is missing (a fresh checkout), the test creates it with
//! `python3 -m venv .venv && .venv/bin/pip install -r tests/clients/requirements.txt`.

use crate::common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::clients::{repo_root, start_tls_pinned};
use common::HOMELAB;
use pvegate_sim::{SimConfig, DEMO_PASSWORD, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET, DEMO_USER};

/// `.venv/bin/python` with proxmoxer importable, creating or repairing the venv if needed.
async fn venv_python() -> PathBuf {
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    let importable = |py: PathBuf| async move {
        tokio::process::Command::new(py)
            .args(["-c", "import proxmoxer, requests"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    };
    if python.exists() && importable(python.clone()).await {
        return python;
    }
    if !python.exists() {
        eprintln!("clients::proxmoxer: creating .venv (python3 -m venv .venv)");
        let st = tokio::process::Command::new("python3")
            .args(["-m", "venv", ".venv"])
            .current_dir(root)
            .status()
            .await
            .expect("python3 is installed");
        assert!(st.success(), "python3 -m venv .venv failed");
    }
    eprintln!("clients::proxmoxer: installing tests/clients/requirements.txt into .venv");
    let st = tokio::process::Command::new(root.join(".venv/bin/pip"))
        .args(["install", "-q", "-r", "tests/clients/requirements.txt"])
        .current_dir(root)
        .status()
        .await
        .expect(".venv/bin/pip runs");
    assert!(
        st.success(),
        "pip install -r tests/clients/requirements.txt failed"
    );
    assert!(
        importable(python.clone()).await,
        "proxmoxer not importable after pip install"
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmoxer_token_and_ticket_auth_through_pvegate() {
    let python = venv_python().await;
    let g = start_tls_pinned(SimConfig::demo(), HOMELAB).await;
    let (token_user, token_name) = DEMO_TOKEN_ID.split_once('!').unwrap();

    let run = tokio::process::Command::new(python)
        .arg(repo_root().join("tests/clients/proxmoxer_suite.py"))
        .env("PVEGATE_HOST", "127.0.0.1")
        .env("PVEGATE_PORT", g.front.addr.port().to_string())
        .env("PVEGATE_CA", &g.pki.ca_pem)
        .env("PVE_TOKEN_USER", token_user)
        .env("PVE_TOKEN_NAME", token_name)
        .env("PVE_TOKEN_VALUE", DEMO_TOKEN_SECRET)
        .env("PVE_USER", DEMO_USER)
        .env("PVE_PASSWORD", DEMO_PASSWORD)
        .env("PVE_NODE", "pve")
        // proxmoxer polls tasks every second by default; the sim's tasks finish after one poll.
        .env("PVE_POLL_INTERVAL", "0.05")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("proxmoxer suite finished within 240 s")
        .expect("proxmoxer suite ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SUMMARY "))
        .unwrap_or_else(|| panic!("no SUMMARY line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    for line in stdout.lines().filter(|l| !l.starts_with("SUMMARY ")) {
        eprintln!("proxmoxer: {line}");
    }
    assert!(
        out.status.success(),
        "proxmoxer suite failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(summary_line).unwrap();
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "token and ticket runs");
    for r in results {
        let mode = r["mode"].as_str().unwrap();
        // 10 on VM 110, 4 on the clone (clone, start, stop, delete), an ISO upload, 3 on CT 120.
        assert_eq!(r["allowed_changes"].as_u64().unwrap(), 18, "{mode}: {r}");
        // 14 kinds of change to each of the two readonly guests.
        assert_eq!(r["refused_changes"].as_u64().unwrap(), 28, "{mode}: {r}");
        assert_eq!(r["reads"].as_u64().unwrap(), 27, "{mode}: {r}");
    }

    // Nothing refused reached Proxmox; everything else did, as the client sent it.
    let recorded = g.sim.recorder.requests();
    let host = format!("127.0.0.1:{}", g.front.addr.port());
    for rec in &recorded {
        let path = percent_encoding::percent_decode_str(rec.path()).decode_utf8_lossy();
        let write = rec.method != "GET";
        for vmid in [104, 109] {
            let names_guest = path.contains(&format!("/qemu/{vmid}"))
                || rec.body_text().contains(&format!("newid={vmid}"));
            assert!(
                !(write && names_guest),
                "a refused change reached Proxmox: {} {} {}",
                rec.method,
                rec.target,
                rec.body_text()
            );
        }
        assert_eq!(
            rec.header("host"),
            Some(host.as_str()),
            "Host of {}",
            rec.target
        );
    }
    for refused in results
        .iter()
        .flat_map(|r| r["refused"].as_array().unwrap())
    {
        let (m, p) = (
            refused["method"].as_str().unwrap(),
            refused["path"].as_str().unwrap(),
        );
        let text = refused["text"].as_str().unwrap();
        assert!(text.contains("pvegate"), "{text}");
        if !p.ends_with("/clone") {
            assert!(
                !recorded.iter().any(|r| r.method == m && r.path() == p),
                "refused {m} {p} reached Proxmox"
            );
        }
    }
    // Both credentials were used, ticket calls carried CSRF tokens, and the sim saw the
    // allowed changes (e.g. the two clones and their deletions).
    assert!(recorded.iter().any(|r| r
        .header("authorization")
        .is_some_and(|a| a.starts_with("PVEAPIToken=root@pam!tofu="))));
    assert!(recorded.iter().any(|r| r.method == "POST"
        && r.header("cookie")
            .is_some_and(|c| c.contains("PVEAuthCookie="))
        && r.header("csrfpreventiontoken").is_some()));
    for new in [131, 132] {
        assert!(recorded.iter().any(
            |r| r.method == "DELETE" && r.path() == format!("/api2/json/nodes/pve/qemu/{new}")
        ));
        assert!(g.sim.guest(new).is_none(), "clone {new} was deleted");
    }
    assert!(recorded.iter().any(|r| r
        .header("accept-encoding")
        .is_some_and(|v| v.contains("gzip"))));
    let doc1 = g.sim.guest(104).unwrap();
    assert!(doc1.running, "104 untouched");
}
