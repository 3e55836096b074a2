//! The Terraform/OpenTofu bpg/proxmox provider (v0.93) works through pvegate: a replay of its
//! HTTP traffic for a VM's whole lifecycle, byte for byte as its Go client sends it.
//!
//! What is reproduced (from `proxmox/api/client.go`, `proxmox/nodes/vms/vms.go`,
//! `proxmox/nodes/tasks/tasks.go` and `proxmoxtf/resource/vm/vm.go`): the endpoint at the root
//! path (`https://host:port/` + `api2/json/…`), TLS 1.3 only, HTTP/1.1; Go's headers
//! (`User-Agent: Go-http-client/1.1`, `Accept: application/json`,
//! `Authorization: PVEAPIToken=…`, `Accept-Encoding: gzip` with transparent decoding,
//! `Content-Length: 0` on empty POSTs); form bodies encoded like `url.Values.Encode` (sorted
//! keys, `QueryEscape`, bools as `1`/`0`, lists comma-joined); UPIDs path-escaped
//! (`!` → `%21`); task polling until `stopped` (retrying 400); the `DELETE …/qemu/ID/?…`
//! with its trailing slash, retried 3× unless the guest is gone; and the provider's error text
//! `received an HTTP 403 response - Reason: <reason phrase> (<message lines>)`.
//!
//! An ISO upload (the file resource's multipart body with its `Content-Length`) streams
//! through. A managed VM goes through clone → config update → resize → start → agent polling → read →
//! refresh → shutdown → delete and every request succeeds. Aimed at readonly guests, the first
//! change is refused with the policy message as the provider prints it, and every read before
//! it (refresh, status and agent polling) passes. Each scenario checks that the simulated
//! Proxmox recorded exactly the requests pvegate allowed, with the client's headers.
//! (Polling intervals are shortened from 1 s; the sequence is the provider's.)

use crate::common;

use std::time::Duration;

use common::clients::{start_tls_pinned, TlsGate};
use common::HOMELAB;
use pvegate_sim::{SimConfig, SimGuest, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET};
use serde_json::Value;

