//! The HTTP/1.1 exchange with Proxmox for every request whose body is in memory (all but
//! uploads and websockets, which go through hyper's client): the request's own task writes the
//! request and reads the answer's head, and the answer's body is read from the connection as
//! the client takes it.
//!
//! hyper's client runs each connection as a task of its own and passes requests, answers and
//! body chunks to it through channels: two task wake-ups and a hand-off per request, about a
//! quarter of a proxied request's instructions (measured in BENCHMARKS.md). Here the
//! connection is a plain value ([`Conn`]) owned by whoever uses it: the request in flight, the
//! answer's body while it streams, or the idle pool in between.
//!
//! What it reads, and how (RFC 9112):
//! - The answer head with `httparse` (hyper's parser, with its defaults: no obsolete line
//!   folding), at most 100 header lines and 64 KiB. `1xx` interim answers are skipped; a `101`
//!   is refused (nothing sent here asks for an upgrade).
//! - A reason phrase other than the status's usual one is kept for the client (Proxmox puts
//!   its error messages there), as hyper's client does.
//! - The body: none for `HEAD`, `204` and `304`; chunked when `Transfer-Encoding` ends in
//!   `chunked` (trailers are read and dropped); until the connection closes for any other
//!   transfer coding or when no length is given; else `Content-Length`, whose values must
//!   agree.
//! - The connection carries another request only if the answer was HTTP/1.1 without
//!   `Connection: close`, its body had a length of its own (and not both `Transfer-Encoding`
//!   and `Content-Length`), it was read to its end, and nothing followed it. A body left
//!   unread (the client went away) closes the connection.
//!
//! An answer whose body has already arrived with its head (most API answers) is handed on as
//! bytes, and its connection is back in the pool before the client has seen the answer.
//!
//! A request marked [`AsSent`] (pvegate's own client side, `fast.rs`, marks the ones it reads)
//! gets a plain answer's header lines as [`RawFields`], written back to the client as they
//! are, instead of a header map that would be built here and taken apart there.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::pool::Home;
use crate::body::Body;

/// The most header lines an answer head may have (hyper's client allows as many).
const MAX_HEADERS: usize = 100;
/// The longest answer head read (Proxmox's are under 1 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// Room asked for by each read of an answer head.
const HEAD_READ: usize = 8 * 1024;
/// Room asked for by each read of a streamed answer body.
const BODY_READ: usize = 16 * 1024;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;
/// The most trailer lines accepted after a chunked body.
const MAX_TRAILERS: usize = 100;
/// A request body up to this size is written in one piece with the head.
const INLINE_BODY: usize = 16 * 1024;

/// The transport of an upstream connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An exchange that failed, and how far it had got: whether the request can be sent again on
/// another connection depends on it.
#[derive(Debug)]
pub struct Failed {
    pub error: io::Error,
    /// Some of the request may have reached the upstream.
    pub sent: bool,
    /// Some of an answer arrived.
    pub answered: bool,
}

/// A request, encoded: the head, and the body when it is small enough to go with it.
pub struct Encoded {
    head: Vec<u8>,
    body: Bytes,
    /// The request was marked [`AsSent`].
    as_sent: bool,
}

/// Encodes a request for the upstream: `method target HTTP/1.1`, the header lines as they are,
/// and `Content-Length` for a body that has none. A `Content-Length` that disagrees with the
/// body is refused (the body in memory is what was judged).
pub fn encode(head: &http::request::Parts, body: Bytes) -> Result<Encoded, String> {
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut declared = false;
    for value in head.headers.get_all(header::CONTENT_LENGTH) {
        declared = true;
        if parse_length(value.as_bytes()) != Some(body.len() as u64) {
            return Err(format!(
                "Content-Length {:?} does not match the {} bytes of the body",
                String::from_utf8_lossy(value.as_bytes()),
                body.len()
            ));
        }
    }
    let lines: usize = head
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let inline = body.len() <= INLINE_BODY;
    let mut out =
        Vec::with_capacity(target.len() + lines + 64 + if inline { body.len() } else { 0 });
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !declared && !body.is_empty() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let body = if inline {
        out.extend_from_slice(&body);
        Bytes::new()
    } else {
        body
    };
    Ok(Encoded {
        head: out,
        body,
        as_sent: head.extensions.get::<AsSent>().is_some(),
    })
}

