//! The approval state directory: pending requests, approvals and rejections, and the single
//! use of a grant. Every file is a signed record ([`super::record`]) or an exclusive marker,
//! so several replicas can share the folder without a database:
//!
//! | file | written by | how |
//! | --- | --- | --- |
//! | `<id>.request.json` | the replica that refused the request | [`write_new`] |
//! | `<id>.approved.<who>.json` | `pvegate approve` (local or admin listener) | [`write_new`]: one per approver |
//! | `<id>.rejected.json` | `pvegate reject` | [`write_new`] |
//! | `<id>.used` | the replica that forwards the approved request | [`claim`]: only one can |
//! | `<id>.expired` | the replica that reports the expiry | [`claim`]: reported once |
//!
//! A request is identified by its *digest*: SHA-256 over the identity, method, path and the
//! parameters as pveproxy reads them (sorted by key), so a reordered body is the same request
//! and any changed value is another.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::record::{self, claim, hex, now, read_opt, write_new, Key, StateError};
use super::settings::Settings;

/// Most pending requests kept at once: past it, requests needing approval are refused without
/// a new id (a client cannot fill the disk).
pub const MAX_PENDING: usize = 1000;
/// Most pending requests of one identity: one client cannot fill the queue for the others.
pub const MAX_PENDING_PER_IDENTITY: usize = 50;
/// Records are deleted this long after they stopped mattering (expired, used, rejected).
const RETAIN_SECS: u64 = 86_400;

/// A request waiting for (or having had) approval, as signed on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub kind: String,
    pub id: String,
    /// `-` without a credential.
    pub identity: String,
    pub method: String,
    pub path: String,
    pub action: String,
    pub guests: String,
    /// Hex SHA-256 of identity, method, path and parameters.
    pub digest: String,
    /// The rule that asked for approval.
    pub rule: String,
    /// Distinct approvers needed.
    pub approvers: u8,
    /// Seconds since the epoch.
    pub created: u64,
    /// Unanswered until then: expired.
    pub expires: u64,
    /// How long the grant lasts once approved.
    pub grant_secs: u64,
}

/// One approver's decision on a request, as signed on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub kind: String,
    pub id: String,
    /// The request's digest: a decision copied onto another request does not verify.
    pub digest: String,
    pub by: String,
    pub at: u64,
    pub reason: Option<String>,
}

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting; these approvers said yes so far.
    Pending { approved_by: Vec<String> },
    /// Approved: usable once until `until`.
    Approved { by: Vec<String>, until: u64 },
    /// Refused by an approver.
    Rejected { by: String },
    /// Approved and used.
    Used,
    /// Nobody answered in time.
    Expired,
    /// Approved, but not used in time.
    GrantExpired,
}

impl Status {
    /// One word for listings and audit lines.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Pending { .. } => "pending",
            Status::Approved { .. } => "approved",
            Status::Rejected { .. } => "rejected",
            Status::Used => "used",
            Status::Expired => "expired",
            Status::GrantExpired => "grant-expired",
        }
    }
}

/// What the gate found for a request that needs approval.
#[derive(Debug)]
pub enum Gate {
    /// An approved, unused grant was claimed: forward the request.
    Granted(RequestRecord, Vec<String>),
    /// Refused: it waits for approval under this id (`new`: just created).
    Waiting(RequestRecord, bool),
    /// Refused: too many requests wait already.
    Full,
}

/// What a request needing approval is, for [`Store::gate`].
pub struct Ask<'a> {
    pub identity: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub action: &'a str,
    pub guests: &'a str,
    pub digest: String,
    pub rule: &'a str,
    pub approvers: u8,
}

/// The state directory with its key.
pub struct Store {
    pub settings: Settings,
    key: Key,
    /// Grants this process consumed (a deleted `.used` marker does not make them usable here).
    consumed: Mutex<HashSet<String>>,
    /// Records already reported as not verifying.
    reported: Mutex<HashSet<String>>,
}

/// The user part of an identity: `alice@pve!ci` -> `alice@pve` (self-approval is by user).
pub fn user_of(identity: &str) -> &str {
    identity.split_once('!').map_or(identity, |(u, _)| u)
}

