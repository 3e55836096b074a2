//! Waivers: time-bounded exemptions (`pvegate waive`), signed records in `<dir>/waivers/`.
//!
//! A waiver names a guest (`--guest 104`), an identity (`--identity tofu@pve!ci`, or
//! `user@realm!*`), or both, and the actions it covers (`--actions 'power.*'`, a comma list
//! of actions, families or `*`). Until it expires or is revoked (`<id>.revoked`, a marker), a
//! request whose action it covers, from its identity, touching only its guest, passes where a
//! guest rule would refuse it or ask for approval. It never lifts `[settings] deny_actions`,
//! `strict`, a host path or device (`host.access`), or an unreadable request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::record::{self, claim, now, read_opt, write_new, StateError};
use super::store::{check_identity, new_id, valid_id, Store};
use crate::policy::rule::ActionSet;
use crate::pve::{Action, GuestSet, Operation};

/// Longest waiver: a week.
pub const MAX_WAIVER: Duration = Duration::from_secs(7 * 86_400);

/// A waiver as signed on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiverRecord {
    pub kind: String,
    pub id: String,
    pub guest: Option<u32>,
    pub identity: Option<String>,
    /// The action patterns as given (`power.*,snapshot.create`).
    pub actions: String,
    pub reason: String,
    pub by: String,
    pub created: u64,
    pub expires: u64,
}

/// A verified, compiled waiver.
#[derive(Clone, Debug)]
pub struct Waiver {
    pub record: WaiverRecord,
    actions: ActionSet,
}

/// Parses `power.*,destroy` into a set (reads are never waived: they need no waiver).
pub fn parse_actions(text: &str) -> Result<ActionSet, String> {
    let mut set = ActionSet::default();
    for p in text.split(',').map(str::trim) {
        if p.is_empty() || p == "read" {
            return Err(format!(
                "--actions {text:?}: give actions, families such as \"power.*\", or \"*\", separated by commas (reads need no waiver)"
            ));
        }
        set.add_pattern(p)?;
    }
    Ok(set)
}

impl Waiver {
    /// Whether this waiver covers `op` by `identity` at time `t`.
    pub fn covers(&self, op: &Operation, identity: Option<&str>, t: u64) -> bool {
        if t >= self.record.expires || !self.actions.contains(op.action) {
            return false;
        }
        if let Some(pattern) = &self.record.identity {
            let Some(id) = identity else { return false };
            let ok = match pattern.strip_suffix("!*") {
                Some(user) => id.split_once('!').is_some_and(|(u, _)| u == user),
                None => id == pattern,
            };
            if !ok {
                return false;
            }
        }
        match (self.record.guest, &op.guests) {
            (None, _) => true,
            (Some(g), GuestSet::Some(list)) => !list.is_empty() && list.iter().all(|v| *v == g),
            (Some(_), _) => false,
        }
    }

    /// `guest 104, identity tofu@pve!ci, power.*` for listings and audit lines.
    pub fn scope(&self) -> String {
        let mut parts = Vec::new();
        if let Some(g) = self.record.guest {
            parts.push(format!("guest {g}"));
        }
        if let Some(i) = &self.record.identity {
            parts.push(format!("identity {i}"));
        }
        parts.push(self.record.actions.clone());
        parts.join(", ")
    }
}

/// When a waiver list was read, the folder's modification time then, and the list.
type Loaded = (Instant, Option<SystemTime>, Arc<Vec<Waiver>>);

/// Waivers read from disk, re-read when the folder changes (or every second).
#[derive(Default)]
pub struct WaiverCache {
    inner: Mutex<Option<Loaded>>,
}

impl Store {
    fn waiver_file(&self, name: &str) -> PathBuf {
        self.settings.waiver_dir().join(name)
    }

