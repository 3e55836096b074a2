//! The innermost service: sends allowed requests to Proxmox, and turns upstream failures into
//! 502 responses in the request's API format.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::inspect::{ClientConn, Inspected};
use crate::body::Body;
use crate::respond;
use crate::upstream::Upstream;

/// Forwards to the upstream.
///
/// The service is cloned for every request (by the server and the inspect layer), so the
/// upstream handle sits behind one `Arc`: a clone is one reference count.
#[derive(Clone)]
pub struct Forward {
    upstream: Arc<Upstream>,
}

impl Forward {
    /// A forwarder to `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Forward {
            upstream: Arc::new(upstream),
        }
    }
}

impl Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let upstream = Arc::clone(&self.upstream);
        Box::pin(async move {
            // Let the other requests that became ready in this turn of the event loop reach
            // this point first, so their upstream writes leave back to back: the upstream then
            // wakes once for a batch instead of once per request (a wake-up is an IPI and a
            // context switch on its CPU, the largest cost of a proxied request on a busy
            // host). Costs one task re-poll; measured in BENCHMARKS.md.
            tokio::task::yield_now().await;
            let format = req.extensions().get::<Inspected>().and_then(|i| i.format);
            let conn = req.extensions().get::<ClientConn>().cloned();
            match upstream.forward(req, conn.as_ref().map(|c| &*c.0)).await {
                Ok(res) => {
                    // The same for the answers: written to the clients in one burst.
                    tokio::task::yield_now().await;
                    Ok(res)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream request failed");
                    Ok(respond::error(format, e.status(), &format!("pvegate: {e}")))
                }
            }
        })
    }
}
