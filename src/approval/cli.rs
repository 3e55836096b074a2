//! `pvegate approvals`, `pvegate approve ID`, `pvegate reject ID` and `pvegate waive`: on the
//! state directory directly (the approver is `--as`, else the local user as `user@pam`), or,
//! with `--token-file`, through the admin listener (the token says who approves).
//!
//! Exit codes: 0 done, 1 the state or the admin listener could not be used, 2 unusable input
//! (config, arguments), 3 refused (self-approval, expired, unknown id, …).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::store::{RequestRecord, Status, Store};
use super::{events, StateError};
use crate::config::Config;

/// Exit code: done.
pub const EXIT_OK: i32 = 0;
/// Exit code: the state or the admin listener could not be used.
pub const EXIT_STATE: i32 = 1;
/// Exit code: unusable input.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: refused.
pub const EXIT_REFUSED: i32 = 3;

/// Where the approval commands act: locally, or through the admin listener.
#[derive(Clone, Debug, Default)]
pub struct Remote {
    /// The admin listener's URL (default: `http://` and `[admin] address`).
    pub url: Option<String>,
    /// A file holding the bearer token (one line); set: go through the admin listener.
    pub token_file: Option<PathBuf>,
}

/// `pvegate waive` arguments.
#[derive(Clone, Debug, Default)]
pub struct WaiveArgs {
    pub guest: Option<u32>,
    pub identity: Option<String>,
    pub actions: Option<String>,
    pub lasting: Option<String>,
    pub reason: Option<String>,
    pub revoke: Option<String>,
    pub by: Option<String>,
}

fn load(config: &Path) -> Result<Config, i32> {
    Config::load(config).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })
}

/// Starts the audit output of this command (the config's `[audit] file`, else stderr).
fn start_audit(c: &Config) {
    if c.log_format == crate::config::LogFormat::Json {
        crate::audit::use_json_lines();
    }
    if let Err(e) = crate::logsink::start(
        c.audit_file.clone(),
        c.log_format == crate::config::LogFormat::Json,
    ) {
        eprintln!("warning: cannot open the audit file: {e}");
    }
}

fn end_audit() {
    crate::logsink::flush(Duration::from_secs(2));
}

/// The local approver: `--as`, else the login user as `user@pam`.
pub fn local_identity(by: Option<&str>) -> Result<String, String> {
    if let Some(b) = by {
        return Ok(b.to_string());
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .map_err(|_| "cannot tell who you are: pass --as user@realm".to_string())?;
    Ok(format!("{user}@pam"))
}

fn store_of(c: &Config) -> Result<Store, i32> {
    Store::open(&c.approvals, false).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_STATE
    })
}

