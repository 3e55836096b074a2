//! The inspect layer: request -> [`Inspected`] (API format, [`Operation`], identity), with
//! pveproxy's framing rules applied and small bodies buffered so exactly the bytes that were
//! judged are forwarded, with a `Content-Length`.
//!
//! Refusals here are answered directly: 501 for methods Proxmox does not serve, 400 for
//! anything that could be read two ways, 411/413 for bodies that cannot be judged.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::audit;
use crate::body::Body;
use crate::pve::request::{self, BodyKind};
use crate::pve::{self, auth, ApiFormat, GuestSet, InspectError, Operation, Params, Route, Target};
use crate::respond;
use crate::upstream::upgrade::UpgradeSlot;
use crate::upstream::ConnCache;

/// Most header lines pvegate passes on (pveproxy's limit is 64; pvegate adds one).
pub const MAX_HEADERS: usize = 62;
/// Most header bytes pvegate passes on (pveproxy's limit is 8 KiB; pvegate adds one header).
pub const MAX_HEADER_BYTES: usize = 8192 - 128;

/// Largest non-upload body pveproxy accepts (and so the largest pvegate buffers).
pub const MAX_BODY: usize = 512 * 1024;

/// The client connection a request came on, put into request extensions by the server: one
/// extension (a reference count) per request for all the per-connection facts.
#[derive(Clone)]
pub struct ClientConn(pub Arc<ConnInfo>);

/// What the server knows and keeps for one client connection.
pub struct ConnInfo {
    /// The client's socket address.
    pub addr: SocketAddr,
    /// Its `X-Forwarded-For` value, formatted once.
    pub forwarded_for: HeaderValue,
    /// Where a websocket's upstream side goes for the server to splice (plain-TCP clients;
    /// TLS clients use hyper's own upgrades).
    pub upgrade: Option<UpgradeSlot>,
    /// The upstream connection this client connection used last.
    pub upstream: ConnCache,
}

impl ClientConn {
    /// The facts of a new connection from `addr`.
    pub fn new(addr: SocketAddr, upgrade: Option<UpgradeSlot>) -> ClientConn {
        ClientConn(Arc::new(ConnInfo {
            addr,
            forwarded_for: crate::upstream::forwarded_for(addr),
            upgrade,
            upstream: ConnCache::default(),
        }))
    }

    /// The client address of `req`, or `0.0.0.0:0` for a request that came without one.
    pub fn addr_of<B>(req: &Request<B>) -> SocketAddr {
        req.extensions()
            .get::<ClientConn>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0.addr)
    }
}

/// The typed facts about one request, for the layers after this one.
#[derive(Clone, Debug)]
pub struct Inspected {
    /// `None` outside `/api2`.
    pub format: Option<ApiFormat>,
    pub method: Method,
    /// The decoded path, for logs and messages (never the query).
    pub path: String,
    pub op: Operation,
    /// Token id or ticket user of the credential pveproxy will use.
    pub identity: Option<String>,
    /// What the write does that only the inventory can judge (sticky protection, stored
    /// selections, dependencies); `None` for reads and most writes.
    pub change: Option<crate::inventory::Change>,
}

impl Inspected {
    /// The endpoint for logs: the catalogue template, "unknown" or "static".
    pub fn endpoint(&self) -> &str {
        match &self.op.route {
            Route::Known(t) => t,
            Route::Unknown => "unknown",
            Route::Static => "static",
        }
    }
}

/// A request refused before any policy applies.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub format: Option<ApiFormat>,
    pub message: String,
}

impl Refusal {
    fn bad(format: Option<ApiFormat>, message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            format,
            message: message.into(),
        }
    }

    /// The response a client gets.
    pub fn response(&self) -> Response<Body> {
        if self.status == StatusCode::BAD_REQUEST {
            respond::bad_request(self.format, &self.message)
        } else if self.status == StatusCode::FORBIDDEN {
            respond::deny(self.format, &self.message)
        } else {
            respond::error(
                self.format,
                self.status,
                &format!("pvegate: {}", self.message),
            )
        }
    }
}

/// How a request's body is to be handled.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body may be sent.
    Empty,
    /// Parameters: buffered, parsed and forwarded byte for byte.
    Buffer(BodyKind),
    /// The storage upload endpoint: streamed, never buffered (its parameters are in the query).
    Stream,
}

fn is_upload(method: &Method, segments: &[String]) -> bool {
    method == Method::POST
        && segments.len() == 5
        && segments[0] == "nodes"
        && segments[2] == "storage"
        && segments[4] == "upload"
}

