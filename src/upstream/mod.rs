//! The way to Proxmox: which node of a cluster ([`cluster`]), TLS trust ([`tls`]), the HTTP/1.1 client with header hygiene
//! ([`client`]), idle connections per client connection and shared ([`pool`]), and websocket tunnels after the upstream's `101` ([`upgrade`]).

pub mod client;
pub mod cluster;
pub mod pool;
pub mod tls;
pub mod upgrade;

pub use client::{forwarded_for, ForwardError, Upstream};
pub use cluster::Cluster;
pub use pool::ConnCache;
