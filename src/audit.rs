//! One structured audit event per decision (target `pvegate::audit`).
//!
//! The event names the client, the identity (token id or ticket user, never a secret), the
//! method, the decoded path (never the query: it can carry `vncticket`), the endpoint, the
//! guests, the action, the decision and the rule that made it.

use std::net::SocketAddr;

use crate::pve::GuestSet;

/// What one decision is logged with.
pub struct AuditEvent<'a> {
    pub client: SocketAddr,
    pub identity: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub endpoint: &'a str,
    pub action: &'a str,
    pub guests: &'a GuestSet,
    /// "allow", "deny" or "invalid".
    pub decision: &'static str,
    pub rule: &'a str,
}

/// Renders a guest set for logs: "104,109", "all" or "".
pub fn guests_text(g: &GuestSet) -> String {
    match g {
        GuestSet::None => String::new(),
        GuestSet::All => "all".into(),
        GuestSet::Some(v) => v
            .iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Emits the event.
pub fn record(e: &AuditEvent<'_>) {
    tracing::info!(
        target: "pvegate::audit",
        client = %e.client,
        identity = e.identity.unwrap_or("-"),
        method = e.method,
        path = e.path,
        endpoint = e.endpoint,
        action = e.action,
        guests = %guests_text(e.guests),
        decision = e.decision,
        rule = e.rule,
        "decision"
    );
}
