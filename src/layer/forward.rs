//! The innermost service: sends allowed requests to Proxmox, and turns upstream failures into
//! 502 responses (504 when no answer came in time) in the request's API format.
//!
//! The response timeout (`upstream.response_timeout_secs`) covers the wait for the upstream's
//! response head after the request has been sent in full: an upload's own transfer time does
//! not count (its body is bounded by the client body timeout instead), and neither does a
//! response body (downloads, task logs) or a websocket after its `101`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::Service;

use super::inspect::Inspected;
use crate::body::Body;
use crate::conn::ClientConn;
use crate::metrics;
use crate::rearm::{self, TimerSlot};
use crate::reject::{Kind, Rejection};
use crate::upstream::{Cluster, ForwardError};

/// Forwards to the upstream.
///
/// The service is cloned for every request (by the server and the inspect layer), so the
/// upstream handle sits behind one `Arc`: a clone is one reference count.
#[derive(Clone)]
pub struct Forward {
    upstream: Arc<Cluster>,
}

impl Forward {
    /// A forwarder to `upstream`: one [`crate::upstream::Upstream`] or a [`Cluster`].
    pub fn new(upstream: impl Into<Arc<Cluster>>) -> Self {
        Forward {
            upstream: upstream.into(),
        }
    }
}

/// A streamed request body that says when it has been sent in full (or given up).
struct Sent {
    body: Body,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for Sent {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, crate::body::BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.done.take().map(|tx| tx.send(()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.done.take().map(|tx| tx.send(()));
    }
}

/// An upload (the one streamed request body): the response timeout starts once it has been
/// sent. Every other body is buffered (or empty) and sent at once.
fn is_streamed(req: &Request<Body>) -> bool {
    req.method() == Method::POST
        && !http_body::Body::is_end_stream(req.body())
        && req
            .extensions()
            .get::<Inspected>()
            .is_none_or(|i| i.path.ends_with("/upload"))
}

impl Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let upstream = Arc::clone(&self.upstream);
        let sent = is_streamed(&req).then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let body = std::mem::take(req.body_mut());
            *req.body_mut() = Body::new(Sent {
                body,
                done: Some(tx),
            });
            rx
        });
        Box::pin(async move {
            // Let the other requests that became ready in this turn of the event loop reach
            // this point first, so their upstream writes leave back to back: the upstream then
            // wakes once for a batch instead of once per request (a wake-up is an IPI and a
            // context switch on its CPU, the largest cost of a proxied request on a busy
            // host). Costs one task re-poll; measured in BENCHMARKS.md.
            tokio::task::yield_now().await;
            let format = req.extensions().get::<Inspected>().and_then(|i| i.format);
            let conn = req.extensions().get::<ClientConn>().cloned();
            let timeout = upstream.response_timeout();
            let forward = upstream.forward(req, conn.as_ref().map(|c| &c.0.upstream));
            let mut forward = std::pin::pin!(forward);
            if let Some(sent) = sent {
                // Until an upload has been sent, its client's body timeout bounds the wait.
                tokio::select! {
                    res = &mut forward => return Ok(answer(res, format)),
                    _ = sent => {}
                }
            }
            // The client connection's own timer, re-armed (no timer-wheel lock per request);
            // a new one for a request that came without a connection.
            let timer = match &conn {
                Some(c) => c.0.response_timer.arm_in(timeout),
                None => Arc::<TimerSlot>::default().arm_in(timeout),
            };
            let res = match rearm::within(timer, forward).await {
                Ok(res) => res,
                Err(rearm::TimedOut) => Err(ForwardError::Timeout {
                    authority: upstream.authority(),
                    after: timeout,
                }),
            };
            if res.is_ok() {
                // The same for the answers: written to the clients in one burst.
                tokio::task::yield_now().await;
            }
            Ok(answer(res, format))
        })
    }
}

/// The upstream's answer, or pvegate's own in the request's API format.
fn answer(
    res: Result<Response<Body>, ForwardError>,
    format: Option<crate::pve::ApiFormat>,
) -> Response<Body> {
    match res {
        Ok(res) => res,
        Err(e) => {
            metrics::upstream_error(match e {
                ForwardError::Connect { .. } | ForwardError::NodeDown { .. } => "connect",
                ForwardError::Timeout { .. } => "timeout",
                ForwardError::ClientBody(_) => "client_body",
                ForwardError::Exchange { .. } | ForwardError::Build(_) => "exchange",
            });
            tracing::warn!(error = %e, "upstream request failed");
            let rejection = Rejection::new(Kind::Upstream(e.status()), format, e.to_string());
            let mut res = rejection.response();
            res.extensions_mut()
                .insert(crate::audit::UpstreamFailed(rejection.detail));
            res
        }
    }
}
