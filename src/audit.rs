//! One structured audit event per decision (target `pvegate::audit`).
//!
//! The event names the client, the identity (token id or ticket user, never a secret), the
//! method, the decoded path (never the query: it can carry `vncticket`), the endpoint, the
//! guests, the action, the decision and the rule that made it.
//!
//! With JSON logging ([`use_json_lines`], the default of `pvegate serve`), the line is
//! serialized directly (`serde_json`) in the shape of the `tracing` JSON formatter's lines,
//! and handed to [`crate::logsink`], which writes them in batches: going through the generic
//! formatter cost about a third of pvegate's user-space instructions per proxied request.
//! Whether the line is written at all is still `tracing`'s filter's call (`log.level`,
//! `RUST_LOG`). Text logging goes through `tracing` as before.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::pve::GuestSet;

/// Whether audit lines are written as JSON lines directly (else as `tracing` events).
static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Writes audit lines as JSON straight to [`crate::logsink`] from now on.
pub fn use_json_lines() {
    JSON_LINES.store(true, Ordering::Relaxed);
}

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
    if !tracing::enabled!(target: "pvegate::audit", tracing::Level::INFO) {
        return;
    }
    if JSON_LINES.load(Ordering::Relaxed) {
        write_json_line(e);
        return;
    }
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

/// The JSON line of an event: the fields and field order of the `tracing` JSON formatter
/// (`flatten_event`), so both kinds of lines read alike.
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: Timestamp,
    level: &'static str,
    message: &'static str,
    client: SocketAddr,
    identity: &'a str,
    method: &'a str,
    path: &'a str,
    endpoint: &'a str,
    action: &'a str,
    guests: Guests<'a>,
    decision: &'static str,
    rule: &'a str,
    target: &'static str,
}

/// Now, in RFC 3339 UTC with microseconds, as `tracing-subscriber` writes it.
struct Timestamp(std::time::SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}

struct Guests<'a>(&'a GuestSet);

impl Serialize for Guests<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&GuestList(self.0))
    }
}

fn write_json_line(e: &AuditEvent<'_>) {
    let line = JsonLine {
        timestamp: Timestamp(std::time::SystemTime::now()),
        level: "INFO",
        message: "decision",
        client: e.client,
        identity: e.identity.unwrap_or("-"),
        method: e.method,
        path: e.path,
        endpoint: e.endpoint,
        action: e.action,
        guests: Guests(e.guests),
        decision: e.decision,
        rule: e.rule,
        target: "pvegate::audit",
    };
    let mut buf = Vec::with_capacity(512);
    if serde_json::to_writer(&mut buf, &line).is_ok() {
        buf.push(b'\n');
        crate::logsink::write_line(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_the_tracing_shape() {
        let guests = GuestSet::Some(vec![104, 109]);
        let e = AuditEvent {
            client: "10.0.0.7:5555".parse().unwrap(),
            identity: Some("root@pam!tofu"),
            method: "POST",
            path: "/api2/json/nodes/pve/qemu/104/status/stop",
            endpoint: "/nodes/{node}/qemu/{vmid}/status/stop",
            action: "power.stop",
            guests: &guests,
            decision: "deny",
            rule: "readonly \"doc1\"",
        };
        let line = JsonLine {
            timestamp: Timestamp(
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_000_000_123_456),
            ),
            level: "INFO",
            message: "decision",
            client: e.client,
            identity: e.identity.unwrap(),
            method: e.method,
            path: e.path,
            endpoint: e.endpoint,
            action: e.action,
            guests: Guests(e.guests),
            decision: e.decision,
            rule: e.rule,
            target: "pvegate::audit",
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with("{\"timestamp\":\"2025-11-24T16:00:00.123456Z\",\"level\":\"INFO\",\"message\":\"decision\",\"client\":\"10.0.0.7:5555\""), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["guests"], "104,109");
        assert_eq!(v["rule"], "readonly \"doc1\"");
        assert_eq!(v["target"], "pvegate::audit");
    }
}
