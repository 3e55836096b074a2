//! Audit lines and counters of approval and waiver events (the request's own audit line
//! carries the `approval` or `waiver` id that applied to it; these are the other events).

use super::store::{RequestRecord, Status};
use super::waiver::WaiverRecord;

/// Counts an approval event (`pvegate_approvals_total{event}`).
pub fn count_approval(event: &'static str) {
    crate::metrics::approval_event(event);
}

/// The audit line and counter of an approval event: `requested`, `approved` (one approver's
/// yes; `status` says whether the grant is complete), `rejected`, `expired`.
pub fn approval(event: &'static str, r: &RequestRecord, by: Option<&str>, status: Option<&Status>) {
    count_approval(event);
    let approvers = r.approvers.to_string();
    let expires = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.expires),
    )
    .to_string();
    crate::audit::event(
        "approval",
        &[
            ("event", Some(event)),
            ("approval", Some(&r.id)),
            ("identity", Some(&r.identity)),
            ("method", Some(&r.method)),
            ("path", Some(&r.path)),
            ("action", Some(&r.action)),
            ("guests", Some(&r.guests)),
            ("rule", Some(&r.rule)),
            ("approvers", Some(&approvers)),
            ("by", by),
            ("status", status.map(Status::word)),
            ("expires", Some(&expires)),
        ],
    );
}

/// The audit line and counter of a waiver event: `created`, `revoked`, `expired`.
pub fn waiver(event: &'static str, w: &WaiverRecord, by: Option<&str>) {
    crate::metrics::waiver_event(event);
    let guest = w.guest.map(|g| g.to_string());
    let expires = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(w.expires),
    )
    .to_string();
    crate::audit::event(
        "waiver",
        &[
            ("event", Some(event)),
            ("waiver", Some(&w.id)),
            ("guest", guest.as_deref()),
            ("identity", w.identity.as_deref()),
            ("actions", Some(&w.actions)),
            ("reason", Some(&w.reason)),
            ("by", by.or(Some(&w.by))),
            ("expires", Some(&expires)),
        ],
    );
}
