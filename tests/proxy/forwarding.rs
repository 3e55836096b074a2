//! pvegate forwards faithfully: what clients rely on below the API survives the proxy.
//!
//! - TLS to clients: a client that speaks only TLS 1.3 connects, and ALPN picks http/1.1; a
//!   returning client resumes its session however many other clients came in between.
//! - Upstream pinning checks the whole handshake: the right pin works, a wrong pin is a 502
//!   saying "fingerprint", and a server presenting the pinned certificate without its key
//!   (it cannot sign the handshake) is refused too.
//! - The upstream pool idles out before pveproxy's 5 s keep-alive does, requests spaced across
//!   that boundary succeed, and a GET that meets a pooled connection the upstream closed is
//!   sent once more on a fresh one (a POST is not).
//! - Upstream connections follow client connections: requests on one client connection go
//!   over one upstream connection; concurrent client connections get one each; a closed
//!   client connection's upstream connection serves the next client connection.
//! - gzip passes through untouched both ways (`Accept-Encoding` up, `Content-Encoding` and the
//!   compressed bytes down), and `Host` arrives as the client sent it.
//! - A 512 MiB upload generated on the fly streams through with the client's `Content-Length`
//!   (never chunked), arrives with the right length and SHA-256, and the process's peak memory
//!   does not grow with it; `Expect: 100-continue` (curl) gets its interim answer.
//! - Downloads stream, with a `Content-Length` or close-delimited as pveproxy's streamed
//!   downloads are: the client reads the first half before the upstream has sent the rest; a
//!   3 MB journal and a task log download arrive whole.
//! - Websocket consoles (Chromium's and Firefox's `Connection` header): frames are untouched
//!   (every byte value, text, 1 MiB) and a tunnel idle for longer than any timeout in
//!   pvegate's server still echoes.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::clients::{front, gunzip, proc_status_kib, upstream_cfg, TestPki};
use common::*;
use futures_util::{SinkExt, StreamExt};
use pvegate::config::Trust;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The longest timeout in pvegate's server (`src/server.rs`: header read timeout, 30 s),
/// plus a margin: a console tunnel must outlive it while idle.
const LONGEST_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads one HTTP/1.1 request (head and `Content-Length` body) from `s`; `None` at EOF.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

/// Reads a response framed by `Content-Length` or chunked (keep-alive safe).
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    let (head, body) = read_request(s).await.expect("a response");
    let mut all = head.clone().into_bytes();
    all.extend_from_slice(&body);
    if head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked\r\n")
    {
        // Chunk by chunk up to the last one and the end of the (empty) trailer section.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            line.clear();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).await.expect("a chunk-size line");
                line.push(byte[0]);
            }
            all.extend_from_slice(&line);
            let size = usize::from_str_radix(
                std::str::from_utf8(&line[..line.len() - 2]).unwrap().trim(),
                16,
            )
            .unwrap();
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).await.expect("a chunk");
            all.extend_from_slice(&chunk);
            if size == 0 {
                assert_eq!(&chunk, b"\r\n", "no trailers from pvegate");
                break;
            }
        }
    }
    parse_response(&all)
}

#[tokio::test]
async fn clients_get_tls13_and_http11_by_alpn() {
    let pki = TestPki::new();
    let g = start_with(Opts {
        client_tls: Some(pki.server_config()),
        ..Opts::default()
    })
    .await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(versions)));
        let v = tls_visit(&connector, g.addr).await;
        assert_eq!(v.version, Some(versions[0].version));
        assert_eq!(v.alpn.as_deref(), Some(&b"http/1.1"[..]));
        let r = v.response;
        assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
        assert_eq!(r.json()["data"]["version"], "9.1.1");
    }
}

/// What one `GET /api2/json/version` over a new TLS connection from `connector` showed.
struct TlsVisit {
    response: RawResponse,
    version: Option<rustls::ProtocolVersion>,
    alpn: Option<Vec<u8>>,
    resumed: bool,
}

async fn tls_visit(connector: &tokio_rustls::TlsConnector, addr: std::net::SocketAddr) -> TlsVisit {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(get("/api2/json/version").as_bytes())
        .await
        .unwrap();
    // Reading the answer also takes in the session tickets sent after the handshake.
    let response = read_response(&mut tls).await;
    TlsVisit {
        response,
        version,
        alpn,
        resumed,
    }
}