const POLL: Duration = Duration::from_millis(20);

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.PathEscape`.
fn path_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'$' | b'&' | b'+' | b':' | b'=' | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: keys sorted, `k=v` pairs joined with `&`.
fn encode(params: &[(&str, String)]) -> String {
    let mut p: Vec<&(&str, String)> = params.iter().collect();
    p.sort_by(|a, b| a.0.cmp(b.0));
    p.iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One request as the provider sent it, and whether pvegate refused it.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    target: String,
    body: String,
    refused: bool,
}

/// `api.HTTPError`.
#[derive(Debug, Clone)]
struct HttpError {
    code: u16,
    message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received an HTTP {} response - Reason: {}",
            self.code, self.message
        )
    }
}

impl HttpError {
    /// `errors.Is(err, api.ErrResourceDoesNotExist)` as `validateResponseCode` decides it.
    fn does_not_exist(&self) -> bool {
        self.code == 404
            || (self.code == 500
                && [
                    "does not exist",
                    "no such resource",
                    "no such ha",
                    "No such file or directory",
                ]
                .iter()
                .any(|s| self.message.contains(s)))
    }
}

/// The provider's API client (`proxmox/api/client.go`), recording what it sends.
struct Provider {
    http: reqwest::Client,
    endpoint: String,
    token: String,
    sent: Vec<Sent>,
    /// Responses that came gzip-encoded (Go decodes them transparently).
    gzipped: usize,
}

impl Provider {
    fn new(g: &TlsGate) -> Provider {
        let ca = std::fs::read(&g.pki.ca_pem).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .max_tls_version(reqwest::tls::Version::TLS_1_3)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .http1_only()
            .build()
            .unwrap();
        // `endpoint = "https://host:port/"`: the provider trims the path and the slash.
        let endpoint = format!("https://127.0.0.1:{}/", g.front.addr.port());
        Provider {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: format!("{DEMO_TOKEN_ID}={DEMO_TOKEN_SECRET}"),
            sent: Vec::new(),
            gzipped: 0,
        }
    }

    /// `DoRequest`: parameters go to the query for GET/DELETE, to a form body otherwise.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, HttpError> {
        let encoded = encode(params);
        let mut path = path.to_string();
        let mut body = String::new();
        if !encoded.is_empty() {
            if method == "GET" || method == "DELETE" {
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(&encoded);
            } else {
                body = encoded;
            }
        }
        let url = format!("{}/api2/json/{path}", self.endpoint);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, &url)
            .header("User-Agent", "Go-http-client/1.1")
            .header("Accept", "application/json")
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .header("Accept-Encoding", "gzip");
        if method == "POST" || method == "PUT" {
            req = req.header("Content-Length", body.len().to_string());
            if !body.is_empty() {
                req = req.header("Content-Type", "application/x-www-form-urlencoded");
            }
            req = req.body(body.clone());
        }
        let res = req.send().await.expect("pvegate answered");
        let status = res.status().as_u16();
        // Go's `res.Status` minus the code: the reason phrase as sent.
        let reason = res
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_else(|| res.status().canonical_reason().unwrap_or("").to_string());
        let gzipped = res
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        let raw = res.bytes().await.unwrap().to_vec();
        let bytes = if gzipped {
            self.gzipped += 1;
            common::clients::gunzip(&raw)
        } else {
            raw
        };
        let refused = status == 403 && reason.starts_with("Permission check failed (pvegate: ");
        self.sent.push(Sent {
            method: method.to_string(),
            target: format!("/api2/json/{path}"),
            body: body.clone(),
            refused,
        });
        if !(200..300).contains(&status) {
            return Err(validate_response_code(status, &reason, &bytes));
        }
        let v: Value = serde_json::from_slice(&bytes).expect("JSON answer");
        Ok(v["data"].clone())
    }

    /// `storage.APIUpload`: the multipart body Go's `mime/multipart` writes (`content` field,
    /// then the file part named `filename`), sent with its size as `Content-Length`.
    async fn upload(
        &mut self,
        storage: &str,
        content: &str,
        file_name: &str,
        data: &[u8],
    ) -> Result<Value, HttpError> {
        let boundary = "6f1d0c8e2b4a9f3e7d5c1b0a8e6f4d2c9b7a5e3d1c0f8e6d4b2a0c9e7f5d";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n{content}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let path = format!("nodes/pve/storage/{storage}/upload");
        let res = self
            .http
            .post(format!("{}/api2/json/{path}", self.endpoint))
            .header("User-Agent", "Go-http-client/1.1")
            .header("Accept", "application/json")
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .header("Accept-Encoding", "gzip")
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("Content-Length", body.len().to_string())
            .body(body)
            .send()
            .await
            .expect("pvegate answered");
        let status = res.status().as_u16();
        self.sent.push(Sent {
            method: "POST".into(),
            target: format!("/api2/json/{path}"),
            body: String::new(),
            refused: status == 403,
        });
        let bytes = res.bytes().await.unwrap();
        if status != 200 {
            return Err(validate_response_code(status, "", &bytes));
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        Ok(v["data"].clone())
    }

    /// `tasks.WaitForTask`: poll the status (400 retried) until the task stopped, then check
    /// the exit status.
    async fn wait_for_task(&mut self, upid: &str) -> Result<(), String> {
        let node = upid.split(':').nth(1).unwrap().to_string();
        let path = format!(
            "nodes/{}/tasks/{}/{}",
            path_escape(&node),
            path_escape(upid),
            path_escape("status")
        );
        for _ in 0..200 {
            match self.request("GET", &path, &[]).await {
                Ok(st) if st["status"] == "running" => {}
                Ok(st) => {
                    return match st["exitstatus"].as_str() {
                        Some("OK") => Ok(()),
                        other => Err(format!(
                            "task {upid:?} failed to complete with exit code: {other:?}"
                        )),
                    }
                }
                Err(e) if e.code == 400 => {}
                Err(e) => {
                    return Err(format!(
                        "error while waiting for task {upid:?} to complete: error retrieving task status: {e}"
                    ))
                }
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "timeout while waiting for task {upid:?} to complete"
        ))
    }

    async fn task(
        &mut self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
        wrap: &str,
    ) -> Result<(), String> {
        let upid = self
            .request(method, path, params)
            .await
            .map_err(|e| format!("{wrap}: {e}"))?;
        let upid = upid.as_str().expect("a UPID").to_string();
        self.wait_for_task(&upid).await
    }

    /// `WaitForVMStatus`: poll `status/current` until it reads `want`.
    async fn wait_for_status(&mut self, vm: &str, want: &str) -> Result<(), HttpError> {
        loop {
            let st = self
                .request("GET", &format!("{vm}/status/current"), &[])
                .await?;
            if st["status"] == want {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `WaitForNetworkInterfacesFromVMAgent`: poll until a non-loopback IP shows; a 403 stops.
    async fn wait_for_agent_ips(&mut self, vm: &str) -> Result<Value, HttpError> {
        for _ in 0..100 {
            match self
                .request("GET", &format!("{vm}/agent/network-get-interfaces"), &[])
                .await
            {
                Ok(data) => {
                    let has_ip = data["result"].as_array().is_some_and(|nics| {
                        nics.iter().filter(|n| n["name"] != "lo").any(|n| {
                            n["ip-addresses"].as_array().is_some_and(|a| {
                                a.iter().any(|ip| {
                                    ip["ip-address-type"] == "ipv4"
                                        && !ip["ip-address"]
                                            .as_str()
                                            .unwrap_or("127.")
                                            .starts_with("127.")
                                })
                            })
                        })
                    });
                    if has_ip {
                        return Ok(data);
                    }
                }
                Err(e) if e.code == 403 => return Err(e),
                Err(_) => {}
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("agent never published interfaces");
    }

    /// `vmRead`: where the VM is, its config and status, its pool, its agent's interfaces.
    async fn read_vm(&mut self, vmid: u32) -> Result<(), HttpError> {
        let vms = self
            .request("GET", "cluster/resources", &[("type", "vm".into())])
            .await?;
        let node = vms
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["vmid"] == vmid)
            .map(|v| v["node"].as_str().unwrap().to_string())
            .expect("VM listed in cluster/resources");
        let vm = format!("nodes/{node}/qemu/{vmid}");
        let cfg = self.request("GET", &format!("{vm}/config"), &[]).await?;
        let status = self
            .request("GET", &format!("{vm}/status/current"), &[])
            .await?;
        // findPoolForVM: no pool in the config, so list the pools.
        if cfg.get("pool").is_none() {
            self.request("GET", "pools", &[]).await?;
        }
        if status["status"] == "running" && cfg["agent"].to_string().contains('1') {
            self.wait_for_agent_ips(&vm).await?;
        }
        Ok(())
    }
}

/// `validateResponseCode`: the reason phrase, plus the body's parameter errors and message
/// lines that do not repeat it.
fn validate_response_code(code: u16, reason: &str, body: &[u8]) -> HttpError {
    let mut message = reason.to_string();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let mut list: Vec<String> = Vec::new();
        if let Some(errors) = v["errors"].as_object() {
            for (k, e) in errors {
                list.push(format!(
                    "{k}: {}",
                    e.as_str().unwrap_or("").trim_end_matches(['\n', '\r'])
                ));
            }
        }
        if let Some(m) = v["message"].as_str().filter(|m| !m.is_empty()) {
            let mut lines: Vec<&str> = m.split('\n').collect();
            lines.dedup();
            list.extend(
                lines
                    .into_iter()
                    .filter(|l| !l.is_empty() && !l.starts_with(reason))
                    .map(str::to_string),
            );
        }
        if !list.is_empty() {
            message = format!("{message} ({})", list.join(" - "));
        }
    }
    HttpError { code, message }
}

async fn tls_gate() -> TlsGate {
    let mut sim = SimConfig::demo();
    // A stopped readonly guest, so the destroy path reaches the DELETE.
    sim.guests.push(SimGuest::qemu(105, "doc2", false));
    let policy =
        format!("{HOMELAB}\n[[guest]]\nvmid = 105\nname = \"doc2\"\naccess = \"readonly\"\n");
    start_tls_pinned(sim, &policy).await
}

/// The sim received exactly the requests pvegate did not refuse, with the provider's headers.
fn assert_recorded_exactly_allowed(g: &TlsGate, p: &Provider) {
    let allowed: Vec<&Sent> = p.sent.iter().filter(|s| !s.refused).collect();
    let recorded = g.sim.recorder.requests();
    let got: Vec<(String, String, String)> = recorded
        .iter()
        .map(|r| (r.method.clone(), r.target.clone(), r.body_text()))
        .collect();
    let want: Vec<(String, String, String)> = allowed
        .iter()
        .map(|s| (s.method.clone(), s.target.clone(), s.body.clone()))
        .collect();
    assert_eq!(got, want, "the sim must see exactly the allowed requests");
    let host = format!("127.0.0.1:{}", g.front.addr.port());
    for r in &recorded {
        assert_eq!(r.header("host"), Some(host.as_str()), "{}", r.target);
        assert_eq!(r.header("user-agent"), Some("Go-http-client/1.1"));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("accept-encoding"), Some("gzip"));
        assert_eq!(
            r.header("authorization").map(str::to_string),
            Some(format!("PVEAPIToken={DEMO_TOKEN_ID}={DEMO_TOKEN_SECRET}"))
        );
        assert!(r.header("transfer-encoding").is_none(), "never chunked");
        if r.method == "POST" || r.method == "PUT" {
            assert_eq!(
                r.header("content-length"),
                Some(r.body_len.to_string().as_str())
            );
            if r.body_len > 0 {
                assert_eq!(
                    r.header("content-type"),
                    Some("application/x-www-form-urlencoded")
                );
            }
        }
    }
}

fn assert_provider_denial(err: &str, guest: &str) {
    assert!(
        err.contains("received an HTTP 403 response - Reason: Permission check failed (pvegate: "),
        "not the provider's rendering of a pvegate denial: {err}"
    );
    assert!(err.contains(guest), "{err} lacks {guest}");
    // Strings the provider treats as success or as "retry".
    for bad in [
        "already running",
        "already exists",
        "does not exist",
        "got timeout",
    ] {
        assert!(!err.contains(bad), "denial text contains {bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_vm_lifecycle_clone_to_destroy() {
    let g = tls_gate().await;
    let mut p = Provider::new(&g);
    let (vmid, vm) = (130u32, "nodes/pve/qemu/130".to_string());

    // create: clone the template (vmCreateClone)
    p.task(
        "POST",
        "nodes/pve/qemu/9001/clone",
        &[
            ("full", "1".into()),
            ("name", "tofu-app".into()),
            ("newid", vmid.to_string()),
        ],
        "error cloning VM",
    )
    .await
    .unwrap();
    p.wait_for_status(&vm, "stopped").await.unwrap(); // WaitForVMConfigUnlock
    p.request("GET", &format!("{vm}/config"), &[])
        .await
        .unwrap();
    // the clone's modifications, one UpdateVM with sorted keys and Go's escaping
    p.request(
        "PUT",
        &format!("{vm}/config"),
        &[
            (
                "agent",
                "enabled=1,fstrim_cloned_disks=0,type=virtio".into(),
            ),
            ("cores", "2".into()),
            ("cpu", "x86-64-v2-AES".into()),
            ("description", "Managed by Terraform.".into()),
            ("memory", "4096".into()),
            ("name", "tofu-app".into()),
            (
                "net0",
                "virtio=BC:24:11:00:82:00,bridge=vmbr0,firewall=1".into(),
            ),
            ("onboot", "1".into()),
            ("tags", "terraform;web".into()),
            ("delete", ["ide2", "serial0"].join(",")),
        ],
    )
    .await
    .unwrap();
    let cfg = p
        .request("GET", &format!("{vm}/config"), &[])
        .await
        .unwrap();
    assert_eq!(cfg["memory"], 4096);
    // disk resize (ResizeVMDisk: DiskSize is sent in bytes)
    p.task(
        "PUT",
        &format!("{vm}/resize"),
        &[
            ("disk", "scsi0".into()),
            ("size", (40u64 << 30).to_string()),
        ],
        "error moving VM disk",
    )
    .await
    .unwrap();
    // vmCreateStart
    p.task(
        "POST",
        &format!("{vm}/status/start"),
        &[("timeout", "1800".into())],
        "error starting VM",
    )
    .await
    .unwrap();
    p.wait_for_status(&vm, "running").await.unwrap();
    p.read_vm(vmid).await.unwrap();
    // a later `terraform plan`: refresh
    p.read_vm(vmid).await.unwrap();

    // destroy (vmDelete): status, agent check, shutdown, wait, DELETE with the slash, wait gone
    let st = p
        .request("GET", &format!("{vm}/status/current"), &[])
        .await
        .unwrap();
    assert_eq!(st["status"], "running");
    p.request("GET", &format!("{vm}/config"), &[])
        .await
        .unwrap();
    p.task(
        "POST",
        &format!("{vm}/status/shutdown"),
        &[("forceStop", "1".into()), ("timeout", "1800".into())],
        "error shutting down VM",
    )
    .await
    .unwrap();
    p.wait_for_status(&vm, "stopped").await.unwrap();
    p.task(
        "DELETE",
        &format!("{vm}/?destroy-unreferenced-disks=1&purge=1"),
        &[],
        "error deleting VM",
    )
    .await
    .unwrap();
    let gone = p.wait_for_status(&vm, "").await.unwrap_err();
    assert!(gone.does_not_exist(), "{gone}");

    assert!(p.sent.iter().all(|s| !s.refused), "nothing refused");
    assert!(g.sim.guest(vmid).is_none(), "VM {vmid} destroyed");
    assert!(
        p.sent
            .iter()
            .any(|s| s.target
                == "/api2/json/nodes/pve/qemu/130/?destroy-unreferenced-disks=1&purge=1"),
        "the trailing-slash DELETE was sent"
    );
    assert!(p
        .sent
        .iter()
        .any(|s| s.target.contains("%21tofu:/status") && s.target.contains("/tasks/UPID:pve:")));
    assert!(p.sent.len() >= 30, "{} requests", p.sent.len());
    assert!(
        p.gzipped > 0,
        "pveproxy's gzip passed through to the provider"
    );
    eprintln!(
        "terraform replay (managed VM 130): {} requests, all allowed",
        p.sent.len()
    );
    assert_recorded_exactly_allowed(&g, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_guests_refuse_the_first_change_and_pass_every_read() {
    let g = tls_gate().await;
    let mut p = Provider::new(&g);

    // 1. A new resource whose vm_id collides with a readonly guest: the clone is refused.
    //    CloneVM wraps and retries (clone.retries = 1 by default).
    let err = p
        .task(
            "POST",
            "nodes/pve/qemu/9001/clone",
            &[
                ("full", "1".into()),
                ("name", "oops".into()),
                ("newid", "104".into()),
            ],
            "error cloning VM",
        )
        .await
        .unwrap_err();
    assert!(
        err.starts_with("error cloning VM: received an HTTP 403"),
        "{err}"
    );
    assert_provider_denial(&err, "VM 104 'doc1'");
    eprintln!("provider would print: error waiting for VM clone: All attempts fail:\n#1: {err}");

    // 2. VM 104 imported into state, then changed: refresh reads (agent polling included) pass,
    //    the config update is refused; UpdateVM retries only on "got timeout".
    p.read_vm(104).await.unwrap();
    p.request("GET", "nodes/pve/qemu/104/config", &[])
        .await
        .unwrap();
    let err = p
        .request(
            "PUT",
            "nodes/pve/qemu/104/config",
            &[("memory", "8192".into()), ("description", "x".into())],
        )
        .await
        .unwrap_err()
        .to_string();
    assert_provider_denial(&err, "VM 104 'doc1'");
    // ... and so is a disk resize (retried on "got timeout"/"does not exist" only).
    let err = p
        .request(
            "PUT",
            "nodes/pve/qemu/104/resize",
            &[
                ("disk", "scsi0".into()),
                ("size", (64u64 << 30).to_string()),
            ],
        )
        .await
        .unwrap_err()
        .to_string();
    assert_provider_denial(&err, "VM 104 'doc1'");

    // 3. `terraform destroy` of VM 109: status and agent check pass, the shutdown is refused.
    let st = p
        .request("GET", "nodes/pve/qemu/109/status/current", &[])
        .await
        .unwrap();
    assert_eq!(st["status"], "running");
    p.request("GET", "nodes/pve/qemu/109/config", &[])
        .await
        .unwrap();
    let err = p
        .task(
            "POST",
            "nodes/pve/qemu/109/status/shutdown",
            &[("forceStop", "1".into()), ("timeout", "1800".into())],
            "error shutting down VM",
        )
        .await
        .unwrap_err();
    assert_provider_denial(&err, "VM 109 'igp'");

    // 4. `terraform destroy` of the stopped readonly VM 105: DeleteVMAsync retries the DELETE
    //    three times (a 403 is not "resource does not exist"), each refused.
    let st = p
        .request("GET", "nodes/pve/qemu/105/status/current", &[])
        .await
        .unwrap();
    assert_eq!(st["status"], "stopped");
    let mut last = None;
    for _ in 0..3 {
        match p
            .request(
                "DELETE",
                "nodes/pve/qemu/105/?destroy-unreferenced-disks=1&purge=1",
                &[],
            )
            .await
        {
            Err(e) if !e.does_not_exist() => last = Some(e),
            other => panic!("DELETE of 105 not refused: {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    }
    assert_provider_denial(&last.unwrap().to_string(), "VM 105 'doc2'");

    // Guests untouched; the sim saw every read and none of the refused changes.
    assert!(g.sim.guest(104).unwrap().running);
    assert!(g.sim.guest(109).unwrap().running);
    assert!(g.sim.guest(105).is_some());
    let refused = p.sent.iter().filter(|s| s.refused).count();
    assert_eq!(refused, 7, "{:#?}", p.sent);
    let reads = p.sent.iter().filter(|s| s.method == "GET").count();
    assert!(p
        .sent
        .iter()
        .filter(|s| s.method == "GET")
        .all(|s| !s.refused));
    eprintln!(
        "terraform replay (readonly 104/105/109): {} requests, {reads} reads allowed, {refused} changes refused",
        p.sent.len()
    );
    assert_recorded_exactly_allowed(&g, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iso_upload_as_the_file_resource_sends_it() {
    // `proxmox_virtual_environment_file` with `content_type = "iso"` uploads through the API
    // (snippets go over SSH, outside any API proxy).
    let g = tls_gate().await;
    let mut p = Provider::new(&g);
    let data: Vec<u8> = (0..(8u32 << 20) + 5).map(|i| (i % 253) as u8).collect();
    let upid = p
        .upload("local", "iso", "debian-13-netinst.iso", &data)
        .await
        .unwrap();
    p.wait_for_task(upid.as_str().unwrap()).await.unwrap();
    let list = p
        .request(
            "GET",
            "nodes/pve/storage/local/content",
            &[("content", "iso".into())],
        )
        .await
        .unwrap();
    let iso = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volid"] == "local:iso/debian-13-netinst.iso")
        .cloned()
        .expect("the ISO is listed");
    assert_eq!(iso["size"], data.len());
    let rec = g.sim.recorder.requests();
    let got: Vec<(String, String)> = rec
        .iter()
        .map(|r| (r.method.clone(), r.target.clone()))
        .collect();
    let want: Vec<(String, String)> = p
        .sent
        .iter()
        .map(|s| (s.method.clone(), s.target.clone()))
        .collect();
    assert_eq!(got, want);
    let up = &rec[0];
    assert!(up.body_len > data.len() as u64);
    assert_eq!(
        up.header("content-length"),
        Some(up.body_len.to_string().as_str())
    );
    assert!(up.header("transfer-encoding").is_none());
}

#[test]
fn go_encodings() {
    assert_eq!(
        encode(&[
            ("newid", "130".into()),
            ("full", "1".into()),
            ("name", "a b".into())
        ]),
        "full=1&name=a+b&newid=130"
    );
    assert_eq!(
        query_escape("virtio=BC:24,bridge=vmbr0"),
        "virtio%3DBC%3A24%2Cbridge%3Dvmbr0"
    );
    assert_eq!(
        path_escape("UPID:pve:00000001:root@pam!tofu:"),
        "UPID:pve:00000001:root@pam%21tofu:"
    );
    let e = validate_response_code(
        403,
        "Permission check failed (pvegate: VM 104 'doc1' is readonly)",
        br#"{"data":null,"message":"Permission check failed (pvegate: VM 104 'doc1' is readonly)\n"}"#,
    );
    assert_eq!(
        e.to_string(),
        "received an HTTP 403 response - Reason: Permission check failed (pvegate: VM 104 'doc1' is readonly)"
    );
    let e = validate_response_code(
        400,
        "Parameter verification failed.",
        br#"{"data":null,"errors":{"newid":"invalid"},"message":"Parameter verification failed.\n"}"#,
    );
    assert_eq!(
        e.to_string(),
        "received an HTTP 400 response - Reason: Parameter verification failed. (newid: invalid)"
    );
}
