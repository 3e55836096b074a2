//! The Proxmox web UI's traffic works through pvegate, in a real browser (headless Chromium).
//!
//! A test page (`tests/clients/webui/pvegate-uitest.html`) is served by the simulated Proxmox
//! as a static file, so the browser loads it from pvegate over HTTPS and every call shares its
//! origin, cookie and CSRF token the way the GUI's do. The page logs in with
//! `POST /api2/extjs/access/ticket`, loads the index (which embeds the CSRF token) and a static
//! file, reads through `/api2/json`, changes VM 110 through `/api2/extjs` (allowed), tries
//! changes and a console on the readonly VMs 104/109 (refused: HTTP 200 `success:0`,
//! `status:403` with pvegate's message, and 403 with the message as reason phrase on
//! `/api2/json`), opens the noVNC websocket of VM 110 through pvegate and checks that a
//! binary frame of every byte value comes back, and checks that a console on 104 never
//! opens. It reports its results as the query of `GET /pve2/js/pvegate-uitest-report`, which
//! the test picks up from the sim's request recorder; the recorder also shows that nothing
//! refused reached Proxmox.
//!
//! Needs `/usr/bin/chromium` (`.ci/run` installs Debian's `chromium`). Without it the test is
//! skipped loudly, unless `CI` is set, where it fails.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::clients::{repo_root, start_tls_pinned};
use common::HOMELAB;
use pvegate_sim::{SimConfig, DEMO_PASSWORD};

const CHROMIUM: &str = "/usr/bin/chromium";
const PAGE: &str = "/pve2/js/pvegate-uitest.html";
const REPORT: &str = "/pve2/js/pvegate-uitest-report";

/// The browser, in its own process group so that its helpers go with it.
struct Browser {
    child: tokio::process::Child,
}

impl Browser {
    fn launch(url: &str, profile: &Path) -> Browser {
        let mut cmd = tokio::process::Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
        Browser {
            child: cmd.spawn().expect("chromium starts"),
        }
    }

    /// Kills the process group this test started (browser, zygotes, renderers), by its id.
    fn kill_group(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }

    /// Ends the browser and reaps it.
    async fn close(mut self) {
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_headless_chromium_through_pvegate() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var_os("CI").is_some() {
            panic!("{CHROMIUM} is missing on CI: .ci/run must install Debian's chromium");
        }
        eprintln!(
            "\n\n*** SKIPPED clients::webui: {CHROMIUM} not found. Install it (apt-get install \
             chromium) to run the web UI suite. ***\n\n"
        );
        return;
    }
    let g = start_tls_pinned(SimConfig::demo(), HOMELAB).await;
    let page = std::fs::read(repo_root().join("tests/clients/webui/pvegate-uitest.html")).unwrap();
    g.sim
        .add_static_file(PAGE, "text/html; charset=utf-8", page);
    g.sim.add_static_file(REPORT, "text/plain", "ok\n");

    let profile = tempfile::Builder::new()
        .prefix("pvegate-chromium-")
        .tempdir()
        .unwrap();
    let url = format!(
        "https://localhost:{}{PAGE}?user=root&realm=pam&pass={DEMO_PASSWORD}&node=pve",
        g.front.addr.port()
    );
    let browser = Browser::launch(&url, profile.path());

    // Wait for the page's report to reach the sim (through pvegate).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let report = loop {
        let seen = g.sim.recorder.requests();
        if let Some(r) = seen.iter().find(|r| r.path() == REPORT) {
            break r.clone();
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no report from the page within 90 s; the sim saw: {:#?}",
            seen.iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect::<Vec<_>>()
        );
        g.sim.recorder.wait_for(seen.len() + 1, left).await;
    };
    browser.close().await;

    let query = report.query().unwrap().strip_prefix("r=").unwrap();
    let text = percent_encoding::percent_decode_str(query)
        .decode_utf8()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let checks = v["checks"].as_object().unwrap();
    let failed: Vec<String> = checks
        .iter()
        .filter(|(_, c)| c["ok"] != true)
        .map(|(k, c)| format!("{k}: {}", c["detail"]))
        .collect();
    assert!(
        v["errors"].as_array().unwrap().is_empty(),
        "page errors: {}",
        v["errors"]
    );
    assert!(
        failed.is_empty(),
        "failed in the browser:\n{}",
        failed.join("\n")
    );
    assert_eq!(checks.len(), 18, "{v}");
    let denial = v["denial_message"].as_str().unwrap();
    assert!(
        denial.contains("pvegate: VM 104 'doc1' is readonly"),
        "{denial}"
    );
    eprintln!(
        "web UI: {} checks passed in Chromium, {} API calls; denial shown: {}",
        checks.len(),
        v["requests"],
        denial.trim_end()
    );

    // What reached Proxmox: the browser's requests (with its Accept-Encoding, so pveproxy's
    // gzip went through), the 110 console websocket, nothing refused.
    let rec = g.sim.recorder.requests();
    assert!(rec
        .iter()
        .any(|r| r.path().ends_with("/qemu/110/vncwebsocket")
            && r.header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))));
    for r in &rec {
        let p = r.path();
        let protected = p.contains("/qemu/104") || p.contains("/qemu/109");
        assert!(
            !(protected && (r.method != "GET" || p.ends_with("/vncwebsocket"))),
            "refused request reached Proxmox: {} {}",
            r.method,
            r.target
        );
    }
    assert!(rec.iter().any(|r| r
        .header("accept-encoding")
        .is_some_and(|a| a.contains("gzip"))));
    assert!(rec
        .iter()
        .filter(|r| r.method != "GET" && !r.path().ends_with("/access/ticket"))
        .all(|r| r.header("csrfpreventiontoken").is_some()
            && r.header("cookie")
                .is_some_and(|c| c.contains("PVEAuthCookie="))));
}
