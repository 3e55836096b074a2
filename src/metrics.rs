//! The process's Prometheus metrics (`prometheus-client`): one registry, the per-request entry
//! point [`observe_request`], and the few gauges the server, the upstream probe and the admin
//! listener set. Rendered in the Prometheus text format by [`render`].
//!
//! Per request the cost is a hash lookup of the action name into counters resolved at start
//! (no allocation), one atomic add, and for forwarded requests one lookup of the status code
//! and one histogram observation. Refusals additionally count by rule (one label allocation).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::pve::Action;

/// The decisions [`observe_request`] knows without allocating.
const DECISIONS: [&str; 3] = ["allow", "deny", "would-deny"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    action: Cow<'static, str>,
    decision: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Every metric pvegate keeps.
struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `requests` resolved at start: action name -> one counter per entry of [`DECISIONS`].
    resolved: HashMap<&'static str, [Counter; 3], BuildHasherDefault<Fnv>>,
    refusals: Family<RuleLabels, Counter>,
    upstream_codes: Family<CodeLabels, Counter>,
    /// `upstream_codes` resolved on first use, for codes 100 to 599.
    codes: [OnceLock<Counter>; 500],
    upstream_errors: Family<KindLabels, Counter>,
    upstream_seconds: Histogram,
    upstream_up: Family<NodeLabels, Gauge>,
    open_connections: Gauge,
    open_websockets: Gauge,
    policy_generation: Gauge,
    policy_reload_ok: Gauge,
    approvals: Family<EventLabels, Counter>,
    waivers: Family<EventLabels, Counter>,
}

/// FNV-1a: the action names are few, short and not attacker-chosen (they come from the
/// catalogue), so a cheap hash fits better than SipHash here.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Values read at scrape time rather than kept in the registry.
#[derive(Debug)]
struct Dropped;

impl Collector for Dropped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(crate::logsink::dropped_lines());
        let metric = encoder.encode_descriptor(
            "audit_lines_dropped",
            "Log and audit lines dropped because their reader did not keep up (refusals are enforced all the same)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)?;
        let build = ConstGauge::new(1i64);
        let metric = encoder.encode_descriptor(
            "build_info",
            concat!("pvegate version ", env!("CARGO_PKG_VERSION")),
            None,
            build.metric_type(),
        )?;
        build.encode(metric)
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pvegate");
        let requests = Family::<RequestLabels, Counter>::default();
        let resolved = Action::ALL
            .iter()
            .map(|a| {
                let counter = |decision: &'static str| {
                    requests
                        .get_or_create(&RequestLabels {
                            action: Cow::Borrowed(a.as_str()),
                            decision: Cow::Borrowed(decision),
                        })
                        .clone()
                };
                (a.as_str(), DECISIONS.map(counter))
            })
            .collect();
        registry.register(
            "requests",
            "Requests decided, by action and decision (allow, deny, would-deny)",
            requests.clone(),
        );
        let refusals = Family::<RuleLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests refused (or, in shadow mode, that would be), by the rule that refused them",
            refusals.clone(),
        );
        let upstream_codes = Family::<CodeLabels, Counter>::default();
        registry.register(
            "upstream_responses",
            "Responses from Proxmox, by HTTP status code",
            upstream_codes.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Forwarded requests Proxmox did not answer: connect (502), exchange (502), timeout (504)",
            upstream_errors.clone(),
        );
        let upstream_seconds = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ]);
        registry.register(
            "upstream_response_seconds",
            "Time from a request's decision to Proxmox's response head",
            upstream_seconds.clone(),
        );
        let upstream_up = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 if the upstream node answered the last health probe (any HTTP status) and no connection to it failed since, else 0; node: its [[upstream.node]] name, else host:port",
            upstream_up.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        let open_websockets = Gauge::default();
        registry.register(
            "open_websockets",
            "Websocket tunnels open now",
            open_websockets.clone(),
        );
        let policy_generation = Gauge::default();
        registry.register(
            "policy_generation",
            "How many times a policy has been loaded (1 at start, +1 per successful reload)",
            policy_generation.clone(),
        );
        let policy_reload_ok = Gauge::default();
        registry.register(
            "policy_last_reload_success",
            "1 if the last policy load or reload succeeded, 0 if it failed (the previous policy stays in force)",
            policy_reload_ok.clone(),
        );
        let approvals = Family::<EventLabels, Counter>::default();
        registry.register(
            "approvals",
            "Approval events: requested, approved, rejected, expired, used, refused (self-approval, stale), forged (records that do not verify), webhook_sent, webhook_failed, webhook_dropped",
            approvals.clone(),
        );
        let waivers = Family::<EventLabels, Counter>::default();
        registry.register(
            "waivers",
            "Waiver events: created, used, revoked, expired",
            waivers.clone(),
        );
        registry.register_collector(Box::new(Dropped));
        registry.register_collector(Box::new(crate::inventory::metrics::InventoryMetrics));
        Metrics {
            registry,
            requests,
            resolved,
            refusals,
            upstream_codes,
            codes: std::array::from_fn(|_| OnceLock::new()),
            upstream_errors,
            upstream_seconds,
            upstream_up,
            open_connections,
            open_websockets,
            policy_generation,
            policy_reload_ok,
            approvals,
            waivers,
        }
    }
}

