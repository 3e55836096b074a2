//! `pvegate demo` and `pvegate sim`: try pvegate before pointing real tools at it.
//!
//! `demo` starts a simulated Proxmox with pvegate in front of it — the shipped homelab policy,
//! or the user's own (`--policy`, `--config`) — runs a short guided tour, then serves with curl
//! lines to try. `sim` runs the simulated Proxmox alone and prints how to reach it. Both need
//! nothing but the binary.
//! Built with the `demo` feature (on by default), which brings in the simulator crate
//! `pvegate-sim`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pvegate_sim::{self as sim, SimConfig, SimHandle};

mod cluster;

use crate::config::{self, Config, LogFormat, Trust};
use crate::policy::{Policy, PolicyStore};
use crate::server::Listener;
use crate::{commands, logsink, stack, upstream};

/// The policy the demo runs with (the repo's `policies/homelab.toml`).
pub const HOMELAB_POLICY: &str = include_str!("../policies/homelab.toml");

const TOKEN: &str = "root@pam!tofu=11111111-2222-3333-4444-555555555555";

/// What `pvegate demo` was asked to do.
#[derive(Debug, Default, Clone)]
pub struct DemoOptions {
    /// Address for pvegate (default 127.0.0.1:8006, or a free port if that is taken).
    pub listen: Option<SocketAddr>,
    /// Print the tour and return instead of serving.
    pub tour_only: bool,
    /// The user's own policy files (instead of the homelab policy).
    pub policy: Vec<PathBuf>,
    /// The user's own config: its policy files are used, its upstream is replaced by the sim.
    pub config: Option<PathBuf>,
}

/// Where the demo's policy came from.
struct PolicySource {
    /// Files on disk to load (and watch); empty: the built-in homelab policy.
    files: Vec<PathBuf>,
    /// How to name it in the banner.
    label: String,
}

fn policy_source(opts: &DemoOptions) -> anyhow::Result<PolicySource> {
    if let Some(cfg) = &opts.config {
        let c = Config::load(cfg)?;
        // Absolute, so the config the demo writes elsewhere still finds them.
        let files = c
            .policy_files
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        return Ok(PolicySource {
            label: format!(
                "from {} ({} file(s); its upstream is replaced by the simulated Proxmox)",
                cfg.display(),
                c.policy_files.len()
            ),
            files,
        });
    }
    if !opts.policy.is_empty() {
        let mut files = Vec::new();
        for p in &opts.policy {
            // Absolute, so the `pvegate check` lines printed below work from any directory.
            let abs = std::fs::canonicalize(p).map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read the policy file: {e} (give the path of a policy TOML file)",
                    p.display()
                )
            })?;
            files.push(abs);
        }
        let label = files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(PolicySource { files, label });
    }
    Ok(PolicySource {
        files: Vec::new(),
        label: "policies/homelab.toml (built in)".into(),
    })
}

/// A scratch directory holding a config (and the built-in policy) that `pvegate check` and
/// `pvegate serve` can use from anywhere while the demo runs. Removed on drop.
struct Scratch {
    dir: PathBuf,
    config: PathBuf,
}

