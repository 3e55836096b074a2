//! The audit: one line per request, written once its outcome is known, whatever the log
//! level (`[log] level`, `RUST_LOG` do not apply to it).
//!
//! [`Outcome`] is the record of one decision: [`Outcome::begin`] renders everything known at
//! decision time (client, identity — never a secret —, method, the decoded path — never the
//! query, which can carry `vncticket` —, endpoint, action, guests, decision, rule, the
//! refusal message, the policy generation, the exemption used), and [`Outcome::finish`], the
//! one place a request's outcome is recorded, adds how it ended (the status the client got,
//! the upstream's status, the duration) and writes the line to [`crate::logsink`]'s audit
//! stream (stderr, or `[audit] file`).
//!
//! With JSON logging ([`use_json_lines`], the default of `pvegate serve`) the line has the
//! shape of the `tracing` JSON formatter's lines (`timestamp`, `level`, `message`, fields,
//! `target: "pvegate::audit"`), written directly: the generic formatter cost a third of
//! pvegate's user-space instructions per request. Text lines carry no colour codes.

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::StatusCode;

use crate::pve::{Action, GuestSet};

/// Whether audit lines are JSON (else text).
static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Writes audit lines as JSON from now on.
pub fn use_json_lines() {
    JSON_LINES.store(true, Ordering::Relaxed);
}

/// The decision an audit line reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditDecision {
    /// Forwarded: the policy permits it.
    Allow,
    /// Refused by pvegate (by the policy, or because it could not be read as pveproxy would).
    Deny,
    /// The policy refuses it, but in shadow mode: forwarded, and logged as such.
    WouldDeny,
}

impl AuditDecision {
    /// `allow`, `deny` or `would-deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
            AuditDecision::WouldDeny => "would-deny",
        }
    }
}

/// What is known about a request when it is decided.
pub struct Facts<'a> {
    pub client: SocketAddr,
    pub identity: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub endpoint: &'a str,
    /// `None` for a request refused before it could be read.
    pub action: Option<Action>,
    pub guests: &'a GuestSet,
    pub decision: AuditDecision,
    /// The rule label (`guest 104 (homelab.toml:3)`, `read`, `permitted`, …).
    pub rule: Cow<'static, str>,
    /// The refusal message (deny, would-deny).
    pub message: Option<&'a str>,
    /// The policy generation decided on (`None`: no policy was consulted).
    pub generation: Option<u64>,
    /// The exemption that let the request through, e.g. `settings.exempt "root@pam"`.
    pub exemption: Option<&'a str>,
    /// The approval id this request was refused under, or whose grant it used (the field is
    /// written only when set).
    pub approval: Option<&'a str>,
    /// The waiver that let it through (written only when set).
    pub waiver: Option<&'a str>,
}

/// How a request ended, for [`Outcome::finish`].
#[derive(Clone, Copy, Debug)]
pub enum Ending<'a> {
    /// pvegate answered itself with this status (a refusal).
    Answered(StatusCode),
    /// The upstream answered with this status (the line is written when its head arrives).
    Upstream(StatusCode),
    /// The upstream failed; pvegate answered with this status and error.
    UpstreamFailed(StatusCode, &'a str),
    /// The client went away before an answer.
    ClientGone,
}

/// Put into a response's extensions by the forwarder when the upstream failed and pvegate
/// wrote the answer itself; the audit line then carries the error.
#[derive(Clone, Debug)]
pub struct UpstreamFailed(pub String);

/// One request's decision and outcome; its audit line is written by [`Outcome::finish`].
pub struct Outcome {
    /// The line up to the outcome fields.
    line: Vec<u8>,
    json: bool,
    started: Instant,
    /// The action decided (`None`: refused before it could be read).
    pub action: Option<Action>,
    pub decision: AuditDecision,
    /// The rule label.
    pub rule: Cow<'static, str>,
    /// The policy generation decided on.
    pub generation: Option<u64>,
}

