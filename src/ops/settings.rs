//! Connection settings of `pvegate ops` / `pvegate mcp`: flags, then the environment
//! (`PVEGATE_URL`, `PVEGATE_TOKEN`, `PVEGATE_OPS_CONFIG`), then an optional `ops.toml`.
//!
//! ```toml
//! # ~/.config/pvegate/ops.toml (or --config FILE, or PVEGATE_OPS_CONFIG)
//! url = "https://pvegate.lan:8006"
//! token_file = "token"          # relative to this file; holds USER@REALM!TOKENID=SECRET
//! ca = "pvegate-ca.pem"         # or fingerprint = "AB:CD:…", or insecure = true
//! node = "pve"                  # optional: otherwise found per guest
//! task_timeout_secs = 600
//! [ranges]                      # names for `next-vmid --range NAME`
//! prod = "100-199"
//! ct = "200-299"
//! templates = "9000-9999"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::OpsError;
use crate::config::{parse_fingerprint, Trust};

/// Connection flags shared by `pvegate ops` and `pvegate mcp`.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// The pvegate (or Proxmox) URL.
    #[arg(
        long,
        global = true,
        help = "pvegate (or Proxmox) URL, e.g. https://pvegate.lan:8006 [env: PVEGATE_URL]"
    )]
    pub url: Option<String>,
    /// File holding the API token USER@REALM!TOKENID=SECRET [default: env PVEGATE_TOKEN]
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Trust this CA bundle (PEM) for the URL's certificate.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Pin the URL's certificate by its SHA-256 fingerprint (AB:CD:…).
    #[arg(long, global = true)]
    pub fingerprint: Option<String>,
    /// Do not verify the URL's certificate (explicit opt-out).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// The node to use (default: the guest's node from /cluster/resources, or the only one).
    #[arg(long, global = true)]
    pub node: Option<String>,
    /// ops settings file (TOML) [env: PVEGATE_OPS_CONFIG; default ~/.config/pvegate/ops.toml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

/// `ops.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    fingerprint: Option<String>,
    #[serde(default)]
    insecure: bool,
    node: Option<String>,
    task_timeout_secs: Option<u64>,
    #[serde(default)]
    ranges: BTreeMap<String, String>,
}

/// Resolved settings. `Debug` leaves the token out.
#[derive(Clone)]
pub struct Settings {
    /// Base URL without a trailing `/` and without `/api2/json`.
    pub base: String,
    /// `USER@REALM!TOKENID=SECRET` (never printed).
    pub token: String,
    /// How the URL's certificate is checked.
    pub trust: Trust,
    /// A fixed node, if given.
    pub node: Option<String>,
    /// Named VMID ranges for `next-vmid --range NAME`.
    pub ranges: BTreeMap<String, (u32, u32)>,
    /// Upper bound on waiting for one task.
    pub task_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("trust", &self.trust)
            .field("node", &self.node)
            .field("ranges", &self.ranges)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

impl Settings {
    /// Resolves `args` against the environment and the settings file.
    pub fn resolve(args: &ConnArgs) -> Result<Settings, OpsError> {
        Self::resolve_with(args, |k| std::env::var(k).ok())
    }

