//! The way to Proxmox: which node of a cluster ([`cluster`]), TLS trust ([`tls`]), the
//! HTTP/1.1 client with header hygiene ([`client`]), the exchange of requests whose body is in
//! memory ([`h1`]), the upstream side of a client connection
//! ([`link`]), idle connections per client connection and shared ([`pool`]), and websocket
//! tunnels after the upstream's `101` ([`upgrade`]). Nothing here imports from the layers or
//! the server: the server hands a client connection's [`ClientLink`] to the forwarder, which
//! passes it to [`Upstream::forward`].

pub mod client;
pub mod cluster;
pub mod h1;
pub mod link;
pub mod pool;
pub mod tls;
pub mod upgrade;

pub use client::{ForwardError, Upstream};
pub use cluster::Cluster;
pub use link::ClientLink;