    /// Creates a waiver; returns it.
    #[allow(clippy::too_many_arguments)]
    pub fn waive(
        &self,
        guest: Option<u32>,
        identity: Option<&str>,
        actions: &str,
        lasting: Duration,
        reason: &str,
        by: &str,
    ) -> Result<Waiver, StateError> {
        check_identity(by)?;
        if guest.is_none() && identity.is_none() {
            return Err(StateError::Refused(
                "a waiver needs --guest N, --identity ID, or both".into(),
            ));
        }
        if let Some(i) = identity {
            check_identity(i)?;
        }
        let set = parse_actions(actions).map_err(StateError::Refused)?;
        if lasting.is_zero() || lasting > MAX_WAIVER {
            return Err(StateError::Refused(
                "--for must be between 1s and 7d (e.g. 2h)".into(),
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().any(char::is_control) {
            return Err(StateError::Refused(
                "--reason must say why, on one line".into(),
            ));
        }
        let t = now();
        let record = WaiverRecord {
            kind: "waiver".into(),
            id: new_id("wv-")?,
            guest,
            identity: identity.map(str::to_string),
            actions: actions.to_string(),
            reason: reason.to_string(),
            by: by.to_string(),
            created: t,
            expires: t + lasting.as_secs(),
        };
        std::fs::create_dir_all(self.settings.waiver_dir())
            .map_err(|e| StateError::io(&self.settings.waiver_dir(), e))?;
        write_new(
            &self.waiver_file(&format!("{}.json", record.id)),
            &self.key().seal(&record),
        )?;
        Ok(Waiver {
            record,
            actions: set,
        })
    }

    /// Revokes waiver `id` (a marker; it stops applying at once).
    pub fn revoke(&self, id: &str, by: &str) -> Result<Waiver, StateError> {
        check_identity(by)?;
        let w = self.waiver(id)?;
        if !claim(&self.waiver_file(&format!("{id}.revoked")), by)? {
            return Err(StateError::Refused(format!("{id} was revoked already")));
        }
        Ok(w)
    }

    /// Waiver `id`, verified.
    pub fn waiver(&self, id: &str) -> Result<Waiver, StateError> {
        if !valid_id(id, "wv-") {
            return Err(StateError::Refused(format!(
                "{id:?} is not a waiver id (they look like wv-1a2b3c4d5e6f)"
            )));
        }
        let text = read_opt(&self.waiver_file(&format!("{id}.json")))?
            .ok_or_else(|| StateError::Refused(format!("there is no waiver {id}")))?;
        let record: WaiverRecord = self.key().open(&text).map_err(|why| {
            if self.first_report(id, &why) {
                tracing::error!(id, why, "waiver refused: it does not verify");
                crate::metrics::waiver_event("forged");
            }
            StateError::Refused(format!("waiver {id} is not valid ({why})"))
        })?;
        if record.id != id || record.kind != "waiver" {
            return Err(StateError::Refused(format!("waiver {id} is not valid")));
        }
        let actions = parse_actions(&record.actions).map_err(StateError::Refused)?;
        Ok(Waiver { record, actions })
    }

    /// Waivers in force now (verified, not expired, not revoked), oldest first.
    pub fn active_waivers(&self) -> Result<Vec<Waiver>, StateError> {
        let t = now();
        let mut out = Vec::new();
        for name in record::names(&self.settings.waiver_dir())? {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if self.waiver_file(&format!("{id}.revoked")).exists() {
                continue;
            }
            if let Ok(w) = self.waiver(id) {
                if t < w.record.expires {
                    out.push(w);
                }
            }
        }
        out.sort_by_key(|w| w.record.created);
        Ok(out)
    }

    /// The waiver that lets `op` by `identity` through, if any (from a cache that follows
    /// the folder's changes; a revocation applies within a second at most).
    pub fn waiver_for(
        &self,
        cache: &WaiverCache,
        op: &Operation,
        identity: Option<&str>,
    ) -> Result<Option<Waiver>, StateError> {
        if op.action == Action::Read {
            return Ok(None);
        }
        let mtime = std::fs::metadata(self.settings.waiver_dir())
            .and_then(|m| m.modified())
            .ok();
        let list = {
            let mut c = cache.inner.lock().unwrap_or_else(|e| e.into_inner());
            match &*c {
                Some((at, m, list)) if *m == mtime && at.elapsed() < Duration::from_secs(1) => {
                    Arc::clone(list)
                }
                _ => {
                    let list = Arc::new(self.active_waivers()?);
                    *c = Some((Instant::now(), mtime, Arc::clone(&list)));
                    list
                }
            }
        };
        let t = now();
        Ok(list.iter().find(|w| w.covers(op, identity, t)).cloned())
    }

    /// Claims the expiry of waivers that ran out (each reported once).
    pub fn sweep_waivers(&self) -> Result<Vec<WaiverRecord>, StateError> {
        let t = now();
        let mut out = Vec::new();
        for name in record::names(&self.settings.waiver_dir())? {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(w) = self.waiver(id) else { continue };
            if t < w.record.expires {
                continue;
            }
            let revoked = self.waiver_file(&format!("{id}.revoked")).exists();
            if !revoked && claim(&self.waiver_file(&format!("{id}.expired")), "")? {
                out.push(w.record.clone());
            }
            // A day after it ended, nothing about it matters (the audit keeps the story).
            if t > w.record.expires + 86_400 {
                for suffix in ["json", "expired", "revoked"] {
                    let _ = std::fs::remove_file(self.waiver_file(&format!("{id}.{suffix}")));
                }
            }
        }
        record::remove_stale_tmp(&self.settings.waiver_dir());
        Ok(out)
    }
}
