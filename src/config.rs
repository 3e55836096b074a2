//! The config file (TOML) -> a validated [`Config`]: listener, upstream, policy files, logging.
//!
//! Relative paths are resolved against the config file's folder. Unknown keys are errors, and
//! every error names the file and line so `pvegate validate` can point at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A config file that could not be used, with where and why (policy files: `PolicyError`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
    /// Several errors at once (`validate` and reloads report every one), one per line.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// An error at a byte offset of `src` (turned into a 1-based line number).
    pub fn at(path: &Path, src: &str, offset: Option<usize>, message: impl Into<String>) -> Self {
        let line = offset.map_or(1, |o| line_of(src, o));
        ConfigError::Invalid {
            path: path.display().to_string(),
            line,
            message: message.into(),
        }
    }

    /// One error for a list of them (`None` for an empty list).
    pub fn from_list(mut errors: Vec<ConfigError>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Many(errors)),
        }
    }

    /// Every single error in this one, owned.
    pub fn into_list(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Many(v) => v.into_iter().flat_map(ConfigError::into_list).collect(),
            e => vec![e],
        }
    }

    /// Every single error in this one.
    pub fn list(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(v) => v.iter().flat_map(|e| e.list()).collect(),
            e => vec![e],
        }
    }

    /// A TOML parse/schema error, located.
    pub fn toml(path: &Path, src: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map(|s| s.start);
        Self::at(path, src, offset, err.message().trim().to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: RawListen,
    upstream: toml::Spanned<RawUpstream>,
    policy: RawPolicy,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    audit: RawAudit,
    admin: Option<RawAdmin>,
    approvals: Option<crate::approval::settings::RawApprovals>,
    #[serde(default)]
    inventory: Option<crate::inventory::config::RawInventory>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    address: toml::Spanned<String>,
    /// Bearer tokens of approvers (`IDENTITY TOKEN` per line) for `/approvals`.
    token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: toml::Spanned<String>,
    tls_cert: Option<toml::Spanned<String>>,
    tls_key: Option<toml::Spanned<String>>,
    body_timeout_secs: Option<toml::Spanned<u64>>,
    max_connections: Option<toml::Spanned<u64>>,
    drain_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Option<toml::Spanned<String>>,
    /// `[[upstream.node]]`: the nodes of a cluster, in order of preference (instead of `url`).
    #[serde(default)]
    node: Vec<RawNode>,
    fingerprint: Option<toml::Spanned<String>>,
    ca: Option<toml::Spanned<String>>,
    insecure: Option<toml::Spanned<bool>>,
    connect_timeout_secs: Option<u64>,
    pool_idle_timeout_ms: Option<toml::Spanned<u64>>,
    response_timeout_secs: Option<toml::Spanned<u64>>,
}

/// One `[[upstream.node]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<toml::Spanned<String>>,
    url: toml::Spanned<String>,
    fingerprint: Option<toml::Spanned<String>>,
    ca: Option<toml::Spanned<String>>,
    insecure: Option<toml::Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    files: toml::Spanned<Vec<String>>,
    #[serde(default)]
    watch: Option<bool>,
    mode: Option<toml::Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<toml::Spanned<String>>,
    level: Option<toml::Spanned<String>>,
}

/// Where clients connect.
#[derive(Clone, Debug)]
pub struct Listen {
    pub address: SocketAddr,
    /// PEM certificate chain and key; `None` serves plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Bounds on what clients and the upstream may hold (`[listen]` and `[upstream]` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest wait for the upstream's response head once the request has been sent
    /// (`upstream.response_timeout_secs`, default 60): then 504. Response bodies (downloads,
    /// task logs) and websockets after their `101` are not limited by it.
    pub response_timeout: std::time::Duration,
    /// The longest silence between two pieces of a request body (`listen.body_timeout_secs`,
    /// default 30): then the request is answered 408 (or cut) and the connection closed.
    pub body_timeout: std::time::Duration,
    /// Most client connections at once (`listen.max_connections`, default 4096); further
    /// clients wait in the kernel's listen queue until one closes.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight (`listen.drain_secs`, default 30).
    pub drain: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            response_timeout: std::time::Duration::from_secs(60),
            body_timeout: std::time::Duration::from_secs(30),
            max_connections: 4096,
            drain: std::time::Duration::from_secs(30),
        }
    }
}

