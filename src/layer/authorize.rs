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

use super::inspect::{ClientConn, Inspected};
use crate::audit::{self, AuditDecision, Ending, Outcome};
use crate::body::Body;
use crate::inventory::gate::{self, Prepared};
use crate::inventory::{Change, Inventory};
use crate::policy::{DenyReason, Judgement, PolicyStore};
use crate::respond;

/// Layer that applies [`Authorize`] with the policy in `store`.
#[derive(Clone)]
pub struct AuthorizeLayer {
    store: PolicyStore,
    inventory: Option<Inventory>,
}

impl AuthorizeLayer {
    /// Decides against whatever policy `store` holds at each request.
    pub fn new(store: PolicyStore) -> Self {
        AuthorizeLayer {
            store,
            inventory: None,
        }
    }

    /// Also judges by `inventory` (selectors, stored selections, dependencies, sticky
    /// protection); writes that need it are refused while it is stale.
    pub fn with_inventory(mut self, inventory: Option<Inventory>) -> Self {
        self.inventory = inventory;
        self
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            store: self.store.clone(),
            inventory: self.inventory.clone(),
        }
    }
}

/// Refuses what the policy forbids; passes the rest on.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    store: PolicyStore,
    inventory: Option<Inventory>,
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
            let res = respond::error(
                None,
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "pvegate: request was not inspected",
            );
            return Audited::done(Either::Right(futures_util::future::ready(Ok(res))));
        };
        let client = ClientConn::addr_of(&req);
        let policy = self.store.snapshot();
        let mode = self.store.mode();
        let prepared = match &self.inventory {
            Some(inv) => inv.prepare(&info.op, info.change.as_ref(), &policy),
            None => Prepared::NotNeeded,
        };
        let (judgement, op, stale) = match &prepared {
            Prepared::NotNeeded => (
                policy.judge(&info.op, info.identity.as_deref(), mode),
                &info.op,
                None,
            ),
            Prepared::Ready { view, op } => {
                let op = op.as_ref().unwrap_or(&info.op);
                let j = policy.judge_in(
                    op,
                    info.change.as_ref(),
                    info.identity.as_deref(),
                    mode,
                    Some(view),
                );
                (j, op, None)
            }
            Prepared::Stale(why) => {
                let what = format!("{} {}", info.method, info.path);
                let j = match mode {
                    crate::policy::Mode::Enforce => Judgement::Deny(DenyReason::Strict),
                    crate::policy::Mode::Shadow => Judgement::WouldDeny(DenyReason::Strict),
                };
                (j, &info.op, Some(gate::stale_message(why, &what)))
            }
        };
        let explaining = policy.explaining();
        let (decision, message) = match judgement {
            Judgement::Deny(_) | Judgement::WouldDeny(_) if stale.is_some() => (
                if matches!(judgement, Judgement::Deny(_)) {
                    AuditDecision::Deny
                } else {
                    AuditDecision::WouldDeny
                },
                stale,
            ),
            Judgement::Allow(_) => (AuditDecision::Allow, None),
            Judgement::Deny(r) | Judgement::WouldDeny(r) => {
                let what = format!("{} {}", info.method, info.path);
                let m = gate::with_detail(explaining.deny_message(&r, op.action, &what), &prepared);
                let d = if matches!(judgement, Judgement::Deny(_)) {
                    AuditDecision::Deny
                } else {
                    AuditDecision::WouldDeny
                };
                (d, Some(m))
            }
        };
        let exemption = match judgement {
            Judgement::Allow(_) if info.identity.is_some() && policy.has_exemptions() => {
                policy.exemption_used(op, info.identity.as_deref())
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
                guests: &op.guests,
                decision,
                rule: match &prepared {
                    Prepared::Stale(_) => gate::STALE_RULE,
                    _ => explaining.rule_label(&judgement.decision()),
                },
                message: message.as_deref(),
                generation: Some(policy.generation),
                exemption: exemption.as_deref(),
            },
            started,
        );
        match (judgement, message) {
            (Judgement::Deny(_), Some(message)) => {
                let res = respond::deny(info.format, &message);
                outcome.finish(Ending::Answered(res.status()));
                Audited::done(Either::Right(futures_util::future::ready(Ok(res))))
            }
            _ => {
                let after = match &self.inventory {
                    Some(inv) if !info.op.action.is_read() => {
                        Some(AfterWrite(inv.clone(), info.change.clone()))
                    }
                    _ => None,
                };
                let mut f = Audited::new(Either::Left(self.inner.call(req)), outcome);
                f.after = after;
                f
            }
        }
    }
}

/// A forwarded write: once its answer is a success, the inventory applies its change and
/// refreshes.
pub struct AfterWrite(Inventory, Option<Change>);

pin_project_lite::pin_project! {
    /// The answer of a request, writing its audit line when it is ready (the upstream's
    /// response head, or pvegate's own answer), or when dropped before (the client left).
    pub struct Audited<F> {
        #[pin]
        inner: F,
        outcome: Option<Outcome>,
        after: Option<AfterWrite>,
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
            after: None,
        }
    }

    fn done(inner: F) -> Self {
        Audited {
            inner,
            outcome: None,
            after: None,
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
        if let (Some(AfterWrite(inv, change)), Ok(r)) = (this.after.take(), &res) {
            if r.status().is_success() {
                inv.after_write(change.as_ref());
            } else {
                inv.refresh_soon();
            }
        }
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
