//! The HTTP/1.1 client to Proxmox (TLS by tokio-rustls) and the header hygiene around it.
//!
//! Requests go out with the client's own method, request-target and credentials; hop-by-hop
//! headers and the Proxmox-internal `PVEDisableProxy`/`PVEClientIP` are stripped both ways.
//! A request whose body is in memory (every one but uploads and websockets) is exchanged by
//! [`super::h1`] in the request's own task; an upload or a websocket by hyper's client, on a
//! connection of its own. Each client connection sends its requests over an upstream
//! connection of its own, kept between requests ([`super::pool`]). Idle connections are
//! dropped before pveproxy's 5 s keep-alive ends; a request an idle connection could not
//! carry (nothing of it was written) goes out on a fresh one, and so does a GET that meets a
//! connection the upstream closed under it before answering.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::h1::{self, Stream};
use super::link::ClientLink;
use super::pool::{ConnCache, Home, Pool};
use super::tls;
use super::upgrade::UpgradeSlot;
use crate::body::Body;
use crate::config;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the Proxmox upstream at {authority}: {detail}")]
    Connect { authority: String, detail: String },
    #[error("the Proxmox upstream at {authority} failed mid-request: {detail}")]
    Exchange { authority: String, detail: String },
    #[error("the request could not be rebuilt for the upstream: {0}")]
    Build(String),
    #[error("the Proxmox upstream at {authority} did not answer within {after:?} (upstream.response_timeout_secs)")]
    Timeout { authority: String, after: Duration },
    #[error("{0}")]
    ClientBody(String),
    /// A request only one cluster node can serve (an upload, a console) met that node down.
    #[error("Proxmox node {node} is down, and only {node} can serve this request (an upload or a console): {detail}; try again once {node} is back")]
    NodeDown { node: String, detail: String },
}

impl ForwardError {
    /// The status pvegate answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::Build(_) => StatusCode::BAD_REQUEST,
            ForwardError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::ClientBody(_) => StatusCode::REQUEST_TIMEOUT,
            ForwardError::NodeDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The upstream Proxmox endpoint and its idle connections; shared behind an `Arc`.
pub struct Upstream {
    /// TLS to the upstream (`https://`), with the name its certificate is checked against.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `host:port` to connect to (IPv6 literals in brackets).
    address: String,
    authority: http::uri::Authority,
    host_header: HeaderValue,
    connect_timeout: Duration,
    response_timeout: Duration,
    pool: Arc<Pool>,
}

/// Whether `name` is a hop-by-hop header: `Connection`, `Keep-Alive`, `Proxy-Connection`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Proxy-Authorization`, `Proxy-Authenticate`, and
/// `Upgrade` unless it is kept. The standard names compare as `http`'s constants (no text
/// comparison); only a name of another length than every standard one here can be
/// `keep-alive` (10 bytes) or `proxy-connection` (16), which are compared as text.
fn is_hop_by_hop(name: &HeaderName, keep_upgrade: bool) -> bool {
    if name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
    {
        return true;
    }
    if name == header::UPGRADE {
        return !keep_upgrade;
    }
    let text = name.as_str();
    match text.len() {
        10 => text == "keep-alive",
        16 => text == "proxy-connection",
        _ => false,
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers only Proxmox nodes may set for each other.
const PVE_INTERNAL: [&str; 2] = ["pvedisableproxy", "pveclientip"];

impl Upstream {
    /// Builds the client for `cfg` (TLS trust, pool, timeouts).
    pub fn new(cfg: &config::Upstream) -> Result<Upstream, tls::TlsError> {
        let https = cfg.scheme == http::uri::Scheme::HTTPS;
        let host = cfg.authority.host();
        let port = cfg
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = tls::client_config(&cfg.trust)?;
            // Proxmox speaks HTTP/1.1 only.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_string())
                .map_err(|e| tls::TlsError::Name(format!("{host}: {e}")))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let host_header = HeaderValue::from_str(cfg.authority.as_str())
            .map_err(|e| tls::TlsError::Name(format!("{}: {e}", cfg.authority)))?;
        Ok(Upstream {
            tls,
            address: format!("{host}:{port}"),
            authority: cfg.authority.clone(),
            host_header,
            connect_timeout: cfg.connect_timeout,
            response_timeout: crate::config::Limits::default().response_timeout,
            pool: Pool::new(cfg.pool_idle_timeout),
        })
    }

    /// The same upstream with another response timeout (`upstream.response_timeout_secs`).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Upstream {
        self.response_timeout = timeout;
        self
    }

    /// The longest wait for a response head once the request has been sent.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Sends `GET /api2/json/version` without credentials on a connection of its own and
    /// returns the status: any answer means the upstream is up.
    pub async fn probe(&self, timeout: Duration) -> Result<StatusCode, ForwardError> {
        let attempt = async {
            let mut sender = self.connect().await?;
            let req = Request::get("/api2/json/version")
                .header(header::HOST, self.host_header.clone())
                .header(header::CONNECTION, HeaderValue::from_static("close"))
                .header(
                    header::USER_AGENT,
                    HeaderValue::from_static("pvegate-probe"),
                )
                .body(Body::empty())
                .map_err(|e| ForwardError::Build(e.to_string()))?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| self.failed(&e))?;
            Ok(res.status())
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(ForwardError::Timeout {
                    authority: self.authority.to_string(),
                    after: timeout,
                })
            })
    }