/// Whether `id` is an approval id as pvegate makes them (`ap-` and 12 hex digits).
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|h| {
        h.len() == 12
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// A fresh id: `prefix` and 12 random hex digits.
pub fn new_id(prefix: &str) -> Result<String, StateError> {
    let r = record::random::<6>()?;
    Ok(format!("{prefix}{}", hex(&r)))
}

impl Store {
    /// Opens the state directory (creating it and the key when `create`).
    pub fn open(settings: &Settings, create: bool) -> Result<Store, StateError> {
        if create {
            for d in [settings.dir.clone(), settings.waiver_dir()] {
                std::fs::create_dir_all(&d).map_err(|e| StateError::io(&d, e))?;
            }
        } else if !settings.dir.is_dir() {
            return Err(StateError::io(
                &settings.dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such folder ([approvals] dir; pvegate serve creates it)",
                ),
            ));
        }
        let key = Key::load(&settings.key_file, create)?;
        Ok(Store {
            settings: settings.clone(),
            key,
            consumed: Mutex::new(HashSet::new()),
            reported: Mutex::new(HashSet::new()),
        })
    }

    /// A store over `settings` with `key` (tests).
    pub fn with_key(settings: &Settings, key: Key) -> Store {
        let _ = std::fs::create_dir_all(settings.waiver_dir());
        Store {
            settings: settings.clone(),
            key,
            consumed: Mutex::new(HashSet::new()),
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// The signing key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    fn file(&self, name: String) -> PathBuf {
        record::path_in(&self.settings.dir, &name)
    }

    fn approval_file(&self, id: &str, by: &str) -> PathBuf {
        let who = ring::digest::digest(&ring::digest::SHA256, user_of(by).as_bytes());
        self.file(format!("{id}.approved.{}.json", hex(&who.as_ref()[..8])))
    }

    /// The request `id`, verified. `Ok(None)`: no such request.
    pub fn request(&self, id: &str) -> Result<Option<RequestRecord>, StateError> {
        if !valid_id(id, "ap-") {
            return Err(StateError::Refused(format!(
                "{id:?} is not an approval id (they look like ap-1a2b3c4d5e6f)"
            )));
        }
        let Some(text) = read_opt(&self.file(format!("{id}.request.json")))? else {
            return Ok(None);
        };
        match self.key.open::<RequestRecord>(&text) {
            Ok(r) if r.id == id && r.kind == "request" => Ok(Some(r)),
            Ok(_) => Err(self.forged(id, "request record names another id")),
            Err(why) => Err(self.forged(id, &why)),
        }
    }

    /// Whether record `id` failing for `why` is news: a record that does not verify is logged
    /// and counted once per process (the folder is read at every sweep).
    pub(super) fn first_report(&self, id: &str, why: &str) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{id} {why}"))
    }

    fn forged(&self, id: &str, why: &str) -> StateError {
        if self.first_report(id, why) {
            tracing::error!(id, why, dir = %self.settings.dir.display(), "approval record refused: it does not verify");
            crate::approval::events::count_approval("forged");
        }
        StateError::Refused(format!("approval {id} is not valid ({why}): it is refused"))
    }

    /// Every request record that verifies (the others are logged and skipped).
    pub fn requests(&self) -> Result<Vec<RequestRecord>, StateError> {
        let names = record::names(&self.settings.dir)?;
        self.requests_in(&names)
    }

    fn requests_in(&self, names: &[String]) -> Result<Vec<RequestRecord>, StateError> {
        let mut out = Vec::new();
        for name in names {
            let Some(id) = name.strip_suffix(".request.json") else {
                continue;
            };
            if let Ok(Some(r)) = self.request(id) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    /// The verified approvals of `r` that count: distinct users, not the requester, given
    /// before the request expired. Sorted by time.
    fn approvals(
        &self,
        r: &RequestRecord,
        names: &[String],
    ) -> Result<Vec<DecisionRecord>, StateError> {
        let prefix = format!("{}.approved.", r.id);
        let mut out: Vec<DecisionRecord> = Vec::new();
        for name in names {
            if !name.starts_with(&prefix) || !name.ends_with(".json") {
                continue;
            }
            // An approval pvegate cannot read (written by another user, say) does not count.
            let text = match read_opt(&self.file(name.clone())) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    if self.first_report(name, "unreadable") {
                        tracing::warn!(error = %e, "approval not counted: pvegate cannot read it");
                    }
                    continue;
                }
            };
            match self.key.open::<DecisionRecord>(&text) {
                Ok(d)
                    if d.kind == "approve"
                        && d.id == r.id
                        && d.digest == r.digest
                        && d.at <= r.expires
                        && user_of(&d.by) != user_of(&r.identity)
                        && !out.iter().any(|o| user_of(&o.by) == user_of(&d.by)) =>
                {
                    out.push(d)
                }
                Ok(_) => {}
                Err(why) => {
                    let _ = self.forged(&r.id, &why);
                }
            }
        }
        out.sort_by_key(|d| d.at);
        Ok(out)
    }

    fn rejection(&self, r: &RequestRecord) -> Result<Option<DecisionRecord>, StateError> {
        let text = match read_opt(&self.file(format!("{}.rejected.json", r.id))) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            // A rejection pvegate cannot read still rejects (fail closed).
            Err(e) => {
                if self.first_report(&r.id, "unreadable rejection") {
                    tracing::warn!(error = %e, "rejection unreadable: the request counts as rejected");
                }
                return Ok(Some(DecisionRecord {
                    kind: "reject".into(),
                    id: r.id.clone(),
                    digest: r.digest.clone(),
                    by: "(unreadable rejection)".into(),
                    at: 0,
                    reason: None,
                }));
            }
        };
        match self.key.open::<DecisionRecord>(&text) {
            Ok(d) if d.kind == "reject" && d.id == r.id && d.digest == r.digest => Ok(Some(d)),
            Ok(_) => Ok(None),
            Err(why) => {
                let _ = self.forged(&r.id, &why);
                Ok(None)
            }
        }
    }

    fn used(&self, r: &RequestRecord) -> bool {
        self.file(format!("{}.used", r.id)).exists()
            || self
                .consumed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&r.id)
    }

    /// Where `r` stands now.
    pub fn status(&self, r: &RequestRecord) -> Result<Status, StateError> {
        let names = record::names(&self.settings.dir)?;
        self.status_at(r, now(), &names)
    }

    /// Where `r` stands at `t`; `names` is the folder's listing (read once by the caller).
    fn status_at(&self, r: &RequestRecord, t: u64, names: &[String]) -> Result<Status, StateError> {
        if self.used(r) {
            return Ok(Status::Used);
        }
        if let Some(d) = self.rejection(r)? {
            return Ok(Status::Rejected { by: d.by });
        }
        let approvals = self.approvals(r, names)?;
        let by: Vec<String> = approvals.iter().map(|d| d.by.clone()).collect();
        let need = usize::from(r.approvers.max(1));
        if approvals.len() >= need {
            let until = approvals[need - 1].at.saturating_add(r.grant_secs);
            return Ok(if t < until {
                Status::Approved { by, until }
            } else {
                Status::GrantExpired
            });
        }
        if t >= r.expires {
            return Ok(Status::Expired);
        }
        Ok(Status::Pending { approved_by: by })
    }

    /// Finds a usable grant for `ask` and claims it, or the pending request it waits under,
    /// or records a new pending request.
    pub fn gate(&self, ask: &Ask<'_>) -> Result<Gate, StateError> {
        let mut waiting = None;
        let (mut pending, mut mine) = (0, 0);
        let names = record::names(&self.settings.dir)?;
        let t = now();
        let identity = ask.identity.unwrap_or("-");
        for r in self.requests_in(&names)? {
            let status = self.status_at(&r, t, &names)?;
            if matches!(status, Status::Pending { .. }) {
                pending += 1;
                mine += usize::from(r.identity == identity);
            }
            if r.digest != ask.digest {
                continue;
            }
            match status {
                Status::Approved { by, .. } => {
                    let marker = self.file(format!("{}.used", r.id));
                    let note = format!("used by pid {} at {}\n", std::process::id(), now());
                    if claim(&marker, &note)? {
                        self.consumed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(r.id.clone());
                        return Ok(Gate::Granted(r, by));
                    }
                }
                Status::Pending { .. } => waiting = Some(r),
                _ => {}
            }
        }
        if let Some(r) = waiting {
            return Ok(Gate::Waiting(r, false));
        }
        if pending >= MAX_PENDING || mine >= MAX_PENDING_PER_IDENTITY {
            return Ok(Gate::Full);
        }
        let r = RequestRecord {
            kind: "request".into(),
            id: new_id("ap-")?,
            identity: ask.identity.unwrap_or("-").to_string(),
            method: ask.method.to_string(),
            path: ask.path.to_string(),
            action: ask.action.to_string(),
            guests: ask.guests.to_string(),
            digest: ask.digest.clone(),
            rule: ask.rule.to_string(),
            approvers: ask.approvers.max(1),
            created: t,
            expires: t + self.settings.pending_ttl.as_secs(),
            grant_secs: self.settings.grant_ttl.as_secs(),
        };
        write_new(
            &self.file(format!("{}.request.json", r.id)),
            &self.key.seal(&r),
        )?;
        Ok(Gate::Waiting(r, true))
    }

    /// Records `by`'s approval (`approve`) or rejection of request `id`, and returns the
    /// request with its new status. Refused: unknown or invalid id, self-approval, a request
    /// no longer pending (expired, rejected, used), the same approver twice.
    pub fn decide(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<(RequestRecord, Status), StateError> {
        check_identity(by)?;
        let Some(r) = self.request(id)? else {
            return Err(StateError::Refused(format!(
                "there is no approval request {id} in {}",
                self.settings.dir.display()
            )));
        };
        if approve && user_of(by) == user_of(&r.identity) {
            return Err(StateError::Refused(format!(
                "{by} asked for {id} and cannot approve it: another person must (self-approval is refused)"
            )));
        }
        let status = self.status(&r)?;
        match (&status, approve) {
            (Status::Pending { approved_by }, true) => {
                if approved_by.iter().any(|a| user_of(a) == user_of(by)) {
                    return Err(StateError::Refused(format!(
                        "{by} approved {id} before: it needs {} distinct approvers",
                        r.approvers
                    )));
                }
            }
            (Status::Pending { .. } | Status::Approved { .. }, false) => {}
            (s, _) => {
                return Err(StateError::Refused(format!(
                    "{id} is {}: it can no longer be {}",
                    s.word(),
                    if approve { "approved" } else { "rejected" }
                )))
            }
        }
        let d = DecisionRecord {
            kind: if approve { "approve" } else { "reject" }.into(),
            id: r.id.clone(),
            digest: r.digest.clone(),
            by: by.to_string(),
            at: now(),
            reason: reason.map(str::to_string),
        };
        let path = if approve {
            self.approval_file(id, by)
        } else {
            self.file(format!("{id}.rejected.json"))
        };
        if !write_new(&path, &self.key.seal(&d))? {
            return Err(StateError::Refused(format!(
                "{id} was {} already",
                if approve {
                    "approved by this user"
                } else {
                    "rejected"
                }
            )));
        }
        let status = self.status(&r)?;
        Ok((r, status))
    }

    /// Every pending request with its status (for `pvegate approvals`).
    pub fn pending(&self) -> Result<Vec<(RequestRecord, Status)>, StateError> {
        let mut out = Vec::new();
        let names = record::names(&self.settings.dir)?;
        let t = now();
        for r in self.requests_in(&names)? {
            let s = self.status_at(&r, t, &names)?;
            if matches!(s, Status::Pending { .. } | Status::Approved { .. }) {
                out.push((r, s));
            }
        }
        Ok(out)
    }

    /// Claims the expiry of every request that expired unanswered (each reported by one
    /// replica only), and deletes records that stopped mattering a day ago.
    pub fn sweep(&self) -> Result<Vec<RequestRecord>, StateError> {
        let t = now();
        let mut expired = Vec::new();
        let names = record::names(&self.settings.dir)?;
        for r in self.requests_in(&names)? {
            let status = self.status_at(&r, t, &names)?;
            if matches!(status, Status::Expired | Status::GrantExpired)
                && claim(&self.file(format!("{}.expired", r.id)), "")?
            {
                expired.push(r.clone());
            }
            let done = !matches!(status, Status::Pending { .. } | Status::Approved { .. });
            let last = r.expires.max(r.created + r.grant_secs) + r.grant_secs;
            if done && t > last + RETAIN_SECS {
                // The request first: without it, nothing else about it counts.
                let _ = std::fs::remove_file(self.file(format!("{}.request.json", r.id)));
                for name in names
                    .iter()
                    .filter(|n| n.starts_with(&format!("{}.", r.id)))
                {
                    let _ = std::fs::remove_file(self.file(name.clone()));
                }
            }
        }
        record::remove_stale_tmp(&self.settings.dir);
        Ok(expired)
    }
}

/// An approver or waiver author: printable, without spaces, at most 128 characters.
pub fn check_identity(who: &str) -> Result<(), StateError> {
    if who.is_empty() || who.len() > 128 || who.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(StateError::Refused(format!(
            "{who:?} is not an identity (user@realm, without spaces)"
        )));
    }
    Ok(())
}
