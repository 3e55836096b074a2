//! Websocket tunnels: once the upstream answered `101`, bytes are copied both ways untouched,
//! with no idle timeout (a console may sit quiet for hours).

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

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
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(
                client_to_upstream = up,
                upstream_to_client = down,
                "websocket closed"
            ),
            Err(e) => tracing::debug!(error = %e, "websocket ended"),
        }
    });
}
