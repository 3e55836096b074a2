//! The way to Proxmox: TLS trust ([`tls`]), the pooled HTTP/1.1 client with header hygiene
//! ([`client`]), and websocket tunnels after the upstream's `101` ([`upgrade`]).

pub mod client;
pub mod tls;
pub mod upgrade;

pub use client::{ForwardError, Upstream};
