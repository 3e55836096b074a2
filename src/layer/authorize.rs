//! The authorize layer: judges each [`Inspected`] request against a snapshot of the live
//! policy (enforce or shadow), answers refusals itself (they never reach Proxmox), and writes
//! the request's audit line once its outcome is known ([`audit::Outcome`]). Requests the
//! policy permits only with an approval, and refusals a waiver lifts, are settled with
//! [`crate::approval::gate`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{BoxFuture, Either, Ready};
use http::{Request, Response};
use tower::{Layer, Service};

use super::inspect::Inspected;
use crate::approval::gate::{self, Review};
use crate::approval::store::Gate;
use crate::approval::Approvals;
use crate::audit::{self, AuditDecision, Ending, Outcome};
use crate::body::Body;
use crate::conn::ClientConn;
use crate::inventory::gate::{self as inv_gate, Prepared};
use crate::inventory::{Change, Inventory};
use crate::policy::{DenyReason, Judgement, Mode, PolicyStore};
use crate::reject::{Kind, Rejection};

/// Layer that applies [`Authorize`] with the policy in `store`.
#[derive(Clone)]
pub struct AuthorizeLayer {
    store: PolicyStore,
    approvals: Option<Arc<Approvals>>,
    inventory: Option<Inventory>,
}

impl AuthorizeLayer {
    /// Decides against whatever policy `store` holds at each request. Without
    /// [`AuthorizeLayer::with_approvals`], requests that need approval are refused.
    pub fn new(store: PolicyStore) -> Self {
        AuthorizeLayer {
            store,
            approvals: None,
            inventory: None,
        }
    }

    /// Settles approvals and waivers with this state.
    pub fn with_approvals(mut self, approvals: Option<Arc<Approvals>>) -> Self {
        self.approvals = approvals;
        self
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
            approvals: self.approvals.clone(),
            inventory: self.inventory.clone(),
        }
    }
}

/// Refuses what the policy forbids; passes the rest on.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    store: PolicyStore,
    approvals: Option<Arc<Approvals>>,
    inventory: Option<Inventory>,
}

/// What a request that needs approval is, owned: it is settled off the request path.
struct Pending {
    client: std::net::SocketAddr,
    identity: Option<String>,
    action: crate::pve::Action,
    guests: crate::pve::GuestSet,
    method: String,
    path: String,
    endpoint: String,
    format: Option<crate::pve::ApiFormat>,
    digest: String,
    generation: u64,
    started: Instant,
}

/// A request's answer decided off the request path (an approval lookup).
type Settled = BoxFuture<'static, Result<Response<Body>, Infallible>>;

impl<S> Service<Request<Body>> for Authorize<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Audited<Either<S::Future, Either<Answered, Settled>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let Some(info) = req.extensions().get::<Inspected>() else {
            // Only reachable if the stack were assembled without the inspect layer: fail closed.
            let res = Rejection::new(Kind::Internal, None, "request was not inspected").response();
            return Audited::done(ready(res));
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
                (j, &info.op, Some(inv_gate::stale_message(why, &what)))
            }
        };
        let explaining = policy.explaining();
        let review = match stale {
            Some(_) => Review::Plain,
            None => gate::review(
                self.approvals.as_deref(),
                &policy,
                judgement,
                op,
                info.identity.as_deref(),
                match &prepared {
                    Prepared::Ready { view, .. } => Some(&**view),
                    _ => None,
                },
            ),
        };
        let need = match review {
            Review::Plain => None,
            Review::Waived(w) => {
                crate::metrics::waiver_event("used");
                let exemption = format!(
                    "waiver {} ({}): {}",
                    w.record.id,
                    w.scope(),
                    w.record.reason
                );
                let outcome = Outcome::begin(
                    audit::Facts {
                        client,
                        identity: info.identity.as_deref(),
                        method: info.method.as_str(),
                        path: &info.path,
                        endpoint: info.endpoint(),
                        action: Some(info.op.action),
                        guests: &op.guests,
                        decision: AuditDecision::Allow,
                        rule: explaining.rule_label(&judgement.decision()),
                        message: None,
                        generation: Some(policy.generation),
                        exemption: Some(&exemption),
                        approval: None,
                        waiver: Some(&w.record.id),
                    },
                    started,
                );
                let after = self.after_write(info);
                let mut f = Audited::new(Either::Left(self.inner.call(req)), outcome);
                f.after = after;
                return f;
            }
            Review::Approval(need) => Some(need),
        };
        if let Some(need) = need {
            let pending = Pending {
                client,
                identity: info.identity.clone(),
                action: info.op.action,
                guests: op.guests.clone(),
                method: info.method.as_str().to_string(),
                path: info.path.clone(),
                endpoint: info.endpoint().to_string(),
                format: info.format,
                digest: gate::digest(
                    info.identity.as_deref(),
                    info.method.as_str(),
                    &info.path,
                    &info.params,
                ),
                generation: policy.generation,
                started,
            };
            let after = self.after_write(info);
            return self.approval(req, pending, need, mode, after);
        }
        let (decision, refusal) = match judgement {
            Judgement::Deny(_) | Judgement::WouldDeny(_) if stale.is_some() => (
                if matches!(judgement, Judgement::Deny(_)) {
                    AuditDecision::Deny
                } else {
                    AuditDecision::WouldDeny
                },
                stale.map(|m| Rejection::denied(info.format, m)),
            ),
            Judgement::Allow(_) => (AuditDecision::Allow, None),
            Judgement::Deny(r) | Judgement::WouldDeny(r) => {
                let what = format!("{} {}", info.method, info.path);
                let m =
                    inv_gate::with_detail(explaining.deny_message(&r, op.action, &what), &prepared);
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
                    Prepared::Stale(_) => inv_gate::STALE_RULE,
                    _ => explaining.rule_label(&judgement.decision()),
                },
                message: message.as_deref(),
                generation: Some(policy.generation),
                exemption: exemption.as_deref(),
                approval: None,
                waiver: None,
            },
            started,
        );
        match (judgement, refusal) {
            (Judgement::Deny(_), Some(refusal)) => {
                let res = refusal.response();
                outcome.finish(Ending::Answered(res.status()));
                Audited::done(ready(res))
            }
            _ => {
                let after = self.after_write(info);
                let mut f = Audited::new(Either::Left(self.inner.call(req)), outcome);
                f.after = after;
                f
            }
        }
    }
}

