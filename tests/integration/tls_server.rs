//! TLS peers for the STARTTLS, implicit TLS, certificate and AUTH tests: a test CA
//! made with rcgen (valid, expired, wrong-name, self-signed and short-lived
//! certificates), and a small SMTP server on plain threads that speaks STARTTLS
//! or implicit TLS with rustls and checks AUTH PLAIN, LOGIN, CRAM-MD5 and XOAUTH2,
//! or misbehaves in the ways the client must survive.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use time::OffsetDateTime;

/// A certificate and its key.
pub struct Leaf {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The private key, PKCS#8 DER.
    key: Vec<u8>,
}

/// A private certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM (write it to a `ca_file`).
    pub pem: String,
}

fn params(names: &[&str], days_from: i64, days_to: i64) -> CertificateParams {
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("valid names");
    p.distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
    let now = OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(days_from);
    p.not_after = now + time::Duration::days(days_to);
    p
}

impl TestCa {
    /// A new CA, valid from yesterday for ten years.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut p = params(&[], -1, 3650);
        p.distinguished_name
            .push(DnType::CommonName, "smtp-plan test CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).expect("CA certificate");
        TestCa {
            issuer: Issuer::new(p, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for `names`, valid from `days_from` to `days_to` days from now.
    pub fn issue(&self, names: &[&str], days_from: i64, days_to: i64) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = params(names, days_from, days_to)
            .signed_by(&key, &self.issuer)
            .expect("certificate");
        Leaf {
            der: cert.der().clone(),
            key: key.serialize_der(),
        }
    }
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let cert = params(names, -1, 365)
        .self_signed(&key)
        .expect("certificate");
    Leaf {
        der: cert.der().clone(),
        key: key.serialize_der(),
    }
}

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// TLS from the first byte instead of STARTTLS.
    pub implicit: bool,
    /// Sends a second line right after its 220 to STARTTLS (response injection).
    pub inject: bool,
    /// Answers STARTTLS with 220, then answers the ClientHello with garbage.
    pub garbage_handshake: bool,
}

/// The user the server accepts: `chris` with password `hunter2` (token `ya29.token` for XOAUTH2).
pub const USER: &str = "chris";
/// The password the server accepts.
pub const PASSWORD: &str = "hunter2";
/// The XOAUTH2 token the server accepts.
pub const TOKEN: &str = "ya29.token";

/// A running TLS SMTP server.
pub struct TlsServer {
    /// Its address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

impl TlsServer {
    /// Serves every connection with `leaf` as its certificate.
    pub fn start(leaf: &Leaf, behaviour: Behaviour) -> TlsServer {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der.clone()], key)
            .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (config, behaviour) = (config.clone(), behaviour.clone());
                thread::spawn(move || session(conn, &config, &behaviour));
            }
        });
        TlsServer { addr, stop }
    }
}

fn tls_wrap(
    tcp: TcpStream,
    config: &Arc<rustls::ServerConfig>,
) -> Option<rustls::StreamOwned<rustls::ServerConnection, TcpStream>> {
    let conn = rustls::ServerConnection::new(config.clone()).ok()?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).ok()?;
    }
    Some(s)
}

fn session(tcp: TcpStream, config: &Arc<rustls::ServerConfig>, b: &Behaviour) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    if b.implicit {
        if let Some(mut s) = tls_wrap(tcp, config) {
            let _ = smtp(&mut s, true, b);
        }
        return;
    }
    let mut plain = tcp;
    if smtp(&mut plain, false, b) == End::StartTls {
        if b.garbage_handshake {
            // Take the ClientHello, answer with something that is not TLS.
            let mut hello = [0u8; 4096];
            let _ = plain.read(&mut hello);
            let _ = plain.write_all(b"this is not TLS at all\r\n");
            return;
        }
        if let Some(mut s) = tls_wrap(plain, config) {
            let _ = smtp(&mut s, true, b);
        }
    }
}

#[derive(PartialEq)]
enum End {
    StartTls,
    Done,
}

