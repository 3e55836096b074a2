//! The innermost service: sends allowed requests to Proxmox, and turns upstream failures into
//! 502 responses in the request's API format.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::inspect::{ClientAddr, Inspected};
use crate::respond::{self, Body};
use crate::upstream::Upstream;

/// Forwards to the upstream.
#[derive(Clone)]
pub struct Forward {
    upstream: Upstream,
}

impl Forward {
    /// A forwarder to `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Forward { upstream }
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
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let format = req.extensions().get::<Inspected>().and_then(|i| i.format);
            let client = req
                .extensions()
                .get::<ClientAddr>()
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
            match upstream.forward(req, client).await {
                Ok(res) => Ok(res),
                Err(e) => {
                    tracing::warn!(error = %e, "upstream request failed");
                    Ok(respond::error(format, e.status(), &format!("pvegate: {e}")))
                }
            }
        })
    }
}
