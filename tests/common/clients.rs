//! Helpers for the client suites and the forwarding tests: a throw-away PKI for pvegate's
//! client-side TLS, pvegate in front of any upstream (the sim pinned by fingerprint, or a
//! purpose-built test server), gzip decoding and memory readings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pvegate::config::{self, Trust};
use pvegate::policy::{Policy, PolicyStore};
use pvegate::server::Listener;
use pvegate::{stack, upstream};
use pvegate_sim::{self as sim, SimConfig, SimHandle};

/// A CA and a server certificate it signed for `127.0.0.1`, `::1` and `localhost`, as PEM
/// files (what an operator gives pvegate's `[listen]` and its clients).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::Builder::new()
            .prefix("pvegate-pki-")
            .tempdir()
            .unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "pvegate test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "pvegate.test");
        leaf.is_ca = IsCa::NoCa;
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let ca_pem = dir.path().join("ca.pem");
        let cert_pem = dir.path().join("cert.pem");
        let key_pem = dir.path().join("key.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        std::fs::write(&cert_pem, cert.pem()).unwrap();
        std::fs::write(&key_pem, key.serialize_pem()).unwrap();
        TestPki {
            ca_der: ca_cert.der().to_vec(),
            dir,
            ca_pem,
            cert_pem,
            key_pem,
        }
    }

    /// pvegate's own loader for `[listen] tls_cert`/`tls_key`.
    pub fn server_config(&self) -> rustls::ServerConfig {
        pvegate::server::server_tls(&self.cert_pem, &self.key_pem).unwrap()
    }

    /// A rustls client config trusting the CA, restricted to `versions`, ALPN http/1.1.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg
    }
}

/// pvegate (the real stack) listening on `127.0.0.1:0` in front of some upstream.
pub struct Front {
    pub addr: SocketAddr,
    pub url: String,
    pub store: PolicyStore,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Upstream settings for `url` (`http://…` or `https://…`) with `trust`.
pub fn upstream_cfg(url: &str, trust: Trust, pool_idle: Duration) -> config::Upstream {
    let uri: http::Uri = url.parse().unwrap();
    config::Upstream {
        scheme: uri.scheme().unwrap().clone(),
        authority: uri.authority().unwrap().clone(),
        trust,
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: pool_idle,
    }
}

/// Starts pvegate in front of `up` with `policy` (TOML text), TLS to clients when given.
pub async fn front(
    up: &config::Upstream,
    policy: &str,
    client_tls: Option<rustls::ServerConfig>,
) -> Front {
    let upstream = upstream::Upstream::new(up).unwrap();
    let policy = Policy::from_toml_str("test-policy.toml", policy).unwrap();
    let store = PolicyStore::new(policy, vec![]);
    let tls = client_tls.is_some();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), client_tls)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(listener.serve(stack::build(store.clone(), upstream)));
    let scheme = if tls { "https" } else { "http" };
    Front {
        addr,
        url: format!("{scheme}://127.0.0.1:{}", addr.port()),
        store,
        task,
    }
}

/// The demo sim over HTTPS, pinned by its fingerprint (as `upstream.fingerprint` would), and
/// pvegate in front of it speaking TLS to clients with a certificate from `pki`.
pub struct TlsGate {
    pub sim: SimHandle,
    pub front: Front,
    pub pki: TestPki,
}

pub async fn start_tls_pinned(sim_cfg: SimConfig, policy: &str) -> TlsGate {
    let sim = sim::start(SimConfig {
        tls: true,
        ..sim_cfg
    })
    .await
    .unwrap();
    let fp = config::parse_fingerprint(sim.fingerprint.as_deref().unwrap()).unwrap();
    let up = upstream_cfg(
        &sim.url,
        Trust::Fingerprint(fp),
        Duration::from_millis(3000),
    );
    let pki = TestPki::new();
    let front = front(&up, policy, Some(pki.server_config())).await;
    TlsGate { sim, front, pki }
}

/// Decodes a gzip stream with the system's `gzip` (Debian: essential), so tests judge the
/// bytes as any client would, not with the sim's own code.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "not gzip: gzip -dc failed");
    out.stdout
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), where there is one.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
