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
use crate::policy::{Judgement, Mode, PolicyStore};
use crate::reject::{Kind, Rejection};

/// Layer that applies [`Authorize`] with the policy in `store`.
#[derive(Clone)]
pub struct AuthorizeLayer {
    store: PolicyStore,
    approvals: Option<Arc<Approvals>>,
}

impl AuthorizeLayer {
    /// Decides against whatever policy `store` holds at each request. Without
    /// [`AuthorizeLayer::with_approvals`], requests that need approval are refused.
    pub fn new(store: PolicyStore) -> Self {
        AuthorizeLayer {
            store,
            approvals: None,
        }
    }

    /// Settles approvals and waivers with this state.
    pub fn with_approvals(mut self, approvals: Option<Arc<Approvals>>) -> Self {
        self.approvals = approvals;
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
        }
    }
}

/// Refuses what the policy forbids; passes the rest on.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    store: PolicyStore,
    approvals: Option<Arc<Approvals>>,
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
        let judgement = policy.judge(&info.op, info.identity.as_deref(), mode);
        let explaining = policy.explaining();
        let review = gate::review(
            self.approvals.as_deref(),
            &policy,
            judgement,
            &info.op,
            info.identity.as_deref(),
        );
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
                        guests: &info.op.guests,
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
                return Audited::new(Either::Left(self.inner.call(req)), outcome);
            }
            Review::Approval(need) => Some(need),
        };
        if let Some(need) = need {
            let pending = Pending {
                client,
                identity: info.identity.clone(),
                action: info.op.action,
                guests: info.op.guests.clone(),
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
            return self.approval(req, pending, need, mode);
        }
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
            _ => Audited::new(Either::Left(self.inner.call(req)), outcome),
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
            return Audited::new(Either::Left(self.inner.call(req)), outcome);
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
                    Audited::new(inner.call(req), outcome).await
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
