//! pvegate-sim: a simulated Proxmox VE API server for `pvegate demo` and pvegate's tests.
//!
//! It speaks HTTP/1.1 (plain or TLS) the way pveproxy does where clients notice: the API
//! envelope per format, reason phrases carrying the error text, tickets with CSRF tokens and
//! API tokens, UPIDs and task polling, guest power state and config, snapshots, console
//! websockets (echoed), streamed multipart uploads, pveproxy's framing refusals (chunked
//! bodies, bodies on GET/DELETE, oversized bodies), its response compression (gzip for
//! content over 1 KiB when the client accepts it) and its connection handling (5 s idle
//! timeout, `Connection: close` after every error).
//!
//! It also keeps what a cluster knows: guests' tags, names, pools, templates, protection,
//! passthrough devices and disks; pools, storages, resource mappings, backup jobs, HA
//! resources, groups and rules, datacenter options ([`ClusterSeed`]); and answers the node and
//! cluster reads of monitoring tools and the web UI in PVE 9.1's `returns` shapes.
//!
//! Every request is recorded as received ([`Recorder`]) before it is routed, including the
//! ones the sim refuses, so a test can check exactly what a proxy forwarded.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo()).await?;
//! println!("Proxmox sim at {}", sim.url);
//! // … point a client or pvegate at sim.url …
//! for r in sim.recorder.requests() {
//!     println!("{} {}", r.method, r.target);
//! }
//! # Ok(()) }
//! ```
//!
//! Cluster mode ([`start_cluster`]): several nodes on their own listeners share one cluster
//! state; each can be stopped and started again.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let cluster = pvegate_sim::start_cluster(pvegate_sim::SimConfig::demo_cluster(3)).await?;
//! let pve2 = cluster.node("pve2");
//! pve2.stop().await; // pve1 and pve3 now report it offline and answer 595 for it
//! pve2.start().await?; // back on the same address
//! for r in cluster.recorder.requests() {
//!     println!("{} got {} {}", r.node, r.method, r.target);
//! }
//! # Ok(()) }
//! ```
//!
//! Modules: `front` (pveproxy's request order), `api` (routes), `cluster_api` (pools,
//! storages, mappings, backup jobs, HA, options), `node_info` (subscription, apt, disks,
//! hardware), `shapes` (the schema's answer type of unmodelled reads), `state` (guests,
//! tasks, storage, `state::cluster` for the cluster configuration), `seed` (what a sim starts
//! with), `cluster` (cluster mode), `auth` (tickets, CSRF, tokens), `params`, `reply` (envelopes, reason
//! phrases), `record`, `tls`, `ws` (console echo), `upload` (multipart), `web` (index and
//! static files), `gzip` (pveproxy's response compression), `guestnet` (guest addresses: agent, LXC
//! interfaces).
//!
//! The crate depends on nothing in the proxy (pvegate uses it, never the other way round),
//! and a proxy-only build of pvegate (`--no-default-features`) does not compile it.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod cluster;
mod cluster_api;
mod front;
mod guestnet;
mod gzip;
mod node_info;
mod params;
mod record;
mod reply;
mod seed;
mod shapes;
mod state;
mod tls;
mod upload;
mod web;
mod ws;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use cluster::{start_cluster, start_cluster_on, SimCluster, SimNode};
pub use record::{Recorded, Recorder};
pub use seed::{ClusterSeed, SimEntry, SimPool};

/// pveproxy closes a keep-alive connection idle for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The kind of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// A QEMU virtual machine (`/nodes/{node}/qemu/{vmid}`).
    Qemu,
    /// An LXC container (`/nodes/{node}/lxc/{vmid}`).
    Lxc,
}

/// A guest the sim starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGuest {
    /// The VMID.
    pub vmid: u32,
    /// The guest's name (`name` for QEMU, `hostname` for LXC).
    pub name: String,
    /// QEMU or LXC.
    pub kind: GuestKind,
    /// Whether it is running.
    pub running: bool,
    /// Whether it is a template.
    pub template: bool,
    /// Its tags (`tags: a;b` in the config), in the order given.
    pub tags: Vec<String>,
    /// The resource pool it belongs to.
    pub pool: Option<String>,
    /// The node it lives on; `None`: the first node of the sim.
    pub node: Option<String>,
    /// Config keys set on top of the default config (`hostpci0`, `protection`, `scsi1`,
    /// `mp0`, …); an empty value removes a default key.
    pub config: Vec<(String, String)>,
}

