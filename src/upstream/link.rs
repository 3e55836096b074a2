//! The upstream side of one client connection ([`ClientLink`]): what the forwarder needs to
//! know and keep between that connection's requests.
//!
//! Two hand-offs between the server and the upstream pass through it, and only through it:
//! - the websocket slot: for a plain-TCP client connection the server gives an
//!   [`UpgradeSlot`]; after an upstream `101` the forwarder leaves the upstream's pending
//!   upgrade there, and the server splices it with the client socket;
//! - the connection cache: the upstream connection the client connection used last
//!   ([`ConnCache`]); when the server drops the link (the client connection is parked or
//!   closed) the cache's `Drop` hands that connection to the shared pool.

use std::net::SocketAddr;

use http::HeaderValue;

use super::client::forwarded_for;
use super::pool::ConnCache;
use super::upgrade::UpgradeSlot;

/// The upstream side of one client connection.
pub struct ClientLink {
    /// The client's `X-Forwarded-For` value, formatted once.
    pub forwarded_for: HeaderValue,
    /// Where a websocket's upstream side goes for the server to splice (plain-TCP clients;
    /// TLS clients use hyper's own upgrades).
    pub upgrade: Option<UpgradeSlot>,
    /// The upstream connection this client connection used last.
    pub cache: ConnCache,
}

impl ClientLink {
    /// The link for a new client connection from `addr`.
    pub fn new(addr: SocketAddr, upgrade: Option<UpgradeSlot>) -> ClientLink {
        ClientLink {
            forwarded_for: forwarded_for(addr),
            upgrade,
            cache: ConnCache::default(),
        }
    }
}
