//! The responder's TLS material: the certificate and key a persona names (PEM
//! files, read when the persona is loaded) or a self-signed certificate made
//! when the responder starts, the rustls server configuration built from them
//! once per responder, and the certificate's SHA-256 fingerprint for the serve
//! banner. The STARTTLS handshake itself runs in `conn`, on the session's
//! connection.
//!
//! The crypto provider is *ring*, named explicitly (rustls is built without
//! aws-lc-rs); TLS 1.2 and 1.3 are offered.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, SupportedCipherSuite};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_rustls::TlsAcceptor;

/// How long a generated certificate was valid before the responder started,
/// against clocks that are a little behind.
const BACKDATE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a generated certificate stays valid after the responder started.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The certificate a persona's `tls` asks for.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
    /// `tls: {}`: a self-signed certificate for the hostname, made at start.
    Generate,
    /// Read from `cert_file` and `key_file`.
    Pem {
        /// The certificate chain, the server's own certificate first.
        chain: Vec<CertificateDer<'static>>,
        /// Its private key (PKCS#8, PKCS#1 or SEC1).
        key: Arc<PrivateKeyDer<'static>>,
    },
}

impl Identity {
    /// Reads a PEM certificate chain and a PEM private key. Errors name the
    /// persona key and the file.
    pub(crate) fn read(cert_file: &Path, key_file: &Path) -> Result<Identity, String> {
        let text = |key: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| format!("tls.{key}: cannot read {}: {e}", path.display()))
        };
        let pem = text("cert_file", cert_file)?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.cert_file: {}: {e}", cert_file.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "tls.cert_file: {} holds no PEM certificate (BEGIN CERTIFICATE)",
                cert_file.display()
            ));
        }
        let pem = text("key_file", key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            format!(
                "tls.key_file: {} holds no usable PEM private key ({e})",
                key_file.display()
            )
        })?;
        Ok(Identity::Pem {
            chain,
            key: Arc::new(key),
        })
    }
}

/// What a responder needs for STARTTLS: the acceptor every session shares, and
/// the certificate it presents.
pub(crate) struct TlsServer {
    /// Runs the server side of a handshake with the one configuration.
    pub(crate) acceptor: TlsAcceptor,
    /// The server's own certificate (DER).
    pub(crate) certificate: CertificateDer<'static>,
}

impl TlsServer {
    /// Builds the rustls configuration for `identity`, making the certificate
    /// first when it is to be generated for `hostname`.
    pub(crate) fn new(identity: &Identity, hostname: &str) -> Result<TlsServer, String> {
        let (chain, key) = match identity {
            Identity::Generate => generate(hostname)?,
            Identity::Pem { chain, key } => (chain.clone(), key.clone_key()),
        };
        let certificate = chain[0].clone();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("tls: the certificate and key cannot be used: {e}"))?;
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }
}

/// The *ring* crypto provider with its default suites and groups.
// rustls 0.23.48 deprecates this constructor because *ring* has no post-quantum
// key exchange; it is still the only provider this build has (no aws-lc-rs).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `hostname`, `localhost`, `127.0.0.1` and
/// `::1`, valid from a day before now for a year, with a new ECDSA P-256 key.
fn generate(
    hostname: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let failed = |e: rcgen::Error| format!("tls: cannot make a certificate for {hostname}: {e}");
    let mut names = vec![hostname.to_string()];
    for other in ["localhost", "127.0.0.1", "::1"] {
        if !other.eq_ignore_ascii_case(hostname) {
            names.push(other.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = subject;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(BACKDATE);
    params.not_after = epoch + since_epoch + VALIDITY;
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

/// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint
/// -sha256` writes it: upper-case hex pairs joined by colons.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    // The SHA-256 of the provider's TLS 1.3 AES-128-GCM suite: no hashing crate
    // of our own is needed for one banner line.
    let SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        return String::new();
    };
    let digest = suite.common.hash_provider.hash(der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_name_the_host_and_loopback() {
        let server = TlsServer::new(&Identity::Generate, "mail1.fabrikam.com").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&server.certificate).unwrap();
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "DNSName(mail1.fabrikam.com)",
                "DNSName(localhost)",
                "IPAddress(7f:00:00:01)",
                "IPAddress(00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01)"
            ]
        );
        let subject = cert.subject().to_string();
        assert_eq!(subject, "CN=mail1.fabrikam.com");
        let validity = cert.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert_eq!(days, 366);
        assert!(validity.is_valid());
        let again = TlsServer::new(&Identity::Generate, "localhost").unwrap();
        assert_ne!(
            again.certificate, server.certificate,
            "a new key every time"
        );
    }

    #[test]
    fn pem_files_are_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("smtp-plan-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let identity = Identity::read(&cert_file, &key_file).unwrap();
        let server = TlsServer::new(&identity, "ignored.example").unwrap();
        assert_eq!(server.certificate, *cert.der());

        let e = Identity::read(&key_file, &key_file).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = Identity::read(&cert_file, &cert_file).unwrap_err();
        assert!(e.starts_with("tls.key_file: "), "{e}");
        let e = Identity::read(&dir.join("missing.pem"), &key_file).unwrap_err();
        assert!(e.starts_with("tls.cert_file: cannot read "), "{e}");

        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key_file, other.serialize_pem()).unwrap();
        let mismatched = Identity::read(&cert_file, &key_file).unwrap();
        let e = TlsServer::new(&mismatched, "mx.test").err().unwrap();
        assert!(e.contains("cannot be used"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprints_are_colon_separated_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            fingerprint(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }
}
