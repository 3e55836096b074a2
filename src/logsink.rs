//! Where log lines go: stderr, written in batches by the threads that serve requests.
//!
//! Every line (audit lines and diagnostics alike) comes through [`write_line`]. A runtime
//! worker thread ([`buffer_this_thread`], called from tokio's `on_thread_start`) collects its
//! lines in a buffer of its own and writes them out with one `write(2)` when it is about to
//! wait for work ([`flush_this_thread`], from `on_thread_park` and `on_thread_stop`), when
//! the buffer holds [`FLUSH_AT`] bytes, or when its oldest line has waited [`MAX_DELAY`].
//! A busy proxy thus writes its audit log in batches, without a second thread to hand lines
//! to (that hand-off woke a logging thread for almost every request). Any other thread writes
//! each line at once. Writes take stderr's lock, so lines from different threads never
//! interleave, and a full pipe (a slow journald) holds the writer back as a blocking write
//! would: no line is dropped.

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, Instant};

/// A worker's buffer is written out once it holds this much.
pub const FLUSH_AT: usize = 32 * 1024;

/// ... or once its oldest line is this old (a thread that stays busy never parks).
pub const MAX_DELAY: Duration = Duration::from_millis(500);

struct Pending {
    buf: Vec<u8>,
    since: Option<Instant>,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// From now on, this thread's lines are batched until [`flush_this_thread`].
pub fn buffer_this_thread() {
    PENDING.with(|p| {
        p.borrow_mut().get_or_insert_with(|| Pending {
            buf: Vec::with_capacity(FLUSH_AT + 1024),
            since: None,
        });
    });
}

/// Writes out this thread's batched lines, if any.
pub fn flush_this_thread() {
    PENDING.with(|p| {
        if let Some(pending) = p.borrow_mut().as_mut() {
            if !pending.buf.is_empty() {
                write_out(&pending.buf);
                pending.buf.clear();
                pending.since = None;
            }
        }
    });
}

/// Logs one complete line (ending in `\n`).
pub fn write_line(line: &[u8]) {
    let batched = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let Some(pending) = p.as_mut() else {
            return false;
        };
        pending.buf.extend_from_slice(line);
        let since = *pending.since.get_or_insert_with(Instant::now);
        if pending.buf.len() >= FLUSH_AT || since.elapsed() >= MAX_DELAY {
            write_out(&pending.buf);
            pending.buf.clear();
            pending.since = None;
        }
        true
    });
    if !batched {
        write_out(line);
    }
}

fn write_out(bytes: &[u8]) {
    // Nowhere left to report a failing stderr; the request path must not fail for it.
    let _ = std::io::stderr().lock().write_all(bytes);
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
            .map(|p| std::mem::take(&mut p.buf))
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_len() -> usize {
        PENDING.with(|p| p.borrow().as_ref().map_or(0, |p| p.buf.len()))
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
            assert_eq!(pending_len(), 0, "a full buffer is written out");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_old_line_is_written_with_the_next_one() {
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
    fn other_threads_write_at_once() {
        std::thread::spawn(|| {
            write_line(b"direct\n");
            assert_eq!(pending_len(), 0);
        })
        .join()
        .unwrap();
    }
}
