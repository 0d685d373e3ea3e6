//! TLS for SMTP sessions: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with
//! rustls on the ring provider. Verification uses the Mozilla roots
//! (webpki-roots) or a given CA bundle; with verification off the session goes
//! on, but the verifier's verdict is still recorded. After the handshake the
//! certificate's facts (subject, SAN, issuer, expiry) and the negotiated version
//! and cipher suite are reported, and `cert:` assertions are checked here.

use super::connection::Stream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How to run a handshake.
#[derive(Debug, Clone)]
pub struct TlsParams {
    /// The name to send as SNI and to verify the certificate against.
    pub server_name: String,
    /// Whether a verification failure fails the handshake.
    pub verify: bool,
    /// A PEM bundle of CA certificates to trust instead of the Mozilla roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Require TLS 1.3.
    pub tls13_only: bool,
}

/// What a TLS session was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `TLSv1.3`.
    pub version: String,
    /// `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// Certificate subject.
    pub subject: String,
    /// DNS names and IP addresses of the subjectAltName.
    pub san: Vec<String>,
    /// Certificate issuer.
    pub issuer: String,
    /// Expiry, as seconds since the epoch.
    pub not_after: i64,
    /// `ok`, or why verification failed (also when it was not enforced).
    pub verification: Result<(), String>,
}

impl TlsFacts {
    /// The facts as report lines.
    pub fn lines(&self) -> Vec<String> {
        let verdict = match &self.verification {
            Ok(()) => "certificate verified".to_string(),
            Err(e) => format!("certificate NOT verified: {e}"),
        };
        vec![
            format!("TLS: {} {}", self.version, self.cipher),
            format!(
                "TLS certificate: subject {}; SAN {}",
                self.subject,
                if self.san.is_empty() {
                    "none".into()
                } else {
                    self.san.join(", ")
                }
            ),
            format!(
                "TLS certificate: issuer {}; not after {}",
                self.issuer,
                crate::date::rfc5322(
                    UNIX_EPOCH + std::time::Duration::from_secs(self.not_after.max(0) as u64)
                )
            ),
            format!("TLS: {verdict}"),
        ]
    }

    /// Checks `valid_for_days` and `names` (each must be covered by the SAN,
    /// `*.example.com` covering one label, RFC 6125 section 6.4.3).
    pub fn check(&self, valid_for_days: Option<u32>, names: &[String]) -> Result<(), String> {
        if let Some(days) = valid_for_days {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let left = (self.not_after - now) as f64 / 86_400.0;
            if left < f64::from(days) {
                return Err(if left < 0.0 {
                    format!(
                        "the certificate expired {:.1} days ago, less than valid_for_days: {days}",
                        -left
                    )
                } else {
                    format!("the certificate expires in {left:.1} days, less than valid_for_days: {days}")
                });
            }
        }
        for name in names {
            if !self.san.iter().any(|s| covers(s, name)) {
                return Err(format!(
                    "the certificate does not cover {name} (SAN: {})",
                    self.san.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Whether SAN entry `pattern` covers `name`.
fn covers(pattern: &str, name: &str) -> bool {
    let (p, n) = (
        pattern.to_ascii_lowercase(),
        name.trim_end_matches('.').to_ascii_lowercase(),
    );
    match p.strip_prefix("*.") {
        Some(rest) => n
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => p == n,
    }
}

/// Wraps the WebPKI verifier: records its verdict, and enforces it only when asked.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    enforce: bool,
    verdict: Mutex<Option<Result<(), String>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        match result {
            Err(e) if self.enforce => Err(e),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {} holds no certificate", path.display()));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
    }
    Ok(store)
}

/// The ring crypto provider, which the project uses for all TLS. rustls 0.23.48
/// deprecates this constructor because ring has no post-quantum key exchange;
/// ring stays the project's choice (no C toolchain needed, as aws-lc would).
#[allow(deprecated)]
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs the client handshake over `stream`.
pub async fn handshake(
    stream: Box<dyn Stream>,
    params: &TlsParams,
) -> Result<(Box<dyn Stream>, TlsFacts), String> {
    let provider = ring_provider();
    let inner = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(params.ca_file.as_deref())?),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let verifier = Arc::new(Recording {
        inner,
        enforce: params.verify,
        verdict: Mutex::new(None),
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if params.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(params.server_name.clone())
        .map_err(|e| format!("`{}` cannot be a TLS server name: {e}", params.server_name))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version().map_or("?".into(), |v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    });
    let cipher = conn
        .negotiated_cipher_suite()
        .map_or("?".into(), |c| format!("{:?}", c.suite()));
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    let verification = verifier
        .verdict
        .lock()
        .ok()
        .and_then(|v| v.clone())
        .unwrap_or(Err("not checked".into()));
    let facts = describe(cert, version, cipher, verification)?;
    Ok((Box::new(tls), facts))
}

fn describe(
    der: &CertificateDer<'_>,
    version: String,
    cipher: String,
    verification: Result<(), String>,
) -> Result<TlsFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot parse the server certificate: {e}"))?;
    let mut san = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => san.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => san.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        san.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(TlsFacts {
        version,
        cipher,
        subject: cert.subject().to_string(),
        san,
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        verification,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(san: &[&str], not_after: i64) -> TlsFacts {
        TlsFacts {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            subject: "CN=mail".into(),
            san: san.iter().map(|s| s.to_string()).collect(),
            issuer: "CN=ca".into(),
            not_after,
            verification: Ok(()),
        }
    }

    #[test]
    fn names_are_covered_by_san_with_one_label_wildcards() {
        assert!(covers("mail.example.com", "MAIL.example.com."));
        assert!(covers("*.example.com", "mail.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        let f = facts(&["mail.example.com", "*.contoso.com"], i64::MAX / 2);
        assert!(f
            .check(
                None,
                &["smtp.contoso.com".into(), "mail.example.com".into()]
            )
            .is_ok());
        assert!(f
            .check(None, &["other.test".into()])
            .unwrap_err()
            .contains("does not cover other.test"));
    }

    #[test]
    fn validity_days() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let f = facts(&[], now + 3 * 86_400);
        assert!(f.check(Some(2), &[]).is_ok());
        assert!(f
            .check(Some(30), &[])
            .unwrap_err()
            .contains("expires in 3.0 days, less than valid_for_days: 30"));
        let f = facts(&[], now - 86_400);
        assert!(f
            .check(Some(0), &[])
            .unwrap_err()
            .contains("expired 1.0 days ago"));
    }
}