/// An HTTP/1.1 connection to the upstream with no exchange in progress.
pub struct Conn {
    io: Stream,
    /// Bytes read and not used yet.
    buf: BytesMut,
}

impl Conn {
    pub fn new(io: Stream) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether the connection can carry a request: the upstream has neither closed it nor sent
    /// anything unasked. Looks without waiting (no system call when nothing arrived since the
    /// last read; TLS records such as session tickets are taken in passing).
    pub fn is_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut scratch = [0u8; 16];
        let mut probe = ReadBuf::new(&mut scratch);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    /// Sends `req` and reads the answer's head. The body of the answer reads from this
    /// connection, which goes `home` once that body has been read (if it can be reused).
    pub async fn send(
        mut self,
        req: &Encoded,
        method: &Method,
        home: Option<Home>,
    ) -> Result<Response<Body>, Failed> {
        self.write(req).await?;
        let head = loop {
            match self.read_head(method, req.as_sent).await? {
                Parsed::Interim => continue,
                Parsed::Head(head) => break head,
            }
        };
        let Head {
            status,
            version,
            reason,
            headers,
            raw,
            framing,
            keep,
        } = head;
        let body = match framing {
            Framing::Length(n) if self.buf.len() as u64 >= n => {
                // Everything is here already: the body is bytes, the connection free.
                let bytes = self.buf.split_to(n as usize).freeze();
                if keep && self.buf.is_empty() {
                    if let Some(home) = home {
                        home.keep(self);
                    }
                }
                if bytes.is_empty() {
                    Body::empty()
                } else {
                    Body::from(bytes)
                }
            }
            framing => Body::from(Streamed {
                conn: Some(self),
                framing,
                keep,
                home,
            }),
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        *res.version_mut() = version;
        *res.headers_mut() = headers;
        if let Some(reason) = reason {
            res.extensions_mut().insert(reason);
        }
        if let Some(raw) = raw {
            res.extensions_mut().insert(raw);
        }
        Ok(res)
    }

    async fn write(&mut self, req: &Encoded) -> Result<(), Failed> {
        let mut sent = false;
        for part in [&req.head[..], &req.body[..]] {
            let mut at = 0;
            while at < part.len() {
                match self.io.write(&part[at..]).await {
                    Ok(0) => {
                        return Err(Failed {
                            error: io::ErrorKind::WriteZero.into(),
                            sent,
                            answered: false,
                        })
                    }
                    Ok(n) => {
                        at += n;
                        sent = true;
                    }
                    Err(error) => {
                        return Err(Failed {
                            error,
                            sent,
                            answered: false,
                        })
                    }
                }
            }
        }
        self.io.flush().await.map_err(|error| Failed {
            error,
            sent: true,
            answered: false,
        })
    }

    /// Reads until a whole answer head is in the buffer, and takes it.
    async fn read_head(&mut self, method: &Method, as_sent: bool) -> Result<Parsed, Failed> {
        let answered = |error| Failed {
            error,
            sent: true,
            answered: true,
        };
        loop {
            if !self.buf.is_empty() {
                if let Some(parsed) =
                    parse_head(&mut self.buf, method, as_sent).map_err(answered)?
                {
                    return Ok(parsed);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(answered(invalid(format!(
                        "answer head longer than {} KiB",
                        MAX_HEAD / 1024
                    ))));
                }
            }
            self.buf.reserve(HEAD_READ);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => {
                    let got = !self.buf.is_empty();
                    return Err(Failed {
                        error: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            if got {
                                "the connection closed in the middle of the answer head"
                            } else {
                                "the connection closed before an answer"
                            },
                        ),
                        sent: true,
                        answered: got,
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    return Err(Failed {
                        error,
                        sent: true,
                        answered: !self.buf.is_empty(),
                    })
                }
            }
        }
    }
}

fn invalid(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

/// What one complete head in the buffer was.
// Moved once, to the caller; boxing the head would cost an allocation per answer.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A `1xx` interim answer, consumed; the real one follows.
    Interim,
    Head(Head),
}

struct Head {
    status: StatusCode,
    version: Version,
    reason: Option<hyper::ext::ReasonPhrase>,
    headers: HeaderMap,
    raw: Option<RawFields>,
    framing: Framing,
    /// The connection may carry another request once the body has been read.
    keep: bool,
}

/// A request extension: the client side writes answer header lines back as they are, so a
/// plain answer may come as [`RawFields`] instead of a header map.
#[derive(Clone, Copy, Debug)]
pub struct AsSent;

/// A response extension: the answer's header lines, in Proxmox's order and spelling, each
/// written out as `Name: value` and CRLF, hop-by-hop lines left out. The response's header map
/// is then empty. Only a plain answer comes this way: HTTP/1.1, not to HEAD, not 1xx, 204 or
/// 304, at most one `Content-Length`, no `Transfer-Encoding`, and a `Connection` that names no
/// other header. Its values passed httparse, whose value bytes are exactly those
/// `HeaderValue` accepts.
#[derive(Clone, Debug)]
pub struct RawFields {
    pub lines: Bytes,
    /// The `Content-Length` value, if the answer gave one.
    pub length: Option<u64>,
    /// Whether the answer has a `Date` line.
    pub date: bool,
}

/// How an answer's body is delimited, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data, with this much left.
    Data(u64),
    /// At the line end after a chunk's data.
    DataEnd,
    /// In the trailer section, this many lines read.
    Trailers(usize),
}

