//! Listeners and connections: TCP, optional TLS (rustls, TLS 1.2/1.3, ALPN http/1.1), HTTP/1.1
//! serving (pvegate's own fast path for the common request, hyper for the rest, with
//! upgrades), policy reload on SIGHUP, graceful shutdown.
//!
//! # Bounds and shutdown
//!
//! - At most `listen.max_connections` connections: the accept loop takes a semaphore slot
//!   before accepting, so at the limit new clients wait in the kernel's listen queue. A
//!   connection (and, for plain TCP, its websocket tunnel) holds its slot until it ends.
//! - Every request body hyper reads is read under `listen.body_timeout_secs` of allowed
//!   silence ([`crate::bounded`]); the fast path reads only bodies already received.
//! - hyper's own answers to heads it cannot parse are rewritten into Proxmox's shape
//!   ([`crate::early`]).
//! - [`Listener::serve_until`] drains on shutdown: the listener is closed, idle connections
//!   close, busy ones finish the request in progress (its answer says `Connection: close`)
//!   and then close, all within `listen.drain_secs`; websocket tunnels are closed last.
//!
//! # Who reads a request
//!
//! Every connection starts in `serve_fast`: a request whose head and body are already in
//! the read buffer and that needs nothing of hyper's machinery is read, judged and answered
//! there ([`crate::fast`]), pipelined ones in order. Any other request (a head or body still
//! arriving, HTTP/1.0, `Transfer-Encoding`, `Expect`, an upgrade, a head httparse or `http`
//! refuses) goes to hyper with the bytes read so far, which reads it as before, with its
//! header read timeout and its error answers.
//!
//! - Plain TCP: hyper serves the connection only while it is in use, then hands it back
//!   (below); the connection returns to the fast path.
//! - TLS: hyper serves the rest of the connection (rustls holds decrypted bytes hyper may not
//!   have asked for yet, so the connection is not handed back).
//!
//! # Idle connections hold nothing but their socket
//!
//! - In the fast path, a connection keeps its 8 KiB read buffer and its [`ClientConn`] (with
//!   the upstream connection it used last) while requests come. After 100 to 200 ms
//!   (`PARK_AFTER`) without one, both go and the connection waits holding only its socket
//!   (plain TCP: until it is readable; TLS: in a read into a fresh buffer). Nothing to read
//!   for 30 s (`IDLE_TIMEOUT`, the keep-alive limit) closes it.
//! - hyper keeps an 8 KiB read and an 8 KiB write buffer for as long as it serves a
//!   connection, so for plain TCP it serves one only while it is in use: the socket goes to
//!   a fresh `http1::Builder::serve_connection` (without hyper's upgrade support), driven
//!   with `poll_without_shutdown`.
//! - hyper's requests are counted from the service call until hyper drops the response body.
//!   When nothing is in flight and no request started or finished for one tick of
//!   `PARK_AFTER`, and the round has answered at least one request, hyper lets go:
//!   `graceful_shutdown` on a hyper connection idle between messages closes its state at once
//!   without writing anything or shutting the socket down; `into_parts` hands back the socket
//!   and any bytes hyper had read but not parsed, which the fast path reads first.
//! - If hyper is not between messages at that point (a response still being flushed to a slow
//!   reader, or an unread request body being drained), `graceful_shutdown` only turns
//!   keep-alive off: hyper finishes that message, then the connection is closed rather than
//!   handed back. A request whose head arrives in that window is answered with
//!   `Connection: close` and the connection closed after it; it is neither lost nor answered
//!   twice. A request racing a hand-back of an idle connection is not lost either: its bytes
//!   are either unread (the socket becomes readable again) or in hyper's read buffer
//!   (replayed).
//! - A request head that is still incomplete stays with hyper under its header read timeout;
//!   if one straddles a hand-back, the time already spent waiting counts against the next
//!   round's timeout, so a head must still arrive within 30 s.
//! - Websockets: every request carries an [`UpgradeSlot`] (in its [`ClientConn`], with the
//!   client connection's upstream connection); after the upstream's `101` the
//!   forwarder leaves the upstream's pending upgrade in it, hyper writes the `101` and hands
//!   the socket back, and the connection task splices the two (client bytes hyper read past
//!   the `101` go first), with no idle timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::body::{Body, BoxError};
use crate::bounded::IdleTimeout;
use crate::config::Limits;
use crate::conn::ClientConn;
use crate::early::{Busy, Shaped};
use crate::metrics::OpenConnection;
use crate::stack::Gate;
use crate::upstream::upgrade::UpgradeSlot;

