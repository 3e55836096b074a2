//! A three-node cluster behind the real binary (`pvegate serve` with `[[upstream.node]]`),
//! against the simulator's cluster mode (`pve1`, `pve2`, `pve3`, HTTPS, one cluster CA).
//!
//! pve1 and pve2 are pinned by their own fingerprints, pve3 is trusted through the cluster CA
//! (`[upstream] ca`). The test checks where each request lands (on each node's own request
//! log), stops pve1 mid-run and checks that reads, a login and allowed changes keep working on
//! the other nodes, that refusals are unchanged (and reach no node), that a console for pve1
//! gets a 503 naming pve1, and that `/readyz` and `pvegate_upstream_up{node}` follow the
//! node down and up again. Client-sent `PVEDisableProxy`/`PVEClientIP` never reach a node.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use pvegate_sim::{SimCluster, SimConfig, DEMO_PASSWORD, DEMO_USER};

struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address_in(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> SocketAddr {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                return v["address"].as_str().unwrap().parse().unwrap();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line containing {needle:?}");
}

/// `pvegate serve` in front of the three nodes, with an admin listener.
fn serve(cluster: &SimCluster) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    write("homelab.toml", HOMELAB);
    write("cluster-ca.pem", cluster.ca_pem.as_deref().unwrap());
    let node = |name: &str, pin: bool| {
        let n = cluster.node(name);
        let trust = if pin {
            format!("fingerprint = \"{}\"\n", n.fingerprint.as_deref().unwrap())
        } else {
            String::new()
        };
        format!(
            "[[upstream.node]]\nname = \"{name}\"\nurl = \"{}\"\n{trust}",
            n.url
        )
    };
    let cfg = write(
        "pvegate.toml",
        &format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n\n[upstream]\nca = \"cluster-ca.pem\"\nconnect_timeout_secs = 2\n\n{}\n{}\n{}\n[policy]\nfiles = [\"homelab.toml\"]\n\n[admin]\naddress = \"127.0.0.1:0\"\n",
            node("pve1", true),
            node("pve2", true),
            node("pve3", false),
        ),
    );
    let (child, rx) = spawn_serve(&cfg, &[]);
    let admin = address_in(&rx, "admin listener");
    let addr = address_in(&rx, "pvegate listening");
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        while let Ok(line) = rx.recv() {
            if !line.contains("pvegate::audit") {
                eprintln!("pvegate: {line}");
            }
        }
    });
    Served {
        child,
        addr,
        admin,
        _dir: dir,
    }
}

async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n")).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Polls `/readyz` (bounded: the probe runs every 5 s) until its body contains `want`.
async fn wait_readyz(addr: SocketAddr, status: u16, want: &str) -> String {
    for _ in 0..200 {
        let (s, body) = admin_get(addr, "/readyz").await;
        if s == status && body.contains(want) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, body) = admin_get(addr, "/readyz").await;
    panic!("/readyz never answered {status} with {want:?}; last: {s} {body}");
}