    /// `host:port` of the upstream.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// Sends `req` (already inspected and allowed) upstream and returns the upstream's answer,
    /// with websocket tunnels spliced after a `101`. `link` is the upstream side of the client
    /// connection the request came on (none in tests that call the stack directly).
    pub async fn forward(
        &self,
        mut req: Request<Body>,
        link: Option<&ClientLink>,
    ) -> Result<Response<Body>, ForwardError> {
        let websocket = is_websocket_upgrade(req.headers());
        // Origin form: the request-target exactly as the client sent it (inspect judged it).
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let origin = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|e: http::uri::InvalidUri| ForwardError::Build(e.to_string()))?;
            *req.uri_mut() = origin;
        }
        *req.version_mut() = http::Version::HTTP_11;
        let forwarded = link.map_or_else(
            || HeaderValue::from_static("0.0.0.0"),
            |c| c.forwarded_for.clone(),
        );
        clean_request_headers(req.headers_mut(), websocket, forwarded);
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, self.host_header.clone());
        }

        if !websocket {
            if let Some(body) = req.body().in_memory() {
                let (parts, _) = req.into_parts();
                let cache = link.map(|c| &c.cache);
                let mut res = self.exchange(&parts, body, cache).await?;
                strip_hop_by_hop(res.headers_mut(), false);
                return Ok(res);
            }
        }

        // An upload or a websocket: hyper's client, on a connection of its own.
        // The server's slot for the upstream side of a websocket (plain-TCP clients), else
        // hyper's own client-side upgrade (TLS clients).
        let client_upgrade = match link.and_then(|c| c.upgrade.clone()) {
            Some(slot) => websocket.then_some(ClientUpgrade::Slot(slot)),
            None => websocket.then(|| ClientUpgrade::Hyper(hyper::upgrade::on(&mut req))),
        };
        let mut sender = self.connect().await?;
        let mut res = sender
            .send_request(req)
            .await
            .map_err(|e| self.failed(&e))?;
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

    /// Sends a request whose body is in memory on an idle connection (the client connection's
    /// own, else a shared one), else on a new one ([`h1`]). A request the idle connection did
    /// not take (nothing of it was written) is sent on a new connection; so is a GET the
    /// upstream closed the connection under before answering.
    async fn exchange(
        &self,
        parts: &http::request::Parts,
        body: bytes::Bytes,
        cache: Option<&ConnCache>,
    ) -> Result<Response<Body>, ForwardError> {
        let req = h1::encode(parts, body).map_err(ForwardError::Build)?;
        let home = || cache.map(|c| Home::new(&self.pool, c));
        if let Some(idle) = self.pool.take(cache) {
            match idle.conn.send(&req, &parts.method, home()).await {
                Ok(res) => return Ok(res),
                Err(f) if !f.sent => {}
                Err(f) if !f.answered && parts.method == http::Method::GET => {
                    tracing::debug!(error = %f.error, "retrying GET on a fresh upstream connection");
                }
                Err(f) => return Err(self.broken(&f.error)),
            }
        }
        let conn = h1::Conn::new(self.open().await?);
        conn.send(&req, &parts.method, home())
            .await
            .map_err(|f| self.broken(&f.error))
    }

    /// Opens a new hyper client connection (for uploads, websockets and the probe).
    fn connect(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<SendRequest<Body>, ForwardError>> + Send + '_>> {
        Box::pin(async move {
            let stream = self.open().await?;
            handshake(stream)
                .await
                .map_err(|detail| ForwardError::Connect {
                    authority: self.authority.to_string(),
                    detail,
                })
        })
    }

    /// Opens a new connection (TCP, TLS when configured).
    ///
    /// Boxed: the connect, TLS handshake and timeout futures are kilobytes, and inline they
    /// would grow every request's future (moved into its box on each request) for a step most
    /// requests skip (they find an idle connection).
    fn open(&self) -> Pin<Box<dyn Future<Output = Result<Stream, ForwardError>> + Send + '_>> {
        Box::pin(self.open_now())
    }

    async fn open_now(&self) -> Result<Stream, ForwardError> {
        let attempt = async {
            let tcp = TcpStream::connect(&self.address)
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(|e| error_chain(&e)),
            }
        };
        let detail = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(detail)) => detail,
            Err(_) => format!("no connection within {:?}", self.connect_timeout),
        };
        Err(ForwardError::Connect {
            authority: self.authority.to_string(),
            detail,
        })
    }

    fn broken(&self, e: &std::io::Error) -> ForwardError {
        ForwardError::Exchange {
            authority: self.authority.to_string(),
            detail: e.to_string(),
        }
    }

    fn failed(&self, e: &hyper::Error) -> ForwardError {
        if crate::bounded::is_body_timeout(e) {
            return ForwardError::ClientBody(error_chain(e));
        }
        ForwardError::Exchange {
            authority: self.authority.to_string(),
            detail: error_chain(e),
        }
    }
}

