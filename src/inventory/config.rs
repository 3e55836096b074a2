//! `[inventory]` in the config file: where pvegate's own read-only API token is, how often
//! the snapshot is refreshed and how old it may get before writes that need it are refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// `[inventory]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    pub token_file: Spanned<String>,
    pub refresh_secs: Option<Spanned<u64>>,
    pub max_age_secs: Option<Spanned<u64>>,
}

/// `[inventory]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryConfig {
    /// A file holding `USER@REALM!TOKENID=SECRET` (read at start; never logged).
    pub token_file: PathBuf,
    /// How often the snapshot is refreshed (`refresh_secs`, default 10).
    pub refresh: Duration,
    /// Older than this (`max_age_secs`, default 60), writes that need it are refused.
    pub max_age: Duration,
}

impl InventoryConfig {
    /// Validates `raw`; `resolve` makes a relative path relative to the config file. An
    /// error carries the span of the offending value.
    pub fn from_raw(
        raw: &RawInventory,
        resolve: impl Fn(&str) -> PathBuf,
    ) -> Result<InventoryConfig, (std::ops::Range<usize>, String)> {
        if raw.token_file.get_ref().trim().is_empty() {
            return Err((
                raw.token_file.span(),
                "inventory.token_file is empty: give the file holding pvegate's own API token (USER@REALM!TOKENID=SECRET)".into(),
            ));
        }
        let refresh = raw
            .refresh_secs
            .as_ref()
            .map_or(Ok(10), |r| match *r.get_ref() {
                0 => Err((
                    r.span(),
                    "inventory.refresh_secs must be at least 1".to_string(),
                )),
                n => Ok(n),
            })?;
        let max_age = raw.max_age_secs.as_ref().map_or(Ok(60), |m| {
            let n = *m.get_ref();
            if n <= refresh {
                Err((
                    m.span(),
                    format!("inventory.max_age_secs ({n}) must be greater than refresh_secs ({refresh}), or every snapshot goes stale before the next refresh"),
                ))
            } else {
                Ok(n)
            }
        })?;
        if raw.max_age_secs.is_none() && max_age <= refresh {
            return Err((
                raw.refresh_secs.as_ref().map_or(0..0, |r| r.span()),
                format!("inventory.refresh_secs ({refresh}) must be less than max_age_secs (60 by default): set max_age_secs too"),
            ));
        }
        Ok(InventoryConfig {
            token_file: resolve(raw.token_file.get_ref()),
            refresh: Duration::from_secs(refresh),
            max_age: Duration::from_secs(max_age),
        })
    }
}

/// An API token read from `token_file`. Its `Debug` hides the secret.
#[derive(Clone)]
pub struct Token {
    /// `USER@REALM!TOKENID` (safe to show).
    pub id: String,
    header: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}=…)", self.id)
    }
}

/// Why the token file cannot be used. The messages never hold the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read inventory.token_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("inventory.token_file {path} does not hold USER@REALM!TOKENID=SECRET on one line (create the token with `pveum user token add`; see README \"Inventory and selectors\")")]
    Shape { path: String },
}

impl Token {
    /// Reads and checks `path`.
    pub fn load(path: &std::path::Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Token::parse(&text).ok_or_else(|| TokenError::Shape {
            path: path.display().to_string(),
        })
    }

    /// Parses `USER@REALM!TOKENID=SECRET` (a `PVEAPIToken=` prefix is allowed).
    pub fn parse(text: &str) -> Option<Token> {
        let t = text.trim();
        let t = t.strip_prefix("PVEAPIToken=").unwrap_or(t);
        let (id, secret) = t.split_once('=')?;
        let (user, tokenid) = id.split_once('!')?;
        let (name, realm) = user.split_once('@')?;
        let clean =
            |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c.is_control());
        if !(clean(name) && clean(realm) && clean(tokenid) && clean(secret)) {
            return None;
        }
        Some(Token {
            id: id.to_string(),
            header: format!("PVEAPIToken={id}={secret}"),
        })
    }

    /// The `Authorization` header value (sensitive).
    pub(crate) fn header(&self) -> &str {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<InventoryConfig, String> {
        let raw: RawInventory = toml::from_str(src).map_err(|e| e.message().to_string())?;
        InventoryConfig::from_raw(&raw, |p| std::path::Path::new("/etc/pvegate").join(p))
            .map_err(|(_, m)| m)
    }

    #[test]
    fn defaults_bounds_and_unknown_keys() {
        let c = parse("token_file = \"tok\"").unwrap();
        assert_eq!(c.token_file, std::path::Path::new("/etc/pvegate/tok"));
        assert_eq!((c.refresh.as_secs(), c.max_age.as_secs()), (10, 60));
        let c = parse("token_file = \"/t\"\nrefresh_secs = 2\nmax_age_secs = 5").unwrap();
        assert_eq!((c.refresh.as_secs(), c.max_age.as_secs()), (2, 5));
        for (src, needle) in [
            ("token_file = \"\"", "is empty"),
            ("token_file = \"t\"\nrefresh_secs = 0", "at least 1"),
            (
                "token_file = \"t\"\nrefresh_secs = 5\nmax_age_secs = 5",
                "greater than refresh_secs",
            ),
            (
                "token_file = \"t\"\nrefresh_secs = 90",
                "less than max_age_secs",
            ),
            ("token_file = \"t\"\nrefresh = 5", "unknown field"),
            ("refresh_secs = 5", "missing field"),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.contains(needle), "{src:?}: {e}");
        }
    }

    #[test]
    fn token_shapes() {
        let t = Token::parse("pvegate@pve!gate=aaaa-bbbb\n").unwrap();
        assert_eq!(t.id, "pvegate@pve!gate");
        assert!(!format!("{t:?}").contains("aaaa"));
        assert!(Token::parse("PVEAPIToken=pvegate@pve!gate=s").is_some());
        for bad in [
            "",
            "pvegate@pve!gate",
            "pvegate@pve=s",
            "pvegate!gate=s",
            "a@b!c=with space",
        ] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn shape_error_does_not_echo_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "supersecret-no-shape").unwrap();
        let e = Token::load(&p).unwrap_err().to_string();
        assert!(!e.contains("supersecret"), "{e}");
    }
}
