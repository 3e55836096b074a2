//! `[approvals]` in the config file: where the state lives, the signing key, how long a
//! pending request and a grant live, and the webhook for pending approvals.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::ConfigError;

/// Default state directory (shareable between replicas).
pub const DEFAULT_DIR: &str = "/var/lib/pvegate/approvals";
/// Default signing key file.
pub const DEFAULT_KEY: &str = "/var/lib/pvegate/approvals.key";

/// `[approvals]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    dir: Option<String>,
    key_file: Option<String>,
    grant_ttl: Option<Spanned<String>>,
    pending_ttl: Option<Spanned<String>>,
    webhook: Option<Spanned<String>>,
    webhook_timeout_secs: Option<Spanned<u64>>,
}

/// `[approvals]`, validated, with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The state directory: pending requests, decisions, consumptions, waivers.
    pub dir: PathBuf,
    /// The HMAC key every record is signed with (created, mode 0600, if absent).
    pub key_file: PathBuf,
    /// How long an approved request may be used (once): default 15 minutes.
    pub grant_ttl: Duration,
    /// How long a request waits for its approvers before it expires: default 1 hour.
    pub pending_ttl: Duration,
    /// Where pending approvals are POSTed (JSON), if anywhere.
    pub webhook: Option<http::Uri>,
    /// The longest a webhook POST may take (connect to answer): default 5 s.
    pub webhook_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dir: PathBuf::from(DEFAULT_DIR),
            key_file: PathBuf::from(DEFAULT_KEY),
            grant_ttl: Duration::from_secs(15 * 60),
            pending_ttl: Duration::from_secs(60 * 60),
            webhook: None,
            webhook_timeout: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// Validates `[approvals]` (`None`: the defaults). `resolve` anchors relative paths at
    /// the config file, `err` locates an error at a span.
    pub fn from_raw(
        raw: Option<&RawApprovals>,
        resolve: &dyn Fn(&str) -> PathBuf,
        err: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let Some(raw) = raw else { return Ok(s) };
        if let Some(d) = &raw.dir {
            s.dir = resolve(d);
        }
        if let Some(k) = &raw.key_file {
            s.key_file = resolve(k);
        }
        let ttl = |v: &Spanned<String>, key: &str| -> Result<Duration, ConfigError> {
            match humantime::parse_duration(v.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(7 * 86400) => {
                    Ok(d)
                }
                _ => Err(err(
                    v.span(),
                    format!(
                        "approvals.{key} {:?} is not a duration between 1s and 7d such as \"15m\" or \"1h\"",
                        v.get_ref()
                    ),
                )),
            }
        };
        // Every error at once (`validate` shows them all).
        let mut errors = Vec::new();
        if let Some(v) = &raw.grant_ttl {
            ttl(v, "grant_ttl").map_or_else(|e| errors.push(e), |d| s.grant_ttl = d);
        }
        if let Some(v) = &raw.pending_ttl {
            ttl(v, "pending_ttl").map_or_else(|e| errors.push(e), |d| s.pending_ttl = d);
        }
        if let Some(w) = &raw.webhook {
            match w.get_ref().parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() =>
                {
                    s.webhook = Some(uri)
                }
                _ => errors.push(err(
                    w.span(),
                    format!(
                        "approvals.webhook {:?} is not an http:// or https:// URL",
                        w.get_ref()
                    ),
                )),
            }
        }
        if let Some(t) = &raw.webhook_timeout_secs {
            if (1..=60).contains(t.get_ref()) {
                s.webhook_timeout = Duration::from_secs(*t.get_ref());
            } else {
                errors.push(err(
                    t.span(),
                    "approvals.webhook_timeout_secs must be between 1 and 60".into(),
                ));
            }
        }
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }
        Ok(s)
    }

    /// The waiver folder inside the state directory.
    pub fn waiver_dir(&self) -> PathBuf {
        self.dir.join("waivers")
    }
}