fn refused(e: &StateError) -> i32 {
    eprintln!("error: {e}");
    match e {
        StateError::Refused(_) => EXIT_REFUSED,
        _ => EXIT_STATE,
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

fn row(r: &RequestRecord, s: &Status) -> String {
    let given = match s {
        Status::Pending { approved_by } => approved_by.len(),
        Status::Approved { by, .. } => by.len(),
        _ => 0,
    };
    format!(
        "{:<15}  {:<20}  {:<6}  {:<50}  {:<18}  {:<8}  {:>4}  {}/{} {}",
        r.id,
        r.identity,
        r.method,
        r.path,
        r.action,
        if r.guests.is_empty() { "-" } else { &r.guests },
        age(super::record::now().saturating_sub(r.created)),
        given,
        r.approvers,
        s.word(),
    )
}

/// `pvegate approvals`: the requests waiting for approval (and approved, unused ones).
pub fn list(config: &Path, remote: &Remote, json: bool) -> i32 {
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let items: Vec<serde_json::Value> = if remote.token_file.is_some() {
        match call(&c, remote, http::Method::GET, "/approvals") {
            Ok(v) => v["data"].as_array().cloned().unwrap_or_default(),
            Err(code) => return code,
        }
    } else if !c.approvals.dir.is_dir() {
        // Nothing was ever asked for (pvegate serve creates the folder when it needs it).
        Vec::new()
    } else {
        let store = match store_of(&c) {
            Ok(s) => s,
            Err(code) => return code,
        };
        match store.pending() {
            Ok(list) => list
                .iter()
                .map(|(r, s)| super::admin::listed(r, s))
                .collect(),
            Err(e) => return refused(&e),
        }
    };
    if json {
        println!("{}", serde_json::Value::Array(items));
        return EXIT_OK;
    }
    if items.is_empty() {
        println!("no requests wait for approval");
        return EXIT_OK;
    }
    println!(
        "{:<15}  {:<20}  {:<6}  {:<50}  {:<18}  {:<8}  {:>4}  APPROVED",
        "ID", "IDENTITY", "METHOD", "PATH", "ACTION", "GUESTS", "AGE"
    );
    for v in items {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let r = RequestRecord {
            kind: "request".into(),
            id: s("id"),
            identity: s("identity"),
            method: s("method"),
            path: s("path"),
            action: s("action"),
            guests: s("guests"),
            digest: String::new(),
            rule: s("rule"),
            approvers: v["approvers"].as_u64().unwrap_or(1) as u8,
            created: v["created"].as_u64().unwrap_or(0),
            expires: v["expires"].as_u64().unwrap_or(0),
            grant_secs: 0,
        };
        let by: Vec<String> = v["approved_by"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let status = if s("status") == "approved" {
            Status::Approved { by, until: 0 }
        } else {
            Status::Pending { approved_by: by }
        };
        println!("{}", row(&r, &status));
    }
    EXIT_OK
}

/// `pvegate approve ID` / `pvegate reject ID`.
pub fn decide(
    config: &Path,
    id: &str,
    approve: bool,
    by: Option<&str>,
    reason: Option<&str>,
    remote: &Remote,
) -> i32 {
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let verb = if approve { "approve" } else { "reject" };
    if remote.token_file.is_some() {
        if by.is_some() {
            eprintln!(
                "error: --as does not apply through the admin listener: the token says who you are"
            );
            return EXIT_BAD_INPUT;
        }
        let mut path = format!("/approvals/{id}/{verb}");
        if let Some(r) = reason {
            path.push_str("?reason=");
            path.push_str(
                &percent_encoding::utf8_percent_encode(r, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
        return match call(&c, remote, http::Method::POST, &path) {
            Ok(v) => {
                let d = &v["data"];
                println!(
                    "{} {}: {} ({} of {} approvals)",
                    if approve { "approved" } else { "rejected" },
                    d["id"].as_str().unwrap_or(id),
                    d["status"].as_str().unwrap_or("?"),
                    d["approved_by"].as_array().map_or(0, Vec::len),
                    d["approvers"].as_u64().unwrap_or(1),
                );
                EXIT_OK
            }
            Err(code) => code,
        };
    }
    let who = match local_identity(by) {
        Ok(w) => w,
        Err(m) => {
            eprintln!("error: {m}");
            return EXIT_BAD_INPUT;
        }
    };
    let store = match store_of(&c) {
        Ok(s) => s,
        Err(code) => return code,
    };
    start_audit(&c);
    let result = store.decide(id, &who, approve, reason);
    let code = match result {
        Ok((r, status)) => {
            events::approval(
                if approve { "approved" } else { "rejected" },
                &r,
                Some(&who),
                Some(&status),
            );
            match &status {
                Status::Approved { until, .. } => println!(
                    "approved {}: {} {} by {} may pass once within {}s",
                    r.id,
                    r.method,
                    r.path,
                    r.identity,
                    until.saturating_sub(super::record::now())
                ),
                Status::Pending { approved_by } => println!(
                    "approved {} ({} of {} approvers so far): it waits for another person",
                    r.id,
                    approved_by.len(),
                    r.approvers
                ),
                s => println!(
                    "{} {}: {}",
                    if approve { "approved" } else { "rejected" },
                    r.id,
                    s.word()
                ),
            }
            EXIT_OK
        }
        Err(e) => {
            if matches!(e, StateError::Refused(_)) {
                events::count_approval("refused");
            }
            refused(&e)
        }
    };
    end_audit();
    code
}

/// `pvegate waive`: creates (or with `--revoke`, revokes) a waiver.
pub fn waive(config: &Path, a: &WaiveArgs) -> i32 {
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let who = match local_identity(a.by.as_deref()) {
        Ok(w) => w,
        Err(m) => {
            eprintln!("error: {m}");
            return EXIT_BAD_INPUT;
        }
    };
    let store = match Store::open(&c.approvals, true) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_STATE;
        }
    };
    start_audit(&c);
    let code = if let Some(id) = &a.revoke {
        match store.revoke(id, &who) {
            Ok(w) => {
                events::waiver("revoked", &w.record, Some(&who));
                println!("revoked {id} ({})", w.scope());
                EXIT_OK
            }
            Err(e) => refused(&e),
        }
    } else {
        let (Some(actions), Some(lasting), Some(reason)) = (&a.actions, &a.lasting, &a.reason)
        else {
            eprintln!("error: a waiver needs --actions, --for and --reason (and --guest and/or --identity); or --revoke ID");
            end_audit();
            return EXIT_BAD_INPUT;
        };
        let lasting = match humantime::parse_duration(lasting) {
            Ok(d) => d,
            Err(_) => {
                eprintln!("error: --for {lasting:?} is not a duration such as 30m, 2h or 1d");
                end_audit();
                return EXIT_BAD_INPUT;
            }
        };
        match store.waive(
            a.guest,
            a.identity.as_deref(),
            actions,
            lasting,
            reason,
            &who,
        ) {
            Ok(w) => {
                events::waiver("created", &w.record, Some(&who));
                println!(
                    "{}: {} until {} ({reason}); revoke with: pvegate waive --config {} --revoke {}",
                    w.record.id,
                    w.scope(),
                    until(w.record.expires),
                    config.display(),
                    w.record.id
                );
                EXIT_OK
            }
            Err(e) => refused(&e),
        }
    };
    end_audit();
    code
}

/// A time as RFC 3339 (UTC, seconds).
pub fn until(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Active waivers as `pvegate policy show` lists them (empty when there are none or the
/// state directory does not exist).
pub fn show_waivers(c: &Config) -> String {
    let Ok(store) = Store::open(&c.approvals, false) else {
        return String::new();
    };
    let Ok(list) = store.active_waivers() else {
        return String::new();
    };
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("waivers:\n");
    for w in list {
        out.push_str(&format!(
            "  {}  {}  until {}  by {}: {}\n",
            w.record.id,
            w.scope(),
            until(w.record.expires),
            w.record.by,
            w.record.reason
        ));
    }
    out
}

/// Calls the admin listener with the token from `--token-file`.
fn call(
    c: &Config,
    remote: &Remote,
    method: http::Method,
    path: &str,
) -> Result<serde_json::Value, i32> {
    let Some(file) = &remote.token_file else {
        return Err(EXIT_BAD_INPUT);
    };
    let token = match std::fs::read_to_string(file) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            eprintln!("error: cannot read --token-file {}: {e}", file.display());
            return Err(EXIT_BAD_INPUT);
        }
    };
    let base = match (&remote.url, c.admin) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(a)) => {
            let host = if a.ip().is_unspecified() {
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
            } else {
                a
            };
            format!("http://{host}")
        }
        (None, None) => {
            eprintln!("error: no admin listener: pass --url or set [admin] address");
            return Err(EXIT_BAD_INPUT);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(EXIT_STATE);
        }
    };
    let url = format!("{base}{path}");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| {
                eprintln!("error: {e}");
                EXIT_STATE
            })?;
        let res = client
            .request(method, &url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| {
                eprintln!("error: admin listener {base}: {e}");
                EXIT_STATE
            })?;
        let status = res.status();
        let v: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        eprintln!(
            "error: {}",
            v["message"]
                .as_str()
                .unwrap_or(status.canonical_reason().unwrap_or("failed"))
        );
        Err(if status == http::StatusCode::FORBIDDEN {
            EXIT_REFUSED
        } else if status == http::StatusCode::UNAUTHORIZED {
            EXIT_BAD_INPUT
        } else {
            EXIT_STATE
        })
    })
}
