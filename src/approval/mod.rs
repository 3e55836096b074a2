//! Approvals and waivers: the second key for destructive changes.
//!
//! - A rule's (or `[settings]`') `approve = [actions]` makes a request it would permit wait for
//!   a person: pvegate refuses it (403) with an approval id and the command to approve it
//!   (`pvegate approve <id>`). Once approved — by `approvers` distinct people, never the
//!   requester — the *same* request (identity, method, path and a digest of its parameters)
//!   passes **once** within `[approvals] grant_ttl` (default 15 min); unanswered requests
//!   expire after `pending_ttl` (default 1 h) and stay refused.
//! - A waiver (`pvegate waive`) is a time-bounded exemption for a guest and/or identity and a
//!   set of actions; each use is audited with its id.
//!
//! The state is a directory of signed files ([`store`], [`waiver`], [`record`]): it survives
//! restarts and can be shared by replicas (single use by create-exclusive markers), with no
//! database. [`gate`] is what the authorize layer asks; [`admin`] serves `/approvals` on the
//! admin listener; [`cli`] is `pvegate approvals|approve|reject|waive`; [`webhook`] notifies;
//! [`events`] writes the audit lines and counters; [`settings`] is `[approvals]`.

pub mod admin;
pub mod cli;
pub mod events;
pub mod gate;
pub mod record;
pub mod settings;
pub mod store;
pub mod waiver;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use record::StateError;
pub use settings::Settings;
pub use store::Store;

/// How often a running pvegate looks for expired requests and waivers (to audit them).
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// The approval state of a running pvegate: the store (opened on first need, retried after a
/// failure), the waiver cache and the webhook.
pub struct Approvals {
    settings: Settings,
    /// The config file, for the commands shown in refusals and notifications.
    config: PathBuf,
    store: Mutex<Option<Arc<Store>>>,
    waivers: waiver::WaiverCache,
    webhook: OnceLock<Option<webhook::Notifier>>,
}

impl Approvals {
    /// Approvals with these settings; nothing is touched until first needed.
    pub fn new(settings: Settings, config: PathBuf) -> Arc<Approvals> {
        Arc::new(Approvals {
            settings,
            config,
            store: Mutex::new(None),
            waivers: waiver::WaiverCache::default(),
            webhook: OnceLock::new(),
        })
    }

    /// The store, opened (and the folder and key created) if not yet.
    pub fn store(&self) -> Result<Arc<Store>, StateError> {
        let mut s = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*s {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(Store::open(&self.settings, true)?);
        *s = Some(Arc::clone(&store));
        Ok(store)
    }

    /// The store if it is open or its folder exists (waivers are looked for only then, so a
    /// pvegate without approvals or waivers never touches the disk for a refusal).
    pub fn store_if_present(&self) -> Result<Option<Arc<Store>>, StateError> {
        if let Some(s) = &*self.store.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(Some(Arc::clone(s)));
        }
        if !self.settings.waiver_dir().is_dir() {
            return Ok(None);
        }
        self.store().map(Some)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `pvegate approve <id> --config <file>`: the command shown to people.
    pub fn approve_command(&self, id: &str) -> String {
        format!("pvegate approve {id} --config {}", self.config.display())
    }

    fn notify(&self, r: &store::RequestRecord) {
        let n = self.webhook.get_or_init(|| {
            self.settings
                .webhook
                .clone()
                .map(|u| webhook::Notifier::start(u, self.settings.webhook_timeout))
        });
        if let Some(n) = n {
            n.notify(webhook::body(r, &self.config.display().to_string()));
        }
    }

    /// Audits expired requests and waivers every [`SWEEP_EVERY`], until dropped.
    pub async fn sweep_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || {
                me.sweep_once();
                // Blocking threads batch log lines but never park: hand them over now.
                crate::logsink::flush_this_thread();
            })
            .await;
        }
    }

    fn sweep_once(&self) {
        // Nothing to sweep while nobody needed the state.
        let Some(store) = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .or_else(|| {
                self.settings
                    .dir
                    .is_dir()
                    .then(|| self.store().ok())
                    .flatten()
            })
        else {
            return;
        };
        match store.sweep() {
            Ok(expired) => {
                for r in expired {
                    events::approval("expired", &r, None, None);
                }
            }
            Err(e) => tracing::warn!(error = %e, "approval sweep failed"),
        }
        match store.sweep_waivers() {
            Ok(expired) => {
                for w in expired {
                    events::waiver("expired", &w, None);
                }
            }
            Err(e) => tracing::warn!(error = %e, "waiver sweep failed"),
        }
    }
}