/// A connection with nothing to read for this long is closed (and a request head must arrive
/// in full within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain-TCP connection on which no request started or finished for this long (1 to 2 times
/// it) is handed back by hyper and parked.
///
/// Short on purpose: glibc's allocator keeps the high-water mark of the freed 8 KiB buffers
/// resident, so what counts is how many connections sit in hyper at the same time. With 1 s,
/// 10,000 connections opened within 2 s (bench/mem.py) still peaked at 138 MiB; with 100 ms,
/// 61 MiB. Re-entering hyper costs one readiness wait and a new hyper connection.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
}

/// Loads a PEM certificate chain and key into a server TLS config (TLS 1.2 and 1.3, ALPN
/// http/1.1: the web UI and bpg need HTTP/1.1 reason phrases; sessions resume from stateless
/// tickets, [`crate::crypto::ticketer`]).
pub fn server_tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: not a PEM certificate: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: not a PEM private key: {e}", key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{} holds no PEM private key", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::crypto::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| ServeError::Tls(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = crate::crypto::ticketer()
        .map_err(|e| ServeError::Tls(format!("cannot set up TLS session tickets: {e}")))?;
    Ok(config)
}

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
}

/// What every connection task of a listener shares.
struct ConnCtx {
    gate: Gate,
    /// `listen.body_timeout_secs`.
    body_timeout: Duration,
    /// Cancelled when a shutdown begins: idle connections close, busy ones finish first.
    stop: CancellationToken,
    /// Set just before `stop` is cancelled ([`Stop`]).
    stopping: AtomicBool,
}

/// Resolves once a shutdown has begun; for the connection loops, which poll it on every
/// wake-up of their task.
///
/// Polling the token's own future takes its waiters' lock every time, and a busy connection's
/// task is woken several times per request (about 600 instructions per request in callgrind).
/// This polls it once, which registers the task to be woken when the token is cancelled, and
/// after that reads the flag set just before.
struct Stop<'a> {
    ctx: &'a ConnCtx,
    wait: Pin<Box<tokio_util::sync::WaitForCancellationFuture<'a>>>,
    registered: bool,
}

impl<'a> Stop<'a> {
    fn new(ctx: &'a ConnCtx) -> Stop<'a> {
        Stop {
            ctx,
            wait: Box::pin(ctx.stop.cancelled()),
            registered: false,
        }
    }
}

impl std::future::Future for Stop<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ctx.stopping.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !self.registered {
            self.registered = true;
            return self.wait.as_mut().poll(cx);
        }
        Poll::Pending
    }
}

/// What a client connection holds until it ends (for a websocket, until its tunnel ends): its
/// slot under `listen.max_connections` and its entry in the open connections gauge.
type Hold = (OwnedSemaphorePermit, OpenConnection);

/// Accept failures (out of file descriptors and the like) are logged at most this often.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

