//! Request bodies under bounds: an idle timeout between body bytes ([`IdleTimeout`]) and
//! buffering into one contiguous buffer ([`read_to_limit`]), so memory follows the bytes
//! received rather than the number of reads.
//!
//! Why contiguous: hyper hands each read of a body over as a `Bytes` view into its own read
//! buffer. Kept as they are (a list of frames, as `collect()` keeps them), every small frame
//! pins a whole buffer allocation: a client sending one byte per TCP segment made pvegate hold
//! about 4 KiB per body byte. [`read_to_limit`] copies each frame and drops it at once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// The client sent nothing of its request body for the configured `listen.body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body bytes for {0:?} (listen.body_timeout_secs)")]
pub struct BodyTimeout(pub Duration);

/// A request body whose client may stay silent for at most `timeout` between frames.
///
/// The timer is only created the first time the body has nothing ready, so requests whose
/// body is never waited for (GETs, bodies already in hyper's buffer) pay nothing.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeout<B> {
    /// `inner` with at most `timeout` of silence between frames.
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body could not be buffered.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Timeout(BodyTimeout),
    #[error("the request body could not be read: {0}")]
    Failed(String),
}

/// Reads `body` into one buffer of at most `limit` bytes, copying every frame as it comes (so
/// no frame keeps its read buffer alive). The buffer grows with the bytes received only.
pub async fn read_to_limit<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    // Pre-size from a declared length (never beyond the limit); chunked bodies grow as needed.
    let hint = body.size_hint().exact().unwrap_or(0);
    let hint = usize::try_from(hint).unwrap_or(limit);
    if hint > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut buf = BytesMut::with_capacity(hint);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            match e.downcast::<BodyTimeout>() {
                Ok(t) => ReadError::Timeout(*t),
                Err(e) => ReadError::Failed(e.to_string()),
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Whether `e` (or what caused it) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body_util::StreamBody;

    fn frames(parts: Vec<&'static [u8]>) -> impl Body<Data = Bytes, Error = std::io::Error> {
        StreamBody::new(stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(p)))),
        ))
    }

    #[tokio::test]
    async fn reads_frames_into_one_buffer_and_enforces_the_limit() {
        let b = read_to_limit(frames(vec![b"a=", b"1", b"&b=2"]), 16)
            .await
            .unwrap();
        assert_eq!(&b[..], b"a=1&b=2");
        let e = read_to_limit(frames(vec![b"12345", b"6789"]), 8)
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(8)), "{e}");
    }

    #[tokio::test]
    async fn a_silent_body_times_out() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let silent = StreamBody::new(tokio_stream_from(rx));
        let body = IdleTimeout::new(silent, Duration::from_millis(50));
        let e = read_to_limit(body, 16).await.unwrap_err();
        assert!(matches!(e, ReadError::Timeout(_)), "{e}");
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