impl SimGuest {
    /// A QEMU guest that is not a template.
    pub fn qemu(vmid: u32, name: &str, running: bool) -> Self {
        SimGuest {
            vmid,
            name: name.to_owned(),
            kind: GuestKind::Qemu,
            running,
            template: false,
            tags: Vec::new(),
            pool: None,
            node: None,
            config: Vec::new(),
        }
    }

    /// An LXC guest that is not a template.
    pub fn lxc(vmid: u32, name: &str, running: bool) -> Self {
        SimGuest {
            vmid,
            name: name.to_owned(),
            kind: GuestKind::Lxc,
            running,
            template: false,
            tags: Vec::new(),
            pool: None,
            node: None,
            config: Vec::new(),
        }
    }

    /// The same guest as a template (stopped).
    #[must_use]
    pub fn template(mut self) -> Self {
        self.template = true;
        self.running = false;
        self
    }

    /// The same guest with these tags.
    #[must_use]
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// The same guest in resource pool `pool` (the pool is created if no
    /// [`ClusterSeed::pools`] entry names it).
    #[must_use]
    pub fn pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.to_owned());
        self
    }

    /// The same guest on node `node` (cluster mode).
    #[must_use]
    pub fn on(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }

    /// The same guest with config key `key` set to `value` (empty: removed).
    #[must_use]
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// How to start a sim.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Serve HTTPS (a fresh CA and node certificate) instead of plain HTTP.
    pub tls: bool,
    /// The node name (`pve`).
    pub node: String,
    /// The guests on the node.
    pub guests: Vec<SimGuest>,
    /// Users that can log in: (`user@realm`, password).
    pub users: Vec<(String, String)>,
    /// API tokens: (`user@realm!name`, secret).
    pub tokens: Vec<(String, String)>,
    /// Read-only API tokens (the PVEAuditor role on `/`): every read works, every other
    /// API call answers `403 Permission check failed`.
    pub auditor_tokens: Vec<(String, String)>,
    /// Extra static files outside `/api2`: (path such as `/pve2/js/x.js`, content type,
    /// bytes). They replace built-in files of the same path.
    pub static_files: Vec<(String, String, Vec<u8>)>,
    /// How many status polls of a new task answer `running` before `stopped` (0: never).
    pub task_running_polls: u32,
    /// The cluster's nodes for [`start_cluster`] (`pve1`, `pve2`, `pve3`); empty: the one
    /// node [`SimConfig::node`].
    pub nodes: Vec<String>,
    /// Pools, storages, mappings, backup jobs and HA.
    pub cluster: ClusterSeed,
}

impl Default for SimConfig {
    /// Plain HTTP, node `pve`, no guests, no users, tasks running for one poll.
    fn default() -> Self {
        SimConfig {
            tls: false,
            node: "pve".into(),
            guests: Vec::new(),
            users: Vec::new(),
            tokens: Vec::new(),
            auditor_tokens: Vec::new(),
            static_files: Vec::new(),
            task_running_polls: 1,
            nodes: Vec::new(),
            cluster: ClusterSeed::default(),
        }
    }
}

/// The demo user of [`SimConfig::demo`].
pub const DEMO_USER: &str = "root@pam";
/// The demo password of [`SimConfig::demo`].
pub const DEMO_PASSWORD: &str = "demo-password";
/// The demo API token id of [`SimConfig::demo`].
pub const DEMO_TOKEN_ID: &str = "root@pam!tofu";
/// The demo API token secret of [`SimConfig::demo`].
pub const DEMO_TOKEN_SECRET: &str = "11111111-2222-3333-4444-555555555555";
/// The demo's read-only token (PVEAuditor), e.g. for pvegate's own inventory.
pub const DEMO_AUDITOR_TOKEN_ID: &str = "pvegate@pve!inventory";
/// The secret of [`DEMO_AUDITOR_TOKEN_ID`].
pub const DEMO_AUDITOR_TOKEN_SECRET: &str = "66666666-7777-8888-9999-000000000000";

impl SimConfig {
    /// The demo node `pve`: 104 doc1 (tag `prod`, pool `production`), 109 igp (tag `prod`,
    /// `hostpci0: mapping=igpu`), 110 tofu-web (tag `tofu`, pool `lab`, a full clone of
    /// 9001) — QEMU, running; 120 scratch-ct (LXC, stopped, pool `lab`); 9001 debian-tmpl
    /// (QEMU template, stopped); the cluster configuration of [`ClusterSeed::demo`]; user
    /// `root@pam` / `demo-password`; token `root@pam!tofu` /
    /// `11111111-2222-3333-4444-555555555555`. Plain HTTP; set `tls` for HTTPS.
    pub fn demo() -> Self {
        SimConfig {
            guests: demo_guests(None),
            users: vec![(DEMO_USER.into(), DEMO_PASSWORD.into())],
            tokens: vec![(DEMO_TOKEN_ID.into(), DEMO_TOKEN_SECRET.into())],
            auditor_tokens: vec![(
                DEMO_AUDITOR_TOKEN_ID.into(),
                DEMO_AUDITOR_TOKEN_SECRET.into(),
            )],
            cluster: ClusterSeed::demo("pve", "pve"),
            ..SimConfig::default()
        }
    }

