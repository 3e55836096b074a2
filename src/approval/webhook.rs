//! The webhook for pending approvals (`[approvals] webhook`): a JSON POST per new request
//! that waits for approval, so ntfy, Gotify, Matrix or a chat bridge can ping a person.
//!
//! Never on the request path: [`Notifier::notify`] only puts the message in a bounded queue
//! ([`QUEUE`] messages; when full the message is dropped, logged and counted); one task sends
//! them, each POST bounded by `[approvals] webhook_timeout_secs` (connect to answer). The body
//! carries no secret: the id, who asked for what, when it expires and the commands to decide.

use std::time::Duration;

use tokio::sync::mpsc;

use super::store::RequestRecord;

/// Messages waiting to be sent, at most.
pub const QUEUE: usize = 64;

/// The sending side of the webhook queue.
pub struct Notifier {
    tx: mpsc::Sender<serde_json::Value>,
}

/// The webhook body for a pending request. `config` is the config path shown in the commands.
pub fn body(r: &RequestRecord, config: &str) -> serde_json::Value {
    let at = |s: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(s))
            .to_string()
    };
    let approve = format!("pvegate approve {} --config {config}", r.id);
    serde_json::json!({
        "event": "approval_requested",
        "id": r.id,
        "identity": r.identity,
        "method": r.method,
        "path": r.path,
        "action": r.action,
        "guests": r.guests,
        "rule": r.rule,
        "approvers": r.approvers,
        "created": at(r.created),
        "expires": at(r.expires),
        "approve": approve,
        "reject": format!("pvegate reject {} --config {config}", r.id),
        "text": format!(
            "pvegate: {} asks to {} {} ({} on guests {}); approve with: {approve}",
            r.identity, r.method, r.path, r.action, if r.guests.is_empty() { "-" } else { &r.guests }
        ),
    })
}

impl Notifier {
    /// Starts the sender task (call inside the runtime).
    pub fn start(url: http::Uri, timeout: Duration) -> Notifier {
        let (tx, mut rx) = mpsc::channel::<serde_json::Value>(QUEUE);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build();
        // The URL may carry a token (Gotify's ?token=): logs show only where it goes.
        let shown = format!(
            "{}://{}",
            url.scheme_str().unwrap_or("http"),
            url.authority().map_or("", |a| a.host())
        );
        let url = url.to_string();
        tokio::spawn(async move {
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "approvals webhook: cannot build an HTTP client; notifications are off");
                    return;
                }
            };
            while let Some(msg) = rx.recv().await {
                let sent = client.post(&url).json(&msg).send().await;
                match sent.map(|r| r.status()) {
                    Ok(s) if s.is_success() => super::events::count_approval("webhook_sent"),
                    Ok(s) => {
                        super::events::count_approval("webhook_failed");
                        tracing::warn!(
                            url = shown,
                            status = s.as_u16(),
                            "approvals webhook answered with an error"
                        );
                    }
                    Err(e) => {
                        super::events::count_approval("webhook_failed");
                        // reqwest's error names the whole URL, token and all: drop it.
                        let e = e.without_url();
                        tracing::warn!(url = shown, error = %e, "approvals webhook failed");
                    }
                }
            }
        });
        Notifier { tx }
    }

    /// Queues `msg`; never waits (a full queue drops it, logged and counted).
    pub fn notify(&self, msg: serde_json::Value) {
        if self.tx.try_send(msg).is_err() {
            super::events::count_approval("webhook_dropped");
            tracing::warn!("approvals webhook queue is full: a notification was dropped");
        }
    }
}
