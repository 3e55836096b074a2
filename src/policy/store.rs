//! The live policy: one `ArcSwap` holding the whole compiled [`Policy`], reloaded on SIGHUP or
//! when a policy file changes. A policy that fails to load leaves the last good one in force.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::Policy;
use crate::config::ConfigError;

/// Shared handle to the live policy; cheap to clone.
#[derive(Clone)]
pub struct PolicyStore {
    current: Arc<ArcSwap<Policy>>,
    files: Arc<Vec<PathBuf>>,
    generation: Arc<AtomicU64>,
    last_reload_ok: Arc<AtomicBool>,
}

impl PolicyStore {
    /// A store holding `policy`, reloadable from `files`.
    pub fn new(policy: Policy, files: Vec<PathBuf>) -> Self {
        PolicyStore {
            current: Arc::new(ArcSwap::from_pointee(policy)),
            files: Arc::new(files),
            generation: Arc::new(AtomicU64::new(1)),
            last_reload_ok: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Loads `files` and builds a store from them.
    pub fn load(files: Vec<PathBuf>) -> Result<Self, ConfigError> {
        let policy = Policy::load(&files)?;
        Ok(Self::new(policy, files))
    }

    /// The policy in force now. Requests take one snapshot and decide on it.
    #[inline]
    pub fn snapshot(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Re-reads the files; swaps only if they compile. Logs the outcome.
    pub fn reload(&self) -> Result<(), ConfigError> {
        match Policy::load(&self.files) {
            Ok(p) => {
                let rules = p.rules().len();
                self.current.store(Arc::new(p));
                self.generation.fetch_add(1, Ordering::Relaxed);
                self.last_reload_ok.store(true, Ordering::Relaxed);
                tracing::info!(rules, "policy reloaded");
                Ok(())
            }
            Err(e) => {
                self.last_reload_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force");
                Err(e)
            }
        }
    }

    /// How many policies have been put in force: 1 at start, plus one per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether the last load or reload succeeded (a failed one leaves the previous policy).
    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_ok.load(Ordering::Relaxed)
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        self.files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Polls the files' modification times and reloads when one changes. Runs until dropped.
    pub async fn watch(self, every: Duration) {
        let mut last = self.mtimes();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = self.mtimes();
            if now != last {
                last = now;
                let _ = self.reload();
            }
        }
    }
}
