//! The answers hyper writes on its own, before any request exists (a request line or head it
//! cannot parse: 400, 414 URI Too Long, 431 Request Header Fields Too Large), rewritten into
//! Proxmox's shape by [`crate::reject`]: the status, the message as reason phrase, a JSON
//! body `{"data":null,"message":"…\n"}`, and `Connection: close`.
//!
//! hyper writes them with an empty body and no way to change that, so the client connection's
//! I/O is wrapped: a write that starts such an answer while no request of the connection is
//! in flight (so it cannot be a response of pvegate's or of Proxmox's) is swallowed and the
//! Proxmox-shaped answer written instead.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::reject::{Answer, Kind, Rejection};

/// Whether a connection has a request being answered (by pvegate or Proxmox).
pub trait Busy: Send + Sync {
    /// True from the service call until the response has been written.
    fn busy(&self) -> bool;
}

/// A client connection's I/O with hyper's own error answers rewritten.
pub struct Shaped<I, A> {
    /// The wrapped I/O.
    pub inner: I,
    activity: Arc<A>,
    pending: Bytes,
    rewrote: bool,
}

impl<I, A> Shaped<I, A> {
    /// Wraps `inner`; `activity` tells whether a request is being answered.
    pub fn new(inner: I, activity: Arc<A>) -> Self {
        Shaped {
            inner,
            activity,
            pending: Bytes::new(),
            rewrote: false,
        }
    }

    /// Whether an answer of hyper's was rewritten (the connection is then closing).
    pub fn rewrote(&self) -> bool {
        self.rewrote
    }
}

/// pvegate's answer in place of one hyper writes on its own, if it is one of those.
fn rejection_for(head: &[u8]) -> Option<Rejection> {
    if !head.starts_with(b"HTTP/1.1 4") || !contains(head, b"content-length: 0\r\n") {
        return None;
    }
    let (kind, detail) = match head.get(9..12)? {
        b"400" => (Kind::Unreadable, "not a well-formed HTTP/1.1 request head"),
        b"414" => (
            Kind::Refused(StatusCode::URI_TOO_LONG),
            "request-target too long: send long parameter lists in the body",
        ),
        b"431" => (
            Kind::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            "request header fields too large (Proxmox accepts at most 64 header lines and 8 KiB)",
        ),
        _ => return None,
    };
    Some(Rejection::new(kind, None, detail))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of `rejection`'s answer (json shape: no request, so no API format), closing the
/// connection.
fn shaped(rejection: &Rejection) -> Bytes {
    let Answer {
        status,
        reason,
        body,
    } = rejection.answer();
    let reason = reason.as_ref().map_or(&b""[..], |r| r.as_bytes());
    let mut out = Vec::with_capacity(160 + reason.len() + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {} ", status.as_u16()).as_bytes());
    out.extend_from_slice(reason);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json;charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    Bytes::from(out)
}

impl<I: AsyncWrite + Unpin, A: Busy> Shaped<I, A> {
    /// Writes what is pending of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Swallows `first` (of `total` bytes written) if it starts one of hyper's own answers.
    fn intercept(&mut self, first: &[u8], total: usize) -> bool {
        if self.activity.busy() {
            return false;
        }
        let Some(rejection) = rejection_for(first) else {
            return false;
        };
        self.pending = shaped(&rejection);
        self.rewrote = true;
        let status = rejection.status().as_u16();
        tracing::debug!(status, total, "answered a request hyper could not parse");
        true
    }
}

impl<I: AsyncRead + Unpin, A> AsyncRead for Shaped<I, A> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin, A: Busy> AsyncWrite for Shaped<I, A> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if self.rewrote || self.intercept(buf, buf.len()) {
            // Nothing after the rewritten answer goes out (hyper closes the connection).
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        let total = bufs.iter().map(|b| b.len()).sum();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if self.rewrote || self.intercept(first, total) {
            return Poll::Ready(Ok(total));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_error_answers_are_recognised() {
        let hyper431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            rejection_for(hyper431).map(|r| r.status().as_u16()),
            Some(431)
        );
        let proxied = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 12\r\n\r\n";
        assert!(rejection_for(proxied).is_none());
        assert!(rejection_for(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        let too_long = Rejection::new(Kind::Refused(StatusCode::URI_TOO_LONG), None, "too long");
        let text = String::from_utf8(shaped(&too_long).to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 414 pvegate: too long\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with(r#"{"data":null,"message":"pvegate: too long\n"}"#),
            "{text}"
        );
    }
}
