//! Cluster mode: several simulated nodes (`pve1`, `pve2`, `pve3`), each on its own listener
//! with its own certificate (all signed by one cluster CA), sharing one cluster state.
//!
//! Like a Proxmox cluster, every node answers `/cluster/*` the same, and answers
//! `/nodes/{other}/…` for another node as pveproxy does when it forwards a call internally
//! (a stopped node's calls fail with 595). Uploads and console websockets (and the
//! `vncproxy`/`termproxy`/`vncshell` calls whose tickets they use) are served only by the
//! node they name. Each node can be stopped and started again on the same address
//! ([`SimNode::stop`], [`SimNode::start`]); each records the requests it receives, and the
//! cluster records them all ([`SimCluster::recorder`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::{accept_loop, bind, tls, Common, Recorder, Shared, SimConfig, SimGuest};

/// One node of a [`SimCluster`].
pub struct SimNode {
    /// The node name (`pve1`).
    pub name: String,
    /// The address it listens on (kept across restarts).
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub url: String,
    /// With TLS: SHA-256 of this node's certificate, `AB:CD:…`.
    pub fingerprint: Option<String>,
    /// With TLS: this node's certificate (PEM).
    pub cert_pem: Option<String>,
    /// The requests this node received.
    pub recorder: Recorder,
    common: Arc<Common>,
    acceptor: Option<TlsAcceptor>,
    running: Mutex<Option<Running>>,
}

struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl SimNode {
    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the node is serving.
    pub fn is_running(&self) -> bool {
        self.running().is_some()
    }

    /// Stops the node: it stops listening, closes its open connections (websockets
    /// included), and the other nodes report it offline. Returns once the port is free.
    pub async fn stop(&self) {
        let run = self.running().take();
        if let Some(run) = run {
            let _ = run.shutdown.send(true);
            let _ = run.task.await;
        }
        self.common.state().offline.insert(self.name.clone());
    }

    /// Starts the node again on the same address (a no-op when it is running).
    pub async fn start(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        self.launch(listener);
        Ok(())
    }

    fn launch(&self, listener: tokio::net::TcpListener) {
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            common: self.common.clone(),
            node: self.name.clone(),
            fingerprint: self
                .fingerprint
                .clone()
                .unwrap_or_else(|| plain_fingerprint(&self.name)),
            cert_pem: self.cert_pem.clone().unwrap_or_default(),
            recorder: self.recorder.clone(),
            shutdown: rx.clone(),
        });
        self.common.state().offline.remove(&self.name);
        let task = tokio::spawn(accept_loop(listener, self.acceptor.clone(), shared, rx));
        *self.running() = Some(Running { shutdown: tx, task });
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        if let Some(run) = self.running().take() {
            let _ = run.shutdown.send(true);
        }
    }
}

fn plain_fingerprint(node: &str) -> String {
    tls::fingerprint_of(format!("pvegate sim: plain HTTP, node {node}").as_bytes())
}

/// A running simulated cluster. Dropping it stops every node.
pub struct SimCluster {
    /// The nodes, in [`SimConfig::nodes`] order.
    pub nodes: Vec<SimNode>,
    /// Every request any node received, in arrival order ([`crate::Recorded::node`] says
    /// which node).
    pub recorder: Recorder,
    /// With TLS: the cluster CA (PEM) that signed every node's certificate.
    pub ca_pem: Option<String>,
    common: Arc<Common>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl SimCluster {
    /// The node called `name`.
    ///
    /// # Panics
    /// When there is no such node (a test's mistake).
    pub fn node(&self, name: &str) -> &SimNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("the sim cluster has no node '{name}'"))
    }

    /// The guests as they are now (with the node each is on).
    pub fn guests(&self) -> Vec<SimGuest> {
        self.common.guests()
    }

    /// One guest as it is now.
    pub fn guest(&self, vmid: u32) -> Option<SimGuest> {
        self.guests().into_iter().find(|g| g.vmid == vmid)
    }

    /// A valid ticket and CSRF prevention token for `user` (valid on every node).
    pub fn issue_ticket(&self, user: &str) -> (String, String) {
        self.common.issue_ticket(user)
    }

    /// Serves `body` at `path` on every node from now on.
    pub fn add_static_file(&self, path: &str, content_type: &str, body: impl Into<Bytes>) {
        self.common.add_static_file(path, content_type, body.into());
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for n in &self.nodes {
            n.stop().await;
        }
    }
}

/// Starts every node of `cfg` ([`SimConfig::node_names`], e.g. [`SimConfig::demo_cluster`])
/// on `127.0.0.1:0`, one listener each.
pub async fn start_cluster(cfg: SimConfig) -> io::Result<SimCluster> {
    let addrs = vec![SocketAddr::from(([127, 0, 0, 1], 0)); cfg.node_names().len()];
    start_cluster_on(&addrs, cfg).await
}

/// Starts every node of `cfg`, node `i` listening on `addrs[i]` (`pvegate sim --cluster`).
pub async fn start_cluster_on(addrs: &[SocketAddr], cfg: SimConfig) -> io::Result<SimCluster> {
    let names = cfg.node_names();
    if addrs.len() != names.len() {
        return Err(io::Error::other(format!(
            "sim cluster: {} addresses for {} nodes",
            addrs.len(),
            names.len()
        )));
    }
    let common = Arc::new(Common::new(&cfg)?);
    let ca = if cfg.tls { Some(tls::new_ca()?) } else { None };
    let mut nodes = Vec::new();
    for (name, addr) in names.iter().zip(addrs) {
        let material = match &ca {
            Some(ca) => Some(tls::node_material(ca, name)?),
            None => None,
        };
        let listener = bind(*addr)?;
        let addr = listener.local_addr()?;
        let scheme = if cfg.tls { "https" } else { "http" };
        let fingerprint = material.as_ref().map(|m| m.fingerprint.clone());
        common.state().fingerprints.insert(
            name.clone(),
            fingerprint
                .clone()
                .unwrap_or_else(|| plain_fingerprint(name)),
        );
        let node = SimNode {
            name: name.clone(),
            addr,
            url: format!("{scheme}://{addr}"),
            fingerprint,
            cert_pem: material.as_ref().map(|m| m.cert_pem.clone()),
            recorder: Recorder::default(),
            common: common.clone(),
            acceptor: material
                .as_ref()
                .map(|m| TlsAcceptor::from(m.config.clone())),
            running: Mutex::new(None),
        };
        node.launch(listener);
        nodes.push(node);
    }
    Ok(SimCluster {
        nodes,
        recorder: common.combined.clone(),
        ca_pem: ca.as_ref().map(tls::Ca::pem),
        common,
    })
}