/// Step one: method, target and framing. Returns the parsed target, raw query and body plan.
pub fn read_head<'a>(
    method: &Method,
    raw_target: &'a str,
    headers: &HeaderMap,
) -> Result<(Target, Option<&'a str>, BodyPlan), Refusal> {
    if !matches!(
        *method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE
    ) {
        return Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            format: None,
            message: format!(
                "method '{method}' not available (Proxmox serves GET, POST, PUT and DELETE only)"
            ),
        });
    }
    let (target, query) =
        request::parse_target(raw_target).map_err(|e| Refusal::bad(None, e.to_string()))?;
    let format = match &target {
        Target::Api { format, .. } => Some(*format),
        Target::Other { .. } => None,
    };
    // pveproxy drops a request with more than 64 header lines or 8 KiB of headers without an
    // answer; leave room for the X-Forwarded-For pvegate adds, and refuse clearly instead.
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(Refusal::bad(
            format,
            format!(
                "{} header lines / {header_bytes} bytes of headers: Proxmox accepts at most 64 lines and 8 KiB",
                headers.len()
            ),
        ));
    }
    // Headers named in `Connection` are stripped before forwarding, so Proxmox would never see
    // them while pvegate judged them (`Connection: Cookie` would let a cookie Proxmox never
    // sees choose the identity). Only the connection options real clients send are accepted.
    for v in headers.get_all(header::CONNECTION) {
        let text = v
            .to_str()
            .map_err(|_| Refusal::bad(format, "Connection header is not readable text"))?;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !["close", "keep-alive", "upgrade", "te"]
                .iter()
                .any(|ok| token.eq_ignore_ascii_case(ok))
            {
                return Err(Refusal::bad(
                    format,
                    format!("Connection names '{token}': only close, keep-alive, upgrade and te are accepted (a header named there would be judged but never reach Proxmox)"),
                ));
            }
        }
    }
    // Perl's HTTP::Headers (pveproxy) reads `_` as `-` in header names: `Content_Type` is its
    // Content-Type and `Content_Length` its Content-Length. No real client sends such names.
    if let Some(name) = headers.keys().find(|n| n.as_str().contains('_')) {
        return Err(Refusal::bad(
            format,
            format!(
                "header name '{name}' contains '_', which Proxmox reads as '-': rename or drop it"
            ),
        ));
    }
    let te = headers.get_all(header::TRANSFER_ENCODING).iter().count() > 0;
    if te {
        let chunked_only = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if !chunked_only || headers.contains_key(header::CONTENT_LENGTH) {
            return Err(Refusal::bad(
                format,
                "Transfer-Encoding other than a single 'chunked', or together with Content-Length",
            ));
        }
    }
    let length = content_length(headers).map_err(|m| Refusal::bad(format, m))?;
    let has_body = te || length.is_some_and(|l| l > 0);
    let plan = match (&target, method) {
        (_, &Method::GET | &Method::DELETE) if has_body => {
            return Err(Refusal::bad(
                format,
                format!(
                    "Proxmox refuses a body on {method}: send the parameters in the query string"
                ),
            ));
        }
        (_, &Method::GET | &Method::DELETE) => BodyPlan::Empty,
        (Target::Other { .. }, _) => {
            return Err(Refusal::bad(
                None,
                format!("Proxmox serves only GET outside /api2, not {method}"),
            ));
        }
        (Target::Api { segments, .. }, _) if is_upload(method, segments) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            if !matches!(request::body_kind(ct), Ok(BodyKind::Multipart)) {
                return Err(Refusal::bad(
                    format,
                    "an upload must be multipart/form-data",
                ));
            }
            if length.is_none() {
                return Err(Refusal {
                    status: StatusCode::LENGTH_REQUIRED,
                    format,
                    message:
                        "uploads need a Content-Length (Proxmox does not accept chunked bodies)"
                            .into(),
                });
            }
            BodyPlan::Stream
        }
        (Target::Api { .. }, _) => {
            let ct = match headers.get_all(header::CONTENT_TYPE).iter().count() {
                0 => None,
                1 => Some(
                    headers[header::CONTENT_TYPE]
                        .to_str()
                        .map_err(|_| Refusal::bad(format, "Content-Type is not readable text"))?,
                ),
                _ => return Err(Refusal::bad(format, "more than one Content-Type header")),
            };
            match request::body_kind(ct).map_err(|e| Refusal::bad(format, e.to_string()))? {
                BodyKind::Multipart => {
                    return Err(Refusal::bad(
                        format,
                        "multipart bodies are accepted only by the storage upload endpoint",
                    ))
                }
                kind => {
                    if length.is_some_and(|l| l > MAX_BODY as u64) {
                        return Err(too_large(format));
                    }
                    BodyPlan::Buffer(kind)
                }
            }
        }
    };
    Ok((target, query, plan))
}

fn too_large(format: Option<ApiFormat>) -> Refusal {
    Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        format,
        message: format!(
            "request body over {} KiB (Proxmox's limit for API parameters)",
            MAX_BODY / 1024
        ),
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Content-Length header".into());
    }
    first
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| "Content-Length is not a number".into())
}

