//! Where log lines go: per-thread batches handed to a bounded queue that one writer thread
//! drains into stderr (diagnostics, and the audit by default) or the audit file.
//!
//! Every line comes through [`write_line`] (diagnostics) or [`write_audit_line`]. A runtime
//! worker thread ([`buffer_this_thread`], from tokio's `on_thread_start`) collects its lines
//! and hands them over as one batch when it is about to wait for work ([`flush_this_thread`],
//! from `on_thread_park` and `on_thread_stop`), when the batch holds [`FLUSH_AT`] bytes, or
//! when its oldest line has waited [`MAX_DELAY`]. Handing over is a short mutex section that
//! never blocks on I/O and wakes nobody: the writer thread looks at the queue every
//! [`WRITER_TICK`] (sooner once [`WAKE_AT`] bytes wait), so a quiet proxy costs no thread
//! wake-up per request.
//!
//! **Back-pressure.** A reader that stops reading (a stderr pipe nobody drains, a stuck
//! journald, a hung disk) blocks only the writer thread. The queue holds at most
//! [`QUEUE_BYTES`]; a batch that does not fit is dropped, its lines are counted
//! ([`dropped_lines`]), and once the destination accepts writes again a WARN line says how
//! many lines were lost. Request handling never waits for the log, and refusals are enforced
//! whether or not their audit line could be written.
//!
//! Before [`start`] (tests, `pvegate check`), lines are written to stderr at once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A worker's batch is handed over once it holds this much.
pub const FLUSH_AT: usize = 32 * 1024;

/// ... or once its oldest line is this old (a thread that stays busy never parks).
pub const MAX_DELAY: Duration = Duration::from_millis(500);

/// Most bytes waiting for the writer thread; beyond this, batches are dropped and counted.
pub const QUEUE_BYTES: usize = 2 * 1024 * 1024;

/// The writer thread wakes at once when this much waits (else every [`WRITER_TICK`]).
pub const WAKE_AT: usize = 256 * 1024;

/// How often the writer thread looks at the queue when nobody woke it.
pub const WRITER_TICK: Duration = Duration::from_millis(50);

/// Where a line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    Log = 0,
    Audit = 1,
}

/// Lines dropped because the queue was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Audit lines go to their own file (else with the diagnostics to stderr).
static AUDIT_FILE: AtomicBool = AtomicBool::new(false);
/// Whether lines are JSON (for the lines this module writes itself).
static JSON: AtomicBool = AtomicBool::new(true);

