//! What each subcommand does: `serve`, `check`, `validate`, `demo`. `main.rs` only parses
//! arguments and calls these.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};

use crate::config::{Config, LogFormat};
use crate::policy::{Judgement, Mode, Policy, PolicyStore};
use crate::pve::framing::{read_head, BodyPlan};
use crate::pve::reader::inspect_request;
use crate::pve::{GuestSet, Route};
use crate::reject::Rejection;
use crate::server::{self, Listener};
use crate::{admin, audit, logsink, stack, upstream};

/// Exit code: allowed.
pub const EXIT_ALLOW: i32 = 0;
/// Exit code: bad input (unreadable config, policy or request).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: refused.
pub const EXIT_DENY: i32 = 3;

/// Sets up logging to stderr: JSON lines (or text), filtered by `level` unless `RUST_LOG` is set.
/// Lines go through [`crate::logsink`]: batched on runtime worker threads (see [`runtime`]) and
/// written by its writer thread. Audit lines are not filtered: they go to `audit_file`
/// (appended) or stderr whatever the level ([`audit`]).
pub fn init_logging(
    format: LogFormat,
    level: &str,
    audit_file: Option<&Path>,
) -> std::io::Result<()> {
    if format == LogFormat::Json {
        audit::use_json_lines();
    }
    logsink::start(audit_file.map(Path::to_path_buf), format == LogFormat::Json)?;
    install_subscriber(format, level, logsink::Sink);
    Ok(())
}

/// The tokio runtime for `serve` and `demo`: its worker threads batch their log lines and
/// write them out whenever they run out of work ([`crate::logsink`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(logsink::buffer_this_thread)
        .on_thread_park(logsink::flush_this_thread)
        .on_thread_stop(logsink::flush_this_thread)
        .build()
}