/// One visit that must be answered 200; whether its handshake resumed a session.
async fn resumed_request(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> bool {
    let v = tls_visit(connector, addr).await;
    assert_eq!(
        v.response.status, 200,
        "{} {}",
        v.response.status, v.response.reason
    );
    v.resumed
}

#[tokio::test]
async fn tls_sessions_resume_however_many_clients_came_between() {
    // A returning client resumes its session (TLS 1.3 and 1.2) even after 300 other clients'
    // handshakes: tickets are stateless, where a server-side session cache (256 entries by
    // default) would have dropped the first client's session.
    let pki = TestPki::new();
    let g = start_with(Opts {
        client_tls: Some(pki.server_config()),
        ..Opts::default()
    })
    .await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let returning = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(versions)));
        assert!(!resumed_request(&returning, g.addr).await, "first contact");
        let crowd = (0..300)
            .map(|_| tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(versions))))
            .collect::<Vec<_>>();
        for c in &crowd {
            resumed_request(c, g.addr).await;
        }
        assert!(
            resumed_request(&returning, g.addr).await,
            "the returning client had to do a full handshake ({versions:?})"
        );
    }
    let forwarded = g.sim.recorder.requests();
    let versions = forwarded
        .iter()
        .filter(|r| r.path() == "/api2/json/version");
    assert_eq!(
        versions.count(),
        2 * 302,
        "every request reached Proxmox once"
    );
}

/// A TLS server that presents `cert` but signs the handshake with `signer`; it answers 200 to
/// anything it receives after a successful handshake. Counts the requests it answered and the
/// TLS connections it completed.
async fn tls_server(
    cert: rustls::pki_types::CertificateDer<'static>,
    signer: rustls::pki_types::PrivateKeyDer<'static>,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let key = rustls::crypto::ring::sign::any_supported_type(&signer).unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![cert], key);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (count, shaken) = (served.clone(), handshakes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let (count, shaken) = (count.clone(), shaken.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                shaken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                while read_request(&mut tls).await.is_some() {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = r#"{"data":{"version":"9.1.1"}}"#;
                    let res = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(res.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, served, handshakes)
}

#[tokio::test]
async fn upstream_pin_checks_the_whole_handshake() {
    // The sim with its own certificate: the right pin works, a wrong one is a clear 502.
    let sim = pvegate_sim::start(pvegate_sim::SimConfig {
        tls: true,
        ..pvegate_sim::SimConfig::demo()
    })
    .await
    .unwrap();
    let right = pvegate::config::parse_fingerprint(sim.fingerprint.as_deref().unwrap()).unwrap();
    let idle = Duration::from_millis(3000);
    let ok = front(
        &upstream_cfg(&sim.url, Trust::Fingerprint(right), idle),
        HOMELAB,
        None,
    )
    .await;
    let r = raw(ok.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);

    let mut wrong = right;
    wrong[0] ^= 0xff;
    let bad = front(
        &upstream_cfg(&sim.url, Trust::Fingerprint(wrong), idle),
        HOMELAB,
        None,
    )
    .await;
    sim.recorder.clear();
    let r = raw(bad.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 502, "{} {}", r.status, r.reason);
    assert!(r.reason.contains("fingerprint"), "reason: {}", r.reason);
    assert!(r.message().contains("fingerprint"), "{}", r.message());
    assert!(sim.recorder.is_empty(), "nothing reached the upstream");

    // A server holding the pinned certificate but not its key cannot complete the handshake.
    let pinned_key = rcgen::KeyPair::generate().unwrap();
    let pinned = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&pinned_key)
        .unwrap();
    let pin = pvegate::upstream::tls::fingerprint(pinned.der());
    let own = rustls::pki_types::PrivateKeyDer::Pkcs8(pinned_key.serialize_der().into());
    let other = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rcgen::KeyPair::generate().unwrap().serialize_der().into(),
    );
    for (signer, honest) in [(own, true), (other, false)] {
        let (addr, served, handshakes) = tls_server(pinned.der().clone(), signer).await;
        let gate = front(
            &upstream_cfg(&format!("https://{addr}"), Trust::Fingerprint(pin), idle),
            HOMELAB,
            None,
        )
        .await;
        let r = raw(gate.addr, &get("/api2/json/version")).await;
        let served = served.load(std::sync::atomic::Ordering::SeqCst);
        if honest {
            assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
            assert_eq!(served, 1);
            // An idle TLS connection is seen to be open (nothing to read is not a close) and
            // carries the next requests. The first of them may come before the closed client
            // connection has handed its upstream connection to the shared pool: then it opens
            // a second one, which the other four use.
            gets_on_one_connection(gate.addr, "/api2/json/version", 5).await;
            let handshakes = handshakes.load(std::sync::atomic::Ordering::SeqCst);
            assert!(
                (1..=2).contains(&handshakes),
                "six requests, {handshakes} upstream TLS connections"
            );
        } else {
            assert_eq!(r.status, 502, "{} {}", r.status, r.reason);
            assert!(
                r.reason.contains("cannot connect to the Proxmox upstream"),
                "{}",
                r.reason
            );
            assert_eq!(served, 0, "a request went to a server that cannot sign");
        }
    }
}

