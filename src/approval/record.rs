//! Signed records on disk: the HMAC key ([`Key`]), signing and verifying a record
//! ([`Key::seal`], [`Key::open`]), and the two atomic file operations everything rests on:
//! [`write_new`] (written whole under a temporary name, then linked to its final name only if
//! that name is free) and [`claim`] (create-exclusive of an empty marker).
//!
//! A record file is `{"payload": {...}, "sig": "<hex HMAC-SHA256>"}`; the signature covers
//! the payload serialised with sorted keys, so any edit (a changed identity, digest, time or
//! approver) makes it fail. A record whose signature fails is treated as absent, and logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::hmac;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What can go wrong with the state directory or a record in it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("approval state {path}: {source} (check that pvegate and the approvers can write it)")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("approval key {path}: {why}")]
    Key { path: String, why: String },
    #[error("{0}")]
    Refused(String),
}

impl StateError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The HMAC-SHA256 key records are signed with.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

/// Shortest key accepted, in bytes.
const KEY_MIN: usize = 32;

impl Key {
    /// Reads the key file; creates it (32 random bytes, hex, mode 0600) when `create` and it
    /// does not exist. Replicas sharing a state directory must share this file.
    pub fn load(path: &Path, create: bool) -> Result<Key, StateError> {
        let bad = |why: String| StateError::Key {
            path: path.display().to_string(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = text.trim();
                if text.len() < KEY_MIN {
                    return Err(bad(format!(
                        "is {} characters long: use at least {KEY_MIN} random characters (e.g. `head -c 32 /dev/urandom | xxd -p -c 64`)",
                        text.len()
                    )));
                }
                Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, text.as_bytes())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let bytes = random::<32>()?;
                let text = format!("{}\n", hex(&bytes));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| StateError::io(parent, e))?;
                }
                // Whole or not at all; another replica may have created it first: use theirs.
                if write_new_mode(path, text.as_bytes(), KEY_MODE)? {
                    tracing::warn!(path = %path.display(), "created a new approval signing key: replicas sharing the state directory must use this same file");
                }
                Key::load(path, false)
            }
            Err(e) => Err(StateError::io(path, e)),
        }
    }

    /// A key from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The record file text for `payload`.
    pub fn seal<T: Serialize>(&self, payload: &T) -> Vec<u8> {
        // A payload of plain structs always serialises.
        let value = serde_json::to_value(payload).unwrap_or(serde_json::Value::Null);
        let canonical = serde_json::to_vec(&value).unwrap_or_default();
        let sig = hmac::sign(&self.0, &canonical);
        let record = serde_json::json!({"payload": value, "sig": hex(sig.as_ref())});
        let mut out = serde_json::to_vec_pretty(&record).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The payload of a record file, if its signature holds; else why not.
    pub fn open<T: DeserializeOwned>(&self, text: &[u8]) -> Result<T, String> {
        let record: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not a record: {e}"))?;
        let payload = record.get("payload").ok_or("no payload")?;
        let sig = record
            .get("sig")
            .and_then(|s| s.as_str())
            .and_then(unhex)
            .ok_or("no signature")?;
        let canonical = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        hmac::verify(&self.0, &canonical, &sig)
            .map_err(|_| "signature does not match (edited, forged, or another key)")?;
        serde_json::from_value(payload.clone()).map_err(|e| format!("bad payload: {e}"))
    }
}

/// Records: owner read-write, group read (a shared group can run `pvegate serve` and the CLI).
const RECORD_MODE: u32 = 0o640;
/// The key: owner only.
const KEY_MODE: u32 = 0o600;

fn open_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Writes `bytes` to `path` atomically and only if `path` does not exist yet: written and
/// synced under a temporary name in the same folder, then hard-linked to `path` (which fails
/// if it exists, on every POSIX filesystem), then the temporary name removed. Returns `false`
/// when `path` already existed.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<bool, StateError> {
    write_new_mode(path, bytes, RECORD_MODE)
}

fn write_new_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        hex(&random::<8>().unwrap_or_default())
    ));
    let result = (|| {
        let mut f = open_new(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = result.map_err(|e| StateError::io(path, e))?;
    if created {
        sync_dir(dir);
    }
    Ok(created)
}

/// Creates the empty marker `path` exclusively: `true` if this call created it, `false` if it
/// existed. Two replicas can never both get `true`.
pub fn claim(path: &Path, note: &str) -> Result<bool, StateError> {
    match open_new(path, RECORD_MODE) {
        Ok(mut f) => {
            let _ = f.write_all(note.as_bytes());
            let _ = f.sync_all();
            sync_dir(path.parent().unwrap_or(Path::new(".")));
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StateError::io(path, e)),
    }
}

/// Makes a folder's new entries durable (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes temporary files an interrupted [`write_new`] left behind (older than an hour).
pub fn remove_stale_tmp(dir: &Path) {
    let Ok(list) = names(dir) else { return };
    for name in list.iter().filter(|n| n.starts_with(".tmp-")) {
        let p = dir.join(name);
        let old = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if old {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Reads a file; `None` if it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io(path, e)),
    }
}

/// The names in `dir` (an absent folder is empty).
pub fn names(dir: &Path) -> Result<Vec<String>, StateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError::io(dir, e)),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// `N` random bytes from the system.
pub fn random<const N: usize>() -> Result<[u8; N], StateError> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| StateError::Refused("the system gave no random bytes".into()))?;
    Ok(out)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A path inside `dir` for a record name (the name was validated by the caller).
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
