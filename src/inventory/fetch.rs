//! Reads the cluster from the `[upstream]` with pvegate's own token: `/cluster/resources`
//! for every guest, the resource mappings, storages, backup jobs and HA resources and rules,
//! and the configs of the guests a restrictive rule protects (their disks' storages,
//! passthrough devices and mappings). Same TLS verification as the upstream, a timeout on
//! every call, a bounded number of calls at once; errors never carry the token.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use super::config::Token;
use super::snapshot::{ShapeError, Snapshot};
use crate::config;
use crate::pve::Vmid;

/// The longest wait for one API call (connect, request, response body).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How many guest configs are read at once.
const CONFIG_CONCURRENCY: usize = 8;
/// The biggest answer read (a `/cluster/resources` of 10,000 guests is about 4 MiB).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a refresh failed. Never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("inventory client setup failed: {0}")]
    Setup(String),
    #[error("GET {path}: {why}")]
    Call { path: String, why: String },
    #[error("GET {path}: HTTP {status}: check that the token in inventory.token_file exists and has PVEAuditor on / (README \"Inventory and selectors\")")]
    Denied { path: String, status: u16 },
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// A client for the Proxmox API with pvegate's own token.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    api: String,
    auth: reqwest::header::HeaderValue,
    /// What [`Fetcher::fresh`] builds a new client from.
    settings: Settings,
}

/// The client's settings, checked once by [`Fetcher::new`].
#[derive(Clone)]
struct Settings {
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
}

impl Settings {
    fn client(&self) -> Result<reqwest::Client, FetchError> {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.tls.clone())
            .connect_timeout(self.connect_timeout)
            .timeout(CALL_TIMEOUT)
            .pool_idle_timeout(self.pool_idle_timeout)
            .user_agent(concat!("pvegate-inventory/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("api", &self.api).finish()
    }
}

impl Fetcher {
    /// A client for `upstream` (its scheme, address and TLS trust) using `token`.
    pub fn new(upstream: &config::Upstream, token: &Token) -> Result<Fetcher, FetchError> {
        let mut tls = crate::upstream::tls::client_config(&upstream.trust)
            .map_err(|e| FetchError::Setup(format!("TLS settings: {e}")))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let settings = Settings {
            tls,
            connect_timeout: upstream.connect_timeout,
            pool_idle_timeout: upstream.pool_idle_timeout,
        };
        let http = settings.client()?;
        let mut auth = reqwest::header::HeaderValue::from_str(token.header())
            .map_err(|_| FetchError::Setup("the API token holds invalid characters".into()))?;
        auth.set_sensitive(true);
        Ok(Fetcher {
            http,
            api: format!("{}://{}/api2/json", upstream.scheme, upstream.authority),
            auth,
            settings,
        })
    }

    /// The same fetcher with a client (and connection pool) of its own, for use on another
    /// tokio runtime: a client's pooled connections belong to the runtime that opened them.
    pub fn fresh(&self) -> Result<Fetcher, FetchError> {
        Ok(Fetcher {
            http: self.settings.client()?,
            ..self.clone()
        })
    }

    /// `GET path` → its `data`.
    pub async fn get(&self, path: &str) -> Result<Value, FetchError> {
        let body = self.get_bytes(path).await?;
        let mut v: Value = serde_json::from_slice(&body).map_err(|e| FetchError::Call {
            path: path.to_string(),
            why: format!("not JSON: {e}"),
        })?;
        Ok(v.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    /// `GET path` → the answer's bytes (at most 64 MiB).
    pub async fn get_bytes(&self, path: &str) -> Result<bytes::Bytes, FetchError> {
        let call = |why: String| FetchError::Call {
            path: path.to_string(),
            why,
        };
        let res = self
            .http
            .get(format!("{}{path}", self.api))
            .header(reqwest::header::AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| call(describe(&e)))?;
        let status = res.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(FetchError::Denied {
                path: path.to_string(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(call(format!("HTTP {status}")));
        }
        if res
            .content_length()
            .is_some_and(|l| l as usize > MAX_ANSWER)
        {
            return Err(call("answer too large".into()));
        }
        let body = res.bytes().await.map_err(|e| call(describe(&e)))?;
        if body.len() > MAX_ANSWER {
            return Err(call("answer too large".into()));
        }
        Ok(body)
    }

    /// Reads a whole snapshot. `protected` chooses the guests whose configs are read (their
    /// dependencies matter); it sees the snapshot with guests and stored selections filled in
    /// (`Policy::protected_guests` in a refresh; it must not keep the `Arc`).
    pub async fn snapshot(
        &self,
        protected: impl Fn(&Arc<Snapshot>) -> Vec<Vmid>,
    ) -> Result<Snapshot, FetchError> {
        let mut s = Snapshot::empty();
        let (res, pci, usb, storage, backup, ha_res, ha_rules) = tokio::join!(
            self.get_bytes("/cluster/resources?type=vm"),
            self.get("/cluster/mapping/pci"),
            self.get("/cluster/mapping/usb"),
            self.get("/storage"),
            self.get("/cluster/backup"),
            self.get("/cluster/ha/resources"),
            self.get("/cluster/ha/rules"),
        );
        s.set_resources_json(&res?)?;
        s.set_mappings("pci", &pci?)?;
        s.set_mappings("usb", &usb?)?;
        s.set_storages(&storage?)?;
        s.set_backup_jobs(&backup?)?;
        s.set_ha_resources(&ha_res?)?;
        s.set_ha_rules(&ha_rules?)?;
        let shared = Arc::new(s);
        let wanted = protected(&shared);
        let mut s = Arc::try_unwrap(shared).unwrap_or_else(|kept| (*kept).clone());
        let paths: Vec<(Vmid, String)> = wanted
            .into_iter()
            .filter_map(|v| {
                let g = s.guests.get(&v)?;
                Some((
                    v,
                    format!("/nodes/{}/{}/{v}/config", g.node, g.kind.as_str()),
                ))
            })
            .collect();
        // Each config is applied as it arrives: at most CONFIG_CONCURRENCY answers are held
        // at once, not thousands (the refresh's memory peak stays with the process).
        let mut configs = stream::iter(paths)
            .map(|(v, p)| async move { (v, self.get(&p).await) })
            .buffer_unordered(CONFIG_CONCURRENCY);
        while let Some((v, c)) = configs.next().await {
            s.set_config(v, &c?)?;
        }
        s.loaded_at = std::time::Instant::now();
        s.loaded_wall = std::time::SystemTime::now();
        Ok(s)
    }
}

/// A transport error in words, without the URL's query or any header.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    match last {
        Some(l) => format!("{kind} ({l})"),
        None => kind.to_string(),
    }
}

/// Shared so the refresher and `pvegate check` use one client.
pub type SharedFetcher = Arc<Fetcher>;
