//! What the authorize layer asks of approvals and waivers: [`review`] (pure but for the
//! waiver cache) says whether a judgement stands, a waiver lifts it, or the request needs
//! approval; [`ask`] then looks for a grant (claiming it) or records the request as pending,
//! off the async threads; [`waiting_message`] is the refusal text.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::store::{Ask, Gate, RequestRecord};
use super::waiver::Waiver;
use super::{events, Approvals, StateError};
use crate::policy::decide::AllowReason;
use crate::policy::{ApprovalNeed, DenyReason, Judgement, Policy};
use crate::pve::request::{ParamValue, Params};
use crate::pve::Operation;

/// What approvals and waivers make of a judgement.
#[derive(Debug)]
pub enum Review {
    /// The judgement stands.
    Plain,
    /// A waiver lets the request through.
    Waived(Waiver),
    /// The policy permits it only with an approval.
    Approval(ApprovalNeed),
}

/// Reviews `judgement` of `op` by `identity`: a permitted request may need approval; a
/// request a guest rule refuses, or that needs approval, may be covered by a waiver.
/// Refusals by `deny_actions`, `strict` or `host.access`, and shadow would-denies, stand.
pub fn review(
    approvals: Option<&Approvals>,
    policy: &Policy,
    judgement: Judgement,
    op: &Operation,
    identity: Option<&str>,
    view: Option<&crate::policy::resolve::Resolved>,
) -> Review {
    let need = match judgement {
        Judgement::Allow(AllowReason::Permitted) => {
            match policy.approval_needed_in(op, identity, view) {
                Some(n) => Some(n),
                None => return Review::Plain,
            }
        }
        Judgement::Deny(DenyReason::Guest { .. } | DenyReason::AllGuests { .. }) => None,
        _ => return Review::Plain,
    };
    if let Some(a) = approvals {
        let found = match a.store_if_present() {
            Ok(Some(s)) => s.waiver_for(&a.waivers, op, identity),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(w)) => return Review::Waived(w),
            Ok(None) => {}
            // Fail closed: the judgement (or the approval) stands.
            Err(e) => tracing::warn!(error = %e, "cannot read waivers"),
        }
    }
    match need {
        Some(n) => Review::Approval(n),
        None => Review::Plain,
    }
}

/// The request digest: SHA-256 over identity, method, path and the parameters pveproxy will
/// read (sorted by key; each value's shape kept, so `a=1` differs from `a=1&a=1`).
pub fn digest(identity: Option<&str>, method: &str, path: &str, params: &Params) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(identity.unwrap_or("-").as_bytes());
    field(method.as_bytes());
    field(path.as_bytes());
    for (k, v) in params.iter() {
        field(k.as_bytes());
        match v {
            ParamValue::Absent => field(b"\x00absent"),
            ParamValue::One(s) => {
                field(b"\x00one");
                field(s.as_bytes());
            }
            ParamValue::Many(list) => {
                field(b"\x00many");
                field(&(list.len() as u64).to_be_bytes());
                for s in list {
                    field(s.as_bytes());
                }
            }
        }
    }
    super::record::hex(&h.finalize())
}

/// A request that needs approval, owned (it crosses into a blocking thread).
pub struct OwnedAsk {
    pub identity: Option<String>,
    pub method: String,
    pub path: String,
    pub action: &'static str,
    pub guests: String,
    pub digest: String,
    pub need: ApprovalNeed,
}

/// Looks for a grant of `ask` (claiming it) or the pending request it waits under, or
/// records a new one (audited, counted, and sent to the webhook). Runs on a blocking thread.
pub async fn ask(approvals: Arc<Approvals>, ask: OwnedAsk) -> Result<Gate, StateError> {
    let job = tokio::task::spawn_blocking(move || {
        // Blocking threads batch log lines but never park: hand them over when done.
        let result = settle(&approvals, &ask);
        crate::logsink::flush_this_thread();
        result
    });
    job.await
        .map_err(|e| StateError::Refused(format!("approval check failed: {e}")))?
}

fn settle(approvals: &Approvals, ask: &OwnedAsk) -> Result<Gate, StateError> {
    {
        let store = approvals.store()?;
        let gate = store.gate(&Ask {
            identity: ask.identity.as_deref(),
            method: &ask.method,
            path: &ask.path,
            action: ask.action,
            guests: &ask.guests,
            digest: ask.digest.clone(),
            rule: &ask.need.rule,
            approvers: ask.need.approvers,
        })?;
        match &gate {
            Gate::Waiting(r, true) => {
                events::approval("requested", r, None, None);
                approvals.notify(r);
            }
            Gate::Granted(..) => events::count_approval("used"),
            Gate::Waiting(_, false) | Gate::Full => events::count_approval("refused"),
        }
        Ok(gate)
    }
}

/// "VM 104", "VMs 104,109", "every guest", or "no guest".
fn guests_words(guests: &str) -> String {
    match guests {
        "" => "no guest".into(),
        "all" => "every guest".into(),
        g if g.contains(',') => format!("VMs {g}"),
        g => format!("VM {g}"),
    }
}

/// The refusal of a request that waits for approval `r`.
pub fn waiting_message(r: &RequestRecord, new: bool) -> String {
    let people = if r.approvers == 1 {
        "1 approver".to_string()
    } else {
        format!("{} distinct approvers", r.approvers)
    };
    let minutes = r.grant_secs.div_ceil(60);
    // The rule (with its file:line) is for the audit and the approvers, not the client.
    format!(
        "{} on {} needs approval by {people} other than {}: approval id {}{}; to approve: pvegate approve {}; once approved, this exact request passes once within {minutes} min",
        r.action,
        guests_words(&r.guests),
        r.identity,
        r.id,
        if new { "" } else { " (still waiting)" },
        r.id,
    )
}

/// The refusal when the approval state cannot be used (fail closed).
pub fn unavailable_message(action: &str, why: &str) -> String {
    format!(
        "{action} needs approval, but pvegate cannot record approval requests ({why}): refused; ask whoever runs pvegate (the log says more)",
    )
}

/// The refusal when too many requests wait.
pub fn full_message(action: &str) -> String {
    format!(
        "{action} needs approval, but the approval queue is full ({} waiting, at most {} per identity): refused; ask an approver to clear it",
        super::store::MAX_PENDING,
        super::store::MAX_PENDING_PER_IDENTITY
    )
}