    /// [`Settings::resolve`] with an explicit environment (for tests).
    pub fn resolve_with(
        args: &ConnArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, OpsError> {
        let (file, file_dir) = load_file(args, &env)?;
        let url = args
            .url
            .clone()
            .or_else(|| env("PVEGATE_URL").filter(|s| !s.is_empty()))
            .or(file.url.clone())
            .ok_or_else(|| {
                OpsError::Usage(
                    "no URL: set PVEGATE_URL (e.g. https://pvegate.lan:8006) or pass --url".into(),
                )
            })?;
        let base = normalize_url(&url)?;
        let token = if let Some(f) = &args.token_file {
            read_token_file(f)?
        } else if let Some(t) = env("PVEGATE_TOKEN").filter(|s| !s.is_empty()) {
            t
        } else if let Some(f) = &file.token_file {
            read_token_file(&file_dir.join(f))?
        } else {
            return Err(OpsError::Usage(
                "no API token: set PVEGATE_TOKEN=USER@REALM!TOKENID=SECRET or pass --token-file FILE"
                    .into(),
            ));
        };
        let token = parse_token(&token)?;
        let trust = if args.ca.is_some() || args.fingerprint.is_some() || args.insecure {
            trust_of(args.ca.clone(), args.fingerprint.as_deref(), args.insecure)?
        } else {
            trust_of(
                file.ca.as_ref().map(|c| file_dir.join(c)),
                file.fingerprint.as_deref(),
                file.insecure,
            )?
        };
        let mut ranges = BTreeMap::new();
        for (name, r) in &file.ranges {
            let parsed = parse_range(r)
                .map_err(|e| OpsError::Usage(format!("ops settings, range {name:?}: {e}")))?;
            ranges.insert(name.clone(), parsed);
        }
        Ok(Settings {
            base,
            token,
            trust,
            node: args.node.clone().or(file.node),
            ranges,
            task_timeout: Duration::from_secs(file.task_timeout_secs.unwrap_or(600)),
        })
    }
}

fn load_file(
    args: &ConnArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(FileSettings, PathBuf), OpsError> {
    let (path, must_exist) = if let Some(p) = &args.config {
        (p.clone(), true)
    } else if let Some(p) = env("PVEGATE_OPS_CONFIG").filter(|s| !s.is_empty()) {
        (PathBuf::from(p), true)
    } else {
        let dir = env("XDG_CONFIG_HOME")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
        match dir {
            Some(d) => (d.join("pvegate").join("ops.toml"), false),
            None => return Ok((FileSettings::default(), PathBuf::from("."))),
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FileSettings::default(), PathBuf::from(".")))
        }
        Err(e) => {
            return Err(OpsError::Usage(format!(
                "cannot read ops settings {}: {e}",
                path.display()
            )))
        }
    };
    let file: FileSettings = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(1);
        OpsError::Usage(format!("{}:{line}: {}", path.display(), e.message().trim()))
    })?;
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((file, dir))
}

fn trust_of(ca: Option<PathBuf>, fp: Option<&str>, insecure: bool) -> Result<Trust, OpsError> {
    match (ca, fp, insecure) {
        (None, None, false) => Ok(Trust::SystemRoots),
        (Some(ca), None, false) => Ok(Trust::Ca(ca)),
        (None, Some(fp), false) => parse_fingerprint(fp)
            .map(Trust::Fingerprint)
            .map_err(|e| OpsError::Usage(e.replace("upstream.fingerprint", "--fingerprint"))),
        (None, None, true) => Ok(Trust::Insecure),
        _ => Err(OpsError::Usage(
            "choose one of --ca, --fingerprint or --insecure".into(),
        )),
    }
}

fn read_token_file(path: &Path) -> Result<String, OpsError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| OpsError::Usage(format!("cannot read token file {}: {e}", path.display())))
}

/// Checks the shape `USER@REALM!TOKENID=SECRET` (a leading `PVEAPIToken=` is accepted).
/// The error never repeats the token.
pub fn parse_token(s: &str) -> Result<String, OpsError> {
    let t = s.trim();
    let t = t.strip_prefix("PVEAPIToken=").unwrap_or(t);
    let bad = || {
        OpsError::Usage(
            "the API token must look like USER@REALM!TOKENID=SECRET (e.g. agent@pve!ops=xxxxxxxx-…)"
                .into(),
        )
    };
    let (id, secret) = t.split_once('=').ok_or_else(bad)?;
    let (user, tokenid) = id.split_once('!').ok_or_else(bad)?;
    if !user.contains('@')
        || tokenid.is_empty()
        || secret.is_empty()
        || t.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(t.to_owned())
}

