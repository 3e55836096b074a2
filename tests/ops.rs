//! `pvegate ops` as a user runs it: the real binary against the real gate (homelab policy) in
//! front of the simulated Proxmox. Every command on the readonly VM 104 'doc1' (reads pass,
//! changes exit 4 with one line and never reach Proxmox) and on managed guests (changes land
//! in the sim's state); failed tasks print their log tail; bad input exits 2 with one line.

mod common;

use std::path::PathBuf;

use common::*;
use pvegate_sim::DEMO_TOKEN_ID;
use pvegate_sim::DEMO_TOKEN_SECRET;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pvegate");

struct Env {
    url: String,
    home: tempfile::TempDir,
    ops_config: PathBuf,
}

fn env_for(url: &str) -> Env {
    let home = tempfile::tempdir().unwrap();
    let ops_config = home.path().join("ops.toml");
    std::fs::write(
        &ops_config,
        "[ranges]\nprod = \"110-115\"\ntemplates = \"9000-9999\"\n",
    )
    .unwrap();
    Env {
        url: url.to_owned(),
        home,
        ops_config,
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

async fn ops_with(env: &Env, args: &[&str], token: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("ops")
        .args(args)
        .env_clear()
        .env("HOME", env.home.path())
        .env("PVEGATE_URL", &env.url)
        .env("PVEGATE_OPS_CONFIG", &env.ops_config);
    if let Some(t) = token {
        cmd.env("PVEGATE_TOKEN", t);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("pvegate ops finished in time")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn token() -> String {
    format!("{DEMO_TOKEN_ID}={DEMO_TOKEN_SECRET}")
}

async fn ops(env: &Env, args: &[&str]) -> Out {
    ops_with(env, args, Some(&token())).await
}

fn ok(o: &Out, what: &str) {
    assert_eq!(o.code, 0, "{what}: stdout {} stderr {}", o.stdout, o.stderr);
}

/// Requests other than GET that reached the sim.
fn changes(g: &Gate) -> Vec<String> {
    g.sim
        .recorder
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_guest_reads_pass_and_every_change_is_refused_with_one_line() {
    let g = start().await;
    let env = env_for(&g.url);

    let o = ops(&env, &["list"]).await;
    ok(&o, "list");
    let line = o.stdout.lines().find(|l| l.starts_with("104 ")).unwrap();
    assert!(line.contains("doc1") && line.contains("qemu") && line.contains("running"));
    let o = ops(&env, &["list", "--json"]).await;
    ok(&o, "list --json");
    assert_eq!(o.json().as_array().unwrap().len(), 5);

    let o = ops(&env, &["status", "104"]).await;
    ok(&o, "status");
    assert!(o.stdout.contains("status") && o.stdout.contains("running"));
    let o = ops(&env, &["--json", "config", "104"]).await;
    ok(&o, "config");
    assert_eq!(o.json()["name"], "doc1");
    assert!(o.json()["scsi0"]
        .as_str()
        .unwrap()
        .contains("vm-104-disk-0"));
    let o = ops(&env, &["get-ip", "104"]).await;
    ok(&o, "get-ip");
    assert!(o.stdout.contains("10.0.0.104"), "{}", o.stdout);
    assert!(!o.stdout.contains("127.0.0.1"), "loopback is left out");
    let o = ops(&env, &["storage"]).await;
    ok(&o, "storage");
    assert!(o.stdout.contains("local-lvm"));
    // wait-ssh only reads: the agent poll passes the gate (whether 10.0.0.104:1 answers
    // depends on the test machine's network, so only the read is checked here).
    let o = ops(&env, &["wait-ssh", "104", "--timeout", "1", "--port", "1"]).await;
    assert!(o.code == 0 || o.code == 1, "{} {}", o.code, o.stderr);
    assert!(g.sim.recorder.requests().iter().any(|r| r.method == "GET"
        && r.target == "/api2/json/nodes/pve/qemu/104/agent/network-get-interfaces"));
    assert_eq!(changes(&g), Vec::<String>::new(), "reads only");

    let refused: &[(&[&str], &str)] = &[
        (&["start", "104"], "start"),
        (&["stop", "104"], "stop"),
        (&["shutdown", "104"], "shutdown"),
        (&["reboot", "104"], "reboot"),
        (&["destroy", "104", "--yes"], "destroy"),
        (&["configure", "104", "memory=4096", "cores=4"], "configure"),
        (&["resize", "104", "scsi0", "+10G"], "resize"),
        (&["create-disk", "104", "local-lvm", "16"], "create-disk"),
        (&["template", "104"], "template"),
        (&["clone", "9001", "104", "--name", "evil"], "clone"),
    ];
    for (args, op) in refused {
        let o = ops(&env, args).await;
        assert_eq!(o.code, 4, "{args:?}: {} {}", o.stdout, o.stderr);
        assert_eq!(o.stdout, "", "{args:?}");
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {:?}", o.stderr);
        let l = lines[0];
        assert!(
            l.starts_with(&format!(
                "refused by pvegate: {op} VM 104 'doc1': pvegate: "
            )),
            "{l}"
        );
        assert!(
            l.contains("is readonly") && l.contains("(Main services VM)"),
            "{l}"
        );
    }
    // The refusal in JSON for scripts.
    let o = ops(&env, &["stop", "104", "--json"]).await;
    assert_eq!(o.code, 4);
    assert_eq!(o.json()["error"], "refused");
    assert_eq!(o.json()["exit"], 4);
    assert_eq!(
        changes(&g),
        Vec::<String>::new(),
        "nothing refused reached Proxmox"
    );
    let doc1 = g.sim.guest(104).unwrap();
    assert!(doc1.running && !doc1.template && doc1.name == "doc1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_guests_change_and_the_sim_shows_it() {
    let g = start().await;
    let env = env_for(&g.url);

    // Power, waiting for each task.
    let o = ops(&env, &["stop", "110"]).await;
    ok(&o, "stop");
    assert_eq!(o.stdout.trim(), "stop VM 110 'tofu-web': OK");
    assert!(!g.sim.guest(110).unwrap().running);
    let o = ops(&env, &["start", "110", "--json"]).await;
    ok(&o, "start");
    assert_eq!(o.json()["status"], "OK");
    assert!(o.json()["upid"].as_str().unwrap().contains(":qmstart:110:"));
    assert!(g.sim.guest(110).unwrap().running);
    ok(&ops(&env, &["reboot", "110"]).await, "reboot");
    // Every task was polled to its end.
    let polls = g
        .sim
        .recorder
        .requests()
        .iter()
        .filter(|r| r.target.contains("/tasks/UPID:") && r.target.ends_with("/status"))
        .count();
    assert!(polls >= 6, "two polls per task (running, stopped): {polls}");
    ok(&ops(&env, &["shutdown", "110"]).await, "shutdown");
    assert!(!g.sim.guest(110).unwrap().running);

    // A failed task: its log tail and exit 1.
    let o = ops(&env, &["shutdown", "110"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("task failed: VM 110 not running"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("task log (last lines):"), "{}", o.stderr);
    assert!(
        o.stderr.contains("TASK ERROR: VM 110 not running"),
        "{}",
        o.stderr
    );

    // --no-wait returns the UPID.
    let o = ops(&env, &["start", "110", "--no-wait"]).await;
    ok(&o, "start --no-wait");
    assert!(o.stdout.contains("started, task UPID:pve:"), "{}", o.stdout);

    // Config, resize, new disk.
    let o = ops(&env, &["configure", "110", "memory=4096", "tags=web;prod"]).await;
    ok(&o, "configure");
    let put = g
        .sim
        .recorder
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(put.path(), "/api2/json/nodes/pve/qemu/110/config");
    assert_eq!(put.body_text(), "memory=4096&tags=web%3Bprod");
    ok(
        &ops(&env, &["resize", "110", "scsi0", "+8G"]).await,
        "resize",
    );
    let o = ops(&env, &["create-disk", "110", "local-lvm", "16G"]).await;
    ok(&o, "create-disk");
    assert!(o.stdout.contains("scsi1=local-lvm:16"), "{}", o.stdout);
    let cfg = ops(&env, &["config", "110", "--json"]).await.json();
    assert_eq!(cfg["memory"], 4096);
    // Proxmox keeps tags unique and (by default) sorted.
    assert_eq!(cfg["tags"], "prod;web");
    assert!(
        cfg["scsi0"].as_str().unwrap().ends_with("size=40G"),
        "{cfg}"
    );
    assert_eq!(cfg["scsi1"], "local-lvm:16");
    let o = ops(&env, &["--json", "status", "110"]).await;
    assert_eq!(o.json()["maxmem"], 4096u64 * 1024 * 1024);

    // Clone a template, make the clone a template, destroy it.
    let o = ops(&env, &["next-vmid"]).await;
    ok(&o, "next-vmid");
    assert_eq!(o.stdout.trim(), "100");
    let o = ops(&env, &["next-vmid", "--range", "prod"]).await;
    ok(&o, "next-vmid prod");
    assert_eq!(o.stdout.trim(), "111", "110 is taken");
    let o = ops(&env, &["next-vmid", "--range", "9001-9002"]).await;
    assert_eq!(o.stdout.trim(), "9002");
    let o = ops(&env, &["next-vmid", "--range", "9001-9001"]).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("no free VMID in 9001-9001"));
    let o = ops(&env, &["next-vmid", "--range", "staging"]).await;
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("known: prod, templates"), "{}", o.stderr);

    let o = ops(&env, &["clone", "9001", "111", "--name", "web2"]).await;
    ok(&o, "clone");
    assert_eq!(g.sim.guest(111).unwrap().name, "web2");
    ok(&ops(&env, &["template", "111"]).await, "template");
    assert!(g.sim.guest(111).unwrap().template);
    let o = ops(&env, &["destroy", "111"]).await;
    assert_eq!(o.code, 2);
    assert_eq!(o.stderr.lines().count(), 1);
    assert!(o.stderr.contains("--yes"));
    assert!(g.sim.guest(111).is_some());
    ok(&ops(&env, &["destroy", "111", "--yes"]).await, "destroy");
    assert!(g.sim.guest(111).is_none());
    let deleted = g
        .sim
        .recorder
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(
        deleted.target,
        "/api2/json/nodes/pve/qemu/111?purge=1&destroy-unreferenced-disks=1"
    );

    // A container: no agent, addresses from its interfaces.
    let o = ops(&env, &["get-ip", "120"]).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("CT 120 not running"), "{}", o.stderr);
    ok(&ops(&env, &["start", "120"]).await, "start ct");
    let o = ops(&env, &["--json", "get-ip", "120"]).await;
    ok(&o, "get-ip ct");
    assert_eq!(o.json()["addresses"][0]["address"], "10.0.0.120");
    assert_eq!(o.json()["addresses"].as_array().unwrap().len(), 1);
    let o = ops(&env, &["create-disk", "120", "local-lvm", "4"]).await;
    ok(&o, "create-disk ct");
    assert!(
        o.stdout.contains("mp0=local-lvm:4,mp=/mnt/mp0"),
        "{}",
        o.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ip_and_wait_ssh_follow_the_guest_agent() {
    let g = start().await;
    let env = env_for(&g.url);
    let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ssh.local_addr().unwrap().port().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = ssh.accept().await {
            drop(s);
        }
    });
    // The guest's cloud-init address, as its agent will report it.
    ok(
        &ops(
            &env,
            &[
                "configure",
                "110",
                "ipconfig0=ip=127.0.0.1/8,gw=127.0.0.254",
            ],
        )
        .await,
        "configure ipconfig0",
    );
    let o = ops(
        &env,
        &["wait-ssh", "110", "--port", &port, "--timeout", "20"],
    )
    .await;
    ok(&o, "wait-ssh");
    assert_eq!(o.stdout.trim(), "127.0.0.1");

    // Nothing listens: bounded by --timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let o = ops(
        &env,
        &["wait-ssh", "110", "--port", &closed_port, "--timeout", "2"],
    )
    .await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("no SSH on port") && o.stderr.contains("within 2 s"),
        "{}",
        o.stderr
    );

    // A paused guest's agent does not answer.
    let r = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/suspend", ""),
    )
    .await;
    assert_eq!(r.status, 200);
    let o = ops(&env, &["get-ip", "110"]).await;
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("get-ip VM 110 'tofu-web' failed")
            && o.stderr.contains("the QEMU guest agent is not running"),
        "{}",
        o.stderr
    );
    let o = ops(
        &env,
        &["wait-ssh", "110", "--port", &port, "--timeout", "2"],
    )
    .await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("within 2 s") && o.stderr.contains("guest agent is not running"),
        "{}",
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_and_exit_2() {
    let g = start().await;
    let env = env_for(&g.url);
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["list", "--frob"], "unexpected argument '--frob'"),
        (&["status", "abc"], "\"abc\" is not a VMID"),
        (&["status", "99"], "\"99\" is not a VMID"),
        (&["start", "0104"], "\"0104\" is not a VMID"),
        (&["status"], "required"),
        (&["resize", "110", "scsi0", "ten"], "not a size"),
        (&["configure", "110", "memory"], "not key=value"),
        (&["destroy", "110"], "add --yes to confirm"),
        (
            &["list", "--fingerprint", "zz"],
            "not a SHA-256 fingerprint",
        ),
        (&["list", "--insecure", "--ca", "/x"], "choose one of"),
    ];
    for (args, needle) in cases {
        let o = ops(&env, args).await;
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {:?}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
    }
    let o = ops_with(&env, &["list"], None).await;
    assert_eq!(o.code, 2);
    assert_eq!(o.stderr.lines().count(), 1);
    assert!(
        o.stderr.contains("no API token: set PVEGATE_TOKEN"),
        "{}",
        o.stderr
    );
    let o = ops_with(&env, &["list"], Some("root@pam-tofu")).await;
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("USER@REALM!TOKENID=SECRET"));
    let o = ops_with(&env, &["list"], Some("root@pam!tofu=wrong")).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("rejected the API token"), "{}", o.stderr);
    assert!(!o.stderr.contains("wrong"), "the secret is never printed");

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let o = ops(&env_for(&dead_url), &["list"]).await;
    assert_eq!(o.code, 2);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("cannot reach {dead_url}")),
        "{}",
        o.stderr
    );
    let o = ops(&env_for("pvegate.lan:8006"), &["list"]).await;
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("must start with https://"),
        "{}",
        o.stderr
    );

    // Nothing here changed anything.
    assert_eq!(changes(&g), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_guest_the_gate_refused_for() {
    let policy = format!("{HOMELAB}\n[[guest]]\nvmids = \"120-129\"\naccess = \"readonly\"\n");
    let g = start_with(Opts {
        policy,
        ..Opts::default()
    })
    .await;
    let env = env_for(&g.url);
    // A range rule's message has no name: ops looks it up.
    let o = ops(&env, &["start", "120"]).await;
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert_eq!(
        o.stderr.trim_end(),
        "refused by pvegate: start CT 120 'scratch-ct': pvegate: VM 120 (range 120-129) is readonly: power.start refused; hint: ask whoever runs pvegate to change its policy if you need this"
    );
    // Cloning the readonly guest: the line names the source the gate refused for.
    let o = ops(&env, &["clone", "104", "130"]).await;
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with("refused by pvegate: clone VM 104 'doc1': pvegate: VM 104 'doc1'"),
        "{}",
        o.stderr
    );
    // A managed guest's disk that belongs to the readonly guest.
    let o = ops(&env, &["configure", "110", "scsi3=local-lvm:vm-104-disk-0"]).await;
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with("refused by pvegate: configure VM 104 'doc1': "),
        "{}",
        o.stderr
    );
    assert_eq!(changes(&g), Vec::<String>::new());
    assert!(g.sim.guest(130).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trust_flags_as_in_the_config() {
    let pki = common::clients::TestPki::new();
    let g = start_with(Opts {
        client_tls: Some(pki.server_config()),
        ..Opts::default()
    })
    .await;
    assert!(g.url.starts_with("https://"));
    let env = env_for(&g.url);
    let ca = pki.ca_pem.to_str().unwrap();
    let leaf = std::fs::read(&pki.cert_pem).unwrap();
    let der = rustls_pemfile::certs(&mut leaf.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let fp = pvegate::config::format_fingerprint(&pvegate::upstream::tls::fingerprint(&der));

    ok(&ops(&env, &["list", "--ca", ca]).await, "--ca");
    ok(
        &ops(&env, &["list", "--fingerprint", &fp]).await,
        "--fingerprint",
    );
    ok(&ops(&env, &["list", "--insecure"]).await, "--insecure");
    let o = ops(&env, &["stop", "104", "--ca", ca]).await;
    assert_eq!(o.code, 4, "{}", o.stderr);

    // Unverifiable: the system roots do not know the test CA; a wrong pin.
    let o = ops(&env, &["list"]).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("cannot reach"), "{}", o.stderr);
    let wrong = fp.replace(&fp[..2], if &fp[..2] == "00" { "01" } else { "00" });
    let o = ops(&env, &["list", "--fingerprint", &wrong]).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("cannot reach"), "{}", o.stderr);
    assert_eq!(changes(&g), Vec::<String>::new());
}