#[tokio::test]
async fn requests_spaced_across_pveproxys_keepalive_succeed() {
    // The sim closes idle connections after 5 s like pveproxy. With the shipped default
    // (a config that does not set `pool_idle_timeout_ms`), pvegate's pool gives them up first,
    // so a request 5.3 s later goes out on a fresh connection.
    let sim = pvegate_sim::start(pvegate_sim::SimConfig::demo())
        .await
        .unwrap();
    let cfg = pvegate::config::Config::parse(
        std::path::Path::new("/etc/pvegate/pvegate.toml"),
        &format!(
            "[listen]\naddress = \"127.0.0.1:8006\"\n[upstream]\nurl = \"{}\"\n\
             insecure = true\n[policy]\nfiles = [\"homelab.toml\"]\n",
            sim.url
        ),
    )
    .unwrap();
    assert!(cfg.upstream.pool_idle_timeout < pvegate_sim::IDLE_TIMEOUT);
    let g = front(&cfg.upstream, HOMELAB, None).await;
    let r = raw(g.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(pvegate_sim::IDLE_TIMEOUT + Duration::from_millis(300)).await;
    let r = raw(g.addr, &get("/api2/json/nodes/pve/qemu/110/status/current")).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let r = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/config", "cores=3"),
    )
    .await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let rec = sim.recorder.requests();
    assert_eq!(rec.len(), 3);
    assert_ne!(
        rec[0].peer, rec[1].peer,
        "the idle connection was not reused"
    );
    assert_eq!(
        rec[1].peer, rec[2].peer,
        "back-to-back requests share a pooled connection"
    );
}

/// pvegate (plain HTTP, the homelab policy) in front of a plain-HTTP upstream at `addr`.
async fn front_plain(addr: std::net::SocketAddr) -> common::clients::Front {
    front(
        &upstream_cfg(
            &format!("http://{addr}"),
            Trust::Insecure,
            Duration::from_secs(60),
        ),
        HOMELAB,
        None,
    )
    .await
}

/// Sends `n` keep-alive GETs on one client connection, reading each answer (Content-Length
/// framed) before the next.
async fn gets_on_one_connection(addr: std::net::SocketAddr, path: &str, n: usize) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..n {
        s.write_all(get(path).as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let len = s.read(&mut chunk).await.unwrap();
            assert!(len > 0, "connection closed early");
            buf.extend_from_slice(&chunk[..len]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let r = parse_response(&buf[..end + 4]);
                let length: usize = r.header("content-length").unwrap().parse().unwrap();
                if buf.len() >= end + 4 + length {
                    assert_eq!(r.status, 200);
                    break;
                }
            }
        }
    }
}

#[tokio::test]
async fn upstream_connections_follow_client_connections() {
    // An upstream that counts its connections and answers every request, keeping each alive.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    Bytes::from_static(br#"{"data":"ok"}"#),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    let gate = front_plain(addr).await;
    let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);

    gets_on_one_connection(gate.addr, "/api2/json/version", 20).await;
    assert_eq!(connections(), 1, "20 requests on one client connection");

    // Closed: its upstream connection is shared and serves the next client connection (once
    // pvegate has seen the close).
    tokio::time::sleep(Duration::from_millis(100)).await;
    gets_on_one_connection(gate.addr, "/api2/json/version", 5).await;
    assert_eq!(connections(), 1, "reused by the next client connection");

    // Four at once: each needs one of its own (one of them may get the shared one).
    let all: Vec<_> = (0..4)
        .map(|_| tokio::spawn(gets_on_one_connection(gate.addr, "/api2/json/nodes", 10)))
        .collect();
    for task in all {
        task.await.unwrap();
    }
    assert!(
        (4..=5).contains(&connections()),
        "one upstream connection per concurrent client connection: {}",
        connections()
    );
}

