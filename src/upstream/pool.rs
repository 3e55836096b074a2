//! Idle upstream connections, kept in two places: with the client connection that used one
//! last ([`ConnCache`]), and in a small shared [`Pool`] for client connections that have none.
//!
//! A busy client connection therefore sends each request on "its" upstream connection: no
//! shared lock to contend for, no hash lookup, and the upstream connection's task is woken by
//! the same runtime thread that serves the client. When a client connection goes idle (it is
//! parked or closed), its cache is dropped and the upstream connection moves to the shared
//! pool, where the next client connection without one picks it up.
//!
//! Every idle connection is discarded once it has been idle for `idle_timeout` (pvegate's
//! `upstream.pool_idle_timeout_ms`, under pveproxy's 5 s keep-alive): reusing one the upstream
//! is about to close could lose a request that cannot be retried.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::body::Body;

/// At most this many idle connections wait in the shared pool (as the pooled client before).
const SHARED_MAX: usize = 256;

/// An upstream connection with no request in flight.
pub struct Idle {
    pub sender: SendRequest<Body>,
    since: Instant,
    home: Arc<Pool>,
}

impl Idle {
    /// Whether it may carry another request: open, and not idle too long.
    fn usable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() < self.home.idle_timeout
    }
}

/// The shared idle connections of one upstream.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            idle_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A poisoned lock only means a holder panicked; the list itself is still sound.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection from `cache` if it has a usable one, else from the shared pool.
    pub fn take(self: &Arc<Self>, cache: Option<&ConnCache>) -> Option<Idle> {
        if let Some(idle) = cache.and_then(|c| c.take()) {
            if idle.usable() && Arc::ptr_eq(&idle.home, self) {
                return Some(idle);
            }
            // Another cluster node's connection: back to its own node's shared pool.
            if !Arc::ptr_eq(&idle.home, self) {
                let home = Arc::clone(&idle.home);
                home.share(idle);
            }
        }
        let mut list = self.lock();
        // Newest first: the oldest are the likeliest to be closed or expired.
        while let Some(idle) = list.pop() {
            if idle.usable() {
                return Some(idle);
            }
        }
        None
    }

    /// Keeps `sender`, whose answer's body may still be on its way, for the client
    /// connection's next request. Without a client connection (the stack used without the
    /// server) it is not kept: another request would have to wait for that body.
    pub fn put(self: &Arc<Self>, sender: SendRequest<Body>, cache: &ConnCache) {
        cache.fill(Idle {
            sender,
            since: Instant::now(),
            home: Arc::clone(self),
        });
    }

    /// Shares a connection its client connection no longer needs, if it can carry a request
    /// right now (a body still streaming on it would make the next user wait).
    fn share(&self, idle: Idle) {
        if !idle.usable() || !idle.sender.is_ready() {
            return;
        }
        let mut list = self.lock();
        list.retain(Idle::usable);
        if list.len() < SHARED_MAX {
            list.push(idle);
        }
    }

    /// How many connections wait in the shared pool (for tests).
    #[cfg(test)]
    fn shared_len(&self) -> usize {
        self.lock().len()
    }
}

/// The upstream connection a client connection used last; the server puts one into every
/// request of a connection. Dropping the last clone hands the connection to the shared pool.
#[derive(Clone, Default)]
pub struct ConnCache(Arc<CacheInner>);

#[derive(Default)]
struct CacheInner(Mutex<Option<Idle>>);

impl ConnCache {
    fn slot(&self) -> MutexGuard<'_, Option<Idle>> {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Idle> {
        self.slot().take()
    }

    fn fill(&self, idle: Idle) {
        if let Some(old) = self.slot().replace(idle) {
            let home = Arc::clone(&old.home);
            home.share(old);
        }
    }
}

impl Drop for CacheInner {
    fn drop(&mut self) {
        let slot = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(idle) = slot.take() {
            let home = Arc::clone(&idle.home);
            home.share(idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ready client connection to a tiny in-memory HTTP/1.1 server.
    async fn sender() -> SendRequest<Body> {
        let (client, server) = tokio::io::duplex(4096);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), service),
        );
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.ready().await.unwrap();
        sender
    }

    #[tokio::test]
    async fn the_client_connection_keeps_its_own_then_shares_it() {
        let pool = Pool::new(Duration::from_secs(3));
        let cache = ConnCache::default();
        pool.put(sender().await, &cache);
        assert!(pool.take(Some(&cache)).is_some(), "taken from the cache");
        assert!(pool.take(Some(&cache)).is_none(), "and only once");

        pool.put(sender().await, &cache);
        assert_eq!(pool.shared_len(), 0);
        drop(cache);
        assert_eq!(pool.shared_len(), 1, "a closed client connection shares it");
        let other = ConnCache::default();
        assert!(
            pool.take(Some(&other)).is_some(),
            "another client connection takes it"
        );
        assert_eq!(pool.shared_len(), 0);
    }

    #[tokio::test]
    async fn connections_idle_too_long_or_closed_are_not_reused() {
        let pool = Pool::new(Duration::from_millis(50));
        let cache = ConnCache::default();
        pool.put(sender().await, &cache);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(pool.take(Some(&cache)).is_none(), "expired");

        let pool = Pool::new(Duration::from_secs(3));
        let cache = ConnCache::default();
        let (client, server) = tokio::io::duplex(64);
        let (mut closing, conn) =
            hyper::client::conn::http1::handshake::<_, Body>(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(conn);
        closing.ready().await.unwrap();
        drop(server);
        for _ in 0..100 {
            if closing.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pool.put(closing, &cache);
        drop(cache);
        assert_eq!(pool.shared_len(), 0, "a closed connection is not shared");
        assert!(pool.take(None).is_none());
    }
}
