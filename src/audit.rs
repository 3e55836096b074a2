//! One structured audit event per decision (target `pvegate::audit`).
//!
//! The event names the client, the identity (token id or ticket user, never a secret), the
//! method, the decoded path (never the query: it can carry `vncticket`), the endpoint, the
//! guests, the action, the decision and the rule that made it.
//!
//! `pvegate serve` writes events through `tracing-appender`'s non-blocking writer into a
//! buffered stderr: a worker thread drains the queue and writes it in batches, so a busy proxy
//! makes one `write` per batch. It is set up lossless (a full queue makes the logging request
//! wait, as a blocking write would) and flushed when `serve` ends.

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
    GuestList(g).to_string()
}

/// Displays a guest set without allocating (the audit event formats it in place).
struct GuestList<'a>(&'a GuestSet);

impl std::fmt::Display for GuestList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            GuestSet::None => Ok(()),
            GuestSet::All => f.write_str("all"),
            GuestSet::Some(v) => {
                for (i, id) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{id}")?;
                }
                Ok(())
            }
        }
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
        guests = %GuestList(e.guests),
        decision = e.decision,
        rule = e.rule,
        "decision"
    );
}