/// `https://host:8006`, `https://host:8006/`, `https://host:8006/api2/json` → the base URL.
pub fn normalize_url(url: &str) -> Result<String, OpsError> {
    let u = url.trim();
    let bad = |why: &str| OpsError::Usage(format!("the URL {u:?} {why}"));
    let parsed: http::Uri = u
        .parse()
        .map_err(|_| bad("is not a URL (e.g. https://pvegate.lan:8006)"))?;
    match parsed.scheme_str() {
        Some("https") | Some("http") => {}
        _ => return Err(bad("must start with https:// (or http:// for tests)")),
    }
    if parsed.authority().is_none() {
        return Err(bad("has no host"));
    }
    if parsed.query().is_some() {
        return Err(bad("must not have a query"));
    }
    let mut base = u.trim_end_matches('/').to_owned();
    for suffix in ["/api2/json", "/api2/extjs"] {
        if let Some(b) = base.strip_suffix(suffix) {
            base = b.trim_end_matches('/').to_owned();
        }
    }
    Ok(base)
}

/// `100-199` → (100, 199).
pub fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range like 100-199"))?;
    let lo = parse_vmid(a.trim())?;
    let hi = parse_vmid(b.trim())?;
    if lo > hi {
        return Err(format!("range {s:?} runs backwards"));
    }
    Ok((lo, hi))
}

/// A VMID as Proxmox accepts it: 100 to 999999999.
pub fn parse_vmid(s: &str) -> Result<u32, String> {
    let ok = !s.is_empty()
        && s.len() <= 9
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    match s.parse::<u32>() {
        Ok(v) if ok && v >= 100 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a VMID (a number from 100 to 999999999)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmids_and_ranges() {
        assert_eq!(parse_vmid("104"), Ok(104));
        for bad in ["", "99", "0104", "abc", "1e3", "1000000000", "-5", "104 "] {
            assert!(parse_vmid(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_range("100-199"), Ok((100, 199)));
        assert!(parse_range("199-100").is_err());
        assert!(parse_range("100").is_err());
    }

    #[test]
    fn tokens_are_checked_and_never_echoed() {
        assert_eq!(
            parse_token("PVEAPIToken=a@pve!x=s3cr3t").unwrap(),
            "a@pve!x=s3cr3t"
        );
        for bad in ["a@pve!x", "apve!x=s", "a@pve=s", "a@pve!x=", "a@pve!x=s t"] {
            let e = parse_token(bad).unwrap_err().to_string();
            assert!(!e.contains(bad), "{e}");
        }
    }

    #[test]
    fn urls_and_settings_precedence() {
        assert_eq!(
            normalize_url("https://h:8006/api2/json/").unwrap(),
            "https://h:8006"
        );
        assert!(normalize_url("ftp://h").is_err());
        assert!(normalize_url("h:8006").is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "f@pve!t=file\n").unwrap();
        let cfg = dir.path().join("ops.toml");
        std::fs::write(
            &cfg,
            "url = \"https://file:8006\"\ntoken_file = \"tok\"\ninsecure = true\n[ranges]\nprod = \"100-199\"\n",
        )
        .unwrap();
        let args = ConnArgs {
            config: Some(cfg.clone()),
            ..Default::default()
        };
        let s = Settings::resolve_with(&args, |_| None).unwrap();
        assert_eq!(s.base, "https://file:8006");
        assert_eq!(s.token, "f@pve!t=file");
        assert!(!format!("{s:?}").contains("f@pve!t=file"));
        assert_eq!(s.trust, Trust::Insecure);
        assert_eq!(s.ranges["prod"], (100, 199));
        let s = Settings::resolve_with(&args, |k| match k {
            "PVEGATE_URL" => Some("http://env:1".into()),
            "PVEGATE_TOKEN" => Some("e@pve!t=env".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (s.base.as_str(), s.token.as_str()),
            ("http://env:1", "e@pve!t=env")
        );
        std::fs::write(&cfg, "urll = \"x\"\n").unwrap();
        let e = Settings::resolve_with(&args, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ops.toml:1"), "{e}");
        let e = Settings::resolve_with(&ConnArgs::default(), |k| {
            (k == "PVEGATE_URL").then(|| "http://x:1".into())
        })
        .unwrap_err();
        assert!(e.to_string().contains("no API token"), "{e}");
    }
}
