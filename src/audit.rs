//! One structured audit event per decision (target `pvegate::audit`).
//!
//! The event names the client, the identity (token id or ticket user, never a secret), the
//! method, the decoded path (never the query: it can carry `vncticket`), the endpoint, the
//! guests, the action, the decision and the rule that made it.
//!
//! # The fast path of `pvegate serve`
//!
//! `serve` logs JSON lines through a [`BatchWriter`]: each line is appended to an in-memory
//! buffer and a dedicated thread writes the buffer to stderr in batches (at most
//! [`BATCH_DELAY`] after the first line of a batch), so a busy proxy makes one `write` per
//! batch instead of one per request. Nothing is dropped: when stderr cannot keep up and the
//! buffer holds [`MAX_BUFFERED`] bytes, the request that logs waits until the writer thread
//! has made room (back-pressure, as with a blocking write). The buffer is written out when
//! `serve` ends (the [`LogGuard`] it holds), so only a SIGKILL or an abort can lose the lines
//! of the last few milliseconds.
//!
//! With that writer and the JSON format, [`record`] formats the audit line itself (the same
//! bytes `tracing-subscriber`'s JSON formatter writes for the event, which a test checks)
//! instead of going through the generic field visitor; the `RUST_LOG`/`[log] level` filter
//! still decides whether it is written. Everywhere else (the text format, `pvegate demo`,
//! tests) the event is an ordinary `tracing` event.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    let mut out = String::new();
    push_guests(&mut out, g);
    out
}

fn push_guests(out: &mut String, g: &GuestSet) {
    use std::fmt::Write as _;
    match g {
        GuestSet::None => {}
        GuestSet::All => out.push_str("all"),
        GuestSet::Some(v) => {
            for (i, id) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{id}");
            }
        }
    }
}

/// Where [`record`] writes JSON lines itself (set by [`init_batched_json`]).
static FAST_JSON: OnceLock<BatchWriter> = OnceLock::new();

/// Makes [`record`] format JSON audit lines itself and append them to `writer` (the writer
/// the `tracing` subscriber was installed with). Returns false if already set.
pub fn init_batched_json(writer: BatchWriter) -> bool {
    FAST_JSON.set(writer).is_ok()
}

/// Emits the event.
pub fn record(e: &AuditEvent<'_>) {
    if let Some(writer) = FAST_JSON.get() {
        if !tracing::enabled!(target: "pvegate::audit", tracing::Level::INFO) {
            return;
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            if json_line(&mut line, SystemTime::now(), e) {
                writer.append(line.as_bytes());
            } else {
                record_tracing(e);
            }
        });
        return;
    }
    record_tracing(e);
}

