//! The authorize layer: decides each [`Inspected`] request against a snapshot of the live
//! policy, logs one audit event, and answers denials itself (they never reach Proxmox).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{Either, Ready};
use http::{Request, Response};
use tower::{Layer, Service};

use super::inspect::{ClientConn, Inspected};
use crate::audit;
use crate::policy::{Decision, PolicyStore};
use crate::respond::{self, Body};

/// Layer that applies [`Authorize`] with the policy in `store`.
#[derive(Clone)]
pub struct AuthorizeLayer {
    store: PolicyStore,
}

impl AuthorizeLayer {
    /// Decides against whatever policy `store` holds at each request.
    pub fn new(store: PolicyStore) -> Self {
        AuthorizeLayer { store }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            store: self.store.clone(),
        }
    }
}

/// Refuses what the policy forbids; passes the rest on.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    store: PolicyStore,
}

impl<S> Service<Request<Body>> for Authorize<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Observed<S::Future>, Ready<Result<Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(info) = req.extensions().get::<Inspected>() else {
            // Only reachable if the stack were assembled without the inspect layer: fail closed.
            let res = respond::error(
                None,
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "pvegate: request was not inspected",
            );
            return Either::Right(futures_util::future::ready(Ok(res)));
        };
        let client = ClientConn::addr_of(&req);
        let policy = self.store.snapshot();
        let decision = policy.decide(&info.op, info.identity.as_deref());
        let rule = policy.rule_label(&decision);
        audit::record(&audit::AuditEvent {
            client,
            identity: info.identity.as_deref(),
            method: info.method.as_str(),
            path: &info.path,
            endpoint: info.endpoint(),
            action: info.op.action.as_str(),
            guests: &info.op.guests,
            decision: match decision {
                Decision::Allow(_) => "allow",
                Decision::Deny(_) => "deny",
            },
            rule: &rule,
        });
        match decision {
            Decision::Allow(_) => {
                let action = info.op.action.as_str();
                Either::Left(Observed {
                    inner: self.inner.call(req),
                    action,
                    start: Instant::now(),
                })
            }
            Decision::Deny(reason) => {
                crate::metrics::observe_request(
                    info.op.action.as_str(),
                    "deny",
                    Some(&rule),
                    None,
                    std::time::Duration::ZERO,
                );
                let what = format!("{} {}", info.method, info.path);
                let message = policy.deny_message(&reason, info.op.action, &what);
                Either::Right(futures_util::future::ready(Ok(respond::deny(
                    info.format,
                    &message,
                ))))
            }
        }
    }
}

/// An allowed request on its way to Proxmox: counted in [`crate::metrics`] once answered.
pub struct Observed<F> {
    inner: F,
    action: &'static str,
    start: Instant,
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let res = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if let Ok(res) = &res {
            let forwarded = res
                .extensions()
                .get::<super::forward::NotForwarded>()
                .is_none();
            crate::metrics::observe_request(
                self.action,
                "allow",
                None,
                forwarded.then(|| res.status().as_u16()),
                self.start.elapsed(),
            );
        }
        Poll::Ready(res)
    }
}