/// How the upstream's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The SHA-256 of the upstream's end-entity certificate (DER), as Proxmox shows it.
    Fingerprint([u8; 32]),
    /// A PEM CA bundle.
    Ca(PathBuf),
    /// The system's (webpki) roots.
    SystemRoots,
    /// No verification at all (explicit opt-out; warned about at start).
    Insecure,
}

/// The Proxmox API endpoint pvegate forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    pub trust: Trust,
    pub connect_timeout: std::time::Duration,
    /// Idle pooled connections are dropped after this (pveproxy closes them after 5 s).
    pub pool_idle_timeout: std::time::Duration,
}

/// One node of a cluster (`[[upstream.node]]`): its Proxmox node name, if given, and how to
/// reach it (`upstream.connect_timeout_secs` and `pool_idle_timeout_ms` apply to every node).
#[derive(Clone, Debug)]
pub struct UpstreamNode {
    /// The node's name as Proxmox knows it (`pve1`); requests under `/nodes/<name>/` that only
    /// that node can serve go to it. `None`: the node only takes requests any node can serve.
    pub name: Option<String>,
    pub upstream: Upstream,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// A loaded, validated config file.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub listen: Listen,
    /// The upstream (`[upstream] url`), or the first of `upstream_nodes`.
    pub upstream: Upstream,
    /// `[[upstream.node]]`, in order of preference; empty in the single-`url` form.
    pub upstream_nodes: Vec<UpstreamNode>,
    pub policy_files: Vec<PathBuf>,
    /// Reload the policy when a policy file changes (SIGHUP always reloads).
    pub watch_policy: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `[policy] mode`: enforce (default) or shadow (refusals only logged as `would-deny`).
    pub policy_mode: crate::policy::Mode,
    /// `[audit] file`: where audit lines go (appended; reopened on SIGHUP). `None`: stderr.
    pub audit_file: Option<PathBuf>,
    /// Foot-guns worth a warning, each `file:line: text` (`validate` shows them, `serve`
    /// logs them).
    pub warnings: Vec<String>,
    /// Timeouts and connection bounds.
    pub limits: Limits,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`); `None`: off.
    pub admin: Option<SocketAddr>,
    /// `[admin] token_file`: approvers' bearer tokens for the admin listener's `/approvals`
    /// (`None`: approving over the admin listener is off).
    pub admin_token_file: Option<PathBuf>,
    /// `[approvals]`: the state directory, key, lifetimes and webhook of approvals and waivers.
    pub approvals: crate::approval::Settings,
    /// `[inventory]`: pvegate's own read-only view of the cluster (selectors, stored
    /// selections, dependencies); `None`: off, and rules that need it are errors.
    pub inventory: Option<crate::inventory::InventoryConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(path, &src)
    }

    /// Validates config text; `path` locates errors and anchors relative paths.
    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(src).map_err(|e| ConfigError::toml(path, src, &e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let err = |span: std::ops::Range<usize>, msg: String| {
            ConfigError::at(path, src, Some(span.start), msg)
        };

        let listen = (|| -> Result<Listen, ConfigError> {
            let address = raw
                .listen
                .address
                .get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| {
                    err(
                        raw.listen.address.span(),
                        format!(
                            "listen.address {:?} is not an IP:port such as \"0.0.0.0:8006\"",
                            raw.listen.address.get_ref()
                        ),
                    )
                })?;
            let tls = match (&raw.listen.tls_cert, &raw.listen.tls_key) {
            (Some(c), Some(k)) => Some((resolve(c.get_ref()), resolve(k.get_ref()))),
            (None, None) => None,
            (Some(c), None) => {
                return Err(err(c.span(), "listen.tls_cert is set but listen.tls_key is not: set both, or neither for plain HTTP".into()))
            }
            (None, Some(k)) => {
                return Err(err(k.span(), "listen.tls_key is set but listen.tls_cert is not: set both, or neither for plain HTTP".into()))
            }
        };
            Ok(Listen { address, tls })
        })();

        let mut warnings = Vec::new();
        let warn_at = |span: std::ops::Range<usize>, msg: &str| {
            format!("{}:{}: {msg}", path.display(), line_of(src, span.start))
        };
        let up = raw.upstream.get_ref();
        let pool_idle_timeout = match &up.pool_idle_timeout_ms {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() >= 4000 => {
                Err(err(v.span(), "upstream.pool_idle_timeout_ms must be between 1 and 3999: pveproxy closes idle connections after 5 s, and a pooled connection must be dropped well before that".into()))
            }
            Some(v) => Ok(*v.get_ref()),
            None => Ok(3000),
        };
        let connect_timeout = std::time::Duration::from_secs(up.connect_timeout_secs.unwrap_or(10));
        // One endpoint: `url` and its trust, with `key` (`upstream` or `upstream.node[N]`)
        // naming the keys in messages; `inherited` is the trust a node without its own gets.
        let endpoint = |warnings: &mut Vec<String>,
                        key: &str,
                        url: &toml::Spanned<String>,
                        fingerprint: Option<&toml::Spanned<String>>,
                        ca: Option<&toml::Spanned<String>>,
                        insecure: Option<&toml::Spanned<bool>>,
                        inherited: Option<&Trust>|
         -> Result<Upstream, ConfigError> {
            let uri: http::Uri = url.get_ref().parse().map_err(|_| {
                err(
                    url.span(),
                    format!(
                        "{key}.url {:?} is not a URL such as \"https://192.168.1.12:8006\"",
                        url.get_ref()
                    ),
                )
            })?;
            let scheme = uri.scheme().cloned().ok_or_else(|| {
                err(
                    url.span(),
                    format!("{key}.url needs a scheme: https:// (or http:// for tests)"),
                )
            })?;
            if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
                return Err(err(url.span(), format!("{key}.url scheme {scheme} is not supported: use https:// (or http:// for tests)")));
            }
            let authority = uri
                .authority()
                .cloned()
                .ok_or_else(|| err(url.span(), format!("{key}.url needs a host")))?;
            if authority.as_str().contains('@') {
                return Err(err(
                    url.span(),
                    format!("{key}.url must not carry credentials: pvegate never adds any"),
                ));
            }
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err(err(
                    url.span(),
                    format!("{key}.url must be the server root (Proxmox serves the API at /api2)"),
                ));
            }
            let insecure_set = insecure.is_some_and(|i| *i.get_ref());
            let trust = match (fingerprint, ca, insecure_set) {
                (Some(f), None, false) => Trust::Fingerprint(
                    parse_fingerprint(f.get_ref()).map_err(|m| err(f.span(), m))?,
                ),
                (None, Some(c), false) => Trust::Ca(resolve(c.get_ref())),
                (None, None, false) => inherited.cloned().unwrap_or(Trust::SystemRoots),
                (None, None, true) => Trust::Insecure,
                (Some(f), _, _) | (None, Some(f), _) => {
                    return Err(err(
                        f.span(),
                        format!("choose one of {key}.fingerprint, {key}.ca or {key}.insecure"),
                    ))
                }
            };
            if trust == Trust::Insecure && insecure_set {
                warnings.push(warn_at(insecure.map_or(0..0, |i| i.span()), &format!("{key}.insecure = true: the Proxmox certificate is NOT verified; anyone on the path can read credentials. Pin it with {key}.fingerprint instead")));
            }
            if trust == Trust::SystemRoots && scheme == http::uri::Scheme::HTTPS {
                warnings.push(warn_at(url.span(), &format!("https upstream without {key}.fingerprint or {key}.ca: its certificate must chain to a system root, which Proxmox's self-signed one does not (set {key}.fingerprint to the node's certificate fingerprint)")));
            }
            Ok(Upstream {
                scheme,
                authority,
                trust,
                connect_timeout,
                pool_idle_timeout: std::time::Duration::from_millis(
                    *pool_idle_timeout.as_ref().unwrap_or(&3000),
                ),
            })
        };
        let upstream_nodes: Result<Vec<UpstreamNode>, ConfigError> = match (&up.url, up.node.is_empty()) {
            (Some(url), true) => endpoint(
                &mut warnings,
                "upstream",
                url,
                up.fingerprint.as_ref(),
                up.ca.as_ref(),
                up.insecure.as_ref(),
                None,
            )
            .map(|upstream| vec![UpstreamNode { name: None, upstream }]),
            (Some(url), false) => Err(err(url.span(), "choose one of upstream.url (one Proxmox node) or [[upstream.node]] tables (a cluster)".into())),
            (None, true) => Err(err(raw.upstream.span(), "[upstream] needs url = \"https://<node>:8006\", or one [[upstream.node]] table per cluster node".into())),
            (None, false) => (|| {
                if let Some(f) = &up.fingerprint {
                    return Err(err(f.span(), "upstream.fingerprint with [[upstream.node]]: every node has a certificate of its own; pin each with fingerprint = … in its [[upstream.node]], or trust the cluster CA with upstream.ca".into()));
                }
                // The cluster-wide trust: the cluster CA (`ca`) or, explicitly, none.
                let shared = match (&up.ca, up.insecure.as_ref().is_some_and(|i| *i.get_ref())) {
                    (Some(c), false) => Some(Trust::Ca(resolve(c.get_ref()))),
                    (None, true) => {
                        warnings.push(warn_at(up.insecure.as_ref().map_or(0..0, |i| i.span()), "upstream.insecure = true: no node's certificate is verified (except those pinned in their [[upstream.node]]); anyone on the path can read credentials"));
                        Some(Trust::Insecure)
                    }
                    (None, false) => None,
                    (Some(c), true) => return Err(err(c.span(), "choose one of upstream.ca or upstream.insecure".into())),
                };
                let mut nodes: Vec<UpstreamNode> = Vec::new();
                for (i, n) in up.node.iter().enumerate() {
                    let key = format!("upstream.node[{}]", i + 1);
                    let upstream = endpoint(
                        &mut warnings,
                        &key,
                        &n.url,
                        n.fingerprint.as_ref(),
                        n.ca.as_ref(),
                        n.insecure.as_ref(),
                        shared.as_ref(),
                    )?;
                    let name = match &n.name {
                        None => None,
                        Some(name) => {
                            let v = name.get_ref();
                            if !is_node_name(v) {
                                return Err(err(name.span(), format!("{key}.name {v:?} is not a Proxmox node name (letters, digits and '-', as in /nodes/<name>/)")));
                            }
                            if nodes.iter().any(|o| o.name.as_deref() == Some(v.as_str())) {
                                return Err(err(name.span(), format!("{key}.name {v:?} is given twice: each node once")));
                            }
                            Some(v.clone())
                        }
                    };
                    if nodes.iter().any(|o| o.upstream.authority == upstream.authority) {
                        return Err(err(n.url.span(), format!("{key}.url {:?} is given twice: each node once", n.url.get_ref())));
                    }
                    nodes.push(UpstreamNode { name, upstream });
                }
                Ok(nodes)
            })(),
        };

        let files = raw.policy.files.get_ref();
        let files_ok = if files.is_empty() {
            Err(err(
                raw.policy.files.span(),
                "policy.files is empty: name at least one policy file".into(),
            ))
        } else {
            Ok(())
        };
        let log_format = match raw.log.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => {
                let span = raw.log.format.as_ref().map(|f| f.span()).unwrap_or(0..0);
                Err(err(
                    span,
                    format!("log.format {other:?} is not \"json\" or \"text\""),
                ))
            }
        };
        let log_level = match &raw.log.level {
            Some(l) => check_log_level(l.get_ref())
                .map(|()| l.get_ref().clone())
                .map_err(|m| err(l.span(), m)),
            None => Ok("info".into()),
        };
        let policy_mode = match raw.policy.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "enforce")) => Ok(crate::policy::Mode::Enforce),
            Some((m, "shadow")) => {
                warnings.push(warn_at(m.span(), "policy.mode = \"shadow\": nothing is refused; what the policy would refuse is forwarded and logged as would-deny"));
                Ok(crate::policy::Mode::Shadow)
            }
            Some((m, other)) => Err(err(
                m.span(),
                format!("policy.mode {other:?} is not \"enforce\" or \"shadow\""),
            )),
        };
        let defaults = Limits::default();
        let positive = |v: &Option<toml::Spanned<u64>>, key: &str, default: u64| match v {
            Some(v) if *v.get_ref() == 0 => Err(err(
                v.span(),
                format!("{key} must be at least 1 (leave it out for the default, {default})"),
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let limits = (|| -> Result<Limits, ConfigError> {
            Ok(Limits {
                response_timeout: std::time::Duration::from_secs(positive(
                    &up.response_timeout_secs,
                    "upstream.response_timeout_secs",
                    defaults.response_timeout.as_secs(),
                )?),
                body_timeout: std::time::Duration::from_secs(positive(
                    &raw.listen.body_timeout_secs,
                    "listen.body_timeout_secs",
                    defaults.body_timeout.as_secs(),
                )?),
                max_connections: usize::try_from(positive(
                    &raw.listen.max_connections,
                    "listen.max_connections",
                    defaults.max_connections as u64,
                )?)
                .unwrap_or(usize::MAX),
                drain: raw
                    .listen
                    .drain_secs
                    .map_or(defaults.drain, std::time::Duration::from_secs),
            })
        })();
        let listen_address = listen.as_ref().ok().map(|l| l.address);
        let admin = match &raw.admin {
            None => Ok(None),
            Some(a) => (|| -> Result<Option<SocketAddr>, ConfigError> {
                let addr = a.address.get_ref().parse::<SocketAddr>().map_err(|_| {
                    err(
                        a.address.span(),
                        format!(
                            "admin.address {:?} is not an IP:port such as \"127.0.0.1:9106\"",
                            a.address.get_ref()
                        ),
                    )
                })?;
                if let Some(address) = listen_address {
                    let same_port = addr.port() == address.port() && addr.port() != 0;
                    let overlaps = addr.ip() == address.ip()
                        || addr.ip().is_unspecified()
                        || address.ip().is_unspecified();
                    if same_port && overlaps {
                        return Err(err(
                            a.address.span(),
                            format!("admin.address {addr} is the proxy's own listen address ({address}): give the admin listener a port of its own, such as 127.0.0.1:9106"),
                        ));
                    }
                }
                Ok(Some(addr))
            })(),
        };
        // Every error at once (validate shows them all), in file order.
        let mut errors = Vec::new();
        let listen = listen.map_err(|e| errors.push(e)).ok();
        if let Err(e) = pool_idle_timeout {
            errors.push(e);
        }
        let upstream_nodes = upstream_nodes
            .map_err(|e| errors.extend(e.into_list()))
            .ok();
        let upstream = upstream_nodes.as_ref().map(|n| n[0].upstream.clone());
        let _ = files_ok.map_err(|e| errors.push(e));
        let log_format = log_format.map_err(|e| errors.push(e)).ok();
        let log_level = log_level.map_err(|e| errors.push(e)).ok();
        let policy_mode = policy_mode.map_err(|e| errors.push(e)).ok();
        let limits = limits.map_err(|e| errors.push(e)).ok();
        let admin = admin.map_err(|e| errors.push(e)).ok();
        let approvals = crate::approval::Settings::from_raw(raw.approvals.as_ref(), &resolve, &err)
            .map_err(|e| errors.push(e))
            .ok();
        let inventory = match &raw.inventory {
            None => None,
            Some(r) => crate::inventory::InventoryConfig::from_raw(r, resolve)
                .map_err(|(span, m)| errors.push(err(span, m)))
                .ok(),
        };
        errors.sort_by_key(|e| match e {
            ConfigError::Invalid { line, .. } => *line,
            _ => 0,
        });
        let (
            Some(listen),
            Some(upstream),
            Some(upstream_nodes),
            Some(log_format),
            Some(log_level),
            Some(policy_mode),
            Some(limits),
            Some(admin),
            Some(approvals),
        ) = (
            listen,
            upstream,
            upstream_nodes,
            log_format,
            log_level,
            policy_mode,
            limits,
            admin,
            approvals,
        )
        else {
            return Err(ConfigError::from_list(errors)
                .unwrap_or_else(|| ConfigError::at(path, src, None, "invalid config")));
        };
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }
        Ok(Config {
            path: path.to_path_buf(),
            listen,
            upstream,
            // The single-`url` form has no node list: its one upstream is `upstream`.
            upstream_nodes: if raw.upstream.get_ref().node.is_empty() {
                Vec::new()
            } else {
                upstream_nodes
            },
            policy_files: files.iter().map(|f| resolve(f)).collect(),
            watch_policy: raw.policy.watch.unwrap_or(true),
            log_format,
            log_level,
            policy_mode,
            audit_file: raw.audit.file.as_deref().map(resolve),
            warnings,
            limits,
            admin,
            admin_token_file: raw
                .admin
                .as_ref()
                .and_then(|a| a.token_file.as_deref())
                .map(resolve),
            approvals,
            inventory,
        })
    }
}

/// The 1-based line of byte `offset` in `src` (for file:line messages of config and policy).
pub fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Checks a log filter: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a
/// comma-separated list of `LEVEL` and `target=LEVEL` directives.
fn check_log_level(s: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bad = |d: &str| {
        format!("log.level {s:?}: {d:?} is not a level (use one of error, warn, info, debug, trace, off, or target=level such as \"warn,pvegate=debug\"); the audit is written whatever the level")
    };
    if s.trim().is_empty() {
        return Err(bad(s));
    }
    for d in s.split(',') {
        let d = d.trim();
        let level = d.rsplit_once('=').map_or(d, |(target, l)| {
            if target.is_empty()
                || !target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
            {
                ""
            } else {
                l
            }
        });
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad(d));
        }
    }
    Ok(())
}

/// A Proxmox node name as it appears in `/nodes/<name>/`: letters, digits and inner `-`.
fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parses a SHA-256 fingerprint: 32 hex pairs, with or without `:` separators, any case.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bad = || {
        format!(
            "upstream.fingerprint {s:?} is not a SHA-256 fingerprint (64 hex digits, e.g. as shown under Datacenter > Node > Certificates)"
        )
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Formats a fingerprint the way Proxmox shows it (`AB:CD:…`).
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/pvegate/pvegate.toml"), src)
    }

    const MIN: &str = r#"
[listen]
address = "127.0.0.1:8006"
[upstream]
url = "https://10.0.0.2:8006"
fingerprint = "ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd"
[policy]
files = ["policies/homelab.toml"]
"#;

    #[test]
    fn minimal_config_resolves_paths() {
        let c = parse(MIN).unwrap();
        assert_eq!(
            c.policy_files,
            vec![PathBuf::from("/etc/pvegate/policies/homelab.toml")]
        );
        assert_eq!(c.upstream.authority.as_str(), "10.0.0.2:8006");
        assert!(matches!(c.upstream.trust, Trust::Fingerprint(f) if f[0] == 0xab));
        assert!(c.listen.tls.is_none());
        assert_eq!(c.upstream.pool_idle_timeout.as_millis(), 3000);
    }

    #[test]
    fn errors_carry_file_and_line() {
        let src = MIN.replace("[policy]", "[policy]\nbogus = 1");
        let e = parse(&src).unwrap_err().to_string();
        assert!(e.starts_with("/etc/pvegate/pvegate.toml:8:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn rejects_two_trust_modes_and_bad_fingerprints() {
        let src = MIN.replace("[policy]", "insecure = true\n[policy]");
        assert!(parse(&src).unwrap_err().to_string().contains("choose one"));
        let src = MIN.replace("ab:cd:ab:cd:", "zz:");
        assert!(parse(&src)
            .unwrap_err()
            .to_string()
            .contains("not a SHA-256"));
    }

    #[test]
    fn rejects_half_tls_and_bad_address() {
        let src = MIN.replace(
            "address = \"127.0.0.1:8006\"",
            "address = \"127.0.0.1:8006\"\ntls_cert = \"c.pem\"",
        );
        assert!(parse(&src).unwrap_err().to_string().contains("tls_key"));
        let src = MIN.replace("127.0.0.1:8006", "localhost");
        assert!(parse(&src).unwrap_err().to_string().contains(":3:"));
    }

    #[test]
    fn unknown_log_levels_and_modes_are_errors_with_lines() {
        let src = format!("{MIN}[log]\nlevel = \"verbose\"\n");
        let e = parse(&src).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/pvegate/pvegate.toml:10:") && e.contains("verbose"),
            "{e}"
        );
        for ok in ["warn", "INFO", "warn,pvegate=debug", "off"] {
            let src = format!("{MIN}[log]\nlevel = \"{ok}\"\n");
            assert!(parse(&src).is_ok(), "{ok}");
        }
        let src = MIN.replace("[policy]", "[policy]\nmode = \"audit\"");
        assert!(parse(&src).unwrap_err().to_string().contains(":8:"));
        let src = MIN.replace("[policy]", "[policy]\nmode = \"shadow\"");
        let c = parse(&src).unwrap();
        assert_eq!(c.policy_mode, crate::policy::Mode::Shadow);
        assert!(c.warnings[0].contains("shadow"), "{:?}", c.warnings);
    }

    #[test]
    fn every_config_error_is_reported() {
        let src = MIN
            .replace("127.0.0.1:8006", "localhost")
            .replace("[policy]", "pool_idle_timeout_ms = 9000\n[policy]")
            + "[log]\nformat = \"yaml\"\nlevel = \"verbose\"\n";
        let e = parse(&src).unwrap_err();
        let lines: Vec<String> = e.list().iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        for (i, at) in [":3:", ":7:", ":11:", ":12:"].iter().enumerate() {
            assert!(lines[i].contains(at), "{lines:?}");
        }
    }

    #[test]
    fn audit_file_and_trust_warnings() {
        let src = format!("{MIN}[audit]\nfile = \"audit.log\"\n");
        let c = parse(&src).unwrap();
        assert_eq!(c.audit_file, Some(PathBuf::from("/etc/pvegate/audit.log")));
        let src = MIN.replace("fingerprint", "insecure = true\n#");
        let c = parse(&src).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains(":6:") && w.contains("insecure")),
            "{:?}",
            c.warnings
        );
        let src = MIN.replace("fingerprint", "#");
        let c = parse(&src).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains(":5:") && w.contains("system root")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn limits_default_and_admin_is_off() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.limits.response_timeout.as_secs(), 60);
        assert_eq!(c.limits.max_connections, 4096);
        assert!(c.admin.is_none());
    }

    #[test]
    fn limits_and_admin_are_read_and_checked() {
        let src = MIN.replace(
            "[policy]",
            "response_timeout_secs = 5\n[admin]\naddress = \"127.0.0.1:9106\"\n[policy]",
        ).replace(
            "address = \"127.0.0.1:8006\"",
            "address = \"127.0.0.1:8006\"\nbody_timeout_secs = 3\nmax_connections = 10\ndrain_secs = 0",
        );
        let c = parse(&src).unwrap();
        assert_eq!(c.limits.response_timeout.as_secs(), 5);
        assert_eq!(c.limits.body_timeout.as_secs(), 3);
        assert_eq!(c.limits.max_connections, 10);
        assert!(c.limits.drain.is_zero());
        assert_eq!(c.admin, Some("127.0.0.1:9106".parse().unwrap()));

        let same = src.replace("127.0.0.1:9106", "0.0.0.0:8006");
        let e = parse(&same).unwrap_err().to_string();
        assert!(e.contains("proxy's own listen address"), "{e}");
        let zero = src.replace("max_connections = 10", "max_connections = 0");
        let e = parse(&zero).unwrap_err().to_string();
        assert!(
            e.contains("listen.max_connections must be at least 1"),
            "{e}"
        );
    }

    const CLUSTER: &str = r#"
[listen]
address = "127.0.0.1:8006"
[upstream]
ca = "pve-root-ca.pem"
connect_timeout_secs = 3
[[upstream.node]]
name = "pve1"
url = "https://10.0.0.1:8006"
[[upstream.node]]
name = "pve2"
url = "https://10.0.0.2:8006"
fingerprint = "ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd:ab:cd"
[[upstream.node]]
url = "https://10.0.0.3:8006"
[policy]
files = ["policies/homelab.toml"]
"#;

    #[test]
    fn cluster_nodes_in_order_with_their_own_or_the_cluster_trust() {
        let c = parse(CLUSTER).unwrap();
        assert_eq!(c.upstream_nodes.len(), 3);
        let names: Vec<_> = c.upstream_nodes.iter().map(|n| n.name.as_deref()).collect();
        assert_eq!(names, [Some("pve1"), Some("pve2"), None]);
        let ca = Trust::Ca(PathBuf::from("/etc/pvegate/pve-root-ca.pem"));
        assert_eq!(c.upstream_nodes[0].upstream.trust, ca);
        assert!(
            matches!(c.upstream_nodes[1].upstream.trust, Trust::Fingerprint(f) if f[0] == 0xab)
        );
        assert_eq!(c.upstream_nodes[2].upstream.trust, ca);
        assert_eq!(c.upstream_nodes[2].upstream.connect_timeout.as_secs(), 3);
        assert_eq!(
            c.upstream.authority.as_str(),
            "10.0.0.1:8006",
            "the first node"
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(
            parse(MIN).unwrap().upstream_nodes.is_empty(),
            "the url form"
        );
    }

    #[test]
    fn cluster_mistakes_are_errors_with_lines() {
        let both = CLUSTER.replace(
            "[upstream]\n",
            "[upstream]\nurl = \"https://10.0.0.9:8006\"\n",
        );
        let e = parse(&both).unwrap_err().to_string();
        assert!(
            e.contains(":5:") && e.contains("choose one of upstream.url"),
            "{e}"
        );
        let neither = "[listen]\naddress = \"127.0.0.1:8006\"\n[upstream]\nconnect_timeout_secs = 3\n[policy]\nfiles = [\"p.toml\"]\n";
        let e = parse(neither).unwrap_err().to_string();
        assert!(e.contains("[[upstream.node]]"), "{e}");
        let shared_pin = CLUSTER.replace("ca = \"pve-root-ca.pem\"", "fingerprint = \"ab\"");
        let e = parse(&shared_pin).unwrap_err().to_string();
        assert!(
            e.contains(":5:") && e.contains("certificate of its own"),
            "{e}"
        );
        let twice = CLUSTER.replace("\"pve2\"", "\"pve1\"");
        let e = parse(&twice).unwrap_err().to_string();
        assert!(
            e.contains(":11:") && e.contains("upstream.node[2].name \"pve1\" is given twice"),
            "{e}"
        );
        let same_url = CLUSTER.replace("10.0.0.3", "10.0.0.1");
        let e = parse(&same_url).unwrap_err().to_string();
        assert!(
            e.contains("upstream.node[3].url") && e.contains("twice"),
            "{e}"
        );
        let bad_name = CLUSTER.replace("\"pve1\"", "\"pve 1/..\"");
        let e = parse(&bad_name).unwrap_err().to_string();
        assert!(
            e.contains(":8:") && e.contains("not a Proxmox node name"),
            "{e}"
        );
        let two_trusts =
            CLUSTER.replace("fingerprint = \"ab", "insecure = true\nfingerprint = \"ab");
        let e = parse(&two_trusts).unwrap_err().to_string();
        assert!(
            e.contains("choose one of upstream.node[2].fingerprint"),
            "{e}"
        );
        let unknown = CLUSTER.replace("name = \"pve1\"", "name = \"pve1\"\nweight = 2");
        assert!(parse(&unknown).unwrap_err().to_string().contains("weight"));
        let no_trust = CLUSTER.replace("ca = \"pve-root-ca.pem\"", "");
        let c = parse(&no_trust).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("upstream.node[1].fingerprint")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn fingerprint_round_trip() {
        let fp = [0xABu8; 32];
        assert_eq!(parse_fingerprint(&format_fingerprint(&fp)).unwrap(), fp);
    }
}
