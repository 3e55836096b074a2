//! The Proxmox API client of `pvegate ops`: reqwest over rustls with pvegate's upstream
//! trust (CA, pinned fingerprint, system roots or the explicit opt-out), the API envelope,
//! pvegate refusal detection, guest lookup and bounded task waiting.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::settings::Settings;
use super::OpsError;

/// One request's time limit (task waits poll many short requests).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Proxmox's message (body `message`, else the reason phrase), without the final newline.
    pub message: String,
    /// Whether pvegate refused the request (403 carrying `pvegate:`).
    pub refused: bool,
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The API answered with an error.
    Api(ApiError),
    /// Not an API answer: unreachable, TLS failure, timeout, bad token, garbage.
    Other(OpsError),
}

impl From<OpsError> for CallError {
    fn from(e: OpsError) -> Self {
        CallError::Other(e)
    }
}

/// A guest as `/cluster/resources` lists it.
#[derive(Debug, Clone)]
pub struct GuestRef {
    /// VMID.
    pub vmid: u32,
    /// Name (may be empty).
    pub name: String,
    /// `qemu` or `lxc`.
    pub kind: String,
    /// Node it lives on.
    pub node: String,
    /// Whether it is a template.
    pub template: bool,
}

impl GuestRef {
    /// `VM 104 'doc1'` or `CT 120 'scratch-ct'`.
    pub fn label(&self) -> String {
        let k = if self.kind == "lxc" { "CT" } else { "VM" };
        if self.name.is_empty() {
            format!("{k} {}", self.vmid)
        } else {
            format!("{k} {} '{}'", self.vmid, self.name)
        }
    }

    /// `/nodes/{node}/{qemu|lxc}/{vmid}`.
    pub fn path(&self) -> String {
        format!("/nodes/{}/{}/{}", self.node, self.kind, self.vmid)
    }
}

/// A connected API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    api: String,
    auth: reqwest::header::HeaderValue,
    /// The resolved settings.
    pub settings: Settings,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("api", &self.api).finish()
    }
}

/// Whether an error message is a pvegate refusal.
pub fn is_gate_refusal(status: u16, message: &str) -> bool {
    status == 403
        && (message.starts_with("Permission check failed (pvegate:")
            || message.contains("pvegate:"))
}

impl Client {
    /// A client for `settings` (no request is made yet).
    pub fn new(settings: Settings) -> Result<Client, OpsError> {
        if settings.trust == crate::config::Trust::Insecure && settings.base.starts_with("https:") {
            eprintln!(
                "warning: --insecure: the certificate of {} is not checked",
                settings.base
            );
        }
        let mut tls = crate::upstream::tls::client_config(&settings.trust)
            .map_err(|e| OpsError::Usage(format!("TLS settings: {e}")))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("pvegate-ops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OpsError::Usage(format!("HTTP client setup failed: {e}")))?;
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("PVEAPIToken={}", settings.token))
                .map_err(|_| OpsError::Usage("the API token holds invalid characters".into()))?;
        auth.set_sensitive(true);
        Ok(Client {
            http,
            api: format!("{}/api2/json", settings.base),
            auth,
            settings,
        })
    }

    /// `GET path?params` → `data`.
    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, CallError> {
        self.call(Method::GET, path, params).await
    }

