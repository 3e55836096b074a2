//! Load generator for `bench/bench.py`, two modes.
//!
//! `tlsconn HOST:PORT PATH [--conns N] [--seconds S] [--no-resume] [--header 'K: V']`
//!
//! New TLS connections per second, with one request on each (`Connection: close`). Keeps N
//! connections in flight, one client each: each task connects, handshakes (TLS 1.3, resuming
//! the session the server handed this client unless `--no-resume`), sends one GET with
//! `Connection: close`, reads the answer to the end and starts over.
//!
//! `tlsconn HOST:PORT PATH --rate R [--plain] [--conns N] [--seconds S] [--header 'K: V']`
//!
//! A fixed rate (open loop): R GETs per second in all, spread evenly over N keep-alive
//! connections (TLS, or plain HTTP with `--plain`), whatever the server's speed. A closed loop
//! (wrk) sends the next request when the last answer arrives, so its latency follows its
//! throughput and two servers of different speed are measured at different loads; here both
//! get the same load. Latency is counted from when a request was due: when the server
//! answered the previous one too late to send this one on time, the wait counts against the
//! server (wrk2's correction for coordinated omission); when the connection was free and only
//! this generator's timer (1 ms resolution) was late, from when it was sent.
//!
//! The server's certificate is not verified: this is a load generator for loopback
//! benchmarks, and verification would only add client CPU. Prints one `BENCH_JSON {...}` line
//! in the shape of `bench/wrk/report.lua`'s, plus how many handshakes were resumptions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Args {
    addr: String,
    path: String,
    conns: usize,
    seconds: u64,
    resume: bool,
    headers: Vec<String>,
    /// Open loop: requests per second in all (keep-alive).
    rate: Option<u64>,
    plain: bool,
}

fn args() -> Args {
    let mut a = Args {
        addr: String::new(),
        path: String::new(),
        conns: 16,
        seconds: 10,
        resume: true,
        headers: Vec::new(),
        rate: None,
        plain: false,
    };
    let mut it = std::env::args().skip(1);
    let mut positional = Vec::new();
    while let Some(x) = it.next() {
        match x.as_str() {
            "--conns" => a.conns = it.next().and_then(|v| v.parse().ok()).expect("--conns N"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--no-resume" => a.resume = false,
            "--header" => a.headers.push(it.next().expect("--header 'K: V'")),
            "--rate" => a.rate = Some(it.next().and_then(|v| v.parse().ok()).expect("--rate R")),
            "--plain" => a.plain = true,
            _ => positional.push(x),
        }
    }
    if positional.len() != 2 {
        eprintln!("usage: tlsconn HOST:PORT PATH [--conns N] [--seconds S] [--no-resume] [--header 'K: V'] [--rate R [--plain]]");
        std::process::exit(2);
    }
    a.path = positional.pop().unwrap();
    a.addr = positional.pop().unwrap();
    a
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
}

async fn one(
    addr: &str,
    connector: &TlsConnector,
    request: &[u8],
    counts: &Counts,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("static name");
    let mut tls = connector.connect(name, tcp).await?;
    if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
        counts.resumed.fetch_add(1, Ordering::Relaxed);
    }
    tls.write_all(request).await?;
    buf.clear();
    // The server closes after the answer (Connection: close); a missing close_notify is
    // fine here, the body was read.
    match tls.read_to_end(buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e),
    }
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("answer was not 200"));
    }
    counts.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// A stream to send requests on: TLS or plain TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One keep-alive connection of the fixed-rate mode: a GET every `period` from `first` until
/// `stop`, each answer read to its end (`Content-Length`). Returns the latencies in µs (with
/// the error that ended the connection early, if one did).
#[allow(clippy::too_many_arguments)]
async fn keep_alive(
    addr: &str,
    plain: bool,
    connector: &TlsConnector,
    request: &[u8],
    first: Instant,
    period: Duration,
    stop: &AtomicBool,
    counts: &Counts,
) -> Result<Vec<u64>, (Vec<u64>, std::io::Error)> {
    let mut mine = Vec::new();
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| (Vec::new(), e))?;
    tcp.set_nodelay(true).map_err(|e| (Vec::new(), e))?;
    let mut io: Box<dyn Stream> = if plain {
        Box::new(tcp)
    } else {
        let name = ServerName::try_from("localhost").expect("static name");
        Box::new(
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| (Vec::new(), e))?,
        )
    };
    let mut buf = Vec::with_capacity(8192);
    let mut due = first;
    let mut free_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        // Late because the last answer came after this request was due: the server's fault,
        // counted from `due`. Late only because the timer fired late: counted from `sent`.
        let from = if free_at > due { due } else { sent };
        let answer = async {
            io.write_all(request).await?;
            read_answer(&mut io, &mut buf).await
        };
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(Ok(n)) => {
                free_at = Instant::now();
                mine.push(free_at.duration_since(from).as_micros() as u64);
                counts.requests.fetch_add(1, Ordering::Relaxed);
                counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Err((mine, e)),
            Err(_) => return Err((mine, std::io::Error::other("no answer within 5 s"))),
        }
        due += period;
    }
    Ok(mine)
}

