//! Test harness: a simulated Proxmox and the real pvegate stack in front of it, on loopback
//! ports chosen by the OS, plus a raw HTTP/1.1 client for requests no library would send.
#![allow(dead_code)]

pub mod clients;

use std::net::SocketAddr;
use std::time::Duration;

use pvegate::config::{self, Trust};
use pvegate::policy::{Policy, PolicyStore};
use pvegate::server::Listener;
use pvegate::{stack, upstream};
use pvegate_sim::{self as sim, SimConfig, SimHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The homelab policy shipped in the repo.
pub const HOMELAB: &str = include_str!("../../policies/homelab.toml");

/// The demo token of the simulated Proxmox.
pub const TOKEN: &str = "PVEAPIToken=root@pam!tofu=11111111-2222-3333-4444-555555555555";

/// A running simulated Proxmox with pvegate in front of it.
pub struct Gate {
    pub sim: SimHandle,
    pub addr: SocketAddr,
    pub url: String,
    pub store: PolicyStore,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Options for [`start_with`].
pub struct Opts {
    pub policy: String,
    pub sim_tls: bool,
    pub trust: Option<Trust>,
    pub client_tls: Option<rustls::ServerConfig>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            policy: HOMELAB.to_string(),
            sim_tls: false,
            trust: None,
            client_tls: None,
        }
    }
}

/// Plain HTTP on both sides with the homelab policy.
pub async fn start() -> Gate {
    start_with(Opts::default()).await
}

/// The real `pvegate` binary, as cargo built it for the tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_pvegate");

/// Upstream settings pointing at `sim`.
pub fn upstream_for(sim: &SimHandle, trust: Trust) -> config::Upstream {
    clients::upstream_cfg(&sim.url, trust, Duration::from_millis(3000))
}

pub async fn start_with(opts: Opts) -> Gate {
    let sim = sim::start(SimConfig {
        tls: opts.sim_tls,
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    let trust = opts.trust.unwrap_or(Trust::Insecure);
    let up = upstream::Upstream::new(&upstream_for(&sim, trust)).unwrap();
    let policy = Policy::from_toml_str("test-policy.toml", &opts.policy).unwrap();
    let store = PolicyStore::new(policy, vec![]);
    let tls = opts.client_tls.is_some();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), opts.client_tls)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(listener.serve(stack::build(store.clone(), up)));
    let url = format!(
        "{}://127.0.0.1:{}",
        if tls { "https" } else { "http" },
        addr.port()
    );
    Gate {
        sim,
        addr,
        url,
        store,
        task,
    }
}

/// A parsed raw HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Sends exactly `bytes` (a whole request; `Connection: close` is added if missing) and reads
/// the response until the server closes.
pub async fn raw(addr: SocketAddr, request: &str) -> RawResponse {
    raw_bytes(addr, request.as_bytes()).await
}

pub async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let text = String::from_utf8_lossy(request).to_string();
    let req = if text.to_ascii_lowercase().contains("\r\nconnection:") {
        request.to_vec()
    } else {
        let head_end = text.find("\r\n\r\n").expect("request has a blank line");
        let mut v = request[..head_end].to_vec();
        v.extend_from_slice(b"\r\nConnection: close");
        v.extend_from_slice(&request[head_end..]);
        v
    };
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> RawResponse {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    parts.next();
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let reason = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        reason,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// A GET with the demo token.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n")
}

/// A form POST (or PUT) with the demo token.
pub fn form(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A JSON POST/PUT with the demo token.
pub fn json(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Asserts a policy denial in json shape, and that the upstream recorded nothing.
pub fn assert_denied_json(g: &Gate, r: &RawResponse, needle: &str) {
    assert_eq!(
        r.status,
        403,
        "expected 403, got {} {}: {}",
        r.status,
        r.reason,
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.reason.starts_with("Permission check failed (pvegate: "),
        "reason: {}",
        r.reason
    );
    assert!(
        r.reason.contains(needle),
        "reason {:?} lacks {needle:?}",
        r.reason
    );
    let v = r.json();
    assert_eq!(v["data"], serde_json::Value::Null);
    assert_eq!(v["message"].as_str().unwrap(), format!("{}\n", r.reason));
    assert_eq!(
        g.sim.recorder.len(),
        0,
        "upstream saw a refused request: {:?}",
        g.sim.recorder.requests()
    );
}

/// Asserts a 400 refusal that never reached the upstream.
pub fn assert_refused(g: &Gate, r: &RawResponse) {
    assert!(
        r.status == 400 || r.status == 501 || r.status == 411 || r.status == 413,
        "expected a refusal, got {} {}: {}",
        r.status,
        r.reason,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        g.sim.recorder.len(),
        0,
        "upstream saw a refused request: {:?}",
        g.sim.recorder.requests()
    );
}

/// Writes `bytes` on a new connection to `addr` and returns everything read until the server
/// closes it or `wait` has passed.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    buf
}

/// The websocket request for the VNC console of `vmid` (from [`vnc_console`]) through the
/// gate at `addr`, with the test token.
pub fn vnc_websocket_request(
    addr: SocketAddr,
    vmid: u32,
    port: &str,
    ticket: &str,
) -> http::Request<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "ws://127.0.0.1:{}/api2/json/nodes/pve/qemu/{vmid}/vncwebsocket?port={port}&vncticket={}",
        addr.port(),
        percent_encoding::utf8_percent_encode(ticket, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    req
}

/// Asks for a VNC console of `vmid` (`POST …/vncproxy websocket=1`): its port and ticket.
pub async fn vnc_console(addr: SocketAddr, vmid: u32) -> (String, String) {
    let r = raw(
        addr,
        &form(
            "POST",
            &format!("/api2/json/nodes/pve/qemu/{vmid}/vncproxy"),
            "websocket=1",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let data = r.json()["data"].clone();
    let port = data["port"].as_str().unwrap().to_string();
    let ticket = data["ticket"].as_str().unwrap().to_string();
    (port, ticket)
}

/// Starts the real binary as `pvegate serve --config cfg` with `env` added, and returns the
/// child with a channel of its stderr lines (read on a thread of its own, so a test can wait
/// for a line with a timeout).
pub fn spawn_serve(
    cfg: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pvegate"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}
