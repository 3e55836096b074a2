//! The live policy: one `ArcSwap` holding the whole compiled [`Policy`], reloaded on SIGHUP or
//! when a policy file changes. A policy that fails to load (unreadable, invalid, empty, or a
//! file caught half-written) leaves the last good one in force and logs an ERROR; a reload
//! that takes protection away from a guest logs a WARN naming it.
//!
//! File watching polls size, modification time and inode, and reloads only once they have
//! stayed the same for [`SETTLE`] (an editor's truncate-then-write is not read in between),
//! and only if they did not change while the files were read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::error::PolicyError;
use super::judge::Mode;
use super::Policy;

/// How long the policy files must stay unchanged before a watch reload reads them.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Shared handle to the live policy; cheap to clone.
#[derive(Clone)]
pub struct PolicyStore {
    current: Arc<ArcSwap<Policy>>,
    files: Arc<Vec<PathBuf>>,
    mode: Mode,
    status: Arc<ReloadStatus>,
    /// Whether `[inventory]` is configured (else a reload to selector rules fails).
    inventory: bool,
    /// How the files looked when the policy in force at start was read: the watcher starts
    /// from these, so an edit made before it runs (during startup) is not missed.
    loaded: Arc<Vec<Stamp>>,
}

struct ReloadStatus {
    ok: AtomicBool,
    /// Seconds since the Unix epoch of the last load or reload attempt.
    at: AtomicU64,
    /// Serializes reloads (SIGHUP and the watcher), so generations count up one by one.
    lock: Mutex<()>,
}

/// What a policy file looks like on disk: (length, modification time, inode).
type Stamp = Option<(u64, SystemTime, u64)>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PolicyStore {
    /// A store holding `policy` (generation 1), reloadable from `files`.
    pub fn new(mut policy: Policy, files: Vec<PathBuf>) -> Self {
        policy.generation = 1;
        let loaded = Arc::new(files.iter().map(|f| stamp(f)).collect());
        PolicyStore {
            loaded,
            current: Arc::new(ArcSwap::from_pointee(policy)),
            files: Arc::new(files),
            mode: Mode::Enforce,
            status: Arc::new(ReloadStatus {
                ok: AtomicBool::new(true),
                at: AtomicU64::new(now_secs()),
                lock: Mutex::new(()),
            }),
            inventory: false,
        }
    }

    /// The same store knowing whether `[inventory]` is configured: without it, a policy
    /// with selector rules is refused (at start by the caller, on reload here).
    pub fn with_inventory(mut self, configured: bool) -> Self {
        self.inventory = configured;
        self
    }

    /// Loads `files` and builds a store from them.
    pub fn load(files: Vec<PathBuf>) -> Result<Self, PolicyError> {
        // Looked at before reading: a change while they are read is then a change to reload.
        let stamps = files.iter().map(|f| stamp(f)).collect();
        let policy = Policy::load(&files)?;
        let mut store = Self::new(policy, files);
        store.loaded = Arc::new(stamps);
        Ok(store)
    }

    /// The same store with `[policy] mode` set (shadow: nothing is refused, only logged).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// `[policy] mode`.
    #[inline]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The policy in force now. Requests take one snapshot and decide on it.
    #[inline]
    pub fn snapshot(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// The generation of the policy in force: 1 for the first, +1 for each successful reload.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// Whether the last load or reload attempt succeeded.
    pub fn last_reload_ok(&self) -> bool {
        self.status.ok.load(Ordering::Relaxed)
    }

    /// When the last load or reload was attempted.
    pub fn last_reload_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.status.at.load(Ordering::Relaxed))
    }

    /// Re-reads the files; swaps only if they compile. Logs the outcome.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let have = self.inventory;
        self.reload_with(
            Policy::load(&self.files).and_then(|p| p.require_inventory(have).map(|()| p)),
        )
    }

    fn reload_with(&self, loaded: Result<Policy, PolicyError>) -> Result<(), PolicyError> {
        let _one_at_a_time = self.status.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.status.at.store(now_secs(), Ordering::Relaxed);
        match loaded {
            Ok(mut p) => {
                let old = self.current.load_full();
                p.generation = old.generation + 1;
                let lost = super::diff::protection_removed(&old, &p);
                if !lost.is_empty() {
                    let guests: Vec<&str> = lost.iter().map(|l| l.guests.as_str()).collect();
                    let details: Vec<String> = lost
                        .iter()
                        .map(|l| format!("{}: {}", l.guests, l.what))
                        .collect();
                    tracing::warn!(
                        guests = %guests.join(", "),
                        changes = %details.join(" | "),
                        "policy reload removes protection from {}",
                        guests.join(", ")
                    );
                }
                for w in &p.warnings {
                    tracing::warn!("policy: {w}");
                }
                let (rules, generation) = (p.rules().len(), p.generation);
                self.current.store(Arc::new(p));
                self.status.ok.store(true, Ordering::Relaxed);
                tracing::info!(rules, generation, "policy reloaded");
                Ok(())
            }
            Err(e) => {
                self.status.ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force");
                Err(e)
            }
        }
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.files.iter().map(|f| stamp(f)).collect()
    }

    /// Reads every file and compiles them, unless a file changed while it was read (then
    /// `None`: try again once it settles).
    fn read_settled(&self, expect: &[Stamp]) -> Option<Result<Policy, PolicyError>> {
        let mut sources = Vec::new();
        for (path, want) in self.files.iter().zip(expect) {
            match std::fs::read_to_string(path) {
                Ok(src) => {
                    let now = stamp(path);
                    if now != *want || now.map(|s| s.0) != Some(src.len() as u64) {
                        return None;
                    }
                    sources.push((path.clone(), src));
                }
                Err(source) => {
                    return Some(Err(PolicyError::Read {
                        path: path.display().to_string(),
                        source,
                    }))
                }
            }
        }
        Some(Policy::compile(&sources))
    }

    /// Polls the files every `every` and reloads once a change has settled ([`SETTLE`]).
    /// Runs until dropped.
    pub async fn watch(self, every: Duration) {
        let mut applied = self.loaded.to_vec();
        let mut seen: Option<(Vec<Stamp>, Instant)> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = self.stamps();
            if now == applied {
                seen = None;
                continue;
            }
            match &seen {
                Some((s, since)) if *s == now => {
                    if since.elapsed() < SETTLE {
                        continue;
                    }
                    if let Some(loaded) = self.read_settled(&now) {
                        let _ = self.reload_with(loaded);
                        applied = now;
                        seen = None;
                    }
                }
                _ => seen = Some((now, Instant::now())),
            }
        }
    }
}