    /// The demo as a cluster of `n` nodes `pve1`…`pveN` (at least one) for
    /// [`start_cluster`]: the same guests spread over the nodes (104 and 120 on `pve1`, 109
    /// and 9001 on `pve2`, 110 on `pve3`, each on the last node when there are fewer), the
    /// iGPU mapping on 109's node, 104 pinned to `pve1`.
    pub fn demo_cluster(n: usize) -> Self {
        let nodes: Vec<String> = (1..=n.max(1)).map(|i| format!("pve{i}")).collect();
        let pick = |i: usize| nodes[i.min(nodes.len() - 1)].clone();
        let placement = [pick(0), pick(1), pick(2)];
        SimConfig {
            node: nodes[0].clone(),
            guests: demo_guests(Some(&placement)),
            cluster: ClusterSeed::demo(&placement[1], &placement[0]),
            nodes,
            ..SimConfig::demo()
        }
    }

    /// The cluster's node names: [`SimConfig::nodes`], or [`SimConfig::node`] alone.
    pub fn node_names(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.node.clone()]
        } else {
            self.nodes.clone()
        }
    }
}

/// The demo guests; `nodes` places them on three nodes (else all on the first node).
fn demo_guests(nodes: Option<&[String; 3]>) -> Vec<SimGuest> {
    let on = |g: SimGuest, i: usize| match nodes {
        Some(n) => g.on(&n[i]),
        None => g,
    };
    vec![
        on(
            SimGuest::qemu(104, "doc1", true)
                .tags(&["prod"])
                .pool("production"),
            0,
        ),
        on(
            SimGuest::qemu(109, "igp", true)
                .tags(&["prod"])
                .set("hostpci0", "mapping=igpu,pcie=1"),
            1,
        ),
        on(
            SimGuest::qemu(110, "tofu-web", true)
                .tags(&["tofu"])
                .pool("lab")
                .set("description", "cloned from template 9001 by OpenTofu"),
            2,
        ),
        on(SimGuest::lxc(120, "scratch-ct", false).pool("lab"), 0),
        on(SimGuest::qemu(9001, "debian-tmpl", false).template(), 1),
    ]
}

/// What every node of one sim shares (a single node is a cluster of one): the state, the
/// signing key (tickets are valid on every node, as with Proxmox's cluster-wide auth key),
/// users, tokens, static files and the combined request log.
pub(crate) struct Common {
    state: Mutex<state::State>,
    keys: auth::Keys,
    users: Vec<(String, String)>,
    /// Every token, read-only ones included.
    tokens: Vec<(String, String)>,
    /// The ids of the read-only tokens.
    auditors: Vec<String>,
    static_files: RwLock<web::StaticFiles>,
    /// Every request any node received.
    combined: Recorder,
    vnc_port: AtomicU32,
}