#[tokio::test]
async fn a_get_on_a_stale_pooled_connection_is_retried_once_and_a_post_is_not() {
    // An upstream that answers the first request on each connection, then reads the next one
    // and closes without answering: what a keep-alive timeout racing a request looks like.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut conn_no = 0;
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            conn_no += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let Some((head, _)) = read_request(&mut tcp).await else {
                    return;
                };
                log.lock()
                    .unwrap()
                    .push((conn_no, head.lines().next().unwrap().to_string()));
                let body = r#"{"data":"ok"}"#;
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                tcp.write_all(res.as_bytes()).await.unwrap();
                if let Some((head, _)) = read_request(&mut tcp).await {
                    log.lock()
                        .unwrap()
                        .push((conn_no, head.lines().next().unwrap().to_string()));
                }
                // dropped: closed without an answer
            });
        }
    });
    let gate = front_plain(addr).await;
    let r = raw(gate.addr, &get("/api2/json/version")).await;
    assert_eq!(r.status, 200);
    let r = raw(gate.addr, &get("/api2/json/nodes")).await;
    assert_eq!(
        r.status, 200,
        "GET retried on a fresh connection: {} {}",
        r.status, r.reason
    );
    {
        let seen = seen.lock().unwrap();
        let nodes: Vec<usize> = seen
            .iter()
            .filter(|(_, l)| l.starts_with("GET /api2/json/nodes "))
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(nodes.len(), 2, "sent twice: {seen:?}");
        assert_ne!(
            nodes[0], nodes[1],
            "the retry used a new connection: {seen:?}"
        );
    }
    // Connection 2 is pooled and will close after reading the next request: a POST there is
    // not repeated (it may have had an effect) and the client gets a 502.
    let r = raw(
        gate.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/start", ""),
    )
    .await;
    assert_eq!(r.status, 502, "{} {}", r.status, r.reason);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.starts_with("POST "))
        .count();
    assert_eq!(posts, 1, "a POST is never sent twice");
}