impl Outcome {
    /// Records the decision; `started` is when the request was decided.
    pub fn begin(f: Facts<'_>, started: Instant) -> Outcome {
        let json = JSON_LINES.load(Ordering::Relaxed);
        let mut buf = Vec::with_capacity(640);
        let action = f.action.map_or("-", |a| a.as_str());
        if json {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(&mut buf, std::time::SystemTime::now());
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"decision\",\"client\":\"");
            push_addr(&mut buf, f.client);
            buf.extend_from_slice(b"\",\"identity\":");
            json_str(&mut buf, f.identity.unwrap_or("-"));
            for (name, value) in [
                ("method", f.method),
                ("path", f.path),
                ("endpoint", f.endpoint),
                ("action", action),
            ] {
                buf.extend_from_slice(b",\"");
                buf.extend_from_slice(name.as_bytes());
                buf.extend_from_slice(b"\":");
                json_str(&mut buf, value);
            }
            buf.extend_from_slice(b",\"guests\":\"");
            push_guests(&mut buf, f.guests);
            buf.extend_from_slice(b"\",\"decision\":\"");
            buf.extend_from_slice(f.decision.as_str().as_bytes());
            buf.extend_from_slice(b"\",\"rule\":");
            json_str(&mut buf, &f.rule);
            json_opt(&mut buf, "reason", f.message);
            buf.extend_from_slice(b",\"generation\":");
            match f.generation {
                Some(g) => push_num(&mut buf, g),
                None => buf.extend_from_slice(b"null"),
            }
            json_opt(&mut buf, "exemption", f.exemption);
            for (name, v) in [("approval", f.approval), ("waiver", f.waiver)] {
                if v.is_some() {
                    json_opt(&mut buf, name, v);
                }
            }
        } else {
            timestamp(&mut buf, std::time::SystemTime::now());
            let _ = write!(
                buf,
                "  INFO pvegate::audit: decision client={} identity={} method={} path={:?} endpoint={} action={action} guests={} decision={} rule={:?}",
                f.client,
                f.identity.unwrap_or("-"),
                f.method,
                f.path,
                f.endpoint,
                GuestList(f.guests),
                f.decision.as_str(),
                f.rule,
            );
            if let Some(m) = f.message {
                let _ = write!(buf, " reason={m:?}");
            }
            if let Some(g) = f.generation {
                let _ = write!(buf, " generation={g}");
            }
            if let Some(x) = f.exemption {
                let _ = write!(buf, " exemption={x:?}");
            }
            if let Some(x) = f.approval {
                let _ = write!(buf, " approval={x}");
            }
            if let Some(x) = f.waiver {
                let _ = write!(buf, " waiver={x}");
            }
        }
        Outcome {
            line: buf,
            json,
            started,
            action: f.action,
            decision: f.decision,
            rule: f.rule,
            generation: f.generation,
        }
    }

    /// Time since the decision.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Writes the audit line: the one place every request's outcome is recorded.
    pub fn finish(mut self, ending: Ending<'_>) {
        let took = self.started.elapsed();
        let (status, upstream, error) = match ending {
            Ending::Answered(s) => (Some(s), None, None),
            Ending::Upstream(s) => (Some(s), Some(s), None),
            Ending::UpstreamFailed(s, e) => (Some(s), None, Some(e)),
            Ending::ClientGone => (None, None, Some("the client went away before the answer")),
        };
        crate::metrics::observe_request(
            self.action.map_or("invalid", |a| a.as_str()),
            self.decision.as_str(),
            (self.decision == AuditDecision::Deny).then_some(&*self.rule),
            upstream.map(|s| s.as_u16()),
            took,
        );
        let micros = took.as_micros();
        let buf = &mut self.line;
        if self.json {
            for (name, v) in [
                (&b",\"status\":"[..], status),
                (b",\"upstream_status\":", upstream),
            ] {
                buf.extend_from_slice(name);
                match v {
                    Some(s) => push_num(buf, s.as_u16()),
                    None => buf.extend_from_slice(b"null"),
                }
            }
            buf.extend_from_slice(b",\"duration_ms\":");
            push_num(buf, micros / 1000);
            buf.push(b'.');
            push_padded(buf, (micros % 1000) as u32, 3);
            if let Some(e) = error {
                json_opt(buf, "error", Some(e));
            }
            buf.extend_from_slice(b",\"target\":\"pvegate::audit\"}\n");
        } else {
            let show =
                |s: Option<StatusCode>| s.map_or("-".to_string(), |s| s.as_u16().to_string());
            let _ = write!(
                buf,
                " status={} upstream_status={} duration_ms={}.{:03}",
                show(status),
                show(upstream),
                micros / 1000,
                micros % 1000
            );
            if let Some(e) = error {
                let _ = write!(buf, " error={e:?}");
            }
            buf.push(b'\n');
        }
        crate::logsink::write_audit_line(buf);
    }
}