/// Counts one decided request: by `action` and `decision` (`allow`, `deny`, `would-deny`),
/// by `rule` when it was refused (or would have been), and, when it was forwarded and Proxmox
/// answered, by `upstream_status` with the time to the response head (`duration`).
pub fn observe_request(
    action: &str,
    decision: &str,
    rule: Option<&str>,
    upstream_status: Option<u16>,
    duration: Duration,
) {
    let m = &*METRICS;
    let resolved = m
        .resolved
        .get(action)
        .and_then(|c| DECISIONS.iter().position(|d| *d == decision).map(|i| &c[i]));
    match resolved {
        Some(counter) => {
            counter.inc();
        }
        None => {
            m.requests
                .get_or_create(&RequestLabels {
                    action: Cow::Owned(action.to_string()),
                    decision: Cow::Owned(decision.to_string()),
                })
                .inc();
        }
    }
    if let Some(rule) = rule {
        m.refusals
            .get_or_create(&RuleLabels {
                rule: rule.to_string(),
            })
            .inc();
    }
    if let Some(code) = upstream_status {
        match m.codes.get(usize::from(code).wrapping_sub(100)) {
            Some(cached) => cached
                .get_or_init(|| m.upstream_codes.get_or_create(&CodeLabels { code }).clone())
                .inc(),
            None => m.upstream_codes.get_or_create(&CodeLabels { code }).inc(),
        };
        m.upstream_seconds.observe(duration.as_secs_f64());
    }
}

/// Builds the registry now (otherwise on first use), so the first request does not pay for it.
pub fn init() {
    LazyLock::force(&METRICS);
}

/// Counts a forwarded request Proxmox did not answer (`connect`, `exchange` or `timeout`).
pub fn upstream_error(kind: &'static str) {
    METRICS
        .upstream_errors
        .get_or_create(&KindLabels { kind })
        .inc();
}

/// Counts an approval event (`pvegate_approvals_total{event}`).
pub fn approval_event(event: &'static str) {
    METRICS
        .approvals
        .get_or_create(&EventLabels { event })
        .inc();
}

/// Counts a waiver event (`pvegate_waivers_total{event}`).
pub fn waiver_event(event: &'static str) {
    METRICS.waivers.get_or_create(&EventLabels { event }).inc();
}

/// Sets whether the upstream node `node` (its name, else `host:port`) answered its last probe.
pub fn set_upstream_up(node: &str, up: bool) {
    METRICS
        .upstream_up
        .get_or_create(&NodeLabels {
            node: node.to_string(),
        })
        .set(i64::from(up));
}

/// Sets the policy generation and whether its last load or reload succeeded.
pub fn set_policy(generation: u64, last_reload_ok: bool) {
    METRICS
        .policy_generation
        .set(i64::try_from(generation).unwrap_or(i64::MAX));
    METRICS.policy_reload_ok.set(i64::from(last_reload_ok));
}

/// One open client connection, counted in `pvegate_open_connections` until dropped.
pub struct OpenConnection(());

impl OpenConnection {
    /// Counts a new connection.
    pub fn new() -> OpenConnection {
        METRICS.open_connections.inc();
        OpenConnection(())
    }
}

impl Default for OpenConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        METRICS.open_connections.dec();
    }
}

/// One open websocket tunnel, counted in `pvegate_open_websockets` until dropped.
pub struct OpenWebsocket(());

impl OpenWebsocket {
    /// Counts a new tunnel.
    pub fn new() -> OpenWebsocket {
        METRICS.open_websockets.inc();
        OpenWebsocket(())
    }
}

impl Default for OpenWebsocket {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenWebsocket {
    fn drop(&mut self) {
        METRICS.open_websockets.dec();
    }
}

/// Every metric in the Prometheus text format (with the `# EOF` line of OpenMetrics).
pub fn render() -> String {
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn requests_refusals_and_upstream_codes_are_counted() {
        let before = render();
        let allow = r#"pvegate_requests_total{action="power.stop",decision="allow"}"#;
        let deny = r#"pvegate_requests_total{action="power.stop",decision="deny"}"#;
        let odd = r#"pvegate_requests_total{action="-",decision="invalid"}"#;
        let rule = r#"pvegate_refusals_total{rule="unit-test rule"}"#;
        let code = r#"pvegate_upstream_responses_total{code="599"}"#;
        let get = |t: &str, s: &str| value(t, s).unwrap_or(0.0);
        observe_request(
            "power.stop",
            "allow",
            None,
            Some(599),
            Duration::from_millis(3),
        );
        observe_request(
            "power.stop",
            "deny",
            Some("unit-test rule"),
            None,
            Duration::ZERO,
        );
        observe_request("-", "invalid", None, None, Duration::ZERO);
        let after = render();
        // Other tests in this process may count the same action concurrently.
        assert!(get(&after, allow) >= get(&before, allow) + 1.0);
        assert!(get(&after, deny) >= get(&before, deny) + 1.0);
        assert_eq!(get(&after, odd), get(&before, odd) + 1.0);
        assert_eq!(get(&after, rule), get(&before, rule) + 1.0);
        assert_eq!(get(&after, code), get(&before, code) + 1.0);
        assert!(after.contains("# TYPE pvegate_upstream_response_seconds histogram"));
        assert!(after.contains("pvegate_audit_lines_dropped_total "));
    }
}
