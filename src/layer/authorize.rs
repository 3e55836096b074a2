//! The authorize layer: decides each [`Inspected`] request against a snapshot of the live
//! policy, logs one audit event, and answers denials itself (they never reach Proxmox).

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use http::{Request, Response};
use tower::{Layer, Service};

use super::inspect::{ClientConn, Inspected};
use crate::audit;
use crate::body::Body;
use crate::policy::{Decision, PolicyStore};
use crate::respond;

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
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response<Body>, Infallible>>>;

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
            Decision::Allow(_) => Either::Left(self.inner.call(req)),
            Decision::Deny(reason) => {
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