/// Writes an audit line that is not a request's: an approval asked for, given, refused or
/// expired, a waiver created, revoked or expired (`message` names the event; `fields` are
/// written in order, `None` as `null`). Same destination and format as request lines.
pub fn event(message: &str, fields: &[(&str, Option<&str>)]) {
    let mut buf = Vec::with_capacity(256);
    timestamp_now(&mut buf, JSON_LINES.load(Ordering::Relaxed), message);
    if JSON_LINES.load(Ordering::Relaxed) {
        for (name, value) in fields {
            json_opt(&mut buf, name, *value);
        }
        buf.extend_from_slice(b",\"target\":\"pvegate::audit\"}\n");
    } else {
        for (name, value) in fields {
            let _ = write!(buf, " {name}={:?}", value.unwrap_or("-"));
        }
        buf.push(b'\n');
    }
    crate::logsink::write_audit_line(&buf);
}

/// The start of an event line, up to its first field.
fn timestamp_now(buf: &mut Vec<u8>, json: bool, message: &str) {
    if json {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(buf, std::time::SystemTime::now());
        buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":");
        json_str(buf, message);
    } else {
        timestamp(buf, std::time::SystemTime::now());
        let _ = write!(buf, "  INFO pvegate::audit: {message}");
    }
}

/// Renders a guest set for logs: "104,109", "all" or "".
pub fn guests_text(g: &GuestSet) -> String {
    GuestList(g).to_string()
}

/// Displays a guest set without allocating (the audit line formats it in place).
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

