//! The admin listener (`[admin] address`): `GET /healthz`, `GET /readyz` and `GET /metrics`
//! on an address of its own, never the proxy's; plus the upstream probe readiness rests on.
//!
//! - `/healthz`: 200 `ok` while the process serves.
//! - `/readyz`: 200 when a policy is in force (always, once serving: pvegate does not start
//!   without one, and a failed reload keeps the previous one), the upstream answered the last probe and
//!   pvegate is not shutting down; otherwise 503 with the reason in the body. With a cluster
//!   (`[[upstream.node]]`), one node that is up is enough, and the body has one line per node.
//! - `/metrics`: every metric of [`crate::metrics`] in the Prometheus text format.
//! - `/approvals`: pending approvals, approve and reject, behind bearer tokens
//!   ([`crate::approval::admin`]).
//!
//! The probe sends `GET /api2/json/version` without credentials to every node every
//! [`PROBE_EVERY`]: any HTTP answer (401 included) means that node is up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::body::Body;
use crate::policy::PolicyStore;
use crate::server::ServeError;
use crate::upstream::Cluster;

/// How often the upstream is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long a probe waits for connection and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most admin connections served at once (scrapers and health checkers are few).
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// What readiness is made of; shared by the server (draining), the probe and the listener.
pub struct Health {
    store: PolicyStore,
    /// `/approvals`: the approval state and `[admin] token_file` (unset: not served).
    approvals: std::sync::OnceLock<(Arc<crate::approval::Approvals>, Option<std::path::PathBuf>)>,
    draining: AtomicBool,
    /// `Ok` if the upstream answered the last probe, else why not.
    upstream: Mutex<Result<(), String>>,
    /// The nodes probed, for `/readyz`'s per-node lines (set by [`probe`]).
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    /// With `[inventory]`: not ready while it is stale or was never read.
    inventory: std::sync::OnceLock<crate::inventory::Inventory>,
}

impl Health {
    /// Not ready until the first probe has been answered.
    pub fn new(store: PolicyStore) -> Arc<Health> {
        Arc::new(Health {
            store,
            approvals: std::sync::OnceLock::new(),
            draining: AtomicBool::new(false),
            upstream: Mutex::new(Err("the Proxmox upstream has not been probed yet".into())),
            cluster: std::sync::OnceLock::new(),
            inventory: std::sync::OnceLock::new(),
        })
    }

    /// Serves `/approvals` with this state, authenticated by the tokens in `token_file`.
    pub fn set_approvals(
        &self,
        approvals: Arc<crate::approval::Approvals>,
        token_file: Option<std::path::PathBuf>,
    ) {
        let _ = self.approvals.set((approvals, token_file));
    }

    /// Marks pvegate as shutting down: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn set_upstream(&self, state: Result<(), String>) {
        // A poisoned lock only means a holder panicked; the value is still sound.
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// `Ok` when ready to take traffic, else the reason.
    pub fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down: finishing the requests in flight".into());
        }
        let probed = self
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match self.cluster.get().filter(|c| c.nodes().len() > 1) {
            // A cluster serves while one node is up (a failed request marks its node down
            // before the next probe).
            Some(cluster) if probed.is_ok() && !cluster.nodes().iter().any(|n| n.is_up()) => {
                Err(format!("no upstream node is up\n{}", node_lines(cluster)))
            }
            Some(cluster) => probed.map_err(|e| format!("{e}\n{}", node_lines(cluster))),
            None => probed,
        }?;
        match self.inventory.get().map(|i| i.fresh()) {
            Some(Err(why)) => Err(why),
            _ => Ok(()),
        }
    }

    /// One line per node of a cluster (`node pve1: up`, `node pve2: down: …`); empty for a
    /// single upstream.
    pub fn nodes(&self) -> String {
        match self.cluster.get().filter(|c| c.nodes().len() > 1) {
            Some(cluster) => node_lines(cluster),
            None => String::new(),
        }
    }

    /// Makes readiness depend on `inv` being fresh.
    pub fn set_inventory(&self, inv: crate::inventory::Inventory) {
        let _ = self.inventory.set(inv);
    }
}

fn node_lines(cluster: &Cluster) -> String {
    cluster
        .nodes()
        .iter()
        .map(|n| match (n.is_up(), n.down_reason()) {
            (true, _) => format!("node {}: up\n", n.label()),
            (false, reason) => format!(
                "node {}: down: {}\n",
                n.label(),
                reason.unwrap_or_else(|| "not probed yet".into())
            ),
        })
        .collect()
}

/// Probes every node of `cluster` now and then every [`PROBE_EVERY`], until dropped. The
/// upstream counts as up while one node is.
pub async fn probe(cluster: Arc<Cluster>, health: Arc<Health>) {
    let _ = health.cluster.set(Arc::clone(&cluster));
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results = cluster.probe_all(PROBE_TIMEOUT).await;
        let state = if results.iter().any(Result::is_ok) {
            Ok(())
        } else if let [only] = &results[..] {
            only.clone()
        } else {
            Err("no upstream node answered the last probe".into())
        };
        if let Err(reason) = &state {
            tracing::debug!(%reason, "upstream probe failed");
        }
        health.set_upstream(state);
    }
}

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves the admin endpoints on `listener` until dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let health = Arc::clone(&health);
                async move {
                    if req.uri().path().starts_with("/approvals") {
                        if let Some((a, tokens)) = health.approvals.get() {
                            let res =
                                crate::approval::admin::answer(req, Arc::clone(a), tokens.clone())
                                    .await;
                            return Ok::<_, std::convert::Infallible>(res);
                        }
                    }
                    Ok::<_, std::convert::Infallible>(answer(&req, &health))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            // Scrapes are small and quick: a connection lives at most a minute.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(Body::from(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

fn answer<B>(req: &Request<B>, health: &Health) -> Response<Body> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET is served here\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match health.ready() {
            Ok(()) => text(
                StatusCode::OK,
                PLAIN,
                format!(
                    "ready (policy generation {})\n{}",
                    health.store.generation(),
                    health.nodes()
                ),
            ),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            crate::metrics::set_policy(health.store.generation(), health.store.last_reload_ok());
            text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                crate::metrics::render(),
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: the admin listener serves /healthz, /readyz and /metrics\n".into(),
        ),
    }
}