#[tokio::test]
async fn answers_of_every_framing_pass_through_and_keep_their_connection_when_they_can() {
    // An upstream answering in turn: chunked with an extension and a trailer, a 500 with
    // Proxmox's message as reason phrase, an interim 100 before a 200, a body delimited by
    // closing the connection, then whatever comes next on a new connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(usize, String, Vec<u8>)>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let answers: [(&[u8], bool); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n9;ext=1\r\n{\"data\":[\r\n10\r\n{\"node\":\"pve\"}]}\r\n0\r\nX-Checksum: 1\r\n\r\n", false),
            (b"HTTP/1.1 500 VM 104 is locked (backup)\r\nContent-Length: 13\r\n\r\n{\"data\":null}", false),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"data\":\"UPID\"}", false),
            (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: Keep-Alive\r\n\r\n{\"data\":{\"version\":\"9.1\"}}", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"data\":[]}", false),
        ];
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut conn_no = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            conn_no += 1;
            let (log, next) = (log.clone(), next.clone());
            tokio::spawn(async move {
                while let Some((head, body)) = read_request(&mut tcp).await {
                    log.lock().unwrap().push((conn_no, head, body));
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((answer, close)) = answers.get(i) else {
                        return;
                    };
                    tcp.write_all(answer).await.unwrap();
                    if *close {
                        return;
                    }
                }
            });
        }
    });
    let gate = front_plain(addr).await;
    // One keep-alive client connection: its upstream connection stays its own.
    let mut c = TcpStream::connect(gate.addr).await.unwrap();
    async fn ask(c: &mut TcpStream, req: String) -> RawResponse {
        c.write_all(req.as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), read_response(c))
            .await
            .expect("answered in time")
    }

    let r = ask(&mut c, get("/api2/json/nodes")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["node"], "pve");
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    let r = ask(&mut c, get("/api2/json/cluster/resources")).await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "VM 104 is locked (backup)")
    );
    assert_eq!(r.body, br#"{"data":null}"#);
    let r = ask(
        &mut c,
        form(
            "POST",
            "/api2/json/nodes/pve/qemu/110/status/start",
            "timeout=5",
        ),
    )
    .await;
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.body, br#"{"data":"UPID"}"#);
    let r = ask(&mut c, get("/api2/json/version")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["version"], "9.1");
    let r = ask(&mut c, get("/api2/json/nodes")).await;
    assert_eq!(r.body, br#"{"data":[]}"#);

    let seen = seen.lock().unwrap();
    let conns: Vec<usize> = seen.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(
        conns,
        [1, 1, 1, 1, 2],
        "one upstream connection until an answer ended it: {seen:?}"
    );
    let (_, post, body) = &seen[2];
    assert!(post.starts_with("POST /api2/json/nodes/pve/qemu/110/status/start HTTP/1.1\r\n"));
    assert!(
        post.to_ascii_lowercase()
            .contains("\r\ncontent-length: 9\r\n"),
        "{post}"
    );
    assert_eq!(body, b"timeout=5");
}

#[tokio::test]
async fn gzip_and_host_pass_through_untouched() {
    let g = start().await;
    let path = "/api2/json/nodes/pve/syslog?limit=200";
    let req = |enc: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: pve.example.org:8006\r\nAuthorization: {TOKEN}\r\n{enc}\r\n"
        )
    };
    let via = raw(g.addr, &req("Accept-Encoding: gzip, deflate, br\r\n")).await;
    assert_eq!(via.status, 200);
    assert_eq!(via.header("content-encoding"), Some("gzip"));
    assert_eq!(&via.body[..2], &[0x1f, 0x8b]);
    assert_eq!(
        via.header("content-length"),
        Some(via.body.len().to_string().as_str())
    );
    let rec = g.sim.recorder.last().unwrap();
    assert_eq!(rec.header("accept-encoding"), Some("gzip, deflate, br"));
    assert_eq!(rec.header("host"), Some("pve.example.org:8006"));
    // The same request straight to the sim gives the same compressed bytes.
    let direct = raw(g.sim.addr, &req("Accept-Encoding: gzip, deflate, br\r\n")).await;
    assert_eq!(via.body, direct.body, "compressed body changed on the way");
    let v: serde_json::Value = serde_json::from_slice(&gunzip(&via.body)).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 200);
    // Without Accept-Encoding: identity, as pveproxy answers.
    let plain = raw(g.addr, &req("")).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.json()["total"], 200);
    assert!(g
        .sim
        .recorder
        .last()
        .unwrap()
        .header("accept-encoding")
        .is_none());
}

/// `N` bytes of multipart upload body, generated chunk by chunk, with its SHA-256.
struct Upload {
    head: Bytes,
    tail: Bytes,
    chunks: Vec<Bytes>,
    data_len: u64,
}