/// `n` in decimal, without the formatting machinery (`write!` into a `Vec` costs several
/// hundred instructions per number; the JSON line has half a dozen of them).
fn push_num<N: itoa::Integer>(buf: &mut Vec<u8>, n: N) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` (< 10^width) in decimal with leading zeros to `width` digits.
fn push_padded(buf: &mut Vec<u8>, n: u32, width: u32) {
    let mut div = 10u32.pow(width.saturating_sub(1));
    while div > 0 {
        buf.push(b'0' + ((n / div) % 10) as u8);
        div /= 10;
    }
}

/// `addr` as its `Display` writes it (`10.1.2.3:5555`, `[::1]:5555`); IPv4 without the
/// formatting machinery.
fn push_addr(buf: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_num(buf, octet);
            }
            buf.push(b':');
            push_num(buf, a.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(buf, "{addr}");
        }
    }
}

/// The guests as [`GuestList`] displays them (`104,109`, `all`, nothing).
fn push_guests(buf: &mut Vec<u8>, g: &GuestSet) {
    match g {
        GuestSet::None => {}
        GuestSet::All => buf.extend_from_slice(b"all"),
        GuestSet::Some(v) => {
            for (i, id) in v.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                push_num(buf, *id);
            }
        }
    }
}

/// `,"name":"value"` or `,"name":null`.
fn json_opt(buf: &mut Vec<u8>, name: &str, value: Option<&str>) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
    match value {
        Some(v) => json_str(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

/// Whether `s` goes into a JSON string as it is: no control character, quote or backslash.
/// Eight bytes at a time (the classic "has a byte less than n / equal to c" word tricks,
/// exact as a yes/no): the audit line checks half a dozen strings per request this way.
fn plain_json(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_byte = |w: u64, c: u8| {
        let x = w ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
        if control || has_byte(w, b'"') || has_byte(w, b'\\') {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `s` as a JSON string.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if plain_json(s.as_bytes()) {
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
pub(crate) fn timestamp(buf: &mut Vec<u8>, at: std::time::SystemTime) {
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
    buf.push(b'.');
    push_padded(buf, since.subsec_micros(), 6);
    buf.push(b'Z');
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
    fn the_word_check_agrees_with_the_byte_check() {
        let naive = |s: &[u8]| s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        // Every byte value at every position of strings of every length up to 24, in a
        // background of plain text and of bytes next to the limits.
        for background in [b'a', 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff] {
            for len in 0..=24 {
                for pos in 0..len {
                    for b in 0..=255u8 {
                        let mut s = vec![background; len];
                        s[pos] = b;
                        assert_eq!(plain_json(&s), naive(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_addresses_and_guests_as_display_writes_them() {
        for addr in [
            "10.1.2.3:5555",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.0.0.1:80",
            "[::1]:5555",
            "[fe80::1%2]:8006",
            "[::ffff:10.0.0.1]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut buf = Vec::new();
            push_addr(&mut buf, addr);
            assert_eq!(String::from_utf8(buf).unwrap(), addr.to_string());
        }
        for (n, width) in [
            (0u32, 3),
            (7, 3),
            (45, 3),
            (999, 3),
            (0, 6),
            (456, 6),
            (999_999, 6),
        ] {
            let mut buf = Vec::new();
            push_padded(&mut buf, n, width);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("{n:0w$}", w = width as usize)
            );
        }
        for g in [
            GuestSet::None,
            GuestSet::All,
            GuestSet::Some(vec![104]),
            GuestSet::Some(vec![0, 104, 109, 999_999_999]),
        ] {
            let mut buf = Vec::new();
            push_guests(&mut buf, &g);
            assert_eq!(String::from_utf8(buf).unwrap(), guests_text(&g));
        }
        let mut buf = Vec::new();
        push_num(&mut buf, u128::MAX);
        assert_eq!(String::from_utf8(buf).unwrap(), u128::MAX.to_string());
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
            use_json_lines();
            let guests = GuestSet::Some(vec![104, 109]);
            let o = Outcome::begin(
                Facts {
                    client: "[::1]:5555".parse().unwrap(),
                    identity: Some("root@pam!tofu"),
                    method: "POST",
                    path: "/api2/json/nodes/pve/qemu/104/status/stop",
                    endpoint: "/nodes/{node}/qemu/{vmid}/status/stop",
                    action: Some(Action::PowerStop),
                    guests: &guests,
                    decision: AuditDecision::WouldDeny,
                    rule: Cow::Borrowed("readonly \"doc1\""),
                    message: Some("pvegate: VM 104 is readonly"),
                    generation: Some(3),
                    exemption: None,
                    approval: None,
                    waiver: None,
                },
                Instant::now(),
            );
            crate::logsink::buffer_this_thread();
            o.finish(Ending::Upstream(StatusCode::INTERNAL_SERVER_ERROR));
            let line = crate::logsink::take_pending_for_test();
            assert!(line.ends_with(b"\n"));
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(keys.len(), 19, "{keys:?}");
            assert_eq!(v["client"], "[::1]:5555");
            assert_eq!(v["guests"], "104,109");
            assert_eq!(v["action"], "power.stop");
            assert_eq!(v["decision"], "would-deny");
            assert_eq!(v["rule"], "readonly \"doc1\"");
            assert_eq!(v["reason"], "pvegate: VM 104 is readonly");
            assert_eq!(v["generation"], 3);
            assert!(v["exemption"].is_null());
            assert_eq!(v["status"], 500);
            assert_eq!(v["upstream_status"], 500);
            assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
            assert_eq!(v["target"], "pvegate::audit");
            assert_eq!(v["level"], "INFO");
            assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        })
        .join()
        .unwrap();
    }
}