fn stamp(path: &std::path::Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_count_successful_reloads_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[[guest]]\nvmid = 104\naccess = \"readonly\"\n").unwrap();
        let store = PolicyStore::load(vec![f.clone()]).unwrap();
        assert_eq!(store.generation(), 1);
        assert!(store.last_reload_ok());
        std::fs::write(&f, "").unwrap();
        assert!(store.reload().is_err(), "an empty policy is refused");
        assert_eq!(store.generation(), 1);
        assert!(!store.last_reload_ok());
        std::fs::write(&f, "[[guest]]\nvmid = 105\naccess = \"readonly\"\n").unwrap();
        store.reload().unwrap();
        assert_eq!(store.generation(), 2);
        assert!(store.last_reload_ok());
        assert_eq!(store.snapshot().rules()[0].vmids.0, 105);
    }

    #[tokio::test]
    async fn an_edit_made_before_the_watcher_starts_is_applied() {
        // `serve` starts the watcher after the inventory's first fetch; an edit in between
        // counts as an edit.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[[guest]]\nvmid = 104\naccess = \"readonly\"\n").unwrap();
        let store = PolicyStore::load(vec![f.clone()]).unwrap();
        std::fs::write(
            &f,
            "[[guest]]\nvmid = 105\naccess = \"readonly\"\n# edited\n",
        )
        .unwrap();
        let watcher = tokio::spawn(store.clone().watch(Duration::from_millis(50)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.generation() < 2 {
            assert!(Instant::now() < deadline, "the edit was never applied");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.snapshot().rules()[0].vmids.0, 105);
        watcher.abort();
    }

    #[tokio::test]
    async fn the_watcher_never_reads_a_file_that_is_still_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[[guest]]\nvmid = 104\naccess = \"readonly\"\n").unwrap();
        let store = PolicyStore::load(vec![f.clone()]).unwrap();
        let watcher = tokio::spawn(store.clone().watch(Duration::from_millis(50)));
        tokio::time::sleep(Duration::from_millis(120)).await;
        // Truncate, then write in pieces, faster than SETTLE: only the end result is read.
        std::fs::write(&f, "").unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        std::fs::write(&f, "[[guest]]\nvmid = 1").unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        std::fs::write(&f, "[[guest]]\nvmid = 105\naccess = \"readonly\"\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.generation() < 2 {
            assert!(store.last_reload_ok(), "a half-written file was read");
            assert!(
                Instant::now() < deadline,
                "the settled file was never applied"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(SETTLE + Duration::from_millis(200)).await;
        assert_eq!(store.generation(), 2, "one reload for one settled change");
        assert!(store.last_reload_ok());
        assert_eq!(store.snapshot().rules()[0].vmids.0, 105);
        watcher.abort();
    }
}
