//! The inventory: what pvegate knows about the cluster, so rules can pick guests by tag,
//! pool, name, type or template flag, stored selections (backup jobs, HA rules and groups,
//! `vzdump pool=`) are judged by the guests they select, and what a protected guest
//! depends on (passthrough devices, mappings, storages) is protected with it.
//!
//! [`config`] is `[inventory]` and the token file, [`fetch`] reads the cluster with
//! pvegate's own read-only token, [`snapshot`] is one reading, [`change`] the facts of a
//! request that need it, [`expand`] what they touch, and [`Inventory`] (this file) holds the
//! live snapshot behind an `ArcSwap`, refreshes it every `refresh_secs` and after every
//! change pvegate forwards, and says when it is too old to judge by (`max_age_secs`).

pub mod change;
pub mod config;
pub mod expand;
pub mod fetch;
pub mod gate;
pub mod metrics;
pub mod show;
pub mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwapOption, Guard};
use tokio::sync::{watch, Notify};

pub use change::Change;
pub use config::{InventoryConfig, Token};
pub use fetch::{FetchError, Fetcher};
pub use snapshot::{split_tags, Guest, GuestType, Snapshot};

use crate::policy::resolve::Resolved;
use crate::policy::{Policy, PolicyStore};

/// The longest a client's write waits for the refresh that follows it.
pub const REFRESH_WAIT: Duration = Duration::from_secs(15);

/// The live inventory (cheap to clone).
#[derive(Clone)]
pub struct Inventory {
    inner: Arc<Inner>,
}

struct Inner {
    max_age: Duration,
    refresh: Duration,
    current: ArcSwapOption<Snapshot>,
    resolved: ArcSwapOption<Resolved>,
    last_error: Mutex<Option<String>>,
    trigger: Notify,
    /// Refreshes begun (a waiter needs one that began after its change).
    started: AtomicU64,
    /// The number of the last refresh that ended (with or without success).
    finished: watch::Sender<u64>,
    failures: AtomicU64,
    /// Changes applied to the snapshot since, tagged with the refresh count at the time.
    pending: Mutex<Vec<(u64, Change)>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("loaded", &self.inner.current.load().is_some())
            .finish()
    }
}