impl Scratch {
    fn write(
        sim: &SimHandle,
        fingerprint: &str,
        policy_files: &[PathBuf],
    ) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("pvegate-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let files: Vec<PathBuf> = if policy_files.is_empty() {
            let p = dir.join("homelab.toml");
            std::fs::write(&p, HOMELAB_POLICY)?;
            vec![p]
        } else {
            policy_files.to_vec()
        };
        let files_toml = files
            .iter()
            .map(|p| toml_string(&p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let config = dir.join("pvegate.toml");
        std::fs::write(
            &config,
            format!(
                "# Written by `pvegate demo`: the simulated Proxmox as upstream. Removed when the demo stops.\n\
                 [listen]\naddress = \"127.0.0.1:0\"\n\n[upstream]\nurl = {}\nfingerprint = {}\n\n[policy]\nfiles = [{files_toml}]\n",
                toml_string(&sim.url),
                toml_string(fingerprint),
            ),
        )?;
        Ok(Scratch { dir, config })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Guests of the user's policy worth a tour line: the first guest of each rule that refuses
/// something, not already in the fixed tour.
fn extra_tour_guests(policy: &Policy) -> Vec<u32> {
    let fixed = [104u32, 109, 110, 120, 9001];
    let mut out: Vec<u32> = policy
        .rules()
        .iter()
        .filter(|r| r.refuses(crate::pve::Action::PowerStop))
        .map(|r| r.vmids.0)
        .filter(|v| !fixed.contains(v))
        .collect();
    out.sort_unstable();
    out.dedup();
    out.truncate(3);
    out
}

/// Runs the demo. With `tour_only`, prints the tour and returns instead of serving.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let listen = opts.listen;
    let tour_only = opts.tour_only;
    let source = policy_source(&opts)?;
    let policy = if source.files.is_empty() {
        Policy::from_toml_str("policies/homelab.toml", HOMELAB_POLICY)?
    } else {
        Policy::load(&source.files)?
    };
    let extra = extra_tour_guests(&policy);
    // Diagnostics from warnings up. Audit lines are always written; the tour's are held back
    // until the tour is printed (released below, or dropped with `--tour-only`).
    commands::init_logging(LogFormat::Text, "warn", None)?;
    logsink::hold(true);
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
    let store = PolicyStore::new(policy, source.files.clone());
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
    let store_for_watch = store.clone();
    let server = tokio::spawn(listener.serve(stack::build(store, upstream)));
    let base = format!("http://{addr}");

    println!("pvegate demo");
    println!(
        "  simulated Proxmox  {}  (certificate pinned: {fingerprint})",
        sim.url
    );
    println!("  pvegate            {base}");
    println!("  policy             {}", source.label);
    if source.files.is_empty() {
        println!("  guests             104 doc1 and 109 igp are readonly; 110 tofu-web, 120, 9001 are managed");
    } else {
        println!("  simulated guests   104 doc1, 109 igp, 110 tofu-web, 120 scratch-ct, 9001 debian-tmpl (template)");
    }
    println!(
        "  credentials        API token {TOKEN}, or ticket login {} / {}",
        sim::DEMO_USER,
        sim::DEMO_PASSWORD
    );
    println!();
    println!("Guided tour (each line: request -> what the client got):");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let extra_paths: Vec<String> = extra
        .iter()
        .map(|v| format!("/api2/json/nodes/pve/qemu/{v}/status/stop"))
        .collect();
    let fixed_tour: [(&str, &str, &str); 7] = [
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
    let tour = fixed_tour
        .iter()
        .copied()
        .chain(extra_paths.iter().map(|p| ("POST", p.as_str(), "")));
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
    let scratch = Scratch::write(&sim, &fingerprint, &source.files)?;
    println!();
    println!("Try it yourself (Ctrl-C to stop):");
    let auth = format!("-H 'Authorization: PVEAPIToken={TOKEN}'");
    println!("  curl -s {auth} {base}/api2/json/cluster/resources");
    println!("  curl -si -X POST {auth} {base}/api2/json/nodes/pve/qemu/104/status/shutdown");
    println!("  curl -si -X POST {auth} {base}/api2/json/nodes/pve/qemu/110/status/start");
    println!(
        "  curl -si -X PUT {auth} --data 'cores=4' {base}/api2/extjs/nodes/pve/qemu/109/config"
    );
    println!(
        "  curl -s --data-urlencode 'username={}' --data-urlencode 'password={}' {base}/api2/json/access/ticket",
        sim::DEMO_USER,
        sim::DEMO_PASSWORD
    );
    println!(
        "  pvegate check --config {} POST /api2/json/nodes/pve/qemu/104/status/stop",
        scratch.config.display()
    );
    println!(
        "  pvegate policy show --config {}",
        scratch.config.display()
    );
    if !source.files.is_empty() {
        println!("Edits to the policy file(s) apply within 2 s (a policy that fails to load keeps the last good one; the error is logged).");
        tokio::spawn(store_watch(store_for_watch));
    }
    println!("Audit events follow on stderr.");
    // The tour's own audit lines were held back so that the tour reads on its own.
    logsink::hold(false);
    tokio::signal::ctrl_c().await?;
    server.abort();
    drop(scratch);
    Ok(())
}

async fn store_watch(store: PolicyStore) {
    store.watch(Duration::from_secs(2)).await;
}

/// What `pvegate sim` was asked to do.
#[derive(Debug, Default, Clone)]
pub struct SimOptions {
    /// Address to listen on (default: a free port on 127.0.0.1).
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP instead of HTTPS.
    pub plain: bool,
    /// Also write the CA certificate (PEM) here, for `[upstream] ca`.
    pub ca_out: Option<PathBuf>,
    /// Run a cluster of this many nodes (`pve1`…) instead of the single node `pve`.
    pub cluster: Option<usize>,
}

/// `pvegate sim`: runs the simulated Proxmox alone until Ctrl-C, prints its URL, certificate
/// fingerprint, API token and ticket login, then one line per request it receives.
pub async fn run_sim(opts: SimOptions) -> anyhow::Result<()> {
    if let Some(n) = opts.cluster {
        return cluster::run(opts, n).await;
    }
    let addr = opts
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let sim = sim::start_on(
        addr,
        SimConfig {
            tls: !opts.plain,
            ..SimConfig::demo()
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e} (choose another --listen address)")
    })?;
    if let (Some(path), Some(pem)) = (&opts.ca_out, &sim.ca_pem) {
        write_ca(path, pem)?;
    }
    print!("{}", sim_banner(&sim, opts.ca_out.as_deref()));
    if !addr.ip().is_loopback() {
        eprintln!("warning: the simulated Proxmox listens on {addr}: anyone who can reach it can use the demo credentials above");
    }
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut stop => { r?; break; }
            _ = tick.tick() => {
                if sim.recorder.len() > seen {
                    let all = sim.recorder.requests();
                    for r in &all[seen.min(all.len())..] {
                        println!("received {} {}", r.method, r.path());
                    }
                    seen = all.len();
                }
            }
        }
    }
    sim.shutdown();
    Ok(())
}