/// Parses the head at the start of `buf` if it is complete, and removes it from `buf`.
/// With `as_sent`, a plain answer's lines come as [`RawFields`] and its header map is empty.
fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    as_sent: bool,
) -> Result<Option<Parsed>, io::Error> {
    let mut lines =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) if len <= usize::from(u16::MAX) => len,
        Ok(httparse::Status::Complete(_)) => {
            return Err(invalid(format!(
                "answer head longer than {} KiB",
                MAX_HEAD / 1024
            )))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("unreadable answer head: {e}"))),
    };
    let code = res.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| invalid(format!("answer status {code} is not a valid status")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid(
            "answered 101 Switching Protocols to a request that asked for no upgrade".into(),
        ));
    }
    if status.is_informational() {
        buf.advance(len);
        return Ok(Some(Parsed::Interim));
    }
    let version = match res.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let reason = res
        .reason
        .filter(|r| Some(*r) != status.canonical_reason())
        .and_then(|r| hyper::ext::ReasonPhrase::try_from(r.as_bytes()).ok());
    // Where each header's name and value sit in the head (the values share its bytes). The
    // head is at most MAX_HEAD bytes, so u16 offsets do.
    let mut fields = [(0u16, 0u16, 0u16, 0u16, Line::Other); MAX_HEADERS];
    let count = res.headers.len();
    let mut keep = version == Version::HTTP_11;
    let (mut length, mut coded, mut chunked) = (None::<u64>, false, false);
    // Hop-by-hop lines (this hop's framing and connection options) are left out of the map
    // here, unless `Connection` names other headers: then the forwarder removes all of them.
    let (mut hops, mut names_others) = (false, false);
    let (mut lengths, mut date, mut bytes) = (0, false, 0);
    for (line, field) in res.headers.iter().zip(fields.iter_mut()) {
        let (name, value) = (line.name.as_bytes(), line.value);
        let kind = Line::of(name);
        if kind == Line::ContentLength {
            let n = parse_length(value)
                .ok_or_else(|| invalid("unreadable Content-Length in the answer".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid(
                    "conflicting Content-Length values in the answer".into(),
                ));
            }
            length = Some(n);
            lengths += 1;
        } else if kind == Line::TransferEncoding {
            coded = true;
            // Only the last coding counts: it says whether the body is chunked.
            chunked = ends_with_token(value, b"chunked");
        } else if kind == Line::Connection {
            keep &= !has_token(value, b"close");
            names_others |= !value.split(|&b| b == b',').all(|t| {
                let t = t.trim_ascii();
                t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
            });
        }
        hops |= kind.hop();
        date |= kind == Line::Date;
        bytes += name.len() + value.len() + 4;
        *field = (
            offset(buf, name),
            name.len() as u16,
            offset(buf, value),
            value.len() as u16,
            kind,
        );
    }
    let head = buf.split_to(len).freeze();
    let drop_hops = hops && !names_others;
    let bodiless = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let plain = !names_others && !coded && lengths <= 1 && version == Version::HTTP_11;
    let raw = (as_sent && plain && !bodiless).then(|| {
        let mut lines = BytesMut::with_capacity(bytes);
        for &(name_at, name_len, value_at, value_len, kind) in &fields[..count] {
            if !kind.hop() {
                lines.extend_from_slice(&head[usize::from(name_at)..][..usize::from(name_len)]);
                lines.extend_from_slice(b": ");
                lines.extend_from_slice(&head[usize::from(value_at)..][..usize::from(value_len)]);
                lines.extend_from_slice(b"\r\n");
            }
        }
        RawFields {
            lines: lines.freeze(),
            length,
            date,
        }
    });
    let mut headers = HeaderMap::with_capacity(if raw.is_some() { 0 } else { count });
    for &(name_at, name_len, value_at, value_len, kind) in &fields[..count] {
        if raw.is_some() {
            break;
        }
        let (name_at, value_at) = (usize::from(name_at), usize::from(value_at));
        if drop_hops && kind.hop() {
            continue;
        }
        let name = HeaderName::from_bytes(&head[name_at..name_at + usize::from(name_len)])
            .map_err(|_| invalid("unreadable header name in the answer".into()))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_at..value_at + usize::from(value_len)))
                .map_err(|_| invalid("unreadable header value in the answer".into()))?;
        headers.append(name, value);
    }
    let framing = if bodiless {
        Framing::Length(0)
    } else if coded {
        // Both a transfer coding and a length: the coding counts, and the connection is not
        // trusted with another request.
        keep &= length.is_none();
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    keep &= framing != Framing::Close;
    Ok(Some(Parsed::Head(Head {
        status,
        version,
        reason,
        headers,
        raw,
        framing,
        keep,
    })))
}

