//! Running in production, through the real binary with loopback fault injection: the admin
//! listener (`/healthz`, `/readyz`, `/metrics`), the upstream response timeout (hung, slow
//! and resetting upstreams), the request-body timeout, `listen.max_connections`, graceful
//! shutdown on SIGTERM (an upload in flight, a websocket), and hyper's own 414/431 answers in
//! Proxmox's shape.
//!
//! Timeouts are configured small so the tests end quickly; nothing asserts on speed.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    log: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line containing {needle:?}");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pvegate did not exit within 30 s");
    }

    fn admin(&self) -> SocketAddr {
        self.admin.expect("admin listener configured")
    }
}

fn address_in(line: &str) -> SocketAddr {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["address"].as_str().unwrap().parse().unwrap()
}

/// Starts `pvegate serve` with the homelab policy in front of `upstream_url`; `listen`,
/// `upstream` and `extra` are added to the sections of those names (`extra`: whole sections).
fn serve(upstream_url: &str, listen: &str, upstream: &str, extra: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    write("homelab.toml", HOMELAB);
    let cfg = write(
        "pvegate.toml",
        &format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n{listen}\n[upstream]\nurl = \"{upstream_url}\"\n{upstream}\n[policy]\nfiles = [\"homelab.toml\"]\n{extra}\n"
        ),
    );
    spawn(&cfg, dir, extra.contains("[admin]"))
}

fn spawn(cfg: &Path, dir: tempfile::TempDir, admin: bool) -> Served {
    let (child, rx) = spawn_serve(cfg, &[]);
    let mut served = Served {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        log: rx,
        _dir: dir,
    };
    if admin {
        served.admin = Some(address_in(&served.wait_log("admin listener")));
    }
    served.addr = address_in(&served.wait_log("pvegate listening"));
    served
}

const ADMIN: &str = "[admin]\naddress = \"127.0.0.1:0\"";

/// A GET on the admin listener: (status, body).
async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n")).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Polls `/readyz` until it answers `want` (bounded).
async fn wait_ready(addr: SocketAddr, want: u16) -> String {
    for _ in 0..100 {
        let (status, body) = admin_get(addr, "/readyz").await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {want}");
}

/// The value of one exact series in a metrics text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// `pvegate_upstream_up` of the one upstream (labelled with its `host:port`).
fn upstream_up(text: &str) -> f64 {
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pvegate_upstream_up{node=\"127.0.0.1:"))
        .collect();
    assert_eq!(series.len(), 1, "one upstream node in:\n{text}");
    series[0].rsplit(' ').next().unwrap().parse().unwrap()
}

/// A fake upstream that accepts connections and then does what `behave` says with each.
async fn fake_upstream<F, Fut>(behave: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(behave(s));
        }
    });
    url
}