fn up_metric(text: &str, node: &str) -> f64 {
    let series = format!("pvegate_upstream_up{{node=\"{node}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Which nodes recorded a request with this method and path prefix.
fn landed(cluster: &SimCluster, method: &str, path: &str) -> Vec<String> {
    cluster
        .recorder
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path().starts_with(path))
        .map(|r| r.node)
        .collect()
}

fn login() -> String {
    let body = format!("username={DEMO_USER}&password={DEMO_PASSWORD}");
    format!(
        "POST /api2/json/access/ticket HTTP/1.1\r\nHost: pve\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_stopped_mid_run() {
    let cluster = pvegate_sim::start_cluster(SimConfig {
        tls: true,
        ..SimConfig::demo_cluster(3)
    })
    .await
    .unwrap();
    let served = serve(&cluster);
    let gate = served.addr;

    // All three nodes up, each named in /readyz and the metrics.
    let body = wait_readyz(served.admin, 200, "node pve3: up").await;
    assert!(
        body.contains("node pve1: up") && body.contains("node pve2: up"),
        "{body}"
    );
    let (_, metrics) = admin_get(served.admin, "/metrics").await;
    for n in ["pve1", "pve2", "pve3"] {
        assert_eq!(up_metric(&metrics, n), 1.0, "{n}");
    }

    // A cluster-wide read goes to the first node; a node's own read to that node; the TLS of
    // each (pinned, or through the cluster CA) is verified.
    let r = raw(gate, &get("/api2/json/cluster/resources")).await;
    assert_eq!(r.status, 200, "{}", r.message());
    assert_eq!(
        landed(&cluster, "GET", "/api2/json/cluster/resources"),
        ["pve1"]
    );
    let r = raw(gate, &get("/api2/json/nodes/pve3/qemu/110/status/current")).await;
    assert_eq!(r.status, 200, "{}", r.message());
    assert_eq!(
        landed(
            &cluster,
            "GET",
            "/api2/json/nodes/pve3/qemu/110/status/current"
        ),
        ["pve3"]
    );

    // Proxmox-internal headers from a client never reach a node.
    let smuggled = "GET /api2/json/nodes/pve2/status HTTP/1.1\r\nHost: pve\r\nAuthorization: PVEAPIToken=root@pam!tofu=11111111-2222-3333-4444-555555555555\r\nPVEDisableProxy: 1\r\nPVEClientIP: 6.6.6.6\r\n\r\n";
    let r = raw(gate, smuggled).await;
    assert_eq!(r.status, 200, "{}", r.message());
    let rec = cluster
        .recorder
        .requests()
        .into_iter()
        .find(|r| r.path() == "/api2/json/nodes/pve2/status")
        .expect("the read arrived");
    assert!(
        rec.header("pvedisableproxy").is_none() && rec.header("pveclientip").is_none(),
        "{:?}",
        rec.headers
    );

    // A console ticket call goes to the node it names, and only there.
    let r = raw(
        gate,
        &form(
            "POST",
            "/api2/json/nodes/pve3/qemu/110/vncproxy",
            "websocket=1",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.message());
    assert_eq!(
        landed(&cluster, "POST", "/api2/json/nodes/pve3/qemu/110/vncproxy"),
        ["pve3"]
    );

    // pve1 goes down.
    cluster.node("pve1").stop().await;
    cluster.recorder.clear();

    // A login (a POST: never replayed once it may have reached a node) fails over, because
    // the connection to pve1 was refused before anything was sent.
    let r = raw(gate, &login()).await;
    assert_eq!(r.status, 200, "{}", r.message());
    assert!(r.json()["data"]["ticket"].as_str().is_some());
    assert_eq!(
        landed(&cluster, "POST", "/api2/json/access/ticket"),
        ["pve2"]
    );
    // That failure marked pve1 down at once: /readyz says so and stays 200.
    let body = wait_readyz(served.admin, 200, "node pve1: down").await;
    assert!(body.contains("node pve2: up"), "{body}");
    let (_, metrics) = admin_get(served.admin, "/metrics").await;
    assert_eq!(up_metric(&metrics, "pve1"), 0.0);
    assert_eq!(up_metric(&metrics, "pve2"), 1.0);

    // Reads keep working, now from pve2.
    for _ in 0..3 {
        let r = raw(gate, &get("/api2/json/cluster/resources")).await;
        assert_eq!(r.status, 200, "{}", r.message());
    }
    assert_eq!(
        landed(&cluster, "GET", "/api2/json/cluster/resources"),
        ["pve2", "pve2", "pve2"]
    );
    // Allowed changes keep working.
    let r = raw(
        gate,
        &form("POST", "/api2/json/nodes/pve3/qemu/110/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.message());
    let r = raw(
        gate,
        &form(
            "PUT",
            "/api2/json/nodes/pve3/qemu/110/config",
            "description=failover",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.message());
    assert!(!cluster.guest(110).unwrap().running, "110 was stopped");

    // Refusals are unchanged and reach no node.
    for (path, vmid) in [
        ("/api2/json/nodes/pve2/qemu/109/status/stop", 109),
        ("/api2/json/nodes/pve1/qemu/104/status/stop", 104),
    ] {
        let r = raw(gate, &form("POST", path, "")).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(
            r.message().contains(&format!("VM {vmid}")),
            "{}",
            r.message()
        );
    }
    assert!(landed(&cluster, "POST", "/api2/json/nodes/pve2/qemu/109").is_empty());
    assert!(landed(&cluster, "POST", "/api2/json/nodes/pve1/qemu/104").is_empty());

    // A console on the stopped node: 503 naming it, in Proxmox's shape, and no other node
    // is asked (it could not serve the websocket that goes with it).
    let r = raw(
        gate,
        &form("POST", "/api2/json/nodes/pve1/lxc/120/termproxy", ""),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.message());
    assert!(r.message().contains("node pve1 is down"), "{}", r.message());
    assert!(r.json()["data"].is_null());
    let ws = "GET /api2/json/nodes/pve1/lxc/120/vncwebsocket?port=5900&vncticket=x HTTP/1.1\r\nHost: pve\r\nAuthorization: PVEAPIToken=root@pam!tofu=11111111-2222-3333-4444-555555555555\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let r = raw(gate, ws).await;
    assert_eq!(r.status, 503, "{}", r.reason);
    assert!(r.reason.contains("pve1"), "{}", r.reason);
    assert!(landed(&cluster, "POST", "/api2/json/nodes/pve1/lxc/120").is_empty());
    assert!(landed(
        &cluster,
        "GET",
        "/api2/json/nodes/pve1/lxc/120/vncwebsocket"
    )
    .is_empty());

    // pve1 comes back: the probe marks it up and it takes its place first again.
    cluster.node("pve1").start().await.unwrap();
    wait_readyz(served.admin, 200, "node pve1: up").await;
    cluster.recorder.clear();
    let r = raw(gate, &get("/api2/json/cluster/resources")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        landed(&cluster, "GET", "/api2/json/cluster/resources"),
        ["pve1"]
    );

    // Every node down: not ready, and a read is a 502 in Proxmox's shape.
    cluster.shutdown().await;
    let body = wait_readyz(served.admin, 503, "node pve3: down").await;
    assert!(body.contains("not ready"), "{body}");
    let r = raw(gate, &get("/api2/json/cluster/resources")).await;
    assert_eq!(r.status, 502);
    assert!(r.message().contains("pvegate"), "{}", r.message());
}