/// Reads one `200` answer with a `Content-Length` body; returns its size in bytes.
async fn read_answer(io: &mut Box<dyn Stream>, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the answer ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let head = match res.parse(buf).map_err(std::io::Error::other)? {
            httparse::Status::Partial => continue,
            httparse::Status::Complete(head) => head,
        };
        if res.code != Some(200) {
            return Err(std::io::Error::other(format!("answer was {:?}", res.code)));
        }
        let length = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .ok_or_else(|| std::io::Error::other("answer without Content-Length"))?;
        while buf.len() < head + length {
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed inside the body"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if buf.len() > head + length {
            return Err(std::io::Error::other(
                "more bytes than one answer (pipelining?)",
            ));
        }
        return Ok(buf.len());
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64) * p / 100.0).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    // One client per task, each with its own session cache, as N separate clients would be:
    // a cache shared by all tasks holds at most 8 tickets per server (rustls' default), so
    // when many connections end and start in one burst some find none and measure a full
    // handshake that no real client would have done.
    let client = || {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !a.resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        TlsConnector::from(Arc::new(config))
    };
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{}",
        a.path,
        a.addr,
        if a.rate.is_some() {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    for h in &a.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request: Arc<[u8]> = request.into_bytes().into();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    // The fixed rate starts a quarter second in, once every connection is open (a TLS
    // handshake due in the schedule would count as a late answer).
    let start = Instant::now() + Duration::from_millis(if a.rate.is_some() { 250 } else { 0 });
    let mut tasks = Vec::new();
    if let Some(rate) = a.rate {
        // Each connection sends every `period`; connection i starts i/N of a period in.
        let period = Duration::from_secs_f64(a.conns as f64 / rate.max(1) as f64);
        for i in 0..a.conns {
            let (connector, request, counts, stop, latencies, addr, plain) = (
                client(),
                request.clone(),
                counts.clone(),
                stop.clone(),
                latencies.clone(),
                a.addr.clone(),
                a.plain,
            );
            let first = start + period.mul_f64(i as f64 / a.conns as f64);
            tasks.push(tokio::spawn(async move {
                let mine = match keep_alive(
                    &addr, plain, &connector, &request, first, period, &stop, &counts,
                )
                .await
                {
                    Ok(l) => l,
                    Err((l, e)) => {
                        eprintln!("connection failed: {e}");
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        l
                    }
                };
                latencies.lock().expect("latencies").extend(mine);
            }));
        }
    } else {
        for _ in 0..a.conns {
            let (connector, request, counts, stop, latencies, addr) = (
                client(),
                request.clone(),
                counts.clone(),
                stop.clone(),
                latencies.clone(),
                a.addr.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut buf = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        one(&addr, &connector, &request, &counts, &mut buf),
                    )
                    .await
                    {
                        Ok(Ok(())) => {
                            mine.push(t.elapsed().as_micros() as u64);
                            counts.requests.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies.lock().expect("latencies").extend(mine);
            }));
        }
    }
    tokio::time::sleep_until((start + Duration::from_secs(a.seconds)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let duration = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let mut l = std::mem::take(&mut *latencies.lock().expect("latencies"));
    l.sort_unstable();
    let mean = if l.is_empty() {
        0.0
    } else {
        l.iter().sum::<u64>() as f64 / l.len() as f64
    };
    println!(
        "BENCH_JSON {{\"requests\":{},\"duration_us\":{},\"bytes\":{},\"p50_us\":{},\"p90_us\":{},\
         \"p99_us\":{},\"max_us\":{},\"mean_us\":{:.1},\"err_connect\":{},\"err_read\":0,\
         \"err_write\":0,\"err_status\":0,\"err_timeout\":0{}}}",
        counts.requests.load(Ordering::Relaxed),
        duration.as_micros(),
        counts.bytes.load(Ordering::Relaxed),
        percentile(&l, 50.0),
        percentile(&l, 90.0),
        percentile(&l, 99.0),
        l.last().copied().unwrap_or(0),
        mean,
        counts.errors.load(Ordering::Relaxed),
        // Resumptions mean something only with a new connection per request.
        match a.rate {
            None => format!(",\"resumed\":{}", counts.resumed.load(Ordering::Relaxed)),
            Some(_) => String::new(),
        },
    );
}