/// What an answer's header line is to this reader, by its name in any case (looked at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    /// Any other line for one hop only.
    OtherHop,
    Other,
}

impl Line {
    fn of(name: &[u8]) -> Line {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            2 if is(b"te") => Line::OtherHop,
            4 if is(b"date") => Line::Date,
            7 if is(b"trailer") || is(b"upgrade") => Line::OtherHop,
            10 if is(b"connection") => Line::Connection,
            10 if is(b"keep-alive") => Line::OtherHop,
            14 if is(b"content-length") => Line::ContentLength,
            16 if is(b"proxy-connection") => Line::OtherHop,
            17 if is(b"transfer-encoding") => Line::TransferEncoding,
            18 if is(b"proxy-authenticate") => Line::OtherHop,
            19 if is(b"proxy-authorization") => Line::OtherHop,
            _ => Line::Other,
        }
    }

    /// Whether the line is for one hop only (RFC 9110 7.6.1, and the names HTTP/1.0 proxies
    /// used). The forwarder's `strip_hop_by_hop` removes the same names.
    fn hop(self) -> bool {
        matches!(
            self,
            Line::Connection | Line::TransferEncoding | Line::OtherHop
        )
    }
}

/// Whether the comma-separated list `value` holds `token` (any case), as `Connection` is read
/// (by hyper and here, on both sides).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last element of the comma-separated list `value` is `token` (any case): only
/// the last transfer coding says whether a body is chunked.
pub fn ends_with_token(value: &[u8], token: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Where `part`, a slice of the message head `whole`, starts in it. Heads read here are at
/// most 64 KiB, so the offset fits.
pub fn offset(whole: &[u8], part: &[u8]) -> u16 {
    (part.as_ptr() as usize - whole.as_ptr() as usize) as u16
}

/// A `Content-Length` value: decimal digits, or a list of equal ones.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// What the buffer gave the body reader.
enum Step {
    Data(Bytes),
    /// The body is complete.
    Done,
    /// More bytes are needed.
    More,
}

impl Framing {
    /// Takes the next piece of the body from `buf`.
    fn next(&mut self, buf: &mut BytesMut) -> Result<Step, io::Error> {
        match self {
            Framing::Length(0) => Ok(Step::Done),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                Ok(Step::Data(buf.split_to(take as usize).freeze()))
            }
            Framing::Close => {
                if buf.is_empty() {
                    Ok(Step::More)
                } else {
                    Ok(Step::Data(buf.split().freeze()))
                }
            }
            Framing::Chunked(state) => next_chunk(state, buf),
        }
    }
}