/// HTTP/1.1 over `io`; the connection's task runs until the upstream closes it or every
/// sender is gone (with upgrades, for websocket tunnels).
async fn handshake<I>(io: I) -> Result<SendRequest<Body>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| error_chain(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
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

fn clean_request_headers(h: &mut HeaderMap, websocket: bool, forwarded_for: HeaderValue) {
    strip_hop_by_hop(h, websocket);
    let present = h.keys().any(|k| {
        k == header::EXPECT || PVE_INTERNAL.iter().any(|internal| k.as_str() == *internal)
    });
    if present {
        for name in PVE_INTERNAL {
            h.remove(name);
        }
        h.remove(header::EXPECT);
    }
    h.insert(X_FORWARDED_FOR, forwarded_for);
}

/// The `X-Forwarded-For` value for a client (its address, without the port).
pub fn forwarded_for(client: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&client.ip().to_string()).expect("an IP address is a valid header value")
}

/// Removes hop-by-hop headers (and those the `Connection` header names). For an upgrade the
/// `Connection: upgrade` / `Upgrade` pair is kept.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // One look at the lines first: most messages carry none of them, or a response's
    // `Connection: keep-alive`, which names no header.
    let (mut hop, mut named) = (false, false);
    for (k, v) in h.iter() {
        hop |= is_hop_by_hop(k, keep_upgrade);
        named |= k == header::CONNECTION && !only_keep_alive(v);
    }
    if named {
        remove_connection_named(h, keep_upgrade);
    }
    // Remove the names present instead of looking up every hop-by-hop name.
    while hop {
        match h.keys().find(|k| is_hop_by_hop(k, keep_upgrade)).cloned() {
            Some(name) => drop(h.remove(&name)),
            None => hop = false,
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// A `Connection` value whose every token is `keep-alive`: it names no header to remove.
fn only_keep_alive(v: &HeaderValue) -> bool {
    v.as_bytes()
        .split(|&b| b == b',')
        .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
}

/// Removes the headers a `Connection` header names (HTTP/1.1: they are for this hop only).
fn remove_connection_named(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `keep-alive` (the usual token) is removed with the other hop-by-hop headers anyway.
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_line_is_read_for_the_headers_it_names() {
        // (Connection lines, whether `x-hop` survives)
        let cases: &[(&[&str], bool)] = &[
            (&["keep-alive"], true),
            (&[" Keep-Alive ,keep-alive "], true),
            (&["close"], true),
            (&["keep-alive", "x-hop"], false),
            (&["x-hop", "keep-alive"], false),
            (&["keep-alive, X-Hop"], false),
            (&["keep-alive,", "keep-alive ,x-hop"], false),
        ];
        for (lines, kept) in cases {
            let mut h = HeaderMap::new();
            for l in *lines {
                h.append(header::CONNECTION, HeaderValue::from_static(l));
            }
            h.insert("x-hop", HeaderValue::from_static("1"));
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h.contains_key("x-hop"), *kept, "{lines:?}");
            assert!(
                !h.contains_key(header::CONNECTION) && !h.contains_key(header::TRANSFER_ENCODING),
                "{lines:?}"
            );
            assert!(h.contains_key(header::CONTENT_TYPE), "{lines:?}");
        }
    }

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
        clean_request_headers(
            &mut h,
            false,
            forwarded_for("10.1.2.3:5555".parse().unwrap()),
        );
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h[header::AUTHORIZATION], "PVEAPIToken=a@pam!t=s");
    }

    #[test]
    fn names_of_the_same_length_as_hop_by_hop_ones_stay() {
        for name in [
            "set-cookie",
            "user-agent",
            "keep-alivf",
            "content-location",
            "proxy-connectio1",
            "x-te",
            "tE",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let hop = name.as_str() == "te";
            assert_eq!(is_hop_by_hop(&name, false), hop, "{name}");
        }
        for name in [
            "Keep-Alive",
            "PROXY-CONNECTION",
            "Connection",
            "TE",
            "Upgrade",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(is_hop_by_hop(&name, false), "{name}");
        }
    }

    #[test]
    fn every_hop_by_hop_header_goes_with_all_its_values() {
        for keep_upgrade in [false, true] {
            let mut h = HeaderMap::new();
            for name in [
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
                "transfer-encoding",
                "proxy-authorization",
                "proxy-authenticate",
                "upgrade",
            ] {
                h.append(name, HeaderValue::from_static("one"));
                h.append(name, HeaderValue::from_static("two"));
            }
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            strip_hop_by_hop(&mut h, keep_upgrade);
            let mut left: Vec<String> = h
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                .collect();
            left.sort();
            let expect: &[&str] = if keep_upgrade {
                &[
                    "connection: upgrade",
                    "content-type: text/plain",
                    "upgrade: one",
                    "upgrade: two",
                ]
            } else {
                &["content-type: text/plain"]
            };
            assert_eq!(left, expect, "keep_upgrade {keep_upgrade}");
        }
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