impl Common {
    fn new(cfg: &SimConfig) -> io::Result<Self> {
        let mut statics = web::builtin();
        for (path, ct, body) in &cfg.static_files {
            statics.insert(path.clone(), (ct.clone(), Bytes::from(body.clone())));
        }
        Ok(Common {
            state: Mutex::new(state::State::new(cfg)),
            keys: auth::Keys::generate()?,
            users: cfg.users.clone(),
            tokens: cfg
                .tokens
                .iter()
                .chain(&cfg.auditor_tokens)
                .cloned()
                .collect(),
            auditors: cfg
                .auditor_tokens
                .iter()
                .map(|(id, _)| id.clone())
                .collect(),
            static_files: RwLock::new(statics),
            combined: Recorder::default(),
            vnc_port: AtomicU32::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, state::State> {
        // Handlers never leave the state half-updated across a panic point: recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn static_files(&self) -> RwLockReadGuard<'_, web::StaticFiles> {
        self.static_files
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add_static_file(&self, path: &str, content_type: &str, body: Bytes) {
        self.static_files
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(path.to_owned(), (content_type.to_owned(), body));
    }

    fn guests(&self) -> Vec<SimGuest> {
        self.state().sim_guests()
    }

    fn issue_ticket(&self, user: &str) -> (String, String) {
        let now = auth::now();
        (self.keys.ticket(user, now), self.keys.csrf(user, now))
    }
}

/// What every connection to one node shares; the rest through [`Common`].
pub(crate) struct Shared {
    common: Arc<Common>,
    /// This node's name.
    node: String,
    /// The certificate fingerprint (a fixed stand-in when serving plain HTTP).
    fingerprint: String,
    /// The node certificate (PEM), empty when serving plain HTTP.
    cert_pem: String,
    /// The requests this node received.
    recorder: Recorder,
    shutdown: watch::Receiver<bool>,
}

impl std::ops::Deref for Shared {
    type Target = Common;

    fn deref(&self) -> &Common {
        &self.common
    }
}

impl Shared {
    /// Records a request on this node's log and the combined one.
    fn record(&self, mut rec: Recorded) {
        rec.node.clone_from(&self.node);
        self.common.combined.push(rec.clone());
        self.recorder.push(rec);
    }
}

/// A running sim. Dropping it (or [`SimHandle::shutdown`]) stops it.
pub struct SimHandle {
    /// The address it listens on (`127.0.0.1:PORT`).
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub url: String,
    /// With TLS: SHA-256 of the node certificate's DER, `AB:CD:…`, as Proxmox shows it.
    pub fingerprint: Option<String>,
    /// With TLS: the PEM of the CA that signed the node certificate (`pve-root-ca.pem`).
    pub ca_pem: Option<String>,
    /// Every request received.
    pub recorder: Recorder,
    common: Arc<Common>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("url", &self.url)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Stops accepting connections and closes open ones (websockets included).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Serves `body` at `path` (e.g. `/pve2/js/test.js`) from now on, replacing any file there.
    pub fn add_static_file(&self, path: &str, content_type: &str, body: impl Into<Bytes>) {
        self.common.add_static_file(path, content_type, body.into());
    }

    /// The guests as they are now (power state, name, template flag, tags, pool, node,
    /// config).
    pub fn guests(&self) -> Vec<SimGuest> {
        self.common.guests()
    }

    /// One guest as it is now.
    pub fn guest(&self, vmid: u32) -> Option<SimGuest> {
        self.guests().into_iter().find(|g| g.vmid == vmid)
    }

    /// A valid ticket and CSRF prevention token for `user`, without logging in.
    pub fn issue_ticket(&self, user: &str) -> (String, String) {
        self.common.issue_ticket(user)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a sim on `127.0.0.1:0`.
pub async fn start(cfg: SimConfig) -> io::Result<SimHandle> {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
}

/// Starts a sim listening on `addr` (`pvegate sim --listen`). It serves the first of
/// [`SimConfig::node_names`]; use [`start_cluster`] to serve every node.
pub async fn start_on(addr: SocketAddr, cfg: SimConfig) -> io::Result<SimHandle> {
    let common = Arc::new(Common::new(&cfg)?);
    let node = cfg.node_names().remove(0);
    let tls = if cfg.tls {
        Some(tls::generate(&node)?)
    } else {
        None
    };
    let listener = bind(addr)?;
    let addr = listener.local_addr()?;
    let fingerprint = tls.as_ref().map_or_else(
        || tls::fingerprint_of(b"pvegate sim: plain HTTP"),
        |t| t.fingerprint.clone(),
    );
    common
        .state()
        .fingerprints
        .insert(node.clone(), fingerprint.clone());
    let (tx, rx) = watch::channel(false);
    let recorder = common.combined.clone();
    let shared = Arc::new(Shared {
        common: common.clone(),
        node,
        fingerprint,
        cert_pem: tls
            .as_ref()
            .map_or_else(String::new, |t| t.cert_pem.clone()),
        recorder: Recorder::default(),
        shutdown: rx.clone(),
    });
    let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
    tokio::spawn(accept_loop(listener, acceptor, shared, rx));
    let scheme = if cfg.tls { "https" } else { "http" };
    Ok(SimHandle {
        addr,
        url: format!("{scheme}://{addr}"),
        fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
        ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
        recorder,
        common,
        shutdown: tx,
    })
}

/// A listening socket on `addr` (`SO_REUSEADDR`, so a stopped node can listen again on its
/// port at once).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("sim: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(tcp, peer, shared, shutdown).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(tls)) => serve_connection(tls, peer, shared, shutdown).await,
                        Ok(Err(e)) => tracing::debug!("sim: TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("sim: TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(front::handle(shared, peer, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // The header-read timer starts when the connection waits for a request head, so it
        // is also the keep-alive idle timeout.
        .header_read_timeout(IDLE_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("sim: connection from {peer}: {e}");
            }
        }
        _ = shutdown.changed() => {}
    }
}