/// Reads one request head from `s` (enough for the fakes).
async fn read_head(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_is_answered_504_in_the_request_format() {
    // Accepts, reads the request, never answers; reports when pvegate closes the connection.
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let url = fake_upstream(move |mut s| {
        let closed_tx = closed_tx.clone();
        async move {
            read_head(&mut s).await;
            let mut sink = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(3600), async {
                while let Ok(1..) = s.read(&mut sink).await {}
            })
            .await;
            let _ = closed_tx.send(());
        }
    })
    .await;
    let served = serve(&url, "", "response_timeout_secs = 1", "");
    let r = raw(
        served.addr,
        &get("/api2/json/nodes/pve/qemu/104/status/current"),
    )
    .await;
    assert_eq!(r.status, 504, "{} {}", r.status, r.reason);
    assert!(
        r.reason.starts_with("pvegate: the Proxmox upstream"),
        "{}",
        r.reason
    );
    let v = r.json();
    assert_eq!(v["data"], serde_json::Value::Null);
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("did not answer within 1s"), "{msg}");
    assert!(msg.contains("upstream.response_timeout_secs"), "{msg}");
    assert!(msg.ends_with('\n'));
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    // The upstream connection is given up with the request: hung upstreams do not pile up.
    tokio::time::timeout(Duration::from_secs(20), closed.recv())
        .await
        .expect("upstream connection closed after the 504");

    // The web UI's format: HTTP 200 with the status inside.
    let r = raw(
        served.addr,
        &get("/api2/extjs/nodes/pve/qemu/104/status/current"),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], 504);
    assert_eq!(v["success"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_outlives_the_response_timeout_and_a_reset_is_502() {
    // Answers the head at once, then the body over about 2.5 s: longer than the response
    // timeout, which covers the head only (downloads, task logs).
    let slow = fake_upstream(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let part = format!("{{\"n\":{i}}}\n");
            let _ = s
                .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                .await;
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let served = serve(&slow, "", "response_timeout_secs = 1", "");
    let r = raw(
        served.addr,
        &get("/api2/json/nodes/pve/qemu/104/status/current"),
    )
    .await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    for i in 0..5 {
        assert!(body.contains(&format!("{{\"n\":{i}}}")), "{body}");
    }

    // Resets every connection after reading the request: 502 in the json shape.
    let reset = fake_upstream(|mut s| async move {
        read_head(&mut s).await;
        // Linger 0: closing sends a reset.
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    let served = serve(&reset, "", "response_timeout_secs = 1", "");
    let r = raw(served.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 502, "{} {}", r.status, r.reason);
    assert_eq!(r.json()["data"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_stop_arriving_are_cut_after_the_body_timeout() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let served = serve(&sim.url, "body_timeout_secs = 1", "", "");
    // A Content-Length never filled: 408 in the json shape, then the connection is closed.
    let head = format!(
        "POST /api2/json/nodes/pve/qemu/100/config HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=abc"
    );
    let r = raw(served.addr, &head).await;
    assert_eq!(r.status, 408, "{} {}", r.status, r.reason);
    assert!(
        r.message().contains("listen.body_timeout_secs"),
        "{}",
        r.message()
    );
    // A chunked body that never ends: the same.
    let head = format!(
        "PUT /api2/json/nodes/pve/qemu/100/config HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nname="
    );
    let r = raw(served.addr, &head).await;
    assert_eq!(r.status, 408, "{} {}", r.status, r.reason);
    // An upload (streamed to the upstream as it arrives) that stops: the connection closes.
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api2/json/nodes/pve/storage/local/upload HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: 100000\r\n\r\n--XYZ\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest))
        .await
        .expect("connection closed after the body timeout")
        .ok();
    // Neither parameter request reached Proxmox (their bodies never completed).
    assert!(sim
        .recorder
        .requests()
        .iter()
        .all(|r| !r.path().ends_with("/config")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_new_clients_wait_and_are_served_when_one_closes() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let served = serve(&sim.url, "max_connections = 2", "", ADMIN);
    // Two keep-alive connections, each answered once and kept open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(served.addr).await.unwrap();
        s.write_all(get("/api2/json/version").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        held.push(s);
    }
    let (_, text) = admin_get(served.admin(), "/metrics").await;
    assert_eq!(metric(&text, "pvegate_open_connections"), 2.0);

    // A third client: the kernel queues it, pvegate does not take it while two are open.
    let mut third = TcpStream::connect(served.addr).await.unwrap();
    third
        .write_all(
            get("/api2/json/version")
                .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut buf)).await;
    assert!(
        early.is_err() && buf.is_empty(),
        "answered beyond max_connections"
    );

    // One closes: the third is served.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(20), third.read_to_end(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    let r = parse_response(&buf);
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
}

/// The multipart upload body of `n` KiB of data, in 64 KiB pieces.
fn upload_parts(kib: usize) -> (String, Vec<Vec<u8>>, usize) {
    let head = "--XYZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n--XYZ\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"drain.iso\"\r\nContent-Type: application/octet-stream\r\n\r\n";
    let tail = "\r\n--XYZ--\r\n";
    let mut parts = vec![head.as_bytes().to_vec()];
    for i in 0..kib / 64 {
        parts.push(vec![(i % 251) as u8; 64 * 1024]);
    }
    parts.push(tail.as_bytes().to_vec());
    let total = parts.iter().map(Vec::len).sum();
    let req_head = format!(
        "POST /api2/json/nodes/pve/storage/local/upload HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nContent-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {total}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    (req_head, parts, total)
}

/// Sends an upload's head and waits for `100 Continue`: pvegate sends it when the forwarder
/// first reads the body, so from then on the upload has been decided and is being forwarded.
async fn start_upload(addr: std::net::SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut byte))
            .await
            .expect("100 Continue")
            .unwrap();
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_lets_it_finish_and_exits_0() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let mut served = serve(&sim.url, "drain_secs = 20", "", ADMIN);
    wait_ready(served.admin(), 200).await;
    let (head, parts, total) = upload_parts(4096);
    let mut s = start_upload(served.addr, &head).await;
    let half = parts.len() / 2;
    for p in &parts[..half] {
        s.write_all(p).await.unwrap();
    }
    served.signal("-TERM");
    served.wait_log("shutting down");
    // Draining: not ready, and no new connections.
    let body = wait_ready(served.admin(), 503).await;
    assert!(body.contains("shutting down"), "{body}");
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(served.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "still accepting while draining");
    // The rest of the upload still goes through.
    for p in &parts[half..] {
        s.write_all(p).await.unwrap();
    }
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("upload answered")
        .unwrap();
    let r = parse_response(&buf);
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let rec = sim.recorder.last().unwrap();
    assert!(rec.path().ends_with("/upload"));
    assert_eq!(rec.body_len, total as u64);
    assert_eq!(served.exit_code(), Some(0));
}

/// Reads what is left of a connection during a shutdown: one 200 that says
/// `Connection: close`, then the end, within 5 s (well before `drain_secs`).
async fn answered_with_close_then_closed(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("answered and closed well before drain_secs")
        .unwrap();
    let r = parse_response(&buf);
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(r.header("connection"), Some("close"));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_a_busy_keep_alive_connection_after_its_answer() {
    // A keep-alive connection busy with an upload when the shutdown begins: the upload is
    // answered, then the connection is closed at once (not held open until drain_secs ends).
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let mut served = serve(&sim.url, "drain_secs = 20", "", "");
    let (head, parts, total) = upload_parts(1024);
    let head = head.replace("Connection: close\r\n", "");
    let mut s = start_upload(served.addr, &head).await;
    s.write_all(&parts[0]).await.unwrap();
    served.signal("-TERM");
    served.wait_log("shutting down");
    for p in &parts[1..] {
        s.write_all(p).await.unwrap();
    }
    let started = std::time::Instant::now();
    answered_with_close_then_closed(&mut s).await;
    assert_eq!(sim.recorder.last().unwrap().body_len, total as u64);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(served.exit_code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answers_hop_by_hop_headers_stay_on_the_upstream_hop() {
    // Proxmox's answers: the first with only hop-by-hop options (left out while the answer is
    // read), the second with a Connection that names a header of its own (removed with it).
    const ANSWERS: [&str; 2] = [
        "Connection: keep-alive\r\nKeep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Kept: a\r\n",
        "Connection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: b\r\n",
    ];
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = fake_upstream(move |mut s| {
        let next = std::sync::Arc::clone(&next);
        async move {
            loop {
                read_head(&mut s).await;
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(lines) = ANSWERS.get(i) else { return };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{lines}Content-Length: 13\r\n\r\n{{\"data\":null}}"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let served = serve(&url, "", "", "");
    for kept in ["a", "b"] {
        let r = raw(served.addr, &get("/api2/json/version")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-kept"), Some(kept), "{:?}", r.headers);
        for hop in ["keep-alive", "proxy-connection", "trailer", "x-private"] {
            assert_eq!(
                r.header(hop),
                None,
                "{hop} reached the client: {:?}",
                r.headers
            );
        }
        // pvegate's own connection option towards the client, not Proxmox's.
        assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
        assert_eq!(r.body, b"{\"data\":null}");
        // The plain answer's lines reach the client spelled as Proxmox spelled them; the one
        // whose Connection names a header went through a header map.
        let spelled = r.headers.iter().any(|(k, _)| k == "X-Kept");
        assert_eq!(spelled, kept == "a", "{:?}", r.headers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_request_in_flight_with_connection_close() {
    // A small request (read by pvegate's fast path, not hyper) waiting for Proxmox when the
    // shutdown begins: it is answered, its answer says Connection: close, and the keep-alive
    // connection closes right after it.
    let (arrived_tx, arrived_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let upstream_release = std::sync::Arc::clone(&release);
    let url = fake_upstream(move |mut s| {
        let arrived = arrived_tx.clone();
        let release = std::sync::Arc::clone(&upstream_release);
        async move {
            read_head(&mut s).await;
            let _ = arrived.send(());
            release.notified().await;
            let body = r#"{"data":{"version":"8.3.0"}}"#;
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }
    })
    .await;
    let mut served = serve(&url, "drain_secs = 20", "", "");
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    s.write_all(get("/api2/json/version").as_bytes())
        .await
        .unwrap();
    let mut arrived_rx = arrived_rx;
    tokio::time::timeout(Duration::from_secs(10), arrived_rx.recv())
        .await
        .expect("the request reached the upstream");
    served.signal("-TERM");
    served.wait_log("shutting down");
    release.notify_one();
    let r = answered_with_close_then_closed(&mut s).await;
    assert!(String::from_utf8_lossy(&r.body).contains("8.3.0"));
    assert_eq!(served.exit_code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_websocket_open_closes_it_last_and_exits_0() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let mut served = serve(&sim.url, "drain_secs = 20", "", "");
    let (port, ticket) = vnc_console(served.addr, 110).await;
    let req = vnc_websocket_request(served.addr, 110, &port, &ticket);
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(vec![1u8, 2, 3].into())
    );
    // An upload in flight keeps the drain going.
    let (head, parts, total) = upload_parts(1024);
    let mut up = start_upload(served.addr, &head).await;
    up.write_all(&parts[0]).await.unwrap();
    served.signal("-TERM");
    served.wait_log("shutting down");
    // While requests are in flight, the tunnel still carries frames: websockets close last.
    ws.send(Message::Binary(vec![4u8, 5].into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(vec![4u8, 5].into())
    );
    for p in &parts[1..] {
        up.write_all(p).await.unwrap();
    }
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), up.read_to_end(&mut buf))
        .await
        .expect("upload answered")
        .unwrap();
    assert_eq!(parse_response(&buf).status, 200);
    assert_eq!(sim.recorder.last().unwrap().body_len, total as u64);
    // Then the tunnel is closed and pvegate exits 0.
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(end.is_ok(), "websocket still open after the drain");
    assert_eq!(served.exit_code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_health_readiness_and_metrics() {
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let served = serve(&sim.url, "", "", ADMIN);
    assert_eq!(admin_get(served.admin(), "/healthz").await.0, 200);
    let body = wait_ready(served.admin(), 200).await;
    assert!(body.contains("policy generation 1"), "{body}");
    let (status, _) = admin_get(served.admin(), "/nope").await;
    assert_eq!(status, 404);

    for _ in 0..2 {
        let r = raw(
            served.addr,
            &get("/api2/json/nodes/pve/qemu/104/status/current"),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = raw(
        served.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/104/status/stop", ""),
    )
    .await;
    assert_eq!(r.status, 403);
    // The probe is not a client request: only the proxied ones count.
    let forwarded = sim
        .recorder
        .requests()
        .iter()
        .filter(|r| r.path().ends_with("/status/current"))
        .count();
    assert_eq!(forwarded, 2);
    assert!(sim
        .recorder
        .requests()
        .iter()
        .all(|r| !r.path().ends_with("/status/stop")));

    let (status, text) = admin_get(served.admin(), "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &text,
            r#"pvegate_requests_total{action="read",decision="allow"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"pvegate_requests_total{action="power.stop",decision="deny"}"#
        ),
        2.0
    );
    let refusals: f64 = text
        .lines()
        .filter(|l| l.starts_with("pvegate_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(refusals, 2.0, "{text}");
    assert_eq!(
        metric(&text, r#"pvegate_upstream_responses_total{code="200"}"#),
        2.0
    );
    assert_eq!(
        metric(&text, "pvegate_upstream_response_seconds_count"),
        2.0
    );
    assert_eq!(upstream_up(&text), 1.0);
    assert_eq!(metric(&text, "pvegate_policy_generation"), 1.0);
    assert_eq!(metric(&text, "pvegate_policy_last_reload_success"), 1.0);
    assert_eq!(metric(&text, "pvegate_audit_lines_dropped_total"), 0.0);
    assert!(
        text.contains("# TYPE pvegate_open_connections gauge"),
        "{text}"
    );

    // The upstream goes away: not ready, with the reason; upstream_up 0.
    sim.shutdown();
    let body = wait_ready(served.admin(), 503).await;
    assert!(
        body.contains("cannot connect to the Proxmox upstream"),
        "{body}"
    );
    let (_, text) = admin_get(served.admin(), "/metrics").await;
    assert_eq!(upstream_up(&text), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_upstream_is_down() {
    // Nothing listens there.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let served = serve(&url, "", "", ADMIN);
    assert_eq!(admin_get(served.admin(), "/healthz").await.0, 200);
    let body = wait_ready(served.admin(), 503).await;
    assert!(body.starts_with("not ready:"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_414_and_431_come_in_proxmox_shape() {
    let g = start().await;
    // More header lines than hyper parses.
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        g.addr,
        &format!("GET /api2/json/version HTTP/1.1\r\nHost: pve\r\n{many}\r\n"),
    )
    .await;
    assert_eq!(r.status, 431, "{} {}", r.status, r.reason);
    assert!(
        r.reason
            .starts_with("pvegate: request header fields too large"),
        "{}",
        r.reason
    );
    assert_eq!(r.json()["data"], serde_json::Value::Null);
    assert!(r.message().contains("64 header lines"), "{}", r.message());
    // A request-target longer than hyper takes.
    let long = "a".repeat(70_000);
    let r = raw(
        g.addr,
        &format!("GET /api2/json/version?x={long} HTTP/1.1\r\nHost: pve\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 414, "{} {}", r.status, r.reason);
    assert!(
        r.message().starts_with("pvegate: request-target too long"),
        "{}",
        r.message()
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert!(g.sim.recorder.is_empty());
}

/// One request on a keep-alive connection: (status, body).
async fn exchange(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "connection closed");
        buf.push(byte[0]);
    }
    let r = parse_response(&buf);
    let length: usize = r.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.unwrap();
    (r.status, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_keep_alive_connection_has_its_own_response_timeout() {
    // Answers on keep-alive connections at once, except `/cluster/status`, which it never
    // answers. The client connection's response timer is re-armed for each request: it
    // must time out the hung ones (also after it fired once) and never the others.
    let url = fake_upstream(|mut s| async move {
        loop {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            if head.starts_with(b"GET /api2/json/cluster/status ") {
                let mut sink = [0u8; 64];
                while let Ok(1..) = s.read(&mut sink).await {}
                return;
            }
            let body = br#"{"data":{"version":"8.3.0"}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if s.write_all(answer.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
                return;
            }
        }
    })
    .await;
    let served = serve(&url, "", "response_timeout_secs = 1", "");
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    for round in 0..2 {
        for _ in 0..3 {
            let (status, body) = exchange(&mut s, "/api2/json/version").await;
            assert_eq!(status, 200, "round {round}: {body}");
            assert!(body.contains("8.3.0"), "{body}");
        }
        let (status, body) = exchange(&mut s, "/api2/json/cluster/status").await;
        assert_eq!(status, 504, "round {round}: {body}");
        assert!(body.contains("did not answer within 1s"), "{body}");
    }
    // Idle for longer than the timeout (a timer armed by the last request fires meanwhile),
    // then the connection still serves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = exchange(&mut s, "/api2/json/version").await;
    assert_eq!(status, 200);
}