impl Upload {
    fn new(data_len: u64) -> Upload {
        let head = Bytes::from(
            "--pvegateXYZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n\
             --pvegateXYZ\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"big.iso\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
        );
        let tail = Bytes::from("\r\n--pvegateXYZ--\r\n");
        // 16 distinct 256 KiB chunks, cycled: every byte value, shifted per chunk.
        let chunks = (0..16u8)
            .map(|k| {
                Bytes::from(
                    (0..256 * 1024)
                        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(k))
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        Upload {
            head,
            tail,
            chunks,
            data_len,
        }
    }

    fn total(&self) -> u64 {
        self.head.len() as u64 + self.data_len + self.tail.len() as u64
    }

    fn parts(&self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let chunk_len = self.chunks[0].len() as u64;
        assert_eq!(self.data_len % chunk_len, 0);
        let n = (self.data_len / chunk_len) as usize;
        let chunks = self.chunks.clone();
        std::iter::once(self.head.clone())
            .chain((0..n).map(move |i| chunks[i % 16].clone()))
            .chain(std::iter::once(self.tail.clone()))
    }

    fn sha256(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in self.parts() {
            ctx.update(&p);
        }
        ctx.finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_mib_upload_streams_with_its_content_length_and_flat_memory() {
    const SIZE: u64 = 512 << 20;
    let g = start().await;
    let up = Upload::new(SIZE);
    let want_sha = up.sha256();
    let total = up.total();
    let hwm_before = proc_status_kib("VmHWM");
    let stream = futures_util::stream::iter(up.parts().map(Ok::<_, std::io::Error>));
    let started = std::time::Instant::now();
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api2/json/nodes/pve/storage/local/upload",
            g.url
        ))
        .header("Authorization", TOKEN)
        .header("Content-Type", "multipart/form-data; boundary=pvegateXYZ")
        .header("Content-Length", total.to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("UPID:pve:"), "{text}");
    let rec = g.sim.recorder.last().unwrap();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.body_len, total);
    assert_eq!(rec.body_sha256, want_sha);
    assert_eq!(
        rec.header("content-length"),
        Some(total.to_string().as_str())
    );
    assert!(
        rec.header("transfer-encoding").is_none(),
        "chunked upstream"
    );
    let listed = raw(
        g.addr,
        &get("/api2/json/nodes/pve/storage/local/content?content=iso"),
    )
    .await
    .json();
    let iso = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volid"].as_str().is_some_and(|s| s.ends_with("big.iso")))
        .cloned()
        .unwrap_or_default();
    assert_eq!(iso["size"], SIZE, "{listed}");
    if let (Some(before), Some(after)) = (hwm_before, proc_status_kib("VmHWM")) {
        let grew_mib = after.saturating_sub(before) / 1024;
        eprintln!(
            "upload: {} MiB in {:.1} s; peak RSS {} -> {} MiB",
            SIZE >> 20,
            took.as_secs_f64(),
            before / 1024,
            after / 1024
        );
        assert!(
            grew_mib < 128,
            "peak memory grew {grew_mib} MiB with a 512 MiB upload"
        );
    }
}

#[tokio::test]
async fn expect_100_continue_as_curl_sends_it() {
    // curl sends `Expect: 100-continue` before a large upload and waits for `100 Continue`.
    let g = start().await;
    let up = Upload::new(4 << 20);
    let total = up.total();
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    let head = format!(
        "POST /api2/json/nodes/pve/storage/local/upload HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary=pvegateXYZ\r\nContent-Length: {total}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let (interim, _) = tokio::time::timeout(Duration::from_secs(5), read_request(&mut c))
        .await
        .expect("an interim answer before the body")
        .unwrap();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    for part in up.parts() {
        c.write_all(&part).await.unwrap();
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let r = parse_response(&rest);
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let rec = g.sim.recorder.last().unwrap();
    assert_eq!(rec.body_len, total);
    assert_eq!(rec.body_sha256, up.sha256());
    assert!(
        rec.header("expect").is_none(),
        "Expect is hop-by-hop for pvegate"
    );

    // A small change is read whole first (its parameters may name guests), then refused.
    g.sim.recorder.clear();
    let mut c = TcpStream::connect(g.addr).await.unwrap();
    let head = format!(
        "POST /api2/json/nodes/pve/qemu/104/config HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let (interim, _) = tokio::time::timeout(Duration::from_secs(5), read_request(&mut c))
        .await
        .expect("an interim answer before the body")
        .unwrap();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    c.write_all(b"memory=4096").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let r = parse_response(&rest);
    assert_eq!(r.status, 403, "{} {}", r.status, r.reason);
    assert!(r.reason.contains("VM 104 'doc1'"), "{}", r.reason);
    assert!(g.sim.recorder.is_empty());
}

/// How an upstream frames a download.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length` (pveproxy's static files and small downloads).
    Length,
    /// No length, the body ends when the upstream shuts the connection, although the head
    /// says `Connection: Keep-Alive` (pveproxy's `response_stream` for `stream => 1`
    /// downloads).
    CloseDelimited,
}

/// Serves one download in two halves (zero bytes, then one bytes) and sends the second half
/// only when `release` fires; then checks that pvegate's client got the first half before.
async fn gated_download(framing: Framing) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    const HALF: usize = 256 * 1024;
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        read_request(&mut tcp).await.unwrap();
        let head = match framing {
            Framing::Length => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                2 * HALF
            ),
            Framing::CloseDelimited => "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: Keep-Alive\r\n\r\n".to_string(),
        };
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&[0u8; HALF]).await.unwrap();
        release_rx.await.unwrap();
        tcp.write_all(&[1u8; HALF]).await.unwrap();
        match framing {
            Framing::Length => {
                let _ = read_request(&mut tcp).await;
            }
            Framing::CloseDelimited => tcp.shutdown().await.unwrap(),
        }
    });
    let gate = front(
        &upstream_cfg(
            &format!("http://{addr}"),
            Trust::Insecure,
            Duration::from_secs(3),
        ),
        HOMELAB,
        None,
    )
    .await;
    let mut c = TcpStream::connect(gate.addr).await.unwrap();
    let target = "/api2/json/nodes/pve/tasks/UPID:pve:00001234:00005678:65000000:vzdump::root@pam:/log?download=1";
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    c.write_all(request.as_bytes()).await.unwrap();
    // The head and the whole first half arrive while the upstream still holds the rest (the
    // body bytes are 0, which no framing by pvegate, chunk sizes included, can contain).
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let streamed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
            if got.iter().filter(|&&b| b == 0).count() >= HALF {
                return;
            }
        }
    })
    .await;
    assert!(
        streamed.is_ok(),
        "{framing:?}: the first half did not stream through before the upstream finished; got {} bytes: {:?}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(600)])
    );
    release_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got))
        .await
        .expect("the rest in time")
        .unwrap();
    let r = parse_response(&got);
    assert_eq!(r.status, 200, "{framing:?}");
    assert_eq!(r.body.len(), 2 * HALF, "{framing:?}");
    assert!(r.body[..HALF].iter().all(|&b| b == 0) && r.body[HALF..].iter().all(|&b| b == 1));
}