fn record_tracing(e: &AuditEvent<'_>) {
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

thread_local! {
    static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
}

/// The line `tracing-subscriber`'s JSON formatter (`flatten_event(true)`, no current span)
/// writes for the event of [`record_tracing`]. False for a time before 1970 or after 9999
/// (left to `tracing`).
fn json_line(out: &mut String, now: SystemTime, e: &AuditEvent<'_>) -> bool {
    use std::fmt::Write as _;
    let Ok(since) = now.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return false;
    }
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{{\"timestamp\":\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"INFO\",\"message\":\"decision\",\"client\":\"{}\",\"identity\":",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros(),
        e.client,
    );
    json_str(out, e.identity.unwrap_or("-"));
    out.push_str(",\"method\":");
    json_str(out, e.method);
    out.push_str(",\"path\":");
    json_str(out, e.path);
    out.push_str(",\"endpoint\":");
    json_str(out, e.endpoint);
    out.push_str(",\"action\":");
    json_str(out, e.action);
    out.push_str(",\"guests\":\"");
    push_guests(out, e.guests);
    out.push_str("\",\"decision\":");
    json_str(out, e.decision);
    out.push_str(",\"rule\":");
    json_str(out, e.rule);
    out.push_str(",\"target\":\"pvegate::audit\"}\n");
    true
}

/// A JSON string with serde_json's escaping (what `tracing-subscriber` uses).
fn json_str(out: &mut String, s: &str) {
    let needs_escape = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if needs_escape {
        // Rare (paths and rules are printable); serde_json writes exactly what tracing would.
        out.push_str(&serde_json::Value::from(s).to_string());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// The batching, non-blocking (but never dropping) log writer
// ---------------------------------------------------------------------------------------------

/// How long the writer thread lets a batch fill after its first line.
pub const BATCH_DELAY: Duration = Duration::from_millis(2);
/// A batch this large is written at once, without waiting for [`BATCH_DELAY`].
const HIGH_WATER: usize = 256 * 1024;
/// Loggers wait (back-pressure) while this much is waiting to be written.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlusherState {
    /// Waiting for a first line: the next append wakes it.
    Idle,
    /// Letting a batch fill: woken early only at [`HIGH_WATER`] or by a flush.
    Filling,
    /// Writing a batch.
    Writing,
}

struct State {
    buf: Vec<u8>,
    flusher: FlusherState,
    /// Bytes appended / written since start (for [`BatchWriter::flush`]).
    appended: u64,
    written: u64,
    flush_requested: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// Signals progress: room in the buffer, bytes written.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state (plain byte appends).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A `MakeWriter` for `tracing-subscriber` that hands lines to a writer thread (see the
/// module documentation). Cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl BatchWriter {
    /// Starts the writer thread, writing to stderr.
    pub fn stderr() -> std::io::Result<BatchWriter> {
        Self::spawn(std::io::stderr())
    }

    /// Starts the writer thread, writing to `out`.
    pub fn spawn<W: std::io::Write + Send + 'static>(out: W) -> std::io::Result<BatchWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                flusher: FlusherState::Idle,
                appended: 0,
                written: 0,
                flush_requested: false,
            }),
            wake: Condvar::new(),
            progress: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("pvegate-log".into())
            .spawn(move || writer_thread(&thread_shared, out))?;
        Ok(BatchWriter { shared })
    }

    /// Appends one or more whole lines; waits while [`MAX_BUFFERED`] bytes are pending.
    pub fn append(&self, line: &[u8]) {
        let mut st = self.shared.lock();
        while !st.buf.is_empty() && st.buf.len() + line.len() > MAX_BUFFERED {
            st = self
                .shared
                .progress
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        st.buf.extend_from_slice(line);
        st.appended += line.len() as u64;
        let wake = match st.flusher {
            FlusherState::Idle => true,
            FlusherState::Filling => st.buf.len() >= HIGH_WATER,
            FlusherState::Writing => false,
        };
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every line appended so far has been written (or `timeout` passed).
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        let target = st.appended;
        while st.written < target {
            st.flush_requested = true;
            self.shared.wake.notify_one();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn writer_thread<W: std::io::Write>(shared: &Shared, mut out: W) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut st = shared.lock();
    loop {
        while st.buf.is_empty() {
            st.flusher = FlusherState::Idle;
            st.flush_requested = false;
            st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        // Let the batch fill for a moment: under load this turns one write per line into one
        // write per BATCH_DELAY; when idle it only delays the line by that much.
        st.flusher = FlusherState::Filling;
        let deadline = Instant::now() + BATCH_DELAY;
        while !st.flush_requested && st.buf.len() < HIGH_WATER {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = shared
                .wake
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.flusher = FlusherState::Writing;
        std::mem::swap(&mut st.buf, &mut spare);
        drop(st);
        shared.progress.notify_all();
        // An error here means stderr itself is gone: there is nowhere left to report the lines.
        let _ = out.write_all(&spare);
        let _ = out.flush();
        let n = spare.len() as u64;
        spare.clear();
        if spare.capacity() > 4 * HIGH_WATER {
            spare.shrink_to(64 * 1024);
        }
        st = shared.lock();
        st.written += n;
        shared.progress.notify_all();
    }
}

/// The writer handle `tracing-subscriber` calls per event.
pub struct BatchHandle<'a>(&'a BatchWriter);

impl std::io::Write for BatchHandle<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchHandle<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        BatchHandle(self)
    }
}

/// Writes out every buffered line when dropped (held by `serve`).
pub struct LogGuard(pub Option<BatchWriter>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(w) = &self.0 {
            w.flush(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    fn event<'a>(guests: &'a GuestSet, rule: &'a str, identity: Option<&'a str>) -> AuditEvent<'a> {
        AuditEvent {
            client: "[::1]:50123".parse().unwrap(),
            identity,
            method: "POST",
            path: "/api2/json/nodes/pve/qemu/104/status/stop",
            endpoint: "/nodes/{node}/qemu/{vmid}/status/stop",
            action: "power.stop",
            guests,
            decision: "deny",
            rule,
        }
    }

    #[test]
    fn fast_json_line_is_what_tracing_writes() {
        let sink = Sink::default();
        let cases = [
            (
                GuestSet::one(104),
                "guest 104 (policies/homelab.toml:9)",
                None,
            ),
            (
                GuestSet::All,
                "weird \"rule\"\n\t\\ é \u{1}",
                Some("tofu@pve!ci"),
            ),
            (GuestSet::None, "read", Some("a\"b")),
        ];
        for (guests, rule, identity) in &cases {
            let e = event(guests, rule, *identity);
            sink.0.lock().unwrap().clear();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(sink.clone())
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || record_tracing(&e));
            let from_tracing = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            let mut ours = String::new();
            assert!(json_line(&mut ours, SystemTime::now(), &e));
            // Same bytes after the timestamp (which differs by the microseconds between).
            let cut = |s: &str| s[s.find("\"level\"").unwrap()..].to_string();
            assert_eq!(cut(&ours), cut(&from_tracing));
            let ts = |s: &str| {
                let v: serde_json::Value = serde_json::from_str(s).unwrap();
                v["timestamp"].as_str().unwrap().len()
            };
            assert_eq!(ts(&ours), ts(&from_tracing));
        }
        let mut guests = GuestSet::one(110);
        guests.insert(104);
        assert_eq!(guests_text(&guests), "104,110");
    }

    #[test]
    fn timestamps_match_the_calendar() {
        let at = |secs: u64, micros: u32| {
            let e = event(&GuestSet::None, "r", None);
            let mut s = String::new();
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros as u64);
            assert!(json_line(&mut s, t, &e));
            s[14..41].to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_798_761_599, 999_999), "2026-12-31T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }

    #[test]
    fn batch_writer_keeps_every_line_in_order() {
        let sink = Sink::default();
        let w = BatchWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        w.append(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        w.flush(Duration::from_secs(10));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[t]);
            next[t] += 1;
        }
        assert_eq!(next, [5000; 4]);
    }
}
