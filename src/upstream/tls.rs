//! Upstream certificate trust: a CA bundle, a pinned SHA-256 fingerprint (what Proxmox shows
//! for its self-signed certificate), the system roots, or an explicit opt-out.
//!
//! Pinning still checks the whole handshake: the server must prove it holds the pinned
//! certificate's key (its handshake signature is verified), only the chain check is replaced
//! by the fingerprint comparison.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::{format_fingerprint, Trust};

/// Why the upstream TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA bundle {path}: {source}")]
    ReadCa {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "CA bundle {0} holds no usable certificate: it must be PEM (-----BEGIN CERTIFICATE-----)"
    )]
    EmptyCa(String),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the upstream address {0}: it must be a host name or an IP address")]
    Name(String),
}

/// A client config for talking to the upstream. ALPN is left to the connector, which offers
/// http/1.1 only (Proxmox has no HTTP/2).
pub fn client_config(trust: &Trust) -> Result<ClientConfig, TlsError> {
    let provider = crate::crypto::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match trust {
        Trust::Fingerprint(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: Some(*fp),
                provider,
            }))
            .with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: None,
                provider,
            }))
            .with_no_client_auth(),
        Trust::Ca(path) => {
            let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
                path: path.display().to_string(),
                source,
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(TlsError::EmptyCa(path.display().to_string()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::SystemRoots => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// SHA-256 of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> [u8; 32] {
    Sha256::digest(cert).into()
}

/// Accepts exactly the pinned certificate (or, with no pin, any: the explicit opt-out), and
/// verifies the handshake signatures with it.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = fingerprint(end_entity.as_ref());
        if got == pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "upstream certificate fingerprint is {}, but upstream.fingerprint pins {}: check the Proxmox certificate (Datacenter > Node > System > Certificates)",
                format_fingerprint(&got),
                format_fingerprint(&pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
