//! Idle upstream connections ([`super::h1::Conn`]), kept in two places: with the client
//! connection that used one last ([`ConnCache`]), and in a small shared [`Pool`] for client
//! connections that have none.
//!
//! A busy client connection therefore sends each request on "its" upstream connection: no
//! shared lock to contend for, no hash lookup. A connection comes back ([`Home`]) once the
//! answer it carried has been read to its end. When a client connection goes idle (it is
//! parked or closed), its cache is dropped and the upstream connection moves to the shared
//! pool, where the next client connection without one picks it up.
//!
//! Every idle connection is discarded once it has been idle for `idle_timeout` (pvegate's
//! `upstream.pool_idle_timeout_ms`, under pveproxy's 5 s keep-alive): reusing one the upstream
//! is about to close could lose a request that cannot be retried. One the upstream closed, or
//! sent anything on unasked, is discarded when it is taken.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::h1::Conn;

/// At most this many idle connections wait in the shared pool (as the pooled client before).
const SHARED_MAX: usize = 256;

/// An upstream connection with no request in flight.
pub struct Idle {
    pub conn: Conn,
    since: Instant,
    home: Arc<Pool>,
}

impl Idle {
    /// Whether it is not idle too long.
    fn fresh(&self) -> bool {
        self.since.elapsed() < self.home.idle_timeout
    }

    /// Whether it may carry another request: not idle too long, and still open.
    fn usable(&mut self) -> bool {
        self.fresh() && self.conn.is_open()
    }
}

/// Where a connection goes once the answer it carried has been read: the cache of the client
/// connection the request came on.
pub struct Home {
    pool: Arc<Pool>,
    cache: ConnCache,
}

impl Home {
    pub fn new(pool: &Arc<Pool>, cache: &ConnCache) -> Home {
        Home {
            pool: Arc::clone(pool),
            cache: cache.clone(),
        }
    }

    /// Keeps `conn` for the client connection's next request.
    pub fn keep(self, conn: Conn) {
        self.pool.put(conn, &self.cache);
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
        if let Some(mut idle) = cache.and_then(|c| c.take()) {
            if Arc::ptr_eq(&idle.home, self) && idle.usable() {
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
        while let Some(mut idle) = list.pop() {
            if idle.usable() {
                return Some(idle);
            }
        }
        None
    }

    /// Keeps `conn`, whose last answer has been read in full, for the client connection's next
    /// request.
    pub fn put(self: &Arc<Self>, conn: Conn, cache: &ConnCache) {
        cache.fill(Idle {
            conn,
            since: Instant::now(),
            home: Arc::clone(self),
        });
    }

    /// Shares a connection its client connection no longer needs, if it can still carry a
    /// request.
    fn share(&self, mut idle: Idle) {
        if !idle.usable() {
            return;
        }
        let mut list = self.lock();
        // Only the clock: each is looked at for closing when it is taken.
        list.retain(Idle::fresh);
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
    use super::super::h1::Stream;
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// An upstream connection, and the upstream's end of it.
    async fn open() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, server) = tokio::join!(client, listener.accept());
        (Conn::new(Stream::Plain(client.unwrap())), server.unwrap().0)
    }

    #[tokio::test]
    async fn the_client_connection_keeps_its_own_then_shares_it() {
        let pool = Pool::new(Duration::from_secs(3));
        let cache = ConnCache::default();
        let (first, _up1) = open().await;
        pool.put(first, &cache);
        assert!(pool.take(Some(&cache)).is_some(), "taken from the cache");
        assert!(pool.take(Some(&cache)).is_none(), "and only once");

        let (second, _up2) = open().await;
        Home::new(&pool, &cache).keep(second);
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
    async fn connections_idle_too_long_closed_or_talking_are_not_reused() {
        let pool = Pool::new(Duration::from_millis(50));
        let cache = ConnCache::default();
        let (expiring, _up) = open().await;
        pool.put(expiring, &cache);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(pool.take(Some(&cache)).is_none(), "expired");

        let pool = Pool::new(Duration::from_secs(3));
        for talk in [false, true] {
            let cache = ConnCache::default();
            let (conn, mut up) = open().await;
            pool.put(conn, &cache);
            if talk {
                // Bytes nobody asked for: the connection is out of step.
                tokio::io::AsyncWriteExt::write_all(&mut up, b"HTTP/1.1 200 OK\r\n")
                    .await
                    .unwrap();
            } else {
                drop(up);
            }
            // Refused once pvegate's side has seen it (bounded wait, looked at every 5 ms).
            let mut refused = false;
            for _ in 0..400 {
                match pool.take(Some(&cache)) {
                    None => {
                        refused = true;
                        break;
                    }
                    Some(idle) => {
                        pool.put(idle.conn, &cache);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            assert!(refused, "talking: {talk}");
            let (conn, _up) = open().await;
            pool.put(conn, &cache);
            assert!(pool.take(Some(&cache)).is_some(), "a quiet one is taken");
        }
        assert_eq!(pool.shared_len(), 0);
        assert!(pool.take(None).is_none());
    }
}