/// Step two: parameters -> [`Inspected`]. `body` is the buffered body (empty for GET/DELETE and
/// uploads, whose parameters are in the query alone).
pub fn inspect_request(
    method: &Method,
    target: Target,
    query: Option<&str>,
    plan: &BodyPlan,
    body: &[u8],
    headers: &HeaderMap,
) -> Result<Inspected, Refusal> {
    let identity = auth::credential(headers).identity().map(str::to_owned);
    match target {
        Target::Other { path } => Ok(Inspected {
            format: None,
            method: method.clone(),
            path,
            op: Operation::new(Route::Static, pve::Action::Read, GuestSet::None),
            identity,
            change: None,
        }),
        Target::Api { format, segments } => {
            let bad = |m: String| Refusal::bad(Some(format), m);
            let query = request::parse_urlencoded(query.unwrap_or("").as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let params = match plan {
                BodyPlan::Buffer(kind) if !body.is_empty() => {
                    let body_params =
                        request::parse_body(*kind, body).map_err(|e| bad(e.to_string()))?;
                    Params::merge(body_params, query)
                }
                _ => query,
            };
            let op = pve::inspect(method, &segments, &params).map_err(|e| match e {
                InspectError::Malformed(m) => bad(m),
                InspectError::Unjudgeable(m) => Refusal {
                    status: StatusCode::FORBIDDEN,
                    format: Some(format),
                    message: format!("pvegate: cannot judge this request, so it is refused: {m}"),
                },
            })?;
            let len = segments.iter().map(|s| s.len() + 1).sum::<usize>();
            let mut path = String::with_capacity("/api2/".len() + format.as_str().len() + len);
            path.push_str("/api2/");
            path.push_str(format.as_str());
            for s in &segments {
                path.push('/');
                path.push_str(s);
            }
            let change = if method == Method::GET {
                None
            } else {
                crate::inventory::change::extract(method, &op.route, &segments, &params)
                    .map_err(bad)?
            };
            Ok(Inspected {
                format: Some(format),
                method: method.clone(),
                path,
                op,
                identity,
                change,
            })
        }
    }
}

/// Layer that applies [`Inspect`].
#[derive(Clone, Copy, Debug, Default)]
pub struct InspectLayer;

impl<S> Layer<S> for InspectLayer {
    type Service = Inspect<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Inspect { inner }
    }
}

/// Reads each request as pveproxy would and attaches [`Inspected`]; refuses the unreadable.
#[derive(Clone, Debug)]
pub struct Inspect<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Inspect<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match prepare(req).await {
                Ok(req) => inner.call(req).await,
                Err((refusal, client, method, path)) => {
                    let res = refusal.response();
                    audit::Outcome::begin(
                        audit::Facts {
                            client,
                            identity: None,
                            method: method.as_str(),
                            path: &path,
                            endpoint: "-",
                            action: None,
                            guests: &GuestSet::None,
                            decision: audit::AuditDecision::Deny,
                            rule: std::borrow::Cow::Borrowed("invalid request"),
                            message: Some(&refusal.message),
                            generation: None,
                            exemption: None,
                        },
                        std::time::Instant::now(),
                    )
                    .finish(audit::Ending::Answered(res.status()));
                    Ok(res)
                }
            }
        })
    }
}

type Rejected = (Refusal, SocketAddr, Method, String);

async fn prepare<B>(req: Request<B>) -> Result<Request<Body>, Rejected>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client = ClientConn::addr_of(&req);
    let (mut parts, body) = req.into_parts();
    // The request-target as it came: an origin-form target is the URI's path-and-query as is
    // (no copy); anything else is rebuilt from the URI as before.
    let rebuilt;
    let raw: &str = match parts.uri.path_and_query() {
        Some(pq) if parts.uri.scheme().is_none() && parts.uri.authority().is_none() => pq.as_str(),
        _ => {
            rebuilt = parts.uri.to_string();
            &rebuilt
        }
    };
    // What a refusal logs; built only when there is one.
    let reject = |r: Refusal| {
        (
            r,
            client,
            parts.method.clone(),
            parts.uri.path().to_string(),
        )
    };
    let (target, query, plan) = read_head(&parts.method, raw, &parts.headers).map_err(reject)?;
    let (bytes, body) = match plan {
        BodyPlan::Buffer(_) => {
            let format = match &target {
                Target::Api { format, .. } => Some(*format),
                Target::Other { .. } => None,
            };
            // One contiguous buffer: memory follows the bytes received, not the reads.
            let bytes = crate::bounded::read_to_limit(body, MAX_BODY)
                .await
                .map_err(|e| match e {
                    crate::bounded::ReadError::TooLarge(_) => reject(too_large(format)),
                    crate::bounded::ReadError::Timeout(t) => reject(Refusal {
                        status: StatusCode::REQUEST_TIMEOUT,
                        format,
                        message: t.to_string(),
                    }),
                    crate::bounded::ReadError::Failed(m) => reject(Refusal::bad(format, m)),
                })?;
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, bytes.len().into());
            (bytes.clone(), Body::from(bytes))
        }
        BodyPlan::Empty => (Bytes::new(), Body::empty()),
        BodyPlan::Stream => (Bytes::new(), Body::new(body)),
    };
    let inspected = inspect_request(&parts.method, target, query, &plan, &bytes, &parts.headers)
        .map_err(reject)?;
    parts.extensions.insert(inspected);
    Ok(Request::from_parts(parts, body))
}
