//! The pooled HTTP/1.1 client to Proxmox and the header hygiene around it.
//!
//! Requests go out with the client's own method, request-target and credentials; hop-by-hop
//! headers and the Proxmox-internal `PVEDisableProxy`/`PVEClientIP` are stripped both ways.
//! Idle pooled connections are dropped before pveproxy's 5 s keep-alive ends, and a GET that
//! meets a connection the upstream closed under it is sent once more on a fresh one.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::tls;
use super::upgrade::UpgradeSlot;
use crate::config;
use crate::respond::Body;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the Proxmox upstream at {authority}: {detail}")]
    Connect { authority: String, detail: String },
    #[error("the Proxmox upstream at {authority} failed mid-request: {detail}")]
    Exchange { authority: String, detail: String },
    #[error("the request could not be rebuilt for the upstream: {0}")]
    Build(String),
}

impl ForwardError {
    /// The status pvegate answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::Build(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The upstream Proxmox endpoint and its connection pool; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Headers only Proxmox nodes may set for each other.
const PVE_INTERNAL: [&str; 2] = ["pvedisableproxy", "pveclientip"];

impl Upstream {
    /// Builds the client for `cfg` (TLS trust, pool, timeouts).
    pub fn new(cfg: &config::Upstream) -> Result<Upstream, tls::TlsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls_config = tls::client_config(&cfg.trust)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .retry_canceled_requests(true)
            .set_host(true)
            .build(connector);
        Ok(Upstream {
            client,
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
        })
    }

    /// `host:port` of the upstream.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// Sends `req` (already inspected and allowed) upstream and returns the upstream's answer,
    /// with websocket tunnels spliced after a `101`.
    pub async fn forward(
        &self,
        mut req: Request<Body>,
        client: SocketAddr,
    ) -> Result<Response<Body>, ForwardError> {
        let websocket = is_websocket_upgrade(req.headers());
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ForwardError::Build(e.to_string()))?;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        clean_request_headers(req.headers_mut(), websocket, client);

        // The server's slot for the upstream side of a websocket (plain-TCP clients), else
        // hyper's own client-side upgrade (TLS clients).
        let slot = req.extensions_mut().remove::<UpgradeSlot>();
        let client_upgrade = match slot {
            Some(slot) => websocket.then_some(ClientUpgrade::Slot(slot)),
            None => websocket.then(|| ClientUpgrade::Hyper(hyper::upgrade::on(&mut req))),
        };
        let retry = (req.method() == http::Method::GET && !websocket).then(|| clone_bodyless(&req));
        let mut res = match self.client.request(req).await {
            Ok(res) => res,
            Err(e) if retry.is_some() && is_stale_connection(&e) => {
                tracing::debug!(error = %e, "retrying GET on a fresh upstream connection");
                let again = retry.expect("checked is_some above");
                self.client
                    .request(again)
                    .await
                    .map_err(|e| self.error(e))?
            }
            Err(e) => return Err(self.error(e)),
        };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut res);
                match client_upgrade {
                    ClientUpgrade::Slot(slot) => slot.fill(upstream_upgrade),
                    ClientUpgrade::Hyper(client) => {
                        super::upgrade::splice(client, upstream_upgrade)
                    }
                }
                let (mut parts, _body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers, true);
                return Ok(Response::from_parts(parts, Body::empty()));
            }
        }
        let (mut parts, body) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    fn error(&self, e: hyper_util::client::legacy::Error) -> ForwardError {
        let authority = self.authority.to_string();
        let detail = error_chain(&e);
        if e.is_connect() {
            ForwardError::Connect { authority, detail }
        } else {
            ForwardError::Exchange { authority, detail }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

/// A connection the upstream closed after we picked it from the pool, before any answer.
fn is_stale_connection(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return false;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message() || h.is_canceled() || h.is_closed();
        }
        src = s.source();
    }
    false
}

fn clone_bodyless(req: &Request<Body>) -> Request<Body> {
    let mut r = Request::new(Body::empty());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

/// Where the client side of a websocket comes from.
enum ClientUpgrade {
    /// The server splices it after hyper hands the connection back.
    Slot(UpgradeSlot),
    /// hyper's upgrade of the client request (connections served `with_upgrades`).
    Hyper(hyper::upgrade::OnUpgrade),
}

/// `Upgrade: websocket` on a GET, as pveproxy requires for its websocket endpoints.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.trim().eq_ignore_ascii_case("websocket"))
    })
}

fn clean_request_headers(h: &mut HeaderMap, websocket: bool, client: SocketAddr) {
    strip_hop_by_hop(h, websocket);
    for name in PVE_INTERNAL {
        h.remove(name);
    }
    h.remove(header::EXPECT);
    h.remove("x-forwarded-for");
    if let Ok(v) = HeaderValue::from_str(&client.ip().to_string()) {
        h.insert("x-forwarded-for", v);
    }
}

/// Removes hop-by-hop headers (and those the `Connection` header names). For an upgrade the
/// `Connection: upgrade` / `Upgrade` pair is kept.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP.iter() {
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_internal_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("PVEDisableProxy", HeaderValue::from_static("1"));
        h.insert("PVEClientIP", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("PVEAPIToken=a@pam!t=s"),
        );
        clean_request_headers(&mut h, false, "10.1.2.3:5555".parse().unwrap());
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h[header::AUTHORIZATION], "PVEAPIToken=a@pam!t=s");
    }

    #[test]
    fn websocket_keeps_upgrade_pair() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }
}
