//! `pvegate demo`: a simulated Proxmox with pvegate in front of it, using the shipped homelab
//! policy, a short guided tour, and curl lines to try. Needs nothing but the binary. Built with
//! the `demo` feature (on by default), which brings in the simulator crate `pvegate-sim`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pvegate_sim::{self as sim, SimConfig};

use crate::config::{self, LogFormat, Trust};
use crate::policy::{Policy, PolicyStore};
use crate::server::Listener;
use crate::{commands, stack, upstream};

/// The policy the demo runs with (the repo's `policies/homelab.toml`).
pub const HOMELAB_POLICY: &str = include_str!("../policies/homelab.toml");

const TOKEN: &str = "root@pam!tofu=11111111-2222-3333-4444-555555555555";

/// Runs the demo. With `tour_only`, prints the tour and returns instead of serving.
pub async fn run(listen: Option<SocketAddr>, tour_only: bool) -> anyhow::Result<()> {
    commands::init_logging(
        LogFormat::Text,
        if tour_only {
            "warn"
        } else {
            "warn,pvegate::audit=info"
        },
    );
    let sim = sim::start(SimConfig {
        tls: true,
        ..SimConfig::demo()
    })
    .await?;
    let fingerprint = sim
        .fingerprint
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the simulated Proxmox has no TLS certificate"))?;
    let uri: http::Uri = sim.url.parse()?;
    let up_cfg = config::Upstream {
        scheme: http::uri::Scheme::HTTPS,
        authority: uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("sim url has no host"))?,
        trust: Trust::Fingerprint(
            config::parse_fingerprint(&fingerprint).map_err(anyhow::Error::msg)?,
        ),
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: Duration::from_secs(3),
    };
    let upstream = upstream::Upstream::new(&up_cfg)?;
    let store = PolicyStore::new(
        Policy::from_toml_str("policies/homelab.toml", HOMELAB_POLICY)?,
        vec![],
    );
    let wanted = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8006)));
    let listener = match Listener::bind(wanted, None).await {
        Ok(l) => l,
        Err(e) if listen.is_none() => {
            eprintln!("note: {e}; using a free port instead");
            Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None).await?
        }
        Err(e) => return Err(e.into()),
    };
    let addr = listener.local_addr()?;
    let server = tokio::spawn(listener.serve(stack::build(store, upstream)));
    let base = format!("http://{addr}");

    println!("pvegate demo");
    println!(
        "  simulated Proxmox  {}  (certificate pinned: {fingerprint})",
        sim.url
    );
    println!("  pvegate            {base}  (policy: policies/homelab.toml)");
    println!("  guests             104 doc1 and 109 igp are readonly; 110 tofu-web, 120, 9001 are managed");
    println!();
    println!("Guided tour (each line: request -> what the client got):");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let tour: [(&str, &str, &str); 7] = [
        ("GET", "/api2/json/nodes/pve/qemu/104/status/current", ""),
        ("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
        ("POST", "/api2/json/nodes/pve/qemu/110/status/stop", ""),
        ("PUT", "/api2/json/nodes/pve/qemu/109/config", "memory=8192"),
        (
            "POST",
            "/api2/json/nodes/pve/qemu/9001/clone",
            "newid=104&name=oops",
        ),
        ("POST", "/api2/json/nodes/pve/stopall?vms", "vms=110"),
        (
            "POST",
            "/api2/json/nodes/pve/qemu%2F104%2Fstatus%2Fstop",
            "",
        ),
    ];
    for (method, path, body) in tour {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("Authorization", format!("PVEAPIToken={TOKEN}"));
        if !body.is_empty() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())))?;
        let res = client.request(req).await?;
        let status = res.status();
        let reason = res
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        let bytes = res.into_body().collect().await?.to_bytes();
        let shown = if status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let short: String = text.chars().take(70).collect();
            format!("{} {}", status.as_u16(), short)
        } else {
            format!("{} {}", status.as_u16(), reason)
        };
        let body_note = if body.is_empty() {
            String::new()
        } else {
            format!(" [{body}]")
        };
        println!("  {method:<6} {path}{body_note}\n         -> {shown}");
    }
    println!(
        "  upstream received {} request(s); the refused ones never reached it.",
        sim.recorder.len()
    );
    if tour_only {
        server.abort();
        return Ok(());
    }
    println!();
    println!("Try it yourself (Ctrl-C to stop):");
    let auth = format!("-H 'Authorization: PVEAPIToken={TOKEN}'");
    println!("  curl -s {auth} {base}/api2/json/cluster/resources");
    println!("  curl -si -X POST {auth} {base}/api2/json/nodes/pve/qemu/104/status/shutdown");
    println!("  curl -si -X POST {auth} {base}/api2/json/nodes/pve/qemu/110/status/start");
    println!(
        "  curl -si -X PUT {auth} --data 'cores=4' {base}/api2/extjs/nodes/pve/qemu/109/config"
    );
    println!("  pvegate check --config deploy/pvegate.example.toml POST /api2/json/nodes/pve/qemu/104/status/stop");
    println!("Audit events follow on stderr.");
    tokio::signal::ctrl_c().await?;
    server.abort();
    Ok(())
}