fn install_subscriber<W>(format: LogFormat, level: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour codes only when a person is watching (never into files, pipes or journald).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second install (tests, the demo inside a process that already logs) keeps the first.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `pvegate serve`: runs the proxy until SIGINT/SIGTERM.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    init_logging(
        config.log_format,
        &config.log_level,
        config.audit_file.as_deref(),
    )?;
    let store = PolicyStore::load(config.policy_files.clone())?
        .with_mode(config.policy_mode)
        .with_inventory(config.inventory.is_some());
    store
        .snapshot()
        .require_inventory(config.inventory.is_some())?;
    for w in config.warnings.iter().chain(&store.snapshot().warnings) {
        tracing::warn!("{w}");
    }
    let upstream = Arc::new(upstream::Cluster::from_config(
        &config,
        config.limits.response_timeout,
    )?);
    let tls = match &config.listen.tls {
        Some((cert, key)) => Some(server::server_tls(cert, key)?),
        None => {
            if !config.listen.address.ip().is_loopback() {
                tracing::warn!(address = %config.listen.address, "serving plain HTTP on a non-loopback address: credentials cross the network in clear; set listen.tls_cert and listen.tls_key");
            }
            None
        }
    };
    let listener = Listener::bind(config.listen.address, tls)
        .await?
        .with_limits(config.limits);
    crate::metrics::init();
    let health = admin::Health::new(store.clone());
    let approvals = crate::approval::Approvals::new(config.approvals.clone(), config.path.clone());
    if store.snapshot().uses_approvals() {
        // Fail at start, not at the first request that needs approval.
        approvals.store()?;
    }
    tokio::spawn(std::sync::Arc::clone(&approvals).sweep_forever());
    health.set_approvals(
        std::sync::Arc::clone(&approvals),
        config.admin_token_file.clone(),
    );
    if let Some(address) = config.admin {
        let admin_listener = admin::bind(address).await?;
        tracing::info!(address = %admin_listener.local_addr()?, "admin listener (/healthz, /readyz, /metrics)");
        tokio::spawn(admin::serve(admin_listener, health.clone()));
    }
    // The probe feeds /readyz and the metrics, and tells a cluster which nodes are up.
    if config.admin.is_some() || upstream.nodes().len() > 1 {
        tokio::spawn(admin::probe(Arc::clone(&upstream), health.clone()));
    }
    tracing::info!(
        address = %listener.local_addr()?,
        tls = listener.is_tls(),
        upstream = %upstream.authority(),
        rules = store.snapshot().rules().len(),
        "pvegate listening"
    );
    let inventory = start_inventory(&config, &store).await?;
    if let Some(inv) = &inventory {
        health.set_inventory(inv.clone());
    }
    let gate = stack::build_with(store.clone(), upstream, Some(approvals), inventory);
    if config.watch_policy {
        tokio::spawn(store.clone().watch(Duration::from_millis(250)));
    }
    tokio::spawn(reload_on_sighup(store));
    let drain = config.limits.drain;
    let shutdown = async {
        shutdown_signal().await;
        health.set_draining();
        tracing::info!(
            drain_secs = drain.as_secs(),
            "shutting down: no new connections; finishing the requests in flight"
        );
    };
    listener.serve_until(gate, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// With `[inventory]`: reads the token, makes a first reading (a failure is logged, and
/// writes that need it are refused until a refresh succeeds) and starts the refresher.
async fn start_inventory(
    config: &Config,
    store: &PolicyStore,
) -> anyhow::Result<Option<crate::inventory::Inventory>> {
    let Some(cfg) = &config.inventory else {
        return Ok(None);
    };
    let token = crate::inventory::Token::load(&cfg.token_file)?;
    let fetcher = crate::inventory::Fetcher::new(&config.upstream, &token)?;
    let inv = crate::inventory::Inventory::new(cfg);
    crate::inventory::metrics::publish(&inv);
    inv.refresh_apart(&fetcher, store).await;
    match inv.current() {
        Some(s) => tracing::info!(
            token = %token.id,
            guests = s.guests.len(),
            refresh_secs = cfg.refresh.as_secs(),
            max_age_secs = cfg.max_age.as_secs(),
            "inventory read"
        ),
        None => tracing::error!(
            token = %token.id,
            "inventory could not be read: changes that need it are refused until it can"
        ),
    }
    let runner = inv.clone();
    let store = store.clone();
    let every = cfg.refresh;
    tokio::spawn(async move {
        tokio::time::sleep(every).await;
        runner.run(fetcher, store).await
    });
    Ok(Some(inv))
}

async fn reload_on_sighup(store: PolicyStore) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        logsink::reopen_audit();
        let _ = store.reload();
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `pvegate validate`: loads config and policy, reports every error with file:line (stderr,
/// `error: …`) and every foot-gun (`warning: …`). Exit 0 when usable (warnings allowed), 2
/// otherwise.
pub fn validate(config_path: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            for e in e.list() {
                eprintln!("error: {e}");
            }
            return EXIT_BAD_INPUT;
        }
    };
    let mut failed = false;
    let mut rules = 0;
    let mut warnings = config.warnings.clone();
    match Policy::load(&config.policy_files)
        .and_then(|p| p.require_inventory(config.inventory.is_some()).map(|()| p))
    {
        Ok(p) => {
            rules = p.rules().len();
            warnings.extend(p.warnings.iter().cloned());
        }
        Err(e) => {
            for e in e.list() {
                eprintln!("error: {e}");
            }
            failed = true;
        }
    }
    if let Some((cert, key)) = &config.listen.tls {
        if let Err(e) = server::server_tls(cert, key) {
            eprintln!("error: {}: listen TLS: {e}", config.path.display());
            failed = true;
        }
    }
    if let Err(e) = upstream::tls::client_config(&config.upstream.trust) {
        eprintln!("error: {}: upstream TLS: {e}", config.path.display());
        failed = true;
    }
    for (i, node) in config.upstream_nodes.iter().enumerate().skip(1) {
        if let Err(e) = upstream::tls::client_config(&node.upstream.trust) {
            let n = i + 1;
            eprintln!(
                "error: {}: upstream.node[{n}] TLS: {e}",
                config.path.display()
            );
            failed = true;
        }
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if failed {
        return EXIT_BAD_INPUT;
    }
    println!(
        "ok: {} ({} policy file(s), {} guest rule(s), upstream {}://{}{}{}{})",
        config.path.display(),
        config.policy_files.len(),
        rules,
        config.upstream.scheme,
        config.upstream.authority,
        match config.upstream_nodes.len() {
            0 | 1 => String::new(),
            n => format!(" and {} more node(s)", n - 1),
        },
        if config.policy_mode == crate::policy::Mode::Shadow {
            ", shadow mode"
        } else {
            ""
        },
        if warnings.is_empty() {
            String::new()
        } else {
            format!(", {} warning(s)", warnings.len())
        }
    );
    EXIT_ALLOW
}

/// `pvegate policy show`: prints every rule of the config's policy with file:line.
pub fn policy_show(config_path: &Path) -> i32 {
    match load_with_policy(config_path) {
        Ok((c, p)) => {
            print!("{}", p.show());
            print!("{}", crate::approval::cli::show_waivers(&c));
            if c.inventory.is_some() {
                let p = std::sync::Arc::new(p);
                match read_inventory_once(&c, &p) {
                    Ok(inv) => print!("{}", crate::inventory::show::matches(&p, &inv)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_BAD_INPUT;
                    }
                }
            }
            EXIT_ALLOW
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        }
    }
}

/// The config and its policy: where a [`crate::config::ConfigError`] and a
/// [`crate::policy::PolicyError`] meet. Either is shown as it is (`{e}`, file:line).
fn load_with_policy(config_path: &Path) -> anyhow::Result<(Config, Policy)> {
    let config = Config::load(config_path)?;
    let policy = Policy::load(&config.policy_files)?;
    policy.require_inventory(config.inventory.is_some())?;
    Ok((config, policy))
}

/// One request for `pvegate check`.
pub struct CheckRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub data: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub identity: Option<&'a str>,
}

/// `pvegate check`: decides one request offline and explains it. Returns the exit code.
pub fn check(config_path: &Path, req: &CheckRequest<'_>, out: &mut impl std::io::Write) -> i32 {
    let (config, policy, mode) = match load_with_policy(config_path) {
        Ok((c, p)) => {
            let mode = c.policy_mode;
            (c, p, mode)
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let policy = std::sync::Arc::new(policy);
    let inventory = match &config.inventory {
        None => None,
        Some(_) => match read_inventory_once(&config, &policy) {
            Ok(inv) => Some(inv),
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return EXIT_BAD_INPUT;
            }
        },
    };
    check_full(&policy, mode, inventory.as_ref(), req, out)
}

/// `check` and `policy show` with `[inventory]`: one reading of the cluster. A failed
/// reading is not an error here: the inventory stays unread, and what needs it is refused
/// with the reason, as `serve` would.
fn read_inventory_once(
    config: &Config,
    policy: &std::sync::Arc<Policy>,
) -> anyhow::Result<crate::inventory::Inventory> {
    let Some(cfg) = &config.inventory else {
        anyhow::bail!("no [inventory] in the config");
    };
    let token = crate::inventory::Token::load(&cfg.token_file)?;
    let fetcher = crate::inventory::Fetcher::new(&config.upstream, &token)?;
    let inv = crate::inventory::Inventory::new(cfg);
    let store = PolicyStore::new(Policy::clone(policy), vec![]);
    runtime()?.block_on(inv.refresh_once(&fetcher, &store));
    Ok(inv)
}

/// [`check`] against an already loaded policy, enforcing.
pub fn check_with_policy(
    policy: &Policy,
    req: &CheckRequest<'_>,
    out: &mut impl std::io::Write,
) -> i32 {
    check_in_mode(policy, Mode::Enforce, req, out)
}

/// [`check`] against an already loaded policy in `mode`. A would-deny (shadow mode, whole or
/// per rule) exits 0: the request would be forwarded.
pub fn check_in_mode(
    policy: &Policy,
    mode: Mode,
    req: &CheckRequest<'_>,
    out: &mut impl std::io::Write,
) -> i32 {
    check_full(&std::sync::Arc::new(policy.clone()), mode, None, req, out)
}

/// [`check_in_mode`] with an inventory (selectors, stored selections, dependencies, sticky
/// protection), as `serve` judges.
fn check_full(
    policy: &std::sync::Arc<Policy>,
    mode: Mode,
    inventory: Option<&crate::inventory::Inventory>,
    req: &CheckRequest<'_>,
    out: &mut impl std::io::Write,
) -> i32 {
    let Ok(method) = Method::from_bytes(req.method.as_bytes()) else {
        let _ = writeln!(out, "error: {:?} is not an HTTP method", req.method);
        return EXIT_BAD_INPUT;
    };
    let mut target = req.target.to_string();
    if !target.starts_with('/') && !target.contains("://") {
        target.insert(0, '/');
    }
    if target.starts_with('/') && !target.starts_with("/api2") {
        let _ = writeln!(out, "note:     read as /api2/json{target}");
        target.insert_str(0, "/api2/json");
    }
    let mut headers = HeaderMap::new();
    let body = req.data.unwrap_or("").as_bytes();
    if !body.is_empty() {
        headers.insert(http::header::CONTENT_LENGTH, body.len().into());
        let ct = req
            .content_type
            .unwrap_or("application/x-www-form-urlencoded");
        match HeaderValue::from_str(ct) {
            Ok(v) => {
                headers.insert(http::header::CONTENT_TYPE, v);
            }
            Err(_) => {
                let _ = writeln!(
                    out,
                    "error: --content-type {ct:?} is not a valid header value"
                );
                return EXIT_BAD_INPUT;
            }
        }
    }
    let head = read_head(&method, &target, &headers);
    let inspected = head.and_then(|(t, q, plan)| {
        let body = if matches!(plan, BodyPlan::Buffer(_)) {
            body
        } else {
            &[][..]
        };
        inspect_request(&method, t, q, &plan, body, &headers)
    });
    let mut info = match inspected {
        Ok(i) => i,
        Err(refusal) => {
            let rejection = Rejection::from(refusal);
            let status = rejection.status();
            let _ = writeln!(
                out,
                "decision: invalid ({} {})",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            let _ = writeln!(out, "message:  {}", rejection.reason());
            return EXIT_BAD_INPUT;
        }
    };
    if let Some(id) = req.identity {
        info.identity = Some(id.to_string());
    }
    use crate::inventory::gate::Prepared;
    let prepared = match inventory {
        Some(inv) => inv.prepare(&info.op, info.change.as_ref(), policy),
        None => Prepared::NotNeeded,
    };
    let view = match &prepared {
        Prepared::Ready { view, op } => {
            if let Some(op) = op {
                info.op = op.clone();
            }
            Some(view.clone())
        }
        Prepared::Stale(why) => {
            let what = format!("{} {}", info.method, info.path);
            let _ = writeln!(out, "decision: deny");
            let _ = writeln!(out, "rule:     {}", crate::inventory::gate::STALE_RULE);
            let text = Rejection::denied(
                info.format,
                crate::inventory::gate::stale_message(why, &what),
            )
            .text();
            let _ = writeln!(out, "message:  {text}");
            return if mode == Mode::Shadow {
                EXIT_ALLOW
            } else {
                EXIT_DENY
            };
        }
        Prepared::NotNeeded => inventory.and_then(|i| i.view(policy).ok()),
    };
    let judgement = policy.judge_in(
        &info.op,
        info.change.as_ref(),
        info.identity.as_deref(),
        mode,
        view.as_deref(),
    );
    let decision = judgement.decision();
    let policy = policy.explaining();
    let endpoint = match &info.op.route {
        Route::Known(t) => format!("{} {t}", info.method),
        Route::Unknown => format!(
            "unknown: {} {} is not in pvegate's catalogue (newer Proxmox?); {}",
            info.method,
            info.path,
            if info.op.action.is_read() {
                "reads pass"
            } else if policy.strict() {
                "strict mode refuses unknown writes"
            } else {
                "judged by every guest id found in it"
            }
        ),
        Route::Static => format!("static file {}", info.path),
    };
    let guests = match &info.op.guests {
        GuestSet::All => "all guests".to_string(),
        GuestSet::None => "none".to_string(),
        g => audit::guests_text(g),
    };
    let _ = writeln!(
        out,
        "decision: {}",
        match judgement {
            Judgement::Allow(_) => "allow",
            Judgement::Deny(_) => "deny",
            Judgement::WouldDeny(_) => "would-deny (shadow: forwarded, and logged as would-deny)",
        }
    );
    let _ = writeln!(out, "rule:     {}", policy.rule_label(&decision));
    let _ = writeln!(out, "endpoint: {endpoint}");
    let _ = writeln!(out, "action:   {}", info.op.action.as_str());
    let _ = writeln!(out, "guests:   {guests}");
    if let Some(v) = &view {
        if let Some(d) = &info.op.detail {
            let _ = writeln!(out, "detail:   {d}");
        }
        for &vmid in info.op.guests.listed() {
            let name = v
                .snapshot
                .guests
                .get(&vmid)
                .map(|g| format!(" '{}'", g.name))
                .unwrap_or_default();
            for why in policy.explain_guest(vmid, Some(v)) {
                let _ = writeln!(out, "matched:  VM {vmid}{name}: {why}");
            }
        }
    }
    if !info.op.host.is_empty() {
        let uses: Vec<String> = info.op.host.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "host:     {} (host.access: reaches every guest)",
            uses.join("; ")
        );
    }
    let _ = writeln!(out, "identity: {}", info.identity.as_deref().unwrap_or("-"));
    if let Some(x) = policy.exemption_used(&info.op, info.identity.as_deref()) {
        let _ = writeln!(out, "exempt:   {x}");
    }
    let approval = match judgement {
        Judgement::Allow(crate::policy::decide::AllowReason::Permitted) => {
            policy.approval_needed_in(&info.op, info.identity.as_deref(), view.as_deref())
        }
        _ => None,
    };
    if let Some(need) = approval {
        let _ = writeln!(
            out,
            "approval: needed from {} approver(s) other than the requester ({}): refused with an approval id until approved; then passes once",
            need.approvers, need.rule
        );
        return if mode == Mode::Shadow {
            EXIT_ALLOW
        } else {
            EXIT_DENY
        };
    }
    match judgement {
        Judgement::Allow(_) => EXIT_ALLOW,
        Judgement::Deny(reason) | Judgement::WouldDeny(reason) => {
            let what = format!("{} {}", info.method, info.path);
            let message = crate::inventory::gate::with_detail(
                policy.deny_message(&reason, info.op.action, &what),
                &prepared,
            );
            let text = Rejection::denied(info.format, message).text();
            let _ = writeln!(out, "message:  {text}");
            if matches!(judgement, Judgement::Deny(_)) {
                EXIT_DENY
            } else {
                EXIT_ALLOW
            }
        }
    }
}
