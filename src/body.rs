//! The one body type of every request and response in the pipeline ([`Body`]): nothing, a
//! buffered body, a body streamed from hyper's side of a connection, an answer body streamed
//! from an upstream connection ([`crate::upstream::h1`]), or any other body boxed.
//!
//! An enum rather than one boxed type: the bodies pvegate handles are almost all hyper's own
//! streams (uploads from the client, answers from Proxmox) or bytes it holds (buffered request
//! bodies, its own responses), and those need no allocation or dynamic dispatch per request.
//! Every variant streams: a body is never collected here.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

use crate::upstream::h1::Streamed;

/// The error a [`Body`] can yield: whatever its source failed with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response in the pipeline.
#[derive(Debug, Default)]
#[must_use]
pub struct Body(Kind);

#[derive(Debug)]
enum Kind {
    Empty(Empty<Bytes>),
    /// Bytes held in memory, until they have been read.
    Full(Option<Bytes>),
    Incoming(Incoming),
    Upstream(Streamed),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Default for Kind {
    fn default() -> Self {
        Kind::Empty(Empty::new())
    }
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body::default()
    }

    /// `body`, streamed as it comes. hyper's [`Incoming`] and a `Body` are taken as they are;
    /// any other body type is boxed.
    pub fn new<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let any: &mut dyn Any = &mut slot;
        if let Some(incoming) = any
            .downcast_mut::<Option<Incoming>>()
            .and_then(Option::take)
        {
            return Body(Kind::Incoming(incoming));
        }
        if let Some(body) = any.downcast_mut::<Option<Body>>().and_then(Option::take) {
            return body;
        }
        match slot {
            Some(body) => Body(Kind::Boxed(body.map_err(Into::into).boxed_unsync())),
            // Unreachable: `slot` is only emptied by a downcast that returned above.
            None => Body::empty(),
        }
    }
}

impl Body {
    /// A second body with the same bytes, for a body held in memory (none or buffered);
    /// `None` for a streamed one, which can be read only once.
    pub fn try_clone(&self) -> Option<Body> {
        match &self.0 {
            Kind::Empty(_) => Some(Body::empty()),
            Kind::Full(full) => Some(Body(Kind::Full(full.clone()))),
            Kind::Incoming(_) | Kind::Upstream(_) | Kind::Boxed(_) => None,
        }
    }

    /// The bytes of a body held in memory (none or buffered) and not read yet; `None` for a
    /// streamed one.
    pub fn in_memory(&self) -> Option<Bytes> {
        match &self.0 {
            Kind::Empty(_) => Some(Bytes::new()),
            Kind::Full(full) => Some(full.clone().unwrap_or_default()),
            Kind::Incoming(_) | Kind::Upstream(_) | Kind::Boxed(_) => None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }
}

impl From<Streamed> for Body {
    fn from(body: Streamed) -> Body {
        Body(Kind::Upstream(body))
    }
}

impl From<Incoming> for Body {
    fn from(body: Incoming) -> Body {
        Body(Kind::Incoming(body))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Empty(_) => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty(_) => true,
            Kind::Full(b) => b.is_none(),
            Kind::Incoming(b) => b.is_end_stream(),
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty(_) => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(b) => b.size_hint(),
            Kind::Upstream(b) => b.size_hint(),
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    async fn collect(body: Body) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn empty_is_at_its_end_with_an_exact_zero_length() {
        let body = Body::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(collect(body).await, Bytes::new());
    }

    #[tokio::test]
    async fn bytes_keep_their_exact_length_and_content() {
        let body = Body::from(Bytes::from_static(b"{\"data\":null}"));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(13));
        assert_eq!(collect(body).await, Bytes::from_static(b"{\"data\":null}"));
    }

    #[tokio::test]
    async fn a_body_is_not_wrapped_twice() {
        let body = Body::new(Body::from(Bytes::from_static(b"abc")));
        assert!(matches!(body.0, Kind::Full(_)));
        assert_eq!(collect(body).await, Bytes::from_static(b"abc"));
    }

    #[tokio::test]
    async fn other_bodies_stream_frame_by_frame_and_keep_their_errors() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
            Err(std::io::Error::other("upstream reset")),
        ];
        let mut body = Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )));
        assert!(matches!(body.0, Kind::Boxed(_)));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, Bytes::from_static(b"ab"));
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second, Bytes::from_static(b"cd"));
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "upstream reset");
    }
}
