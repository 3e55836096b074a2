//! The request recorder: every request the simulated Proxmox receives, as it arrived.
//!
//! A request is recorded once its body has been read (or refused), before it is routed, so
//! requests the sim rejects are recorded too. Bodies are hashed and counted as they stream in;
//! only a bounded prefix is kept in memory (see [`Recorded::body`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ring::digest;
use tokio::sync::Notify;

/// Bodies up to this size are kept whole in [`Recorded::body`].
pub const KEEP_WHOLE: usize = 1024 * 1024;
/// Of a body larger than [`KEEP_WHOLE`], only this many leading bytes are kept.
pub const KEEP_PREFIX: usize = 64 * 1024;
/// How many trailing bytes of a body are kept for the multipart parser.
const KEEP_TAIL: usize = 1024;

/// One request as the sim received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request method, exactly as sent (`GET`, but also `get` or `PATCH`).
    pub method: String,
    /// The request-target as hyper parsed it: origin-form (`/api2/json/…?…`) or absolute-form
    /// (`http://host/api2/…`), never re-encoded.
    pub target: String,
    /// Every header line (names lower-cased by hyper, values byte-exact as far as they are
    /// UTF-8; other bytes are replaced by U+FFFD). Lines keep their arrival order, except
    /// that repeated headers are grouped under their first occurrence (hyper's `HeaderMap`).
    pub headers: Vec<(String, String)>,
    /// The whole body when it is at most 1 MiB, otherwise its first 64 KiB.
    pub body: Bytes,
    /// The number of body bytes received (after de-chunking, should a client send chunks).
    pub body_len: u64,
    /// Lower-case hex SHA-256 over the whole body.
    pub body_sha256: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The node that received it (`pve`; `pve1`… in cluster mode).
    pub node: String,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The path part of [`Recorded::target`] (without the query), still percent-encoded.
    pub fn path(&self) -> &str {
        let t = self.target.as_str();
        // Absolute-form: skip "scheme://authority".
        let t = match t.find("://") {
            Some(i) => {
                let rest = &t[i + 3..];
                rest.find('/').map_or("/", |j| &rest[j..])
            }
            None => t,
        };
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The raw query string of [`Recorded::target`], if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The body as text (lossy), for assertions on small form or JSON bodies.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct Inner {
    list: Mutex<Vec<Recorded>>,
    notify: Notify,
}

/// A shared, cloneable log of every request the sim received, in arrival order.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("len", &self.len())
            .finish()
    }
}

impl Recorder {
    fn list(&self) -> MutexGuard<'_, Vec<Recorded>> {
        // A panic while holding the lock cannot leave the Vec half-updated: recover it.
        self.inner
            .list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of every recorded request, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.list().clone()
    }

    /// Forgets every recorded request.
    pub fn clear(&self) {
        self.list().clear();
    }

    /// How many requests are recorded.
    pub fn len(&self) -> usize {
        self.list().len()
    }

    /// Whether no request is recorded.
    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    /// The most recently recorded request.
    pub fn last(&self) -> Option<Recorded> {
        self.list().last().cloned()
    }

    /// Waits until at least `n` requests are recorded; false if `timeout` passed first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a push between the check and the await is seen.
            notified.as_mut().enable();
            if self.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len() >= n;
            }
        }
    }

    pub(crate) fn push(&self, rec: Recorded) {
        self.list().push(rec);
        self.inner.notify.notify_waiters();
    }
}

/// Hashes, counts and keeps a bounded part of a body as it streams in.
pub(crate) struct BodyCapture {
    // ring's SHA-256 is assembly even in debug builds: multi-GiB uploads hash at line rate.
    hasher: digest::Context,
    len: u64,
    kept: Vec<u8>,
    truncated: bool,
    tail: Vec<u8>,
}

/// A body after [`BodyCapture::finish`].
pub(crate) struct CapturedBody {
    /// See [`Recorded::body`].
    pub kept: Bytes,
    pub len: u64,
    pub sha256: String,
    /// The last (up to) 1 KiB of the body.
    pub tail: Vec<u8>,
}

impl BodyCapture {
    pub fn new() -> Self {
        BodyCapture {
            hasher: digest::Context::new(&digest::SHA256),
            len: 0,
            kept: Vec::new(),
            truncated: false,
            tail: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        if !self.truncated {
            if self.kept.len() + chunk.len() <= KEEP_WHOLE {
                self.kept.extend_from_slice(chunk);
            } else {
                self.truncated = true;
                let room = KEEP_PREFIX.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
                self.kept.truncate(KEEP_PREFIX);
                self.kept.shrink_to_fit();
            }
        }
        if chunk.len() >= KEEP_TAIL {
            self.tail.clear();
            self.tail
                .extend_from_slice(&chunk[chunk.len() - KEEP_TAIL..]);
        } else {
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > 4 * KEEP_TAIL {
                let cut = self.tail.len() - KEEP_TAIL;
                self.tail.drain(..cut);
            }
        }
    }

    pub fn finish(mut self) -> CapturedBody {
        if self.tail.len() > KEEP_TAIL {
            let cut = self.tail.len() - KEEP_TAIL;
            self.tail.drain(..cut);
        }
        CapturedBody {
            kept: Bytes::from(self.kept),
            len: self.len,
            sha256: hex(self.hasher.finish().as_ref()),
            tail: self.tail,
        }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_small_bodies_whole() {
        let mut c = BodyCapture::new();
        c.push(b"vmid=");
        c.push(b"104");
        let b = c.finish();
        assert_eq!(&b.kept[..], b"vmid=104");
        assert_eq!(b.len, 8);
        assert_eq!(
            b.sha256,
            hex(digest::digest(&digest::SHA256, b"vmid=104").as_ref())
        );
        assert_eq!(b.tail, b"vmid=104");
    }

    #[test]
    fn capture_keeps_only_a_prefix_of_big_bodies() {
        let mut c = BodyCapture::new();
        let chunk = vec![7u8; 300 * 1024];
        for _ in 0..4 {
            c.push(&chunk);
        }
        c.push(b"end");
        let b = c.finish();
        assert_eq!(b.kept.len(), KEEP_PREFIX);
        assert_eq!(b.len, 4 * 300 * 1024 + 3);
        assert_eq!(b.tail.len(), KEEP_TAIL);
        assert!(b.tail.ends_with(b"end"));
    }

    #[test]
    fn path_and_query_of_targets() {
        let mut r = Recorded {
            method: "GET".into(),
            target: "http://h:1/api2/json/x?a=1".into(),
            headers: vec![("x-a".into(), "1".into())],
            body: Bytes::new(),
            body_len: 0,
            body_sha256: String::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            node: "pve".into(),
        };
        assert_eq!(r.path(), "/api2/json/x");
        assert_eq!(r.query(), Some("a=1"));
        assert_eq!(r.header("X-A"), Some("1"));
        r.target = "/a/b".into();
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), None);
    }
}
