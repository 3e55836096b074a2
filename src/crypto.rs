//! The one TLS crypto provider pvegate uses, on both sides: the listener's server TLS
//! ([`crate::server`]) and the client TLS to Proxmox ([`crate::upstream::tls`]).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider (ring) for every rustls config pvegate builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
