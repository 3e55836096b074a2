//! Websocket tunnels: once the upstream answered `101`, bytes are copied both ways untouched,
//! with no idle timeout (a console may sit quiet for hours).
//!
//! Plain-TCP client connections are served by hyper without its upgrade machinery (see
//! [`crate::server`]): the server puts an [`UpgradeSlot`] into every request (in its
//! [`crate::layer::ClientConn`]), the forwarder
//! leaves the upstream's pending upgrade in it after a `101`, and the server splices it with
//! the client socket once hyper has handed that back ([`splice_io`]). Requests without a slot
//! (TLS client connections) keep hyper's own client-side upgrade ([`splice`]).

use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A per-connection place where the forwarder leaves the upstream side of a websocket after
/// its `101`, for the server to splice with the client connection when hyper is done with it.
#[derive(Clone, Default)]
pub struct UpgradeSlot(Arc<Mutex<Option<OnUpgrade>>>);

impl UpgradeSlot {
    /// Leaves the upstream's pending upgrade for the server.
    pub fn fill(&self, upstream: OnUpgrade) {
        // A poisoned lock only means another holder panicked; the Option is still sound.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(upstream);
    }

    /// Takes the upstream's pending upgrade, if a `101` left one.
    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Joins the client's and the upstream's upgraded connections and copies until either ends.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        copy(TokioIo::new(client), upstream).await;
    });
}

/// Joins a client connection (already past the `101`, with any bytes read beyond it replayed
/// first) with the upstream's upgraded connection and copies until either ends.
pub fn splice_io<C>(client: C, upstream: OnUpgrade)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        match upstream.await {
            Ok(upstream) => copy(client, upstream).await,
            Err(e) => tracing::warn!(error = %e, "websocket upgrade failed"),
        }
    });
}

async fn copy<C>(mut client: C, upstream: hyper::upgrade::Upgraded)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(
            client_to_upstream = up,
            upstream_to_client = down,
            "websocket closed"
        ),
        Err(e) => tracing::debug!(error = %e, "websocket ended"),
    }
}