struct Queue {
    batches: VecDeque<(Dest, Vec<u8>)>,
    bytes: usize,
    /// Lines dropped per destination, not yet reported there.
    dropped: [u64; 2],
    /// Emptied buffers for reuse (handing over then allocates nothing).
    free: Vec<Vec<u8>>,
    reopen: bool,
    /// Batches queued and batches written, for [`flush`].
    queued: u64,
    written: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    done: Condvar,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
/// While set, the writer thread keeps lines queued instead of writing them (see [`hold`]).
static HELD: AtomicBool = AtomicBool::new(false);

fn lock(s: &Shared) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves the queue consistent (plain pushes and pops).
    s.queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// The number of log lines dropped since start because the log reader did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Starts the writer thread: from now on lines are queued for it. `audit_file` (opened for
/// appending, created if missing) receives the audit lines; `None` keeps them on stderr.
/// `json` selects the shape of the lines this module writes itself. Call once.
pub fn start(audit_file: Option<PathBuf>, json: bool) -> std::io::Result<()> {
    JSON.store(json, Ordering::Relaxed);
    let file = match &audit_file {
        Some(p) => Some(open_append(p)?),
        None => None,
    };
    let shared = Shared {
        queue: Mutex::new(Queue {
            batches: VecDeque::new(),
            bytes: 0,
            dropped: [0; 2],
            free: Vec::new(),
            reopen: false,
            queued: 0,
            written: 0,
        }),
        wake: Condvar::new(),
        done: Condvar::new(),
    };
    if SHARED.set(shared).is_err() {
        return Ok(());
    }
    AUDIT_FILE.store(file.is_some(), Ordering::Relaxed);
    std::thread::Builder::new()
        .name("pvegate-log".into())
        .spawn(move || writer(audit_file.zip(file)))?;
    Ok(())
}

fn open_append(p: &std::path::Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

/// Holds queued lines back (`true`) or lets them out (`false`). `pvegate demo` holds them while
/// it prints its tour, so the tour reads on its own and the audit lines follow it. The queue
/// stays bounded: past its size lines are dropped and counted as usual.
pub fn hold(on: bool) {
    HELD.store(on, Ordering::Relaxed);
    if let Some(s) = SHARED.get() {
        s.wake.notify_one();
    }
}

/// Asks the writer thread to reopen the audit file (after logrotate moved it; SIGHUP).
pub fn reopen_audit() {
    if let Some(s) = SHARED.get() {
        lock(s).reopen = true;
        s.wake.notify_one();
    }
}

/// Hands this thread's batch over and waits (at most `timeout`) until everything queued so
/// far is written. For shutdown and tests.
pub fn flush(timeout: Duration) {
    flush_this_thread();
    let Some(s) = SHARED.get() else { return };
    let deadline = Instant::now() + timeout;
    let mut q = lock(s);
    let target = q.queued;
    s.wake.notify_one();
    while q.written < target {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        q = s
            .done
            .wait_timeout(q, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn writer(mut audit: Option<(PathBuf, File)>) {
    let Some(s) = SHARED.get() else { return };
    let mut out = Vec::new();
    loop {
        let (reopen, dropped) = {
            let mut q = lock(s);
            if HELD.load(Ordering::Relaxed) {
                drop(s.wake.wait_timeout(q, WRITER_TICK));
                continue;
            }
            if q.batches.is_empty() && !q.reopen {
                q = s
                    .wake
                    .wait_timeout(q, WRITER_TICK)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            out.extend(q.batches.drain(..));
            q.bytes = 0;
            let dropped = std::mem::take(&mut q.dropped);
            (std::mem::take(&mut q.reopen), dropped)
        };
        if reopen {
            if let Some((path, file)) = &mut audit {
                match open_append(path) {
                    Ok(f) => *file = f,
                    Err(e) => {
                        let _ = std::io::stderr().write_all(
                            notice("ERROR", &format!("cannot reopen the audit file, still writing to the old one: {e}"), None).as_slice(),
                        );
                    }
                }
            }
        }
        let n = out.len() as u64;
        let mut ok = [true; 2];
        for (dest, buf) in out.iter_mut() {
            ok[*dest as usize] &= write_to(&mut audit, *dest, buf);
            buf.clear();
        }
        for (i, count) in dropped.into_iter().enumerate() {
            if count == 0 {
                continue;
            }
            let dest = if i == 0 { Dest::Log } else { Dest::Audit };
            let line = notice(
                "WARN",
                "log lines were dropped: the log reader did not keep up (the queue was full)",
                Some(count),
            );
            if !ok[i] || !write_to(&mut audit, dest, &line) {
                // Report it with the next successful write.
                lock(s).dropped[i] += count;
            }
        }
        let mut q = lock(s);
        q.written += n;
        for (_, buf) in out.drain(..) {
            if q.free.len() < 16 && buf.capacity() <= 2 * FLUSH_AT {
                q.free.push(buf);
            }
        }
        s.done.notify_all();
    }
}

fn write_to(audit: &mut Option<(PathBuf, File)>, dest: Dest, bytes: &[u8]) -> bool {
    match (dest, audit) {
        (Dest::Audit, Some((_, f))) => f.write_all(bytes).is_ok(),
        _ => std::io::stderr().lock().write_all(bytes).is_ok(),
    }
}

/// A line written by this module itself.
fn notice(level: &str, message: &str, dropped: Option<u64>) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    let ts = {
        let mut t = Vec::new();
        crate::audit::timestamp(&mut t, std::time::SystemTime::now());
        String::from_utf8(t).unwrap_or_default()
    };
    if JSON.load(Ordering::Relaxed) {
        let mut v = serde_json::json!({
            "timestamp": ts,
            "level": level,
            "message": message,
        });
        if let Some(n) = dropped {
            v["dropped"] = n.into();
            v["dropped_total"] = dropped_lines().into();
        }
        v["target"] = "pvegate::logsink".into();
        let _ = serde_json::to_writer(&mut line, &v);
    } else {
        let _ = write!(line, "{ts} {level:>5} pvegate::logsink: {message}");
        if let Some(n) = dropped {
            let _ = write!(line, " dropped={n} dropped_total={}", dropped_lines());
        }
    }
    line.push(b'\n');
    line
}

/// Queues a batch for the writer thread (or drops and counts it). `buf` comes back empty.
fn hand_off(dest: Dest, buf: &mut Vec<u8>) {
    let Some(s) = SHARED.get() else {
        // Not started: write at once. Nowhere left to report a failing stderr.
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
        return;
    };
    let mut q = lock(s);
    if q.bytes + buf.len() > QUEUE_BYTES {
        let lines = memchr::memchr_iter(b'\n', buf).count() as u64;
        DROPPED.fetch_add(lines, Ordering::Relaxed);
        q.dropped[dest as usize] += lines;
        buf.clear();
        return;
    }
    let fresh = q.free.pop().unwrap_or_default();
    let full = std::mem::replace(buf, fresh);
    q.bytes += full.len();
    q.queued += 1;
    q.batches.push_back((dest, full));
    if q.bytes >= WAKE_AT {
        s.wake.notify_one();
    }
}

struct Pending {
    bufs: [Vec<u8>; 2],
    since: Option<Instant>,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// From now on, this thread's lines are batched until [`flush_this_thread`].
pub fn buffer_this_thread() {
    PENDING.with(|p| {
        p.borrow_mut().get_or_insert_with(|| Pending {
            bufs: [Vec::new(), Vec::new()],
            since: None,
        });
    });
}

/// Hands this thread's batched lines over, if any.
pub fn flush_this_thread() {
    PENDING.with(|p| {
        if let Some(pending) = p.borrow_mut().as_mut() {
            flush_pending(pending);
        }
    });
}

fn flush_pending(pending: &mut Pending) {
    for (i, dest) in [Dest::Log, Dest::Audit].into_iter().enumerate() {
        if !pending.bufs[i].is_empty() {
            hand_off(dest, &mut pending.bufs[i]);
        }
    }
    pending.since = None;
}

/// Logs one complete diagnostic line (ending in `\n`).
pub fn write_line(line: &[u8]) {
    write(Dest::Log, line);
}

/// Writes one complete audit line (ending in `\n`): to the audit file if there is one.
pub fn write_audit_line(line: &[u8]) {
    let dest = if AUDIT_FILE.load(Ordering::Relaxed) {
        Dest::Audit
    } else {
        Dest::Log
    };
    write(dest, line);
}

fn write(dest: Dest, line: &[u8]) {
    let batched = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let Some(pending) = p.as_mut() else {
            return false;
        };
        pending.bufs[dest as usize].extend_from_slice(line);
        let since = *pending.since.get_or_insert_with(Instant::now);
        if pending.bufs[dest as usize].len() >= FLUSH_AT || since.elapsed() >= MAX_DELAY {
            flush_pending(pending);
        }
        true
    });
    if !batched {
        let mut buf = line.to_vec();
        hand_off(dest, &mut buf);
    }
}

/// A `tracing_subscriber` writer into [`write_line`]. The fmt layer writes each event with one
/// `write_all` of the whole line.
#[derive(Clone, Copy, Default)]
pub struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Sink;

    fn make_writer(&'a self) -> Sink {
        Sink
    }
}

/// Takes this thread's batched lines without writing them (tests of what gets logged).
#[cfg(test)]
pub fn take_pending_for_test() -> Vec<u8> {
    PENDING.with(|p| {
        p.borrow_mut()
            .as_mut()
            .map(|p| {
                let mut all = std::mem::take(&mut p.bufs[0]);
                all.append(&mut p.bufs[1]);
                all
            })
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_len() -> usize {
        PENDING.with(|p| {
            p.borrow()
                .as_ref()
                .map_or(0, |p| p.bufs[0].len() + p.bufs[1].len())
        })
    }

    #[test]
    fn a_buffering_thread_keeps_lines_until_flushed_or_full() {
        std::thread::spawn(|| {
            buffer_this_thread();
            write_line(b"one\n");
            write_line(b"two\n");
            assert_eq!(pending_len(), 8);
            flush_this_thread();
            assert_eq!(pending_len(), 0);
            let line = vec![b'x'; 1000];
            for _ in 0..(FLUSH_AT / 1000) {
                write_line(&line);
            }
            assert!(pending_len() >= FLUSH_AT - 1000 && pending_len() < FLUSH_AT);
            write_line(&line);
            assert_eq!(pending_len(), 0, "a full buffer is handed over");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_old_line_is_handed_over_with_the_next_one() {
        std::thread::spawn(|| {
            buffer_this_thread();
            write_line(b"first\n");
            std::thread::sleep(MAX_DELAY + Duration::from_millis(10));
            write_line(b"second\n");
            assert_eq!(pending_len(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn other_threads_hand_over_at_once() {
        std::thread::spawn(|| {
            write_line(b"direct\n");
            assert_eq!(pending_len(), 0);
        })
        .join()
        .unwrap();
    }
}