fn next_chunk(state: &mut Chunk, buf: &mut BytesMut) -> Result<Step, io::Error> {
    loop {
        match state {
            Chunk::Size => {
                let Some(end) = line_end(buf)? else {
                    return Ok(Step::More);
                };
                let line = &buf[..end];
                let size = line
                    .split(|&b| b == b';')
                    .next()
                    .map(|s| s.trim_ascii())
                    .filter(|s| {
                        !s.is_empty() && s.len() <= 15 && s.iter().all(u8::is_ascii_hexdigit)
                    })
                    .map(|s| {
                        s.iter().fold(0u64, |n, d| {
                            n * 16 + u64::from((*d as char).to_digit(16).unwrap_or(0))
                        })
                    })
                    .ok_or_else(|| invalid("unreadable chunk size in the answer body".into()))?;
                buf.advance(end + 2);
                *state = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                if *left == 0 {
                    *state = Chunk::DataEnd;
                }
                return Ok(Step::Data(buf.split_to(take as usize).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid(
                        "chunk data longer than its size in the answer body".into(),
                    ));
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers(lines) => {
                let Some(end) = line_end(buf)? else {
                    return Ok(Step::More);
                };
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(Step::Done);
                }
                *lines += 1;
                if *lines > MAX_TRAILERS {
                    return Err(invalid("too many trailer lines in the answer body".into()));
                }
            }
        }
    }
}

/// Where the CRLF-ended line at the start of `buf` ends, if it is complete.
fn line_end(buf: &[u8]) -> Result<Option<usize>, io::Error> {
    match memchr::memmem::find(&buf[..buf.len().min(MAX_LINE + 2)], b"\r\n") {
        Some(end) => Ok(Some(end)),
        None if buf.len() > MAX_LINE => Err(invalid(format!(
            "a chunk line longer than {} KiB in the answer body",
            MAX_LINE / 1024
        ))),
        None => Ok(None),
    }
}

/// An answer body still arriving: read from its connection as the client takes it. The
/// connection goes home when the body has been read in full and can carry another request,
/// and is closed otherwise (also when the body is dropped unread).
pub struct Streamed {
    conn: Option<Conn>,
    framing: Framing,
    keep: bool,
    home: Option<Home>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("framing", &self.framing)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl Streamed {
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep && conn.buf.is_empty() {
                if let Some(home) = self.home.take() {
                    home.keep(conn);
                }
            }
        }
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.next(&mut conn.buf) {
                Ok(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            conn.buf.reserve(BODY_READ);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    let whole = this.framing == Framing::Close;
                    this.conn = None;
                    return Poll::Ready(if whole {
                        None
                    } else {
                        Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the upstream closed the connection in the middle of the answer body",
                        )))
                    });
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::pool::{ConnCache, Pool};
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// Feeds `wire` to the chunked reader one byte at a time and returns the body it read,
    /// or its error.
    fn dechunk_bytewise(wire: &[u8]) -> Result<Vec<u8>, io::Error> {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for &b in wire {
            buf.extend_from_slice(&[b]);
            loop {
                match framing.next(&mut buf)? {
                    Step::Data(d) => body.extend_from_slice(&d),
                    Step::More => break,
                    Step::Done => {
                        assert!(buf.is_empty(), "bytes after the body");
                        return Ok(body);
                    }
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no end"))
    }

    #[test]
    fn chunked_bodies_read_whatever_the_reads_cut() {
        let wire = b"5;name=value\r\nhello\r\n1 \r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
        assert_eq!(dechunk_bytewise(wire).unwrap(), b"hello 0123456789");
        assert_eq!(dechunk_bytewise(b"0\r\n\r\n").unwrap(), b"");
        for bad in [
            &b"5\r\nhello!\r\n0\r\n\r\n"[..],
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            let e = dechunk_bytewise(bad).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"1".repeat(MAX_LINE + 10), b"\r\n".to_vec()].concat();
        assert!(dechunk_bytewise(&long).is_err());
    }

    #[test]
    fn lengths_must_be_digits_and_agree() {
        assert_eq!(parse_length(b"42"), Some(42));
        assert_eq!(parse_length(b" 42 , 42"), Some(42));
        for bad in [
            &b""[..],
            b"4 2",
            b"+42",
            b"-1",
            b"42, 43",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn parts(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/api2/json/nodes?x=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn requests_are_written_as_they_came_with_a_length_for_a_body() {
        // (method, headers, body, the bytes written)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8], &'a str);
        let cases: &[Case] = &[
            (
                "POST",
                &[("host", "pve")],
                b"a=1",
                "POST /api2/json/nodes?x=1 HTTP/1.1\r\nhost: pve\r\ncontent-length: 3\r\n\r\na=1",
            ),
            (
                "GET",
                &[("host", "pve")],
                b"",
                "GET /api2/json/nodes?x=1 HTTP/1.1\r\nhost: pve\r\n\r\n",
            ),
            (
                "PUT",
                &[("content-length", "3")],
                b"a=1",
                "PUT /api2/json/nodes?x=1 HTTP/1.1\r\ncontent-length: 3\r\n\r\na=1",
            ),
        ];
        for (method, headers, body, wire) in cases {
            let e = encode(&parts(method, headers), Bytes::from_static(body)).unwrap();
            assert_eq!(String::from_utf8(e.head).unwrap(), *wire);
            assert!(e.body.is_empty(), "a small body goes with the head");
        }
        let big = Bytes::from(vec![b'x'; INLINE_BODY + 1]);
        let e = encode(&parts("POST", &[]), big.clone()).unwrap();
        assert!(String::from_utf8(e.head)
            .unwrap()
            .ends_with("content-length: 16385\r\n\r\n"));
        assert_eq!(e.body, big);
        for declared in ["4", "3, 4", "x"] {
            let wrong = encode(
                &parts("POST", &[("content-length", declared)]),
                Bytes::from_static(b"a=1"),
            );
            assert!(wrong.is_err(), "{declared}");
        }
    }

    /// An upstream that answers the requests on each connection from `answers` in turn (raw
    /// bytes, and whether to close the connection after them), and reports each request head
    /// with the number of its connection.
    async fn scripted(
        answers: Vec<(&'static [u8], bool)>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(usize, String)>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let answers = Arc::new(std::sync::Mutex::new(answers.into_iter()));
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut tcp, _)) = listener.accept().await {
                n += 1;
                let (tx, answers) = (tx.clone(), answers.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let _ = tx.send((n, head));
                        let Some((answer, close)) = answers.lock().unwrap().next() else {
                            return;
                        };
                        if tcp.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn connect(addr: std::net::SocketAddr) -> Conn {
        Conn::new(Stream::Plain(TcpStream::connect(addr).await.unwrap()))
    }

    async fn get(conn: Conn, home: Option<Home>) -> Result<(Response<()>, Vec<u8>), Failed> {
        let req = encode(&parts("GET", &[("host", "pve")]), Bytes::new()).unwrap();
        let res = conn.send(&req, &Method::GET, home).await?;
        let (head, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| Failed {
            error: io::Error::other(e.to_string()),
            sent: true,
            answered: true,
        })?;
        Ok((Response::from_parts(head, ()), body.to_bytes().to_vec()))
    }

    /// Sends a GET on a fresh connection with a cache to go home to; returns the answer and
    /// whether the connection came home.
    async fn exchange(
        addr: std::net::SocketAddr,
    ) -> (Result<(Response<()>, Vec<u8>), Failed>, bool) {
        let pool = Pool::new(Duration::from_secs(3));
        let cache = ConnCache::default();
        // A body read to its end has handed its connection back by the time it is collected.
        let res = get(connect(addr).await, Some(Home::new(&pool, &cache))).await;
        (res, pool.take(Some(&cache)).is_some())
    }

    #[tokio::test]
    async fn answers_are_read_by_their_framing_and_reused_only_when_safe() {
        // (answer, status, body, kept)
        let cases: &[(&[u8], u16, &[u8], bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\nT: 1\r\n\r\n", 200, b"ok!!!", true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200, b"ok", true),
            (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\n\r\nuntil the end", 200, b"until the end", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw", 200, b"raw", false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200, b"ok", false),
            (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", false),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", false),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, b"", true),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", 304, b"", true),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok and more", 200, b"ok", false),
        ];
        for (answer, status, body, kept) in cases {
            let (addr, _seen) = scripted(vec![(answer, !kept)]).await;
            let (res, home) = exchange(addr).await;
            let (res, got) =
                res.unwrap_or_else(|f| panic!("{:?}: {f:?}", String::from_utf8_lossy(answer)));
            let what = String::from_utf8_lossy(answer);
            assert_eq!(res.status(), *status, "{what}");
            assert_eq!(&got[..], *body, "{what}");
            assert_eq!(home, *kept, "{what}");
        }
    }

    #[test]
    fn hop_by_hop_lines_are_left_out_unless_connection_names_others() {
        let names = |answer: &str| -> Vec<String> {
            let mut buf = BytesMut::from(answer.as_bytes());
            match parse_head(&mut buf, &Method::GET, false) {
                Ok(Some(Parsed::Head(head))) => {
                    head.headers.keys().map(|k| k.to_string()).collect()
                }
                _ => panic!("no head in {answer:?}"),
            }
        };
        let every_hop = "Connection: Keep-Alive\r\nKEEP-ALIVE: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: Basic eA==\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(
            names(&format!(
                "HTTP/1.1 200 OK\r\nServer: pve\r\n{every_hop}X-Te: 1\r\n\r\n"
            )),
            ["server", "x-te"]
        );
        // Names of the same lengths as hop-by-hop ones stay.
        let alike = [
            "tx",
            "trailed",
            "set-cookie",
            "proxy-connectiox",
            "transfer-encodinx",
            "proxy-authenticatx",
            "proxy-authorizatiox",
        ];
        let lines: String = alike.iter().map(|n| format!("{n}: 1\r\n")).collect();
        assert_eq!(
            names(&format!(
                "HTTP/1.1 200 OK\r\n{lines}Connection: keep-alive\r\nContent-Length: 0\r\n\r\n"
            )),
            [&alike[..], &["content-length"]].concat()
        );
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 0\r\n\r\n"),
            ["content-length"]
        );
        // A named header: every line stays for the forwarder, which removes the named ones too.
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n"),
            ["connection", "x-private", "keep-alive", "content-length"]
        );
    }

    #[test]
    fn plain_answers_come_as_lines_for_a_request_marked_as_sent() {
        let head = |answer: &str, method: Method, as_sent: bool| -> Head {
            let mut buf = BytesMut::from(answer.as_bytes());
            match parse_head(&mut buf, &method, as_sent) {
                Ok(Some(Parsed::Head(head))) => head,
                _ => panic!("no head in {answer:?}"),
            }
        };
        let plain = "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nServer: pve-api-daemon/3.0\r\nX-Spaced:   1\r\nContent-Type: application/json;charset=UTF-8\r\nKeep-Alive: timeout=5\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\nok";
        let h = head(plain, Method::GET, true);
        let raw = h.raw.expect("lines");
        assert_eq!(
            raw.lines,
            "Server: pve-api-daemon/3.0\r\nX-Spaced: 1\r\nContent-Type: application/json;charset=UTF-8\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n"
        );
        assert_eq!((raw.length, raw.date), (Some(2), true));
        assert!(h.headers.is_empty());
        // Without a length or a date; a POST.
        let raw = head(
            "HTTP/1.1 500 VM locked\r\nX-A: 1\r\n\r\n",
            Method::POST,
            true,
        )
        .raw;
        let raw = raw.expect("lines");
        assert_eq!(
            (&raw.lines[..], raw.length, raw.date),
            (&b"X-A: 1\r\n"[..], None, false)
        );
        // A request not marked, and answers that are not plain, get a map.
        let not_plain = [
            (plain, Method::HEAD),
            ("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", Method::GET),
            ("HTTP/1.1 304 Not Modified\r\nX-A: 1\r\n\r\n", Method::GET),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Method::GET,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
                Method::GET,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
                Method::GET,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
                Method::GET,
            ),
        ];
        for (answer, method) in not_plain {
            let h = head(answer, method, true);
            assert!(h.raw.is_none() && !h.headers.is_empty(), "{answer:?}");
        }
        let h = head(plain, Method::GET, false);
        assert!(h.raw.is_none());
        assert_eq!(h.headers.len(), 5);
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nContent-",
        ] {
            let (addr, _seen) = scripted(vec![(answer, true)]).await;
            let (res, home) = exchange(addr).await;
            let what = String::from_utf8_lossy(answer);
            let f = res.expect_err(&what);
            assert!(f.sent && f.answered, "{what}: {f:?}");
            assert!(!home, "{what}");
        }
        // A head of up to 64 KiB is read (its values share its bytes); a longer one is not.
        for (size, ok) in [(60_000, true), (65_600, false), (70_000, false)] {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nX-Long: {}\r\nContent-Length: 2\r\n\r\nok",
                "a".repeat(size)
            );
            let answer: &'static [u8] = Box::leak(answer.into_bytes().into_boxed_slice());
            let (addr, _seen) = scripted(vec![(answer, true)]).await;
            let (res, _) = exchange(addr).await;
            match res {
                Ok((res, body)) if ok => assert_eq!(
                    (res.headers()["x-long"].len(), &body[..]),
                    (size, &b"ok"[..])
                ),
                Err(f) if !ok => {
                    assert!(f.error.to_string().contains("longer than 64 KiB"), "{f:?}")
                }
                other => panic!("{size}: {other:?}"),
            }
        }
        // Closed with no answer at all: sent, nothing answered (a GET may go again).
        let (addr, _seen) = scripted(vec![]).await;
        let f = exchange(addr).await.0.expect_err("no answer");
        assert!(f.sent && !f.answered, "{f:?}");
    }

    #[tokio::test]
    async fn a_reason_phrase_of_its_own_is_kept() {
        let (addr, _seen) = scripted(vec![
            (
                b"HTTP/1.1 500 VM 104 is locked (backup)\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
        ])
        .await;
        let conn = connect(addr).await;
        let (res, _) = get(conn, None).await.unwrap();
        assert_eq!(res.status(), 500);
        let reason = res.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(reason.as_bytes(), b"VM 104 is locked (backup)");
        let (res, _) = get(connect(addr).await, None).await.unwrap();
        assert_eq!(res.status(), 404);
        assert!(res.extensions().get::<hyper::ext::ReasonPhrase>().is_none());
    }

    #[tokio::test]
    async fn a_streamed_body_brings_its_connection_home_only_when_read_to_the_end() {
        let (addr, mut seen) = scripted(vec![(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
            false,
        )])
        .await;
        let pool = Pool::new(Duration::from_secs(3));
        let cache = ConnCache::default();
        let req = encode(&parts("GET", &[]), Bytes::new()).unwrap();
        let res = connect(addr)
            .await
            .send(&req, &Method::GET, Some(Home::new(&pool, &cache)))
            .await
            .unwrap();
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"ok");
        assert!(pool.take(Some(&cache)).is_none(), "not home before its end");
        drop(body);
        assert!(pool.take(Some(&cache)).is_none(), "dropped unread: closed");
        assert_eq!(seen.recv().await.unwrap().0, 1);
    }

    #[tokio::test]
    async fn a_kept_connection_carries_the_next_request() {
        let (addr, mut seen) = scripted(vec![
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain", false),
        ])
        .await;
        let pool = Pool::new(Duration::from_secs(3));
        let cache = ConnCache::default();
        let (_, body) = get(connect(addr).await, Some(Home::new(&pool, &cache)))
            .await
            .unwrap();
        assert_eq!(body, b"ok");
        let idle = pool.take(Some(&cache)).expect("kept");
        let (_, body) = get(idle.conn, None).await.unwrap();
        assert_eq!(body, b"again");
        assert_eq!(seen.recv().await.unwrap().0, 1);
        assert_eq!(seen.recv().await.unwrap().0, 1, "the same connection");
    }
}
