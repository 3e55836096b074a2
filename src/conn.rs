//! The facts pvegate keeps about one client connection, shared by every request on it: the
//! server creates them when it accepts the connection and puts them into each request's
//! extensions ([`ClientConn`]); the layers read the client address from them and the forwarder
//! hands their upstream side to [`crate::upstream`].

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;

use crate::upstream::upgrade::UpgradeSlot;
use crate::upstream::ClientLink;

/// The client connection a request came on, put into request extensions by the server: one
/// extension (a reference count) per request for all the per-connection facts.
#[derive(Clone)]
pub struct ClientConn(pub Arc<ConnInfo>);

/// What the server knows and keeps for one client connection.
pub struct ConnInfo {
    /// The client's socket address.
    pub addr: SocketAddr,
    /// What the forwarder keeps for this connection (owned by [`crate::upstream`]).
    pub upstream: ClientLink,
    /// The upstream response timer, re-armed for each request ([`crate::rearm`]).
    pub response_timer: Arc<crate::rearm::TimerSlot>,
}

impl ClientConn {
    /// The facts of a new connection from `addr`; `upgrade` is the server's websocket slot
    /// (plain-TCP connections only).
    pub fn new(addr: SocketAddr, upgrade: Option<UpgradeSlot>) -> ClientConn {
        ClientConn(Arc::new(ConnInfo {
            addr,
            upstream: ClientLink::new(addr, upgrade),
            response_timer: Arc::default(),
        }))
    }

    /// The client address of `req`, or `0.0.0.0:0` for a request that came without one.
    pub fn addr_of<B>(req: &Request<B>) -> SocketAddr {
        req.extensions()
            .get::<ClientConn>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_comes_from_the_connection() {
        let addr: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        let mut req = Request::new(());
        assert_eq!(
            ClientConn::addr_of(&req),
            SocketAddr::from(([0, 0, 0, 0], 0))
        );
        req.extensions_mut().insert(ClientConn::new(addr, None));
        assert_eq!(ClientConn::addr_of(&req), addr);
        let conn = req.extensions().get::<ClientConn>().unwrap();
        assert_eq!(conn.0.upstream.forwarded_for, "2001:db8::7");
        assert!(conn.0.upstream.upgrade.is_none());
    }
}