impl Listener {
    /// Binds `addr`, with TLS when `tls` is given.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<rustls::ServerConfig>,
    ) -> Result<Listener, ServeError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Listener {
            tcp,
            tls: tls.map(|c| TlsAcceptor::from(Arc::new(c))),
            limits: Limits::default(),
        })
    }

    /// The same listener with other limits (body timeout, connection count, drain time).
    pub fn with_limits(mut self, limits: Limits) -> Listener {
        self.limits = limits;
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether clients must speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts connections until the task is dropped, serving each with a clone of `gate`.
    pub async fn serve(self, gate: Gate) {
        self.serve_until(gate, std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then drains: stops accepting, lets the requests in
    /// flight finish for up to `listen.drain_secs` (idle connections close at once), and
    /// closes websocket tunnels last.
    pub async fn serve_until(self, gate: Gate, shutdown: impl std::future::Future<Output = ()>) {
        let Listener { tcp, tls, limits } = self;
        let ctx = Arc::new(ConnCtx {
            gate,
            body_timeout: limits.body_timeout,
            stop: CancellationToken::new(),
            stopping: AtomicBool::new(false),
        });
        let tasks = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        tokio::select! {
            _ = accept(&tcp, tls, &ctx, &tasks, &slots) => {}
            _ = shutdown => {}
        }
        // Closed: new clients are refused by the kernel from here on.
        drop(tcp);
        ctx.stopping.store(true, Ordering::Release);
        ctx.stop.cancel();
        tasks.close();
        if !tasks.is_empty() {
            tracing::info!(
                connections = tasks.len(),
                drain_secs = limits.drain.as_secs(),
                "stopped accepting; waiting for the requests in flight"
            );
        }
        if tokio::time::timeout(limits.drain, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = tasks.len(),
                "listen.drain_secs is over: closing the connections still busy"
            );
        }
        let tunnels = crate::upstream::upgrade::close_tunnels(Duration::from_secs(2)).await;
        tracing::info!(websockets_closed = tunnels, "drained");
    }
}

/// Accepts while a slot under `listen.max_connections` is free: at the limit, new clients
/// wait in the kernel's listen queue until a connection closes (no accept storm).
async fn accept(
    tcp: &TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: &Arc<ConnCtx>,
    tasks: &TaskTracker,
    slots: &Arc<Semaphore>,
) {
    let mut last_warn: Option<Instant> = None;
    let mut unreported = 0u64;
    loop {
        let Ok(permit) = Arc::clone(slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning, and
                // say so once in a while rather than for every attempt.
                unreported += 1;
                if last_warn.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_EVERY) {
                    tracing::warn!(error = %e, failures = unreported, "accept failed (raise the file descriptor limit or lower listen.max_connections)");
                    last_warn = Some(Instant::now());
                    unreported = 0;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let hold: Hold = (permit, OpenConnection::new());
        let ctx = Arc::clone(ctx);
        let Some(acceptor) = tls.clone() else {
            // A task of its own: the parked state is all a connection holds when idle,
            // so the TLS path (hyper connection inline) must not size this future.
            tasks.spawn(serve_parking(stream, peer, ctx, hold));
            continue;
        };
        tasks.spawn(async move {
            let _hold = hold;
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            let stream = tokio::select! {
                s = handshake => s,
                _ = ctx.stop.cancelled() => return,
            };
            match stream {
                Ok(Ok(mut s)) => {
                    let mut buf = BytesMut::new();
                    let mut gate = ctx.gate.clone();
                    let mut partial = None;
                    let fast =
                        serve_fast(&mut s, &mut buf, peer, &ctx, &mut gate, None, &mut partial);
                    if let Fast::Hyper = fast.await {
                        let pre = buf.freeze();
                        serve_connection(Replay { pre, io: s }, peer, ctx).await;
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves the rest of a TLS connection with hyper (buffers included).
async fn serve_connection<I>(io: I, peer: SocketAddr, ctx: Arc<ConnCtx>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let counted = Arc::clone(&activity);
    let conn = ClientConn::new(peer, None);
    let gate = ctx.gate.clone();
    let body_timeout = ctx.body_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|b| IdleTimeout::new(b, body_timeout));
        req.extensions_mut().insert(conn.clone());
        let in_flight = InFlight::start(&counted);
        let mut gate = gate.clone();
        gate.call(req).map(move |res| {
            res.map(|res| {
                res.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                })
            })
        })
    });
    let io = TokioIo::new(Shaped::new(io, activity));
    let conn = http1_builder(IDLE_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        _ = Stop::new(&ctx) => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn http1_builder(header_read_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // The header read timeout re-armed per request head, not a new timer each time.
        .timer(crate::rearm::ConnTimer::default())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    builder
}

/// Requests in progress on one connection, and a count of request starts and ends (so that
/// "nothing happened since the last look" can be told).
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    events: AtomicU64,
}

impl Busy for Activity {
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) != 0
    }
}

/// One request in progress: from the service call until hyper drops the response body (it
/// does when the body has been written, or when the connection fails).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.events.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The client connection with bytes already read from it (by hyper, or by the fast path)
/// replayed in front of it.
struct Replay<I = TcpStream> {
    pre: Bytes,
    io: I,
}

impl<I> Replay<I> {
    /// The connection and whatever of `pre` has not been read yet.
    fn into_parts(self) -> (I, Bytes) {
        (self.io, self.pre)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How one hyper round on a plain-TCP connection ended.
enum Round {
    /// hyper was idle and let go: park the socket (with the unparsed bytes).
    Parked(TcpStream, Bytes),
    /// hyper finished the connection (close, EOF, `101`): splice or close.
    Ended(Replay, Bytes),
    /// hyper failed; the socket is dropped.
    Failed,
    /// hyper could not parse a request and a Proxmox-shaped error was written ([`crate::early`]):
    /// close the socket gracefully so the client reads the answer.
    Rejected(Replay),
}

/// Serves a plain-TCP connection: requests the fast path reads ([`crate::fast`]) are served
/// here; for any other, hyper (and its two 8 KiB buffers) takes the connection until it has
/// been idle for `PARK_AFTER`; see the module documentation.
async fn serve_parking(mut tcp: TcpStream, peer: SocketAddr, ctx: Arc<ConnCtx>, hold: Hold) {
    let activity = Arc::new(Activity::default());
    let slot = UpgradeSlot::default();
    let mut gate = ctx.gate.clone();
    let mut buf = BytesMut::new();
    // When the unparsed bytes held across parks started to accumulate: a request head still
    // has the same 30 s to arrive in full, parks or not.
    let mut partial_since: Option<Instant> = None;
    loop {
        let fast = serve_fast(
            &mut tcp,
            &mut buf,
            peer,
            &ctx,
            &mut gate,
            Some(&slot),
            &mut partial_since,
        );
        if let Fast::Closed = fast.await {
            return;
        }
        let header_read_timeout = match partial_since {
            Some(since) => match IDLE_TIMEOUT.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    tracing::debug!(%peer, "request head not complete in time");
                    return;
                }
            },
            None => IDLE_TIMEOUT,
        };
        let events_before = activity.events.load(Ordering::Relaxed);
        let pre = std::mem::take(&mut buf).freeze();
        let round = Box::pin(serve_round(
            Replay { pre, io: tcp },
            header_read_timeout,
            peer,
            Arc::clone(&ctx),
            Arc::clone(&activity),
            slot.clone(),
        ))
        .await;
        match round {
            Round::Parked(socket, rest) => {
                tcp = socket;
                if rest.is_empty() {
                    partial_since = None;
                } else {
                    buf = BytesMut::from(&rest[..]);
                    if partial_since.is_none()
                        || activity.events.load(Ordering::Relaxed) != events_before
                    {
                        partial_since = Some(Instant::now());
                    }
                }
            }
            Round::Ended(mut io, rest) => {
                if let Some(upstream) = slot.take() {
                    io.pre = join(rest, std::mem::take(&mut io.pre));
                    crate::upstream::upgrade::splice_io(io, upstream, hold);
                } else {
                    let _ = io.shutdown().await;
                }
                return;
            }
            Round::Failed => return,
            Round::Rejected(io) => {
                linger(io.io).await;
                return;
            }
        }
    }
}

/// Bytes read at a time by the fast path.
const READ_SIZE: usize = 8 * 1024;

/// How the fast path left a connection.
enum Fast {
    /// Closed: by the client, an error, the idle timeout, `Connection: close` or a shutdown.
    Closed,
    /// The read buffer starts with a request for hyper to read.
    Hyper,
}

/// A client connection the fast path can wait on without holding a read buffer.
trait IdleRead: AsyncRead + AsyncWrite + Unpin + Send {
    /// Waits until the client has sent something, then reads it into `buf` (0: closed).
    fn read_idle<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
}

impl IdleRead for TcpStream {
    async fn read_idle(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        loop {
            self.readable().await?;
            buf.reserve(READ_SIZE);
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                res => return res,
            }
        }
    }
}

impl IdleRead for tokio_rustls::server::TlsStream<TcpStream> {
    async fn read_idle(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        // rustls holds its own buffers for the connection's life: nothing to gain by waiting
        // for readiness first.
        buf.reserve(READ_SIZE);
        tokio::io::AsyncReadExt::read_buf(self, buf).await
    }
}

/// Serves the requests [`crate::fast`] reads, one after the other (pipelined ones in order),
/// until one needs hyper or the connection closes.
///
/// While requests come, the connection keeps its read buffer and its [`ClientConn`] (with the
/// upstream connection it used last). After `PARK_AFTER` to twice that without one, both go:
/// the connection then waits for its next bytes holding nothing but the socket, for at most
/// `IDLE_TIMEOUT`. A shutdown closes it at once while it waits; a request being answered is
/// answered first, with `Connection: close`.
async fn serve_fast<I: IdleRead>(
    io: &mut I,
    buf: &mut BytesMut,
    peer: SocketAddr,
    ctx: &ConnCtx,
    gate: &mut Gate,
    upgrade: Option<&UpgradeSlot>,
    partial_since: &mut Option<Instant>,
) -> Fast {
    use tokio::io::AsyncReadExt;
    let mut conn: Option<ClientConn> = None;
    let mut stopped = Stop::new(ctx);
    // Some while the connection is in use (its look for idleness), None while it waits idle.
    let mut tick: Option<crate::rearm::Ticker> = None;
    let mut served = false;
    loop {
        while !buf.is_empty() {
            match crate::fast::parse(buf) {
                crate::fast::Parsed::Request { mut req, close } => {
                    *partial_since = None;
                    served = true;
                    let conn = conn.get_or_insert_with(|| ClientConn::new(peer, upgrade.cloned()));
                    req.extensions_mut().insert(conn.clone());
                    let method = req.method().clone();
                    let res = match gate.call(req).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    };
                    let keep_alive = !close && !ctx.stopping.load(Ordering::Acquire);
                    match crate::fast::respond(io, res, &method, keep_alive).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = io.shutdown().await;
                            return Fast::Closed;
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "writing an answer failed");
                            return Fast::Closed;
                        }
                    }
                }
                crate::fast::Parsed::Partial => {
                    partial_since.get_or_insert_with(Instant::now);
                    return Fast::Hyper;
                }
                crate::fast::Parsed::Hyper => return Fast::Hyper,
            }
        }
        let Some(ticker) = tick.as_mut() else {
            // Idle: nothing held but the socket.
            let read = tokio::select! {
                biased;
                _ = &mut stopped => {
                    tracing::debug!(%peer, "idle connection closed: shutting down");
                    return Fast::Closed;
                }
                r = tokio::time::timeout(IDLE_TIMEOUT, io.read_idle(buf)) => r,
            };
            match read {
                Ok(Ok(1..)) => {
                    tick = Some(crate::rearm::Ticker::new(PARK_AFTER));
                    served = false;
                    continue;
                }
                Ok(Ok(0)) => return Fast::Closed,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "idle connection failed");
                    return Fast::Closed;
                }
                Err(_) => {
                    tracing::debug!(%peer, "idle connection timed out");
                    return Fast::Closed;
                }
            }
        };
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        tokio::select! {
            biased;
            r = io.read_buf(buf) => match r {
                Ok(1..) => {}
                Ok(0) => return Fast::Closed,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection failed");
                    return Fast::Closed;
                }
            },
            _ = &mut stopped => return Fast::Closed,
            _ = ticker.tick() => {
                if !served {
                    // Idle for a tick: the upstream connection goes to the shared pool, the
                    // buffer to the allocator.
                    conn = None;
                    tick = None;
                    *buf = BytesMut::new();
                }
                served = false;
            }
        }
    }
}