impl Inventory {
    /// An inventory with nothing loaded yet (stale until the first refresh succeeds).
    pub fn new(cfg: &InventoryConfig) -> Inventory {
        Inventory {
            inner: Arc::new(Inner {
                max_age: cfg.max_age,
                refresh: cfg.refresh,
                current: ArcSwapOption::empty(),
                resolved: ArcSwapOption::empty(),
                last_error: Mutex::new(None),
                trigger: Notify::new(),
                started: AtomicU64::new(0),
                finished: watch::Sender::new(0),
                failures: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Installs a snapshot (a refresh that succeeded).
    pub fn install(&self, s: Snapshot) {
        self.inner.current.store(Some(Arc::new(s)));
        if let Ok(mut e) = self.inner.last_error.lock() {
            *e = None;
        }
    }

    /// Installs a snapshot patched with a forwarded `change` (its age unchanged), and keeps
    /// the change to apply again over a refresh that was already under way.
    fn install_patched(&self, s: Snapshot, change: &Change) {
        self.inner.current.store(Some(Arc::new(s)));
        let at = self.inner.started.load(Ordering::SeqCst);
        if let Ok(mut p) = self.inner.pending.lock() {
            p.push((at, change.clone()));
        }
    }

    /// Installs the result of refresh number `n`, with the changes forwarded while it ran.
    fn install_refreshed(&self, mut s: Snapshot, n: u64) {
        if let Ok(mut p) = self.inner.pending.lock() {
            p.retain(|(at, _)| *at >= n);
            for (_, c) in p.iter() {
                if let Some(next) = gate::applied(&s, c) {
                    s = next;
                }
            }
        }
        self.install(s);
    }

    /// Records a failed refresh (the previous snapshot stays until it is too old).
    pub fn record_failure(&self, why: String) {
        self.inner.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.inner.last_error.lock() {
            *e = Some(why);
        }
    }

    /// The current snapshot, if any was ever loaded (whatever its age).
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.inner.current.load_full()
    }

    /// Seconds since the current snapshot was read (`None`: never).
    pub fn age(&self) -> Option<Duration> {
        self.inner
            .current
            .load()
            .as_ref()
            .map(|s| s.loaded_at.elapsed())
    }

    /// Failed refreshes so far.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Why the inventory cannot be judged by now, or `Ok` with the fresh snapshot.
    pub fn fresh(&self) -> Result<Arc<Snapshot>, String> {
        let last = self.inner.last_error.lock().ok().and_then(|e| e.clone());
        let because = last
            .map(|e| format!(": last refresh failed: {e}"))
            .unwrap_or_default();
        match self.inner.current.load_full() {
            None => Err(format!("the inventory has not been read yet{because}")),
            Some(s) => {
                let age = s.loaded_at.elapsed();
                if age > self.inner.max_age {
                    Err(format!(
                        "the inventory is stale: last read {} s ago, more than inventory.max_age_secs = {}{because}",
                        age.as_secs(),
                        self.inner.max_age.as_secs()
                    ))
                } else {
                    Ok(s)
                }
            }
        }
    }

    /// The selector matches of the fresh snapshot for `policy` (computed once per policy and
    /// snapshot, then shared), or why the inventory cannot be judged by.
    pub fn view(&self, policy: &Arc<Policy>) -> Result<Arc<Resolved>, String> {
        let snap = self.fresh()?;
        let key = Arc::as_ptr(policy) as usize;
        let cached: Guard<Option<Arc<Resolved>>> = self.inner.resolved.load();
        if let Some(r) = cached.as_ref() {
            if r.policy_key == key && Arc::ptr_eq(&r.snapshot, &snap) {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(policy.resolve(snap, key));
        self.inner.resolved.store(Some(r.clone()));
        Ok(r)
    }

    /// Asks for a refresh now and waits (at most [`REFRESH_WAIT`]) until one that began
    /// after this call has ended. Returns whether it did in time.
    pub async fn refresh_now(&self) -> bool {
        let mut rx = self.inner.finished.subscribe();
        let before = self.inner.started.load(Ordering::SeqCst);
        self.inner.trigger.notify_one();
        tokio::time::timeout(REFRESH_WAIT, rx.wait_for(|&f| f > before))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Asks for a refresh soon, without waiting.
    pub fn refresh_soon(&self) {
        self.inner.trigger.notify_one();
    }

    /// One refresh: reads the cluster and installs it, or records why not. `policy` says
    /// whose configs to read.
    pub async fn refresh_once(&self, fetcher: &Fetcher, policy: &PolicyStore) {
        let n = self.inner.started.fetch_add(1, Ordering::SeqCst) + 1;
        let p = policy.snapshot();
        let started = Instant::now();
        let result = fetcher.snapshot(|s| p.protected_guests(s)).await;
        match result {
            Ok(s) => {
                tracing::debug!(
                    guests = s.guests.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "inventory refreshed"
                );
                self.install_refreshed(s, n);
                // Index the selector matches now, not in the next request.
                let _ = self.view(&p);
            }
            Err(e) => {
                tracing::warn!(error = %e, "inventory refresh failed");
                self.record_failure(e.to_string());
            }
        }
        self.inner.finished.send_replace(n);
    }

    /// One refresh on a thread of its own, which ends with it. A refresh of 10,000 guests
    /// allocates several times the snapshot it keeps (the answers, the parse, the selector
    /// index); done on a worker, the allocator keeps those freed pages with the worker for
    /// later (8-9 MiB measured); a thread that ends hands them back. Waits until it is done
    /// (every call in it has a timeout); refreshes on the caller's runtime when no thread
    /// can be started.
    pub async fn refresh_apart(&self, fetcher: &Fetcher, policy: &PolicyStore) {
        let (inv, pol) = (self.clone(), policy.clone());
        let own = match fetcher.fresh() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "inventory refresh failed");
                self.record_failure(e.to_string());
                return;
            }
        };
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("pvegate-inventory".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(inv.refresh_once(&own, &pol)),
                    Err(e) => {
                        tracing::warn!(error = %e, "inventory refresh failed: no runtime");
                        inv.record_failure(format!("cannot start the refresh: {e}"));
                    }
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = done.await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no refresh thread: refreshing on a worker");
                self.refresh_once(fetcher, policy).await;
            }
        }
    }

    /// Refreshes every `refresh_secs` and whenever asked, forever.
    pub async fn run(self, fetcher: Fetcher, policy: PolicyStore) {
        loop {
            self.refresh_apart(&fetcher, &policy).await;
            tokio::select! {
                _ = tokio::time::sleep(self.inner.refresh) => {}
                _ = self.inner.trigger.notified() => {}
            }
        }
    }

    /// When the current snapshot was read, in wall-clock time.
    pub fn loaded_at(&self) -> Option<SystemTime> {
        self.inner.current.load().as_ref().map(|s| s.loaded_wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> InventoryConfig {
        InventoryConfig {
            token_file: "t".into(),
            refresh: Duration::from_secs(1),
            max_age: Duration::from_secs(60),
        }
    }

    fn untagged() -> Snapshot {
        let mut s = Snapshot::empty();
        s.set_resources(&json!([{"vmid":110,"type":"qemu","name":"web","node":"pve"}]))
            .unwrap();
        s
    }

    #[test]
    fn never_read_is_not_fresh_and_says_why() {
        let inv = Inventory::new(&cfg());
        assert!(inv.fresh().unwrap_err().contains("has not been read yet"));
        inv.record_failure("GET /cluster/resources?type=vm: HTTP 401".into());
        let e = inv.fresh().unwrap_err();
        assert!(
            e.contains("last refresh failed: GET /cluster/resources"),
            "{e}"
        );
        assert_eq!(inv.failures(), 1);
        inv.install(untagged());
        assert!(inv.fresh().is_ok());
    }

    #[test]
    fn a_forwarded_change_survives_a_refresh_already_under_way() {
        let inv = Inventory::new(&cfg());
        inv.install(untagged());
        let tag = Change::GuestConfig {
            vmid: 110,
            tags: Some(vec!["prod".into()]),
            name: None,
            clears_protection: false,
            devices: vec![],
        };
        // Refresh 1 starts, reading the cluster before the change...
        let n = inv.inner.started.fetch_add(1, Ordering::SeqCst) + 1;
        inv.after_write(Some(&tag));
        assert_eq!(inv.current().unwrap().guests[&110].tags, vec!["prod"]);
        // ...and ends with the old data: the change is applied again.
        inv.install_refreshed(untagged(), n);
        assert_eq!(inv.current().unwrap().guests[&110].tags, vec!["prod"]);
        // A refresh that began after the change is the truth.
        let n = inv.inner.started.fetch_add(1, Ordering::SeqCst) + 1;
        inv.install_refreshed(untagged(), n);
        assert!(inv.current().unwrap().guests[&110].tags.is_empty());
    }
}
