//! The inspect layer, tower glue around pvegate's one request reader: the head is checked
//! against pveproxy's framing rules ([`crate::pve::framing`]), a small body is buffered (within
//! its size and time bounds) so exactly the bytes that were judged are forwarded, with a
//! `Content-Length`, and the request is read into [`Inspected`] ([`crate::pve::reader`]).
//!
//! Refusals are answered here ([`crate::reject`]) with an audit line: 501 for methods Proxmox
//! does not serve, 400 for anything that could be read two ways, 408/411/413 for bodies that
//! cannot be judged, 403 for requests whose guests cannot be told.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::audit;
use crate::body::Body;
use crate::conn::ClientConn;
use crate::pve::framing::{read_head, too_large, BodyPlan, MAX_BODY};
use crate::pve::reader::inspect_request;
pub use crate::pve::reader::Inspected;
use crate::pve::{GuestSet, Target};
use crate::reject::{Kind, Rejection};

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
        match prepare(req) {
            // Most requests (no body to buffer) are read here and now: the next layer's future
            // is the whole of this one, not wrapped in a state machine of its own.
            Prepared::Ready(req) => Box::pin(inner.call(req)),
            Prepared::Refused(rejected) => Box::pin(std::future::ready(Ok(refuse(rejected)))),
            Prepared::Body(waiting) => Box::pin(async move {
                match waiting.read().await {
                    Ok(req) => inner.call(req).await,
                    Err(rejected) => Ok(refuse(rejected)),
                }
            }),
        }
    }
}

type Rejected = (Rejection, SocketAddr, Method, String);

/// The answer to a refused request, with its audit line.
fn refuse((rejection, client, method, path): Rejected) -> Response<Body> {
    let res = rejection.response();
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
            message: Some(&rejection.reason()),
            generation: None,
            exemption: None,
            approval: None,
            waiver: None,
        },
        std::time::Instant::now(),
    )
    .finish(audit::Ending::Answered(res.status()));
    res
}

/// What [`prepare`] made of a request's head.
// Moved once, to `call`; boxing the request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Prepared<B> {
    /// Read, with [`Inspected`] attached.
    Ready(Request<Body>),
    Refused(Rejected),
    /// A body to buffer before the request can be read.
    Body(Box<Waiting<B>>),
}

/// A request whose head passed, waiting for its body.
struct Waiting<B> {
    client: SocketAddr,
    parts: http::request::Parts,
    body: B,
    target: Target,
    query: Option<String>,
    plan: BodyPlan,
}

/// What a refusal logs.
fn rejected(r: Rejection, client: SocketAddr, parts: &http::request::Parts) -> Rejected {
    (
        r,
        client,
        parts.method.clone(),
        parts.uri.path().to_string(),
    )
}

/// Reads the head of `req`, and the whole request when it has no body to buffer.
fn prepare<B>(req: Request<B>) -> Prepared<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client = ClientConn::addr_of(&req);
    let (mut parts, body) = req.into_parts();
    // The request-target as it came: an origin-form target is the URI's path-and-query as is
    // (no copy); anything else is rebuilt from the URI.
    let rebuilt;
    let raw: &str = match parts.uri.path_and_query() {
        Some(pq) if parts.uri.scheme().is_none() && parts.uri.authority().is_none() => pq.as_str(),
        _ => {
            rebuilt = parts.uri.to_string();
            &rebuilt
        }
    };
    let (target, query, plan) = match read_head(&parts.method, raw, &parts.headers) {
        Ok(head) => head,
        Err(r) => return Prepared::Refused(rejected(r.into(), client, &parts)),
    };
    let body = match plan {
        BodyPlan::Buffer(_) => {
            let query = query.map(str::to_owned);
            return Prepared::Body(Box::new(Waiting {
                client,
                parts,
                body,
                target,
                query,
                plan,
            }));
        }
        BodyPlan::Empty => Body::empty(),
        BodyPlan::Stream => Body::new(body),
    };
    match inspect_request(&parts.method, target, query, &plan, &[], &parts.headers) {
        Ok(inspected) => {
            parts.extensions.insert(inspected);
            Prepared::Ready(Request::from_parts(parts, body))
        }
        Err(r) => Prepared::Refused(rejected(r.into(), client, &parts)),
    }
}

impl<B> Waiting<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Buffers the body (within its size and time bounds), then reads the request.
    async fn read(self) -> Result<Request<Body>, Rejected> {
        let Waiting {
            client,
            mut parts,
            body,
            target,
            query,
            plan,
        } = self;
        let format = match &target {
            Target::Api { format, .. } => Some(*format),
            Target::Other { .. } => None,
        };
        // One contiguous buffer: memory follows the bytes received, not the reads.
        let bytes = match crate::bounded::read_to_limit(body, MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let r = match e {
                    crate::bounded::ReadError::TooLarge(_) => too_large(format).into(),
                    crate::bounded::ReadError::Timeout(t) => Rejection::new(
                        Kind::Refused(StatusCode::REQUEST_TIMEOUT),
                        format,
                        t.to_string(),
                    ),
                    crate::bounded::ReadError::Failed(m) => {
                        Rejection::new(Kind::Unreadable, format, m)
                    }
                };
                return Err(rejected(r, client, &parts));
            }
        };
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, bytes.len().into());
        let inspected = inspect_request(
            &parts.method,
            target,
            query.as_deref(),
            &plan,
            &bytes,
            &parts.headers,
        )
        .map_err(|r| rejected(r.into(), client, &parts))?;
        parts.extensions.insert(inspected);
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }
}
