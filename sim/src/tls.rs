//! TLS material for the sim: a throw-away CA and a node certificate it signed, like the
//! `pve-root-ca.pem` / `pve-ssl.pem` pair of a fresh Proxmox install.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// A ready rustls server config plus what clients need to trust it.
pub(crate) struct TlsMaterial {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the node certificate's DER, `AB:CD:…` (upper-case), as Proxmox shows it.
    pub fingerprint: String,
    /// The CA certificate (PEM) that signed the node certificate.
    pub ca_pem: String,
    /// The node certificate (PEM), returned by `vncproxy` as `cert`.
    pub cert_pem: String,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("sim tls: {e}"))
}

/// A cluster CA (`pve-root-ca.pem` and its key): it signs every node's certificate.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// Generates a CA and a node certificate for `127.0.0.1`, `::1` and `localhost` (plus
/// `node`), and a server config speaking TLS 1.2 and 1.3 with ALPN `http/1.1` only.
pub(crate) fn generate(node: &str) -> io::Result<TlsMaterial> {
    node_material(&new_ca()?, node)
}

/// A fresh cluster CA.
pub(crate) fn new_ca() -> io::Result<Ca> {
    let ca_key = KeyPair::generate().map_err(other)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "Proxmox Virtual Environment (pvegate sim)",
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "pvegate-sim");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Manager CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(other)?;
    Ok(Ca {
        cert: ca_cert,
        key: ca_key,
    })
}

/// A certificate for `node` signed by `ca`, and the server config that presents it.
pub(crate) fn node_material(ca: &Ca, node: &str) -> io::Result<TlsMaterial> {
    let (ca_cert, ca_key) = (&ca.cert, &ca.key);
    let mut names = vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ];
    if !names.iter().any(|n| n == node) && !node.is_empty() {
        names.push(node.to_owned());
    }
    let node_key = KeyPair::generate().map_err(other)?;
    let mut params = CertificateParams::new(names).map_err(other)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{node}.pvegate.sim"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Node");
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let node_cert = params
        .signed_by(&node_key, ca_cert, ca_key)
        .map_err(other)?;

    let fingerprint = fingerprint_of(node_cert.der());
    let chain: Vec<CertificateDer<'static>> = vec![node_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.serialize_der()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(TlsMaterial {
        config: Arc::new(config),
        fingerprint,
        ca_pem: ca_cert.pem(),
        cert_pem: node_cert.pem(),
    })
}

/// `AB:CD:…`: upper-case hex pairs of SHA-256(der) joined by `:`.
pub(crate) fn fingerprint_of(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
