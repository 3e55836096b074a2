//! One structured audit event per decision (target `pvegate::audit`).
//!
//! The event names the client, the identity (token id or ticket user, never a secret), the
//! method, the decoded path (never the query: it can carry `vncticket`), the endpoint, the
//! guests, the action, the decision and the rule that made it.
//!
//! With JSON logging ([`use_json_lines`], the default of `pvegate serve`), the line is
//! written directly in the shape of the `tracing` JSON formatter's lines,
//! and handed to [`crate::logsink`], which writes them in batches: going through the generic
//! formatter cost about a third of pvegate's user-space instructions per proxied request.
//! Whether the line is written at all is still `tracing`'s filter's call (`log.level`,
//! `RUST_LOG`). Text logging goes through `tracing` as before.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Writes the JSON line of an event: the fields and field order of the `tracing` JSON
/// formatter (`flatten_event`), so both kinds of lines read alike. Strings that need no
/// escaping (the usual case) are copied as they are; the others are escaped by `serde_json`.
fn write_json_line(e: &AuditEvent<'_>) {
    use std::io::Write;
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(&mut buf, std::time::SystemTime::now());
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"decision\",\"client\":\"");
    let _ = write!(buf, "{}", e.client);
    buf.extend_from_slice(b"\",\"identity\":");
    json_str(&mut buf, e.identity.unwrap_or("-"));
    for (name, value) in [
        ("method", e.method),
        ("path", e.path),
        ("endpoint", e.endpoint),
        ("action", e.action),
    ] {
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\":");
        json_str(&mut buf, value);
    }
    buf.extend_from_slice(b",\"guests\":\"");
    let _ = write!(buf, "{}", GuestList(e.guests));
    buf.extend_from_slice(b"\",\"decision\":");
    json_str(&mut buf, e.decision);
    buf.extend_from_slice(b",\"rule\":");
    json_str(&mut buf, e.rule);
    buf.extend_from_slice(b",\"target\":\"pvegate::audit\"}\n");
    crate::logsink::write_line(&buf);
}

/// `s` as a JSON string.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Serializing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

thread_local! {
    /// The whole second last formatted on this thread, and its text (`2026-11-26T03:35:46`).
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `at` in RFC 3339, UTC, with microseconds, as `tracing-subscriber` writes it
/// (`2026-11-26T03:35:46.665733Z`). The date and time are formatted once a second.
fn timestamp(buf: &mut Vec<u8>, at: std::time::SystemTime) {
    use std::io::Write;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != since.as_secs() {
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs());
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            *cached = (since.as_secs(), text.trim_end_matches('Z').to_string());
        }
        buf.extend_from_slice(cached.1.as_bytes());
    });
    let _ = write!(buf, ".{:06}Z", since.subsec_micros());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_match_serde_json() {
        for s in [
            "",
            "plain /api2/json/nodes/pve/qemu/104",
            "quote \" backslash \\ tab \t nl \n nul \u{0} del \u{7f}",
            "unicode ünïcödé ✓ \u{2028}",
            "readonly \"doc1\"",
        ] {
            let mut ours = Vec::new();
            json_str(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn timestamps_as_tracing_writes_them() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_000_000_000_456);
        for _ in 0..2 {
            let mut buf = Vec::new();
            timestamp(&mut buf, at);
            assert_eq!(buf, b"2025-11-24T16:00:00.000456Z");
        }
        let mut buf = Vec::new();
        timestamp(&mut buf, at + std::time::Duration::from_secs(61));
        assert_eq!(buf, b"2025-11-24T16:01:01.000456Z");
    }

    #[test]
    fn json_line_is_valid_json_with_every_field() {
        // Capture what this thread writes: a buffering thread keeps it until flushed.
        std::thread::spawn(|| {
            let guests = GuestSet::Some(vec![104, 109]);
            let e = AuditEvent {
                client: "[::1]:5555".parse().unwrap(),
                identity: Some("root@pam!tofu"),
                method: "POST",
                path: "/api2/json/nodes/pve/qemu/104/status/stop",
                endpoint: "/nodes/{node}/qemu/{vmid}/status/stop",
                action: "power.stop",
                guests: &guests,
                decision: "deny",
                rule: "readonly \"doc1\"",
            };
            crate::logsink::buffer_this_thread();
            write_json_line(&e);
            let line = crate::logsink::take_pending_for_test();
            assert!(line.ends_with(b"\n"));
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(keys.len(), 13, "{keys:?}");
            assert_eq!(v["client"], "[::1]:5555");
            assert_eq!(v["guests"], "104,109");
            assert_eq!(v["rule"], "readonly \"doc1\"");
            assert_eq!(v["target"], "pvegate::audit");
            assert_eq!(v["level"], "INFO");
            assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        })
        .join()
        .unwrap();
    }
}