fn write_ca(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).map_err(|e| {
        anyhow::anyhow!(
            "--ca-out {}: cannot write the CA certificate: {e} (give a writable file path)",
            path.display()
        )
    })
}

/// The text `pvegate sim` prints at start: how to reach the sim, and a config for pvegate.
pub fn sim_banner(sim: &SimHandle, ca_out: Option<&Path>) -> String {
    let mut s = String::new();
    s.push_str("simulated Proxmox VE (node pve)\n");
    s.push_str(&format!("  url          {}\n", sim.url));
    if let Some(fp) = &sim.fingerprint {
        s.push_str(&format!("  fingerprint  {fp}\n"));
    }
    if let Some(p) = ca_out {
        s.push_str(&format!("  ca           {}\n", p.display()));
    }
    sim_credentials(&mut s);
    s.push_str("  guests       104 doc1, 109 igp, 110 tofu-web (QEMU, running), 120 scratch-ct (LXC), 9001 debian-tmpl (template)\n");
    s.push_str("\nPut pvegate in front of it with:\n");
    s.push_str(&format!(
        "  [upstream]\n  url = {}\n",
        toml_string(&sim.url)
    ));
    if let Some(fp) = &sim.fingerprint {
        s.push_str(&format!("  fingerprint = {}\n", toml_string(fp)));
    }
    s.push_str("\nEach request the simulator receives is printed below (Ctrl-C to stop).\n");
    s
}

/// The simulator's demo credentials, as `pvegate sim` prints them (one node or a cluster).
fn sim_credentials(s: &mut String) {
    s.push_str(&format!(
        "  api token    PVEAPIToken={}={}\n",
        sim::DEMO_TOKEN_ID,
        sim::DEMO_TOKEN_SECRET
    ));
    s.push_str(&format!(
        "  auditor token PVEAPIToken={}={} (read-only, for [inventory] token_file)\n",
        sim::DEMO_AUDITOR_TOKEN_ID,
        sim::DEMO_AUDITOR_TOKEN_SECRET
    ));
    s.push_str(&format!(
        "  ticket login user {} password {}\n",
        sim::DEMO_USER,
        sim::DEMO_PASSWORD
    ));
}
