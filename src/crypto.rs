//! The one TLS crypto provider pvegate uses, on both sides: the listener's server TLS
//! ([`crate::server`]) and the client TLS to Proxmox ([`crate::upstream::tls`]).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;

/// The crypto provider (ring) for every rustls config pvegate builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The session ticket issuer for pvegate's listener: clients resume TLS sessions from a
/// ticket they hold (stateless: no server-side cache to overflow, so every returning client
/// resumes, as with nginx's default). The ticket keys are random per process and rotate every
/// 6 hours (the previous key still opens tickets of the last period); TLS 1.3 resumption still
/// runs a fresh key exchange, so a leaked ticket key does not reveal recorded traffic.
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    rustls::crypto::ring::Ticketer::new()
}