#[tokio::test]
async fn downloads_stream_before_the_upstream_finishes() {
    gated_download(Framing::Length).await;
    gated_download(Framing::CloseDelimited).await;

    // The sim's streamed journal (about 3.3 MB) and a task log download arrive whole.
    let g = start().await;
    let via = raw(
        g.addr,
        &get("/api2/json/nodes/pve/journal?lastentries=50000"),
    )
    .await;
    let direct = raw(
        g.sim.addr,
        &get("/api2/json/nodes/pve/journal?lastentries=50000"),
    )
    .await;
    assert_eq!(via.status, 200);
    assert!(via.body.len() > 3_000_000, "{}", via.body.len());
    assert_eq!(via.body, direct.body);
    assert_eq!(via.json()["data"].as_array().unwrap().len(), 50_000);
    let upid = raw(
        g.addr,
        &form("POST", "/api2/json/nodes/pve/qemu/110/status/reboot", ""),
    )
    .await
    .json()["data"]
        .as_str()
        .unwrap()
        .to_string();
    let log = raw(
        g.addr,
        &get(&format!("/api2/json/nodes/pve/tasks/{upid}/log?download=1")),
    )
    .await;
    assert_eq!(log.status, 200, "{} {}", log.status, log.reason);
    assert_eq!(log.header("content-type"), Some("text/plain"));
    assert!(String::from_utf8_lossy(&log.body).contains("reboot VM 110"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_websocket_frames_untouched_and_never_idled_out() {
    let g = start().await;
    let (port, ticket) = vnc_console(g.addr, 110).await;
    let mut req = vnc_websocket_request(g.addr, 110, &port, &ticket);
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().unwrap());
    // As Firefox sends it (Chromium: `Upgrade` alone).
    req.headers_mut()
        .insert("connection", "keep-alive, Upgrade".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "binary"
    );

    let every_byte: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let frames = [
        Message::Binary(every_byte.clone().into()),
        Message::Text("RFB 003.008\n".into()),
        Message::Binary(big.into()),
    ];
    for m in frames {
        ws.send(m.clone()).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo, m);
    }
    // Idle past every timeout of pvegate's server, then the tunnel still carries frames.
    tokio::time::sleep(LONGEST_SERVER_TIMEOUT + Duration::from_secs(2)).await;
    let last = Message::Binary(every_byte.iter().rev().copied().collect::<Vec<u8>>().into());
    ws.send(last.clone()).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo after idling")
        .unwrap()
        .unwrap();
    assert_eq!(echo, last);
    ws.close(None).await.unwrap();
    let rec = g.sim.recorder.last().unwrap();
    assert!(rec.path().ends_with("/vncwebsocket"));
}
