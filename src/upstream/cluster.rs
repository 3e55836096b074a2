//! Which Proxmox node a request goes to: one upstream (`[upstream] url`) or the nodes of a
//! cluster (`[[upstream.node]]`), each with its own connections, TLS trust and health.
//!
//! With several nodes:
//!
//! - A request only one node can serve goes to that node and nowhere else: uploads
//!   (`/nodes/<n>/storage/<s>/upload`), console websockets (`vncwebsocket`, `mtunnelwebsocket`)
//!   and the calls that open the console they pair with (`vncproxy`, `termproxy`,
//!   `spiceproxy`, `vncshell`, `spiceshell`, `mtunnel`): Proxmox cannot hand those between
//!   nodes. When that node is down the client gets a 503 naming it ([`ForwardError::NodeDown`]).
//! - Any other request goes to the node its path names (`/nodes/<n>/…`) if that node is up,
//!   else to the first node that is up, in config order; nodes known to be down are tried
//!   last. Proxmox forwards what a node cannot serve itself to the right node.
//! - Failover: a request whose connection could not be opened has reached no node, so it goes
//!   to the next node, whatever its method. A GET that failed mid-exchange is sent to the next
//!   node too (it changes nothing). Nothing else that may have reached a node is ever sent
//!   twice, and streamed bodies (uploads) and websockets are never replayed.
//! - Health: a failed connection marks its node down at once; the probe
//!   ([`Cluster::probe_all`], every few seconds from `serve`) marks nodes up and down.
//!
//! With one upstream a request is simply forwarded to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};

use super::client::{is_websocket_upgrade, ForwardError, Upstream};
use super::tls::TlsError;
use super::ClientLink;
use crate::body::Body;
use crate::config;

/// One upstream node and what pvegate knows of its health.
pub struct Node {
    /// Its Proxmox name (`[[upstream.node]] name`), if given.
    name: Option<String>,
    /// The name, else `host:port`: how logs, `/readyz` and metrics call it.
    label: String,
    upstream: Upstream,
    up: AtomicBool,
    /// Why it is down (the last probe's or request's error), for `/readyz`.
    reason: Mutex<Option<String>>,
}

impl Node {
    /// Its name if it has one, else `host:port`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether it answered the last probe and no connection to it has failed since.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why it is down, if it is.
    pub fn down_reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, state: Result<(), String>) {
        let up = state.is_ok();
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            match &state {
                Ok(()) => tracing::info!(node = %self.label, "upstream node is up"),
                Err(reason) => tracing::warn!(node = %self.label, %reason, "upstream node is down"),
            }
        }
        crate::metrics::set_upstream_up(&self.label, up);
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = state.err();
    }
}

/// The upstream nodes, in order of preference.
pub struct Cluster {
    nodes: Vec<Node>,
}

impl From<Upstream> for Cluster {
    fn from(upstream: Upstream) -> Cluster {
        Cluster::new(vec![(None, upstream)])
    }
}

impl From<Upstream> for Arc<Cluster> {
    fn from(upstream: Upstream) -> Arc<Cluster> {
        Arc::new(Cluster::from(upstream))
    }
}

impl Cluster {
    /// Nodes (name, upstream) in order of preference; all are taken to be up until a probe
    /// or a connection says otherwise. `nodes` must not be empty.
    pub fn new(nodes: Vec<(Option<String>, Upstream)>) -> Cluster {
        assert!(!nodes.is_empty(), "a cluster has at least one node");
        Cluster {
            nodes: nodes
                .into_iter()
                .map(|(name, upstream)| Node {
                    label: name
                        .clone()
                        .unwrap_or_else(|| upstream.authority().to_string()),
                    name,
                    upstream,
                    up: AtomicBool::new(true),
                    reason: Mutex::new(None),
                })
                .collect(),
        }
    }

    /// The upstream(s) of a config: `[upstream] url`, or every `[[upstream.node]]`, each
    /// with `response_timeout`.
    pub fn from_config(
        cfg: &config::Config,
        response_timeout: Duration,
    ) -> Result<Cluster, TlsError> {
        let nodes = if cfg.upstream_nodes.is_empty() {
            vec![(None, Upstream::new(&cfg.upstream)?)]
        } else {
            cfg.upstream_nodes
                .iter()
                .map(|n| Ok((n.name.clone(), Upstream::new(&n.upstream)?)))
                .collect::<Result<Vec<_>, TlsError>>()?
        };
        Ok(Cluster::new(
            nodes
                .into_iter()
                .map(|(n, u)| (n, u.with_response_timeout(response_timeout)))
                .collect(),
        ))
    }