fn read_line<S: Read>(s: &mut S) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some(
        String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string(),
    )
}

fn smtp<S: Read + Write>(s: &mut S, tls: bool, b: &Behaviour) -> End {
    let say = |s: &mut S, text: &str| {
        s.write_all(text.as_bytes())
            .and_then(|()| s.flush())
            .is_ok()
    };
    if (!tls || b.implicit) && !say(s, "220 tls.test ESMTP\r\n") {
        return End::Done;
    }
    while let Some(line) = read_line(s) {
        let upper = line.to_ascii_uppercase();
        let ok = if upper.starts_with("EHLO") {
            let starttls = if tls { "" } else { "250-STARTTLS\r\n" };
            say(
                s,
                &format!("250-tls.test\r\n{starttls}250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n"),
            )
        } else if upper == "STARTTLS" {
            let reply = if b.inject {
                "220 2.0.0 Ready\r\n250 injected\r\n"
            } else {
                "220 2.0.0 Ready\r\n"
            };
            say(s, reply);
            return End::StartTls;
        } else if let Some(rest) = upper.strip_prefix("AUTH ") {
            let good = auth(s, rest, &line[5..]);
            say(
                s,
                if good {
                    "235 2.7.0 Authentication successful\r\n"
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n"
                },
            )
        } else if upper.starts_with("MAIL")
            || upper.starts_with("RCPT")
            || upper == "NOOP"
            || upper == "RSET"
        {
            say(s, "250 2.0.0 Ok\r\n")
        } else if upper == "DATA" {
            say(s, "354 go\r\n");
            while let Some(l) = read_line(s) {
                if l == "." {
                    break;
                }
            }
            say(s, "250 2.0.0 Ok: queued as TLS1\r\n")
        } else if upper == "QUIT" {
            say(s, "221 2.0.0 Bye\r\n");
            return End::Done;
        } else {
            say(s, "500 5.5.2 Error: command not recognized\r\n")
        };
        if !ok {
            break;
        }
    }
    End::Done
}

fn decode(text: &str) -> String {
    String::from_utf8_lossy(&STANDARD.decode(text.trim()).unwrap_or_default()).into_owned()
}

/// Runs one AUTH exchange; true when the credentials are right.
fn auth<S: Read + Write>(s: &mut S, upper: &str, original: &str) -> bool {
    let ask = |s: &mut S, challenge: &str| -> Option<String> {
        s.write_all(format!("334 {challenge}\r\n").as_bytes())
            .ok()?;
        read_line(s)
    };
    let initial = original.split_once(' ').map(|(_, i)| i.to_string());
    match upper.split_whitespace().next().unwrap_or("") {
        "PLAIN" => {
            let Some(resp) = initial.or_else(|| ask(s, "")) else {
                return false;
            };
            decode(&resp) == format!("\0{USER}\0{PASSWORD}")
        }
        "LOGIN" => {
            let user = ask(s, "VXNlcm5hbWU6").map(|u| decode(&u));
            let pass = ask(s, "UGFzc3dvcmQ6").map(|p| decode(&p));
            user.as_deref() == Some(USER) && pass.as_deref() == Some(PASSWORD)
        }
        "CRAM-MD5" => {
            use hmac::Mac;
            let challenge = "<1896.697170952@tls.test>";
            let Some(resp) = ask(s, &STANDARD.encode(challenge)) else {
                return false;
            };
            let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(PASSWORD.as_bytes()).unwrap();
            mac.update(challenge.as_bytes());
            let digest: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            decode(&resp) == format!("{USER} {digest}")
        }
        "XOAUTH2" => {
            let Some(resp) = initial else { return false };
            let good = decode(&resp) == format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01");
            if !good {
                // The provider's error, as JSON in a 334; the client answers an empty line.
                let _ = ask(
                    s,
                    &STANDARD.encode(r#"{"status":"401","schemes":"bearer"}"#),
                );
            }
            good
        }
        _ => false,
    }
}
