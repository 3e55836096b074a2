//! Websocket tunnels: once the upstream answered `101`, bytes are copied both ways untouched,
//! with no idle timeout (a console may sit quiet for hours).
//!
//! Plain-TCP client connections are served by hyper without its upgrade machinery (see
//! [`crate::server`]): the server puts an [`UpgradeSlot`] into every request (in its
//! [`crate::conn::ClientConn`]), the forwarder
//! leaves the upstream's pending upgrade in it after a `101`, and the server splices it with
//! the client socket once hyper has handed that back ([`splice_io`]). Requests without a slot
//! (TLS client connections) keep hyper's own client-side upgrade ([`splice`]).
//!
//! Every tunnel is registered ([`close_tunnels`]): a graceful shutdown closes them last, after
//! the requests in flight have finished.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The open tunnels of the process, and the signal that closes them.
struct Tunnels {
    tasks: TaskTracker,
    close: CancellationToken,
}

static TUNNELS: LazyLock<Tunnels> = LazyLock::new(|| Tunnels {
    tasks: TaskTracker::new(),
    close: CancellationToken::new(),
});

/// Closes every websocket tunnel (and any opened from now on) and waits up to `wait` for
/// them to end. Returns how many were open.
pub async fn close_tunnels(wait: Duration) -> usize {
    let open = TUNNELS.tasks.len();
    TUNNELS.close.cancel();
    TUNNELS.tasks.close();
    let _ = tokio::time::timeout(wait, TUNNELS.tasks.wait()).await;
    open
}

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
    TUNNELS.tasks.spawn(async move {
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
///
/// `hold` (the client connection's slot under `listen.max_connections`, its entry in the open
/// connections gauge) is kept until the tunnel ends.
pub fn splice_io<C, H>(client: C, upstream: OnUpgrade, hold: H)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Send + 'static,
{
    TUNNELS.tasks.spawn(async move {
        let _hold = hold;
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
    let _open = crate::metrics::OpenWebsocket::new();
    let mut upstream = TokioIo::new(upstream);
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => copied,
        _ = TUNNELS.close.cancelled() => {
            tracing::debug!("websocket closed: pvegate is shutting down");
            return;
        }
    };
    match copied {
        Ok((up, down)) => tracing::debug!(
            client_to_upstream = up,
            upstream_to_client = down,
            "websocket closed"
        ),
        Err(e) => tracing::debug!(error = %e, "websocket ended"),
    }
}