/// Closes a connection after an error answer without discarding it: our side is shut down,
/// then what the client still sends is read and dropped (closing with unread bytes would
/// reset the connection, and the client could lose the answer), for at most a second.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n @ 1..) = tcp.read(&mut sink).await {
            total += n;
            if total > 1 << 20 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// `a` then `b`, in a buffer of their own: hyper's read buffer comes back as a view into its
/// whole 8 KiB allocation (even when empty), which must not outlive the round.
fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() && b.is_empty() {
        return Bytes::new();
    }
    let mut both = BytesMut::with_capacity(a.len() + b.len());
    both.extend_from_slice(&a);
    both.extend_from_slice(&b);
    both.freeze()
}

/// Serves `io` with hyper until hyper ends the connection or has been idle (nothing in
/// flight, no request started or finished) for between `PARK_AFTER` and twice that.
async fn serve_round(
    io: Replay,
    header_read_timeout: Duration,
    peer: SocketAddr,
    ctx: Arc<ConnCtx>,
    activity: Arc<Activity>,
    slot: UpgradeSlot,
) -> Round {
    let counted = Arc::clone(&activity);
    let gate = ctx.gate.clone();
    let body_timeout = ctx.body_timeout;
    // Per round: parking drops it, and with it hands the upstream connection this client
    // connection used last to the shared pool.
    let conn = ClientConn::new(peer, Some(slot));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|b| IdleTimeout::new(b, body_timeout));
        req.extensions_mut().insert(conn.clone());
        let in_flight = InFlight::start(&counted);
        let mut gate = gate.clone();
        gate.call(req).map(move |res| {
            res.map(|res| {
                res.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                })
            })
        })
    });
    let io = Shaped::new(io, Arc::clone(&activity));
    let mut conn = http1_builder(header_read_timeout).serve_connection(TokioIo::new(io), service);
    let start = activity.events.load(Ordering::Relaxed);
    let mut seen = start;
    // Looked at on every wake-up of the connection: a tick that costs an atomic load between
    // ticks (tokio's interval costs a timer poll each time).
    let mut tick = crate::rearm::Ticker::new(PARK_AFTER);
    let mut closing = false;
    // Made once: a new one per loop turn would register and unregister a waiter each time.
    let mut stopped = Stop::new(&ctx);
    loop {
        tokio::select! {
            res = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                return match res {
                    Ok(()) => {
                        let parts = conn.into_parts();
                        Round::Ended(parts.io.into_inner().inner, parts.read_buf)
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                        let io = conn.into_parts().io.into_inner();
                        if io.rewrote() {
                            Round::Rejected(io.inner)
                        } else {
                            Round::Failed
                        }
                    }
                };
            }
            _ = &mut stopped, if !closing => {
                // Shutting down: hyper finishes the message in progress (if any), then ends
                // the connection, which is closed rather than parked.
                Pin::new(&mut conn).graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                let now = activity.events.load(Ordering::Relaxed);
                // hyper starts a connection in its "busy" keep-alive state and is idle only
                // once a message has been answered: until then (a request head still
                // arriving) the connection stays with hyper, under its header timeout.
                if now == seen && now != start && activity.in_flight.load(Ordering::Relaxed) == 0 {
                    // On an idle keep-alive connection (between messages) hyper closes its
                    // state at once, writing nothing; the socket stays open (no shutdown
                    // under poll_without_shutdown). In the middle of a message hyper only
                    // turns keep-alive off: it finishes the message and ends the
                    // connection, which is then closed instead of parked.
                    Pin::new(&mut conn).graceful_shutdown();
                    match std::future::poll_fn(|cx| Poll::Ready(conn.poll_without_shutdown(cx))).await {
                        Poll::Ready(Ok(())) => {
                            let parts = conn.into_parts();
                            let (tcp, rest) = parts.io.into_inner().inner.into_parts();
                            return Round::Parked(tcp, join(parts.read_buf, rest));
                        }
                        Poll::Ready(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                            return Round::Failed;
                        }
                        Poll::Pending => closing = true,
                    }
                }
                seen = now;
            }
        }
    }
}