    /// A call with `params` in the query (GET, DELETE) or a form body (POST, PUT) → `data`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.api);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, self.auth.clone());
        if method == Method::GET || method == Method::DELETE {
            if !params.is_empty() {
                req = req.query(params);
            }
        } else {
            req = req.form(params);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            let Some(body) = body else {
                return Err(OpsError::Failed(format!(
                    "{} answered {path} with something that is not Proxmox API JSON; is --url the API (https://HOST:8006)?",
                    self.settings.base
                ))
                .into());
            };
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
        let body_msg = body
            .as_ref()
            .and_then(|b| b.get("message"))
            .and_then(Value::as_str)
            .map(|m| m.trim_end().to_owned())
            .filter(|m| !m.is_empty());
        let mut message = body_msg
            .or(reason)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        if let Some(errs) = body
            .as_ref()
            .and_then(|b| b.get("errors"))
            .and_then(Value::as_object)
        {
            let detail: Vec<String> = errs
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("").trim_end()))
                .collect();
            if !detail.is_empty() {
                message = format!("{message} ({})", detail.join("; "));
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(OpsError::Usage(format!(
                "{} rejected the API token ({message}): check PVEGATE_TOKEN / --token-file",
                self.settings.base
            ))
            .into());
        }
        let refused = is_gate_refusal(status.as_u16(), &message);
        Err(CallError::Api(ApiError {
            status: status.as_u16(),
            message,
            refused,
        }))
    }

    fn transport_error(&self, e: &reqwest::Error) -> CallError {
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            chain = format!("{chain}: {s}");
            src = s.source();
        }
        if e.is_timeout() {
            return OpsError::Failed(format!(
                "{} did not answer in time ({chain})",
                self.settings.base
            ))
            .into();
        }
        OpsError::Usage(format!(
            "cannot reach {} ({chain}): check PVEGATE_URL / --url and the TLS trust flags",
            self.settings.base
        ))
        .into()
    }

    /// Every guest in the cluster (`GET /cluster/resources?type=vm`).
    pub async fn guests(&self) -> Result<Vec<Value>, CallError> {
        let v = self
            .get("/cluster/resources", &[("type", "vm".into())])
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The guest `vmid`: its kind, node and name.
    pub async fn guest(&self, vmid: u32) -> Result<GuestRef, CallError> {
        let list = self.guests().await?;
        let entry = list
            .iter()
            .find(|g| g.get("vmid").and_then(Value::as_u64) == Some(u64::from(vmid)))
            .ok_or_else(|| {
                OpsError::Failed(format!(
                    "guest {vmid} does not exist in the cluster (not in /cluster/resources)"
                ))
            })?;
        let s = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let kind = match s("type").as_str() {
            "lxc" => "lxc",
            _ => "qemu",
        }
        .to_owned();
        let node = self.settings.node.clone().unwrap_or_else(|| s("node"));
        Ok(GuestRef {
            vmid,
            name: s("name"),
            kind,
            node,
            template: entry
                .get("template")
                .is_some_and(|t| t.as_u64() == Some(1) || t.as_bool() == Some(true)),
        })
    }

    /// The nodes to use: `--node`, or every online node.
    pub async fn nodes(&self) -> Result<Vec<String>, CallError> {
        if let Some(n) = &self.settings.node {
            return Ok(vec![n.clone()]);
        }
        let v = self.get("/nodes", &[]).await?;
        let mut nodes: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n.get("status").and_then(Value::as_str) != Some("offline"))
            .filter_map(|n| n.get("node").and_then(Value::as_str).map(str::to_owned))
            .collect();
        nodes.sort();
        if nodes.is_empty() {
            return Err(OpsError::Failed("the cluster lists no online node".into()).into());
        }
        Ok(nodes)
    }

    /// Waits for the task `upid` on `node` to end (bounded by the settings' task timeout).
    /// `Ok(exitstatus)` when it ended with `OK` or warnings; a failed task is an error
    /// carrying the tail of its log.
    pub async fn wait_task(&self, node: &str, upid: &str) -> Result<String, CallError> {
        let deadline = Instant::now() + self.settings.task_timeout;
        let path = format!("/nodes/{node}/tasks/{}/status", encode_segment(upid));
        let mut pause = Duration::from_millis(100);
        loop {
            let st = self.get(&path, &[]).await?;
            if st.get("status").and_then(Value::as_str) == Some("stopped") {
                let exit = st
                    .get("exitstatus")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned();
                if exit == "OK" || exit.starts_with("WARNINGS") {
                    return Ok(exit);
                }
                let tail = self.task_log_tail(node, upid, 10).await;
                let mut msg = format!("task failed: {exit}");
                if !tail.is_empty() {
                    msg.push_str("\ntask log (last lines):\n");
                    for l in tail {
                        msg.push_str("  ");
                        msg.push_str(&l);
                        msg.push('\n');
                    }
                }
                return Err(OpsError::Failed(msg.trim_end().to_owned()).into());
            }
            if Instant::now() + pause > deadline {
                return Err(OpsError::Failed(format!(
                    "task {upid} still running after {} s; it goes on in Proxmox (raise task_timeout_secs in ops.toml, or use --no-wait)",
                    self.settings.task_timeout.as_secs()
                ))
                .into());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// The last `n` lines of a task's log (empty when the log cannot be read).
    pub async fn task_log_tail(&self, node: &str, upid: &str, n: usize) -> Vec<String> {
        let path = format!("/nodes/{node}/tasks/{}/log", encode_segment(upid));
        let lines = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.get("t").and_then(Value::as_str).map(str::to_owned))
                .collect()
        };
        let Ok(first) = self
            .get(&path, &[("start", "0".into()), ("limit", "500".into())])
            .await
        else {
            return Vec::new();
        };
        let mut all = lines(&first);
        if all.len() == 500 {
            // A long log: ask for its last lines by count.
            let mut start = 500;
            while let Ok(more) = self
                .get(
                    &path,
                    &[("start", start.to_string()), ("limit", "500".into())],
                )
                .await
            {
                let got = lines(&more);
                if got.is_empty() || start > 1_000_000 {
                    break;
                }
                start += got.len();
                all.extend(got);
                let keep = all.len().saturating_sub(n);
                all.drain(..keep);
            }
        }
        let keep = all.len().saturating_sub(n);
        all.split_off(keep)
    }
}

/// Percent-encodes a path segment (UPIDs hold `:` and `!`, which are fine in paths, and
/// could in theory hold other bytes).
pub fn encode_segment(s: &str) -> String {
    const SEG: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b':')
        .remove(b'!')
        .remove(b'@')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEG).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_recognised() {
        assert!(is_gate_refusal(
            403,
            "Permission check failed (pvegate: VM 104 'doc1' is readonly: power.stop refused)"
        ));
        assert!(!is_gate_refusal(
            403,
            "Permission check failed (/vms/104, VM.PowerMgmt)"
        ));
        assert!(!is_gate_refusal(500, "pvegate: something"));
    }

    #[test]
    fn upids_keep_their_shape() {
        let u = "UPID:pve:0001:0002:0003:qmstart:110:root@pam!tofu:";
        assert_eq!(encode_segment(u), u);
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