/// pvegate's own answer, ready now.
type Answered = Ready<Result<Response<Body>, Infallible>>;

fn ready<F>(res: Response<Body>) -> Either<F, Either<Answered, Settled>> {
    Either::Right(Either::Left(futures_util::future::ready(Ok(res))))
}

impl<S> Authorize<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// A request the policy permits only with an approval: in shadow mode forwarded and
    /// audited as would-deny; otherwise forwarded if it holds a grant (used up), else refused
    /// with the approval id it waits under.
    fn approval(
        &mut self,
        req: Request<Body>,
        info: Pending,
        need: crate::policy::ApprovalNeed,
        mode: Mode,
        after: Option<AfterWrite>,
    ) -> <Self as Service<Request<Body>>>::Future {
        let Pending {
            client,
            identity,
            action,
            guests,
            method,
            path,
            endpoint,
            format,
            digest,
            generation,
            started,
        } = info;
        let rule = need.rule.clone();
        let ask = gate::OwnedAsk {
            identity: identity.clone(),
            method: method.clone(),
            path: path.clone(),
            action: action.as_str(),
            guests: audit::guests_text(&guests),
            digest,
            need,
        };
        let facts = move |decision, message: Option<&str>, approval: Option<&str>| {
            let f = audit::Facts {
                client,
                identity: identity.as_deref(),
                method: &method,
                path: &path,
                endpoint: &endpoint,
                action: Some(action),
                guests: &guests,
                decision,
                rule: std::borrow::Cow::Owned(rule.clone()),
                message,
                generation: Some(generation),
                exemption: None,
                approval,
                waiver: None,
            };
            Outcome::begin(f, started)
        };
        let refuse = move |outcome: Outcome, refusal: &Rejection| {
            let res = refusal.response();
            outcome.finish(Ending::Answered(res.status()));
            res
        };
        if mode == Mode::Shadow {
            let m = format!(
                "pvegate: {} needs approval ({}); shadow mode forwards it",
                action.as_str(),
                ask.need.rule
            );
            let outcome = facts(AuditDecision::WouldDeny, Some(&m), None);
            let mut f = Audited::new(Either::Left(self.inner.call(req)), outcome);
            f.after = after;
            return f;
        }
        let Some(approvals) = self.approvals.clone() else {
            let m = Rejection::denied(
                format,
                gate::unavailable_message(
                    action.as_str(),
                    "no approval state is set up in this process",
                ),
            );
            let outcome = facts(AuditDecision::Deny, Some(&m.reason()), None);
            return Audited::done(ready(refuse(outcome, &m)));
        };
        // The readied service goes with the request; a clone stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settled: Settled = Box::pin(async move {
            match gate::ask(approvals, ask).await {
                Ok(Gate::Granted(r, _)) => {
                    let outcome = facts(AuditDecision::Allow, None, Some(&r.id));
                    let mut f = Audited::new(inner.call(req), outcome);
                    f.after = after;
                    f.await
                }
                Ok(Gate::Waiting(r, new)) => {
                    let m = Rejection::denied(format, gate::waiting_message(&r, new));
                    Ok(refuse(
                        facts(AuditDecision::Deny, Some(&m.reason()), Some(&r.id)),
                        &m,
                    ))
                }
                Ok(Gate::Full) => {
                    let m = Rejection::denied(format, gate::full_message(action.as_str()));
                    Ok(refuse(
                        facts(AuditDecision::Deny, Some(&m.reason()), None),
                        &m,
                    ))
                }
                Err(e) => {
                    tracing::error!(error = %e, "approval state unavailable: request refused");
                    let m = Rejection::denied(
                        format,
                        gate::unavailable_message(
                            action.as_str(),
                            "the state directory cannot be used",
                        ),
                    );
                    Ok(refuse(
                        facts(AuditDecision::Deny, Some(&m.reason()), None),
                        &m,
                    ))
                }
            }
        });
        Audited::done(Either::Right(Either::Right(settled)))
    }

    /// What the inventory does once a forwarded write is answered (nothing without one, or
    /// for reads).
    fn after_write(&self, info: &Inspected) -> Option<AfterWrite> {
        match &self.inventory {
            Some(inv) if !info.op.action.is_read() => {
                Some(AfterWrite(inv.clone(), info.change.clone()))
            }
            _ => None,
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
