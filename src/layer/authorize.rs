//! The authorize layer: judges each [`Inspected`] request against a snapshot of the live
//! policy (enforce or shadow), answers refusals itself (they never reach Proxmox), and writes
//! the request's audit line once its outcome is known ([`audit::Outcome`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{Either, Ready};
use http::{Request, Response};
use tower::{Layer, Service};

use super::inspect::Inspected;
use crate::audit::{self, AuditDecision, Ending, Outcome};
use crate::body::Body;
use crate::conn::ClientConn;
use crate::policy::{Judgement, PolicyStore};
use crate::reject::{Kind, Rejection};

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
    type Future = Audited<Either<S::Future, Ready<Result<Response<Body>, Infallible>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let Some(info) = req.extensions().get::<Inspected>() else {
            // Only reachable if the stack were assembled without the inspect layer: fail closed.
            let res = Rejection::new(Kind::Internal, None, "request was not inspected").response();
            return Audited::done(Either::Right(futures_util::future::ready(Ok(res))));
        };
        let client = ClientConn::addr_of(&req);
        let policy = self.store.snapshot();
        let judgement = policy.judge(&info.op, info.identity.as_deref(), self.store.mode());
        let explaining = policy.explaining();
        let (decision, refusal) = match judgement {
            Judgement::Allow(_) => (AuditDecision::Allow, None),
            Judgement::Deny(r) | Judgement::WouldDeny(r) => {
                let what = format!("{} {}", info.method, info.path);
                let m = explaining.deny_message(&r, info.op.action, &what);
                let d = if matches!(judgement, Judgement::Deny(_)) {
                    AuditDecision::Deny
                } else {
                    AuditDecision::WouldDeny
                };
                (d, Some(Rejection::denied(info.format, m)))
            }
        };
        let message = refusal.as_ref().map(Rejection::reason);
        let exemption = match judgement {
            Judgement::Allow(_) if info.identity.is_some() && policy.has_exemptions() => {
                policy.exemption_used(&info.op, info.identity.as_deref())
            }
            _ => None,
        };
        let outcome = Outcome::begin(
            audit::Facts {
                client,
                identity: info.identity.as_deref(),
                method: info.method.as_str(),
                path: &info.path,
                endpoint: info.endpoint(),
                action: Some(info.op.action),
                guests: &info.op.guests,
                decision,
                rule: explaining.rule_label(&judgement.decision()),
                message: message.as_deref(),
                generation: Some(policy.generation),
                exemption: exemption.as_deref(),
            },
            started,
        );
        match (judgement, refusal) {
            (Judgement::Deny(_), Some(refusal)) => {
                let res = refusal.response();
                outcome.finish(Ending::Answered(res.status()));
                Audited::done(Either::Right(futures_util::future::ready(Ok(res))))
            }
            _ => Audited::new(Either::Left(self.inner.call(req)), outcome),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a request, writing its audit line when it is ready (the upstream's
    /// response head, or pvegate's own answer), or when dropped before (the client left).
    pub struct Audited<F> {
        #[pin]
        inner: F,
        outcome: Option<Outcome>,
    }

    impl<F> PinnedDrop for Audited<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(o) = this.project().outcome.take() {
                o.finish(Ending::ClientGone);
            }
        }
    }
}

impl<F> Audited<F> {
    fn new(inner: F, outcome: Outcome) -> Self {
        Audited {
            inner,
            outcome: Some(outcome),
        }
    }

    fn done(inner: F) -> Self {
        Audited {
            inner,
            outcome: None,
        }
    }
}

impl<F> Future for Audited<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        if let (Some(o), Ok(r)) = (this.outcome.take(), &res) {
            let ending = match r.extensions().get::<audit::UpstreamFailed>() {
                Some(e) => Ending::UpstreamFailed(r.status(), &e.0),
                None => Ending::Upstream(r.status()),
            };
            o.finish(ending);
        }
        Poll::Ready(res)
    }
}