    /// The nodes, in config order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The longest wait for a response head (the same for every node).
    pub fn response_timeout(&self) -> Duration {
        self.nodes[0].upstream.response_timeout()
    }

    /// `host:port` of the one upstream, or the node labels of a cluster (for messages).
    pub fn authority(&self) -> String {
        match &self.nodes[..] {
            [one] => one.upstream.authority().to_string(),
            nodes => format!(
                "cluster ({})",
                nodes
                    .iter()
                    .map(|n| n.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Probes every node at once (`GET /api2/json/version`, bounded by `timeout`) and records
    /// the results: `Ok` for each node that answered, else why not.
    pub async fn probe_all(&self, timeout: Duration) -> Vec<Result<(), String>> {
        let probes = self.nodes.iter().map(|n| async move {
            let state = n
                .upstream
                .probe(timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            n.set(state.clone());
            state
        });
        futures_util::future::join_all(probes).await
    }

    /// Sends `req` to the node that should serve it, failing over as the module doc says.
    pub async fn forward(
        &self,
        req: Request<Body>,
        conn: Option<&ClientLink>,
    ) -> Result<Response<Body>, ForwardError> {
        if let [only] = &self.nodes[..] {
            return only.upstream.forward(req, conn).await;
        }
        let target = req
            .extensions()
            .get::<crate::layer::Inspected>()
            .and_then(|i| node_of(&i.path))
            .map(|(name, pinned)| (name.to_string(), pinned));
        if let Some((name, true)) = &target {
            if let Some(node) = self.named(name) {
                return match node.upstream.forward(req, conn).await {
                    Err(e @ ForwardError::Connect { .. }) => {
                        node.set(Err(e.to_string()));
                        Err(ForwardError::NodeDown {
                            node: name.clone(),
                            detail: e.to_string(),
                        })
                    }
                    other => other,
                };
            }
        }
        let order = self.order(target.as_ref().map(|(n, _)| n.as_str()));
        let mut req = req;
        for (i, node) in order.iter().enumerate() {
            let spare = if i + 1 < order.len() {
                retry_copy(&req)
            } else {
                None
            };
            let get = req.method() == Method::GET;
            let err = match node.upstream.forward(req, conn).await {
                Ok(res) => return Ok(res),
                Err(e) => e,
            };
            let unsent = matches!(err, ForwardError::Connect { .. });
            if unsent {
                node.set(Err(err.to_string()));
            }
            let retry = unsent || (get && matches!(err, ForwardError::Exchange { .. }));
            match spare {
                Some(again) if retry => {
                    tracing::warn!(node = %node.label, error = %err, "upstream node failed; trying the next node");
                    req = again;
                }
                _ => return Err(err),
            }
        }
        unreachable!("the last node's answer is returned")
    }

    fn named(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.as_deref() == Some(name))
    }

    /// The nodes to try, in order: the preferred one if up, the other nodes that are up, then
    /// those that are down (a probe may be behind).
    fn order(&self, preferred: Option<&str>) -> Vec<&Node> {
        let mut order: Vec<&Node> = Vec::with_capacity(self.nodes.len());
        if let Some(node) = preferred.and_then(|p| self.named(p)).filter(|n| n.is_up()) {
            order.push(node);
        }
        for up in [true, false] {
            for n in &self.nodes {
                if n.is_up() == up && !order.iter().any(|o| std::ptr::eq(*o, n)) {
                    order.push(n);
                }
            }
        }
        order
    }
}

/// The node a decoded API path names (`/api2/<format>/nodes/<node>/…`), and whether only
/// that node can serve the request (uploads, consoles and the ticket calls they pair with).
pub fn node_of(path: &str) -> Option<(&str, bool)> {
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    if parts.next() != Some("api2") {
        return None;
    }
    parts.next()?;
    if parts.next() != Some("nodes") {
        return None;
    }
    let node = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let pinned = matches!(
        rest[..],
        ["storage", _, "upload"]
            | ["vncshell" | "termproxy" | "spiceshell" | "vncwebsocket"]
            | [
                "qemu" | "lxc",
                _,
                "vncproxy"
                    | "termproxy"
                    | "spiceproxy"
                    | "vncwebsocket"
                    | "mtunnel"
                    | "mtunnelwebsocket"
            ]
    );
    Some((node, pinned))
}

/// A copy of `req` to send to another node, when it can be sent again: not a websocket, and
/// its body held in memory (an upload streams from the client and cannot be read twice).
fn retry_copy(req: &Request<Body>) -> Option<Request<Body>> {
    if is_websocket_upgrade(req.headers()) {
        return None;
    }
    let body = req.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

#[cfg(test)]
mod tests;
