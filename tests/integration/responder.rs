//! The built-in responder over real TCP on 127.0.0.1, driven by a raw socket: the
//! Exchange telnet runbook reply for reply, sequence errors, hostile clients
//! (garbage, over-long lines, pipelining, disconnects, silence, not reading),
//! every fault kind, size limits, BDAT, shutdown, and STARTTLS and AUTH through
//! a tokio-rustls client that trusts exactly the responder's certificate.

use crate::support::{smtp_plan, temp_dir};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rustls::pki_types::{CertificateDer, ServerName};
use smtp_plan::responder::{Persona, Responder};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Longest wait for anything the responder should do at once.
const WAIT: Duration = Duration::from_secs(5);

const EHLO_REPLY: [&str; 8] = [
    "250-mail1.fabrikam.com Hello [127.0.0.1]",
    "250-SIZE 37748736",
    "250-PIPELINING",
    "250-DSN",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-BINARYMIME",
    "250 CHUNKING",
];

async fn start(persona: Persona) -> Responder {
    Responder::start(Arc::new(persona), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the responder starts")
}

async fn exchange() -> Responder {
    start(Persona::builtin("exchange-2013").expect("built in")).await
}

/// A persona for fault and limit tests: every user of `test` exists.
fn persona(extra: &str) -> Persona {
    Persona::from_yaml_str(&format!(
        "name: testing\nhostname: mx.test\nrecipients: ['*@test']\ncapabilities: [PIPELINING, CHUNKING]\n{extra}"
    ))
    .expect("the test persona is valid")
}

/// What the client talks over: TCP, then TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw SMTP client that fails instead of hanging.
struct Client {
    stream: BufReader<Box<dyn Stream>>,
}

impl Client {
    async fn connect(responder: &Responder) -> Client {
        let stream = timeout(WAIT, TcpStream::connect(responder.local_addr()))
            .await
            .expect("connect in time")
            .expect("connected");
        Client {
            stream: BufReader::new(Box::new(stream)),
        }
    }

    /// Connects and reads the greeting.
    async fn greeted(responder: &Responder) -> Client {
        let mut client = Client::connect(responder).await;
        let greeting = client.line().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        client
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let stream = self.stream.get_mut();
        timeout(WAIT, async {
            stream.write_all(bytes.as_ref()).await?;
            stream.flush().await
        })
        .await
        .expect("write in time")
        .expect("written");
    }

    /// The next line, without its CRLF.
    async fn line(&mut self) -> String {
        let mut line = Vec::new();
        let n = timeout(WAIT, self.stream.read_until(b'\n', &mut line))
            .await
            .expect("a reply line in time")
            .expect("read");
        assert!(n > 0, "the connection closed instead of replying");
        assert!(line.ends_with(b"\r\n"), "{line:?} ends in CRLF");
        line.truncate(line.len() - 2);
        String::from_utf8(line).expect("UTF-8 reply")
    }

    /// The lines of the next (possibly multi-line) reply.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                return lines;
            }
        }
    }

    /// Sends one command line and returns its one-line reply.
    async fn cmd(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n")).await;
        let mut reply = self.reply().await;
        assert_eq!(reply.len(), 1, "{command}: {reply:?}");
        reply.remove(0)
    }

    /// Asserts that the responder closes the connection with nothing more to say.
    async fn closed(&mut self) {
        let mut rest = Vec::new();
        match timeout(WAIT, self.stream.read_to_end(&mut rest)).await {
            Ok(Ok(_)) => assert!(rest.is_empty(), "unexpected {rest:?}"),
            Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
            Err(_) => panic!("the connection stayed open"),
        }
    }

    /// EHLO, MAIL and RCPT, each accepted.
    async fn envelope(&mut self, rcpt: &str) {
        self.send("EHLO contoso.com\r\n").await;
        assert!(self.reply().await[0].starts_with("250"));
        assert!(self
            .cmd("MAIL FROM:<chris@contoso.com>")
            .await
            .starts_with("250 "));
        assert!(self
            .cmd(&format!("RCPT TO:<{rcpt}>"))
            .await
            .starts_with("250 "));
    }

    /// EHLO's reply lines.
    async fn ehlo(&mut self) -> Vec<String> {
        self.send("EHLO contoso.com\r\n").await;
        self.reply().await
    }

    /// The TLS handshake after the responder's 220 to STARTTLS, as `name`,
    /// trusting exactly `certificate`. The responder must have sent nothing
    /// after its 220.
    async fn handshake(self, certificate: &[u8], name: &str) -> Client {
        assert!(
            self.stream.buffer().is_empty(),
            "nothing after the 220: {:?}",
            self.stream.buffer()
        );
        let plain = self.stream.into_inner();
        let name = ServerName::try_from(name.to_string()).expect("a server name");
        let tls = timeout(WAIT, connector(certificate).connect(name, plain))
            .await
            .expect("the handshake in time")
            .expect("the handshake succeeds");
        Client {
            stream: BufReader::new(Box::new(tls)),
        }
    }

    /// STARTTLS, its 220, and the handshake with `name` as the server name.
    async fn starttls(mut self, responder: &Responder, name: &str) -> Client {
        assert_eq!(self.cmd("STARTTLS").await, "220 2.0.0 SMTP server ready");
        let certificate = responder.certificate_der().expect("the persona has tls");
        self.handshake(&certificate, name).await
    }
}

/// A TLS client that trusts exactly `certificate`, with the ring provider.
#[allow(deprecated)] // rustls 0.23.48 deprecates the ring provider; aws-lc-rs is not built.
fn connector(certificate: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(certificate.to_vec()))
        .expect("the responder's certificate is a trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn queued(reply: &str, hostname: &str) -> bool {
    reply.starts_with("250 2.6.0 <")
        && reply.ends_with(&format!("@{hostname}> Queued mail for delivery"))
}

#[tokio::test]
async fn the_telnet_runbook_session_replies_word_for_word() {
    let responder = exchange().await;
    let mut c = Client::connect(&responder).await;
    let greeting = c.line().await;
    assert!(
        greeting.starts_with("220 mail1.fabrikam.com Microsoft ESMTP MAIL Service ready at "),
        "{greeting}"
    );
    assert!(greeting.ends_with(" +0000"), "{greeting}");
    c.send("EHLO contoso.com\r\n").await;
    assert_eq!(c.reply().await, EHLO_REPLY);
    assert_eq!(
        c.cmd("MAIL FROM:chris@contoso.com").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:kate@fabrikam.com NOTIFY=success,failure")
            .await,
        "250 2.1.5 Recipient OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<nobody@fabrikam.com>").await,
        "550 5.1.1 User unknown"
    );
    assert_eq!(
        c.cmd("DATA").await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    c.send(
        "Subject: Test from Contoso\r\n\r\nThis is a test message\r\n..a dot-stuffed line\r\n.\r\n",
    )
    .await;
    let first = c.line().await;
    assert!(queued(&first, "mail1.fabrikam.com"), "{first}");

    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 2.1.0 Sender OK");
    assert_eq!(
        c.cmd("RCPT TO:<admin@fabrikam.com>").await,
        "250 2.1.5 Recipient OK"
    );
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("second\r\n.\r\n").await;
    let second = c.line().await;
    assert!(queued(&second, "mail1.fabrikam.com"), "{second}");
    assert_ne!(first, second, "every message gets its own id");

    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 Service closing transmission channel"
    );
    c.closed().await;
    responder.shutdown().await;
}

#[tokio::test]
async fn the_other_commands_answer_as_exchange() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(
        c.cmd("helo contoso.com").await,
        "250 mail1.fabrikam.com Hello [127.0.0.1]"
    );
    assert_eq!(c.cmd("rset").await, "250 2.0.0 Resetting");
    assert_eq!(c.cmd("NoOp").await, "250 2.0.0 OK");
    assert_eq!(c.cmd("VRFY kate").await, "252 2.1.5 Cannot VRFY user");
    assert_eq!(
        c.cmd("EXPN staff").await,
        "502 5.3.3 Command not implemented"
    );
    assert_eq!(c.cmd("HELP").await, "500 5.3.3 Unrecognized command");
    assert_eq!(c.cmd("STARTTLS").await, "454 4.7.0 TLS not available");
    assert_eq!(c.cmd("AUTH PLAIN").await, "500 5.3.3 Unrecognized command");
    assert_eq!(c.cmd("").await, "500 5.3.3 Unrecognized command");
    assert_eq!(
        c.cmd("RCPT TO:<postmaster>").await,
        "503 5.5.2 Need mail command"
    );
    assert_eq!(
        c.cmd("mail from:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("rcpt to:<POSTMASTER@Fabrikam.COM>").await,
        "250 2.1.5 Recipient OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<postmaster>").await,
        "250 2.1.5 Recipient OK"
    );
    assert_eq!(
        c.cmd("quit").await,
        "221 2.0.0 Service closing transmission channel"
    );
    c.closed().await;
    responder.shutdown().await;
}

#[tokio::test]
async fn recipients_outside_fabrikam_are_not_relayed() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    c.send("EHLO contoso.com\r\n").await;
    c.reply().await;
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<someone@contoso.com>").await,
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
    );
    assert_eq!(
        c.cmd("RCPT TO:<kate@mail.fabrikam.com>").await,
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.2 Need rcpt command");

    let open = start(persona("open_relay: true\n")).await;
    let mut c = Client::greeted(&open).await;
    c.envelope("someone@contoso.com").await;
    responder.shutdown().await;
    open.shutdown().await;
}

#[tokio::test]
async fn commands_out_of_sequence_are_refused() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "503 5.5.2 Send hello first"
    );
    assert_eq!(c.cmd("EHLO").await, "501 5.5.4 Invalid domain name");
    assert_eq!(c.cmd("HELO").await, "501 5.5.4 Invalid domain name");
    assert_eq!(
        c.cmd("EHLO bad..name").await,
        "501 5.5.4 Invalid domain name"
    );
    c.send("EHLO contoso.com\r\n").await;
    assert_eq!(c.reply().await, EHLO_REPLY);
    assert_eq!(
        c.cmd("RCPT TO:<kate@fabrikam.com>").await,
        "503 5.5.2 Need mail command"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.2 Need mail command");
    assert_eq!(
        c.cmd("MAIL FROM:<oops").await,
        "501 5.5.4 Invalid arguments"
    );
    assert_eq!(
        c.cmd("MAIL TO:<chris@contoso.com>").await,
        "501 5.5.4 Invalid arguments"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris>").await,
        "501 5.5.4 Invalid arguments"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com> SIZE=big").await,
        "501 5.5.4 Invalid arguments"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "503 5.5.2 Sender already specified"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.2 Need rcpt command");
    assert_eq!(c.cmd("RCPT TO:kate").await, "501 5.5.4 Invalid arguments");
    assert_eq!(c.cmd("RCPT TO:<>").await, "501 5.5.4 Invalid arguments");
    assert_eq!(
        c.cmd("RCPT FROM:<kate@fabrikam.com>").await,
        "501 5.5.4 Invalid arguments"
    );
    assert_eq!(c.cmd("VRFY").await, "501 5.5.4 Invalid arguments");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Resetting");
    assert_eq!(
        c.cmd("RCPT TO:<kate@fabrikam.com>").await,
        "503 5.5.2 Need mail command"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<kate@fabrikam.com>").await,
        "250 2.1.5 Recipient OK"
    );
    assert_eq!(c.cmd("DATA now").await, "501 5.5.4 Invalid arguments");
    c.send("EHLO again.contoso.com\r\n").await;
    c.reply().await;
    assert_eq!(
        c.cmd("DATA").await,
        "503 5.5.2 Need mail command",
        "EHLO ends the transaction"
    );
    responder.shutdown().await;
}

#[tokio::test]
async fn garbage_and_over_long_lines_get_500_and_the_session_goes_on() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    c.send(b"\x00\xff\xfe\x1b[2J garbage\r\n").await;
    assert_eq!(c.line().await, "500 5.3.3 Unrecognized command");
    let mut long = vec![b'X'; 10 * 1024];
    long.extend_from_slice(b"\r\n");
    c.send(&long).await;
    assert_eq!(c.line().await, "500 5.5.2 Line too long");
    let mut long = b"MAIL FROM:<".to_vec();
    long.extend(std::iter::repeat_n(b'a', 3000));
    long.extend_from_slice(b"@contoso.com>\r\n");
    c.send(&long).await;
    assert_eq!(c.line().await, "500 5.5.2 Line too long");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    c.send("NOOP\n").await;
    assert_eq!(c.line().await, "250 2.0.0 OK", "a bare LF ends a line too");
    c.send("EHLO contoso.com\r\n").await;
    assert_eq!(c.reply().await, EHLO_REPLY);
    responder.shutdown().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    c.send(
        "EHLO contoso.com\r\nMAIL FROM:<chris@contoso.com>\r\nRCPT TO:<kate@fabrikam.com>\r\n\
         RCPT TO:<nobody@fabrikam.com>\r\nRCPT TO:<x@contoso.com>\r\nDATA\r\n",
    )
    .await;
    assert_eq!(c.reply().await, EHLO_REPLY);
    assert_eq!(c.line().await, "250 2.1.0 Sender OK");
    assert_eq!(c.line().await, "250 2.1.5 Recipient OK");
    assert_eq!(c.line().await, "550 5.1.1 User unknown");
    assert!(c.line().await.starts_with("550 5.7.54 "));
    assert!(c.line().await.starts_with("354 "));
    c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        .await;
    assert!(queued(&c.line().await, "mail1.fabrikam.com"));
    assert_eq!(c.line().await, "250 2.0.0 Resetting");
    assert_eq!(c.line().await, "250 2.0.0 OK");
    assert_eq!(
        c.line().await,
        "221 2.0.0 Service closing transmission channel"
    );
    c.closed().await;
    responder.shutdown().await;
}

#[tokio::test]
async fn a_client_vanishing_mid_data_leaves_the_server_serving() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    c.envelope("kate@fabrikam.com").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("Subject: cut short\r\n\r\nhalf a li").await;
    drop(c);
    let mut c = Client::connect(&responder).await;
    c.send("EHLO contoso.com\r\nMAIL FROM:<chris@contoso.com>\r\nRCPT TO:<kate@fabrikam.com>\r\nDATA\r\n").await;
    drop(c);
    let mut c = Client::greeted(&responder).await;
    c.envelope("kate@fabrikam.com").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("complete\r\n.\r\n").await;
    assert!(queued(&c.line().await, "mail1.fabrikam.com"));
    responder.shutdown().await;
}

#[tokio::test]
async fn many_clients_at_once() {
    let responder = exchange().await;
    let mut sessions = Vec::new();
    for i in 0..32 {
        let mut c = Client::greeted(&responder).await;
        sessions.push(tokio::spawn(async move {
            c.envelope("kate@fabrikam.com").await;
            assert!(c.cmd("DATA").await.starts_with("354 "));
            c.send(format!("message {i}\r\n.\r\n")).await;
            let reply = c.line().await;
            assert!(queued(&reply, "mail1.fabrikam.com"), "{reply}");
            reply
        }));
    }
    let mut ids = Vec::new();
    for s in sessions {
        ids.push(s.await.expect("session ok"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 32, "message ids are unique");
    responder.shutdown().await;
}

#[tokio::test]
async fn bdat_chunks_are_read_by_count() {
    let responder = exchange().await;
    let mut c = Client::greeted(&responder).await;
    c.send("BDAT 6\r\nNOOP\r\n").await;
    assert_eq!(
        c.line().await,
        "503 5.5.2 Send hello first",
        "the chunk is skipped"
    );
    c.envelope("kate@fabrikam.com").await;
    c.send("BDAT 13\r\nQUIT\r\n.\r\nab\r\n").await;
    assert_eq!(c.line().await, "250 2.0.0 BDAT accepted");
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Bad sequence of commands");
    c.send("BDAT 5 LAST\r\nhello").await;
    assert!(queued(&c.line().await, "mail1.fabrikam.com"));
    c.send("BDAT 3 LAST\r\nabc").await;
    assert_eq!(c.line().await, "503 5.5.2 Need mail command");
    assert_eq!(c.cmd("BDAT x").await, "501 5.5.4 Invalid arguments");
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<kate@fabrikam.com>").await,
        "250 2.1.5 Recipient OK"
    );
    assert!(queued(&c.cmd("BDAT 0 LAST").await, "mail1.fabrikam.com"));
    responder.shutdown().await;
}

#[tokio::test]
async fn max_size_limits_declared_and_actual_sizes() {
    let responder = start(persona("max_size: 100\n")).await;
    let mut c = Client::greeted(&responder).await;
    c.send("EHLO contoso.com\r\n").await;
    c.reply().await;
    const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed maximum message size";
    assert_eq!(c.cmd("MAIL FROM:<a@contoso.com> SIZE=101").await, TOO_BIG);
    assert_eq!(
        c.cmd("MAIL FROM:<a@contoso.com> SIZE=100").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(c.cmd("RCPT TO:<b@test>").await, "250 2.1.5 Recipient OK");
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let line = format!("{}\r\n", "x".repeat(48));
    c.send(format!("{line}{line}.\r\n")).await;
    assert!(queued(&c.line().await, "mx.test"), "100 octets fit exactly");

    c.send("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@test>\r\nDATA\r\n")
        .await;
    c.line().await;
    c.line().await;
    assert!(c.line().await.starts_with("354 "));
    let big = format!("{}\r\n", "y".repeat(5000)).repeat(100);
    c.send(format!("{big}.\r\n")).await;
    assert_eq!(c.line().await, TOO_BIG);
    assert_eq!(
        c.cmd("MAIL FROM:<a@contoso.com>").await,
        "250 2.1.0 Sender OK",
        "the transaction ended"
    );

    assert_eq!(c.cmd("RCPT TO:<b@test>").await, "250 2.1.5 Recipient OK");
    c.send(format!("BDAT 60\r\n{}", "z".repeat(60))).await;
    assert_eq!(c.line().await, "250 2.0.0 BDAT accepted");
    c.send(format!("BDAT 60 LAST\r\n{}", "z".repeat(60))).await;
    assert_eq!(c.line().await, TOO_BIG);
    c.send("BDAT 1 LAST\r\nz").await;
    assert_eq!(c.line().await, "503 5.5.2 Need mail command");
    responder.shutdown().await;
}

#[tokio::test]
async fn auth_required_refuses_mail() {
    let responder = start(persona("auth_required: true\n")).await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(
        c.cmd("HELO contoso.com").await,
        "250 mx.test Hello [127.0.0.1]"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@contoso.com>").await,
        "530 5.7.1 Client was not authenticated"
    );
    assert_eq!(
        c.cmd("RCPT TO:<b@test>").await,
        "503 5.5.2 Need mail command"
    );
    responder.shutdown().await;
}

#[tokio::test]
async fn a_delay_fault_holds_the_reply_back() {
    let responder = start(persona(
        "faults:\n  - { command: MAIL, delay: 200ms }\n  - { command: greeting, delay: 100ms }\n",
    ))
    .await;
    let started = Instant::now();
    let mut c = Client::greeted(&responder).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    c.send("EHLO a.test\r\n").await;
    assert_eq!(c.reply().await.len(), 3);
    let sent = Instant::now();
    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 2.1.0 Sender OK");
    assert!(sent.elapsed() >= Duration::from_millis(200));
    responder.shutdown().await;
}

#[tokio::test]
async fn a_disconnect_fault_hangs_up_without_a_reply() {
    let responder = start(persona(
        "faults:\n  - { command: RCPT, nth: 2, disconnect: true }\n",
    ))
    .await;
    let mut c = Client::greeted(&responder).await;
    c.envelope("a@test").await;
    c.send("RCPT TO:<b@test>\r\n").await;
    c.closed().await;

    let responder2 = start(persona(
        "faults:\n  - { command: end_of_data, disconnect: true }\n",
    ))
    .await;
    let mut c = Client::greeted(&responder2).await;
    c.envelope("a@test").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("body\r\n.\r\n").await;
    c.closed().await;
    let mut c = Client::greeted(&responder2).await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    responder.shutdown().await;
    responder2.shutdown().await;
}

#[tokio::test]
async fn a_reply_fault_replaces_the_reply_and_cancels_the_command() {
    let responder = start(persona(
        "faults:\n  - { command: RCPT, nth: 2, reply: \"451 4.3.0 Try later\" }\n  - { command: any, nth: 9, reply: \"421 4.3.2 Too busy\" }\n",
    ))
    .await;
    let mut c = Client::greeted(&responder).await;
    c.envelope("a@test").await;
    assert_eq!(c.cmd("RCPT TO:<b@test>").await, "451 4.3.0 Try later");
    assert_eq!(c.cmd("RCPT TO:<c@test>").await, "250 2.1.5 Recipient OK");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Resetting");
    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 2.1.0 Sender OK");
    assert_eq!(c.cmd("RCPT TO:<d@test>").await, "250 2.1.5 Recipient OK");
    assert_eq!(
        c.cmd("DATA").await,
        "421 4.3.2 Too busy",
        "the 9th reply after the greeting"
    );
    assert_eq!(
        c.cmd("NOOP").await,
        "250 2.0.0 OK",
        "no message is expected"
    );
    // A new session counts from the start again.
    let mut c = Client::greeted(&responder).await;
    c.envelope("a@test").await;
    assert_eq!(c.cmd("RCPT TO:<b@test>").await, "451 4.3.0 Try later");
    responder.shutdown().await;
}

#[tokio::test]
async fn a_malformed_fault_sends_raw_bytes() {
    let responder = start(persona(
        "faults:\n  - { command: greeting, malformed: \"25O OK\\r\\n\" }\n  - command: end_of_data\n    malformed: \"250-2.6.0 queued\\r\\n550 5.0.0 mixed codes\\r\\n\"\n",
    ))
    .await;
    let mut c = Client::connect(&responder).await;
    assert_eq!(c.line().await, "25O OK");
    c.envelope("a@test").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("body\r\n.\r\n").await;
    assert_eq!(c.line().await, "250-2.6.0 queued");
    assert_eq!(c.line().await, "550 5.0.0 mixed codes");
    assert_eq!(
        c.cmd("MAIL FROM:<>").await,
        "250 2.1.0 Sender OK",
        "the message was taken"
    );
    responder.shutdown().await;
}

#[tokio::test]
async fn an_idle_client_is_timed_out() {
    let responder = start(persona("idle_timeout: 300ms\n")).await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(c.line().await, "421 4.4.2 mx.test Connection timed out");
    c.closed().await;
    responder.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped() {
    let responder = start(persona("idle_timeout: 300ms\n")).await;
    let c = Client::connect(&responder).await;
    let mut writer = c.stream.into_inner();
    let flood = b"NOOP\r\n".repeat(10_000);
    let ended = timeout(Duration::from_secs(30), async {
        loop {
            if writer.write_all(&flood).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the responder gave up on the stalled client");
    let mut c = Client::greeted(&responder).await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    responder.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_and_stops_listening() {
    let responder = exchange().await;
    let addr = responder.local_addr();
    let mut idle = Client::greeted(&responder).await;
    let mut in_data = Client::greeted(&responder).await;
    in_data.envelope("kate@fabrikam.com").await;
    assert!(in_data.cmd("DATA").await.starts_with("354 "));
    in_data.send("half a message\r\n").await;
    timeout(WAIT, responder.shutdown())
        .await
        .expect("shutdown is prompt");
    assert_eq!(idle.line().await, "421 4.3.2 Service shutting down");
    idle.closed().await;
    assert_eq!(in_data.line().await, "421 4.3.2 Service shutting down");
    in_data.closed().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn personas_load_by_name_or_file() {
    let p = Persona::load("exchange-2013").expect("built in");
    assert_eq!(
        (p.name(), p.hostname()),
        ("exchange-2013", "mail1.fabrikam.com")
    );
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/personas/exchange-2013.yaml"
    );
    assert_eq!(
        Persona::load(file).expect("the file loads").name(),
        "exchange-2013"
    );
    let e = Persona::from_yaml_str("name: x\nhostname: h\nfaults:\n  - { command: DATA }\n")
        .expect_err("a fault without an action");
    assert!(e.starts_with("4:5: "), "{e}");
    assert!(smtp_plan::responder::BUILT_IN_PERSONAS.contains(&"exchange-2013"));
}

/// EHLO_REPLY with `more` lines after it.
fn ehlo_reply_and(more: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = EHLO_REPLY.iter().map(|l| l.to_string()).collect();
    for line in more {
        let last = lines.last_mut().expect("lines");
        last.replace_range(3..4, "-");
        lines.push(format!("250 {line}"));
    }
    lines
}

fn b64(text: &str) -> String {
    BASE64.encode(text)
}

/// A persona with a generated certificate, two users and `extra`.
fn tls_persona(extra: &str) -> Persona {
    persona(&format!(
        "tls: {{}}\nusers:\n  - {{ username: chris@contoso.com, password: 'Pa55w.rd' }}\n  - {{ username: kate, password: 's3cret' }}\n{extra}"
    ))
}

#[tokio::test]
async fn exchange_2013_tls_offers_starttls_then_auth() {
    let responder = start(Persona::builtin("exchange-2013-tls").expect("built in")).await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(
        c.ehlo().await,
        ehlo_reply_and(&["STARTTLS"]),
        "no AUTH before TLS"
    );
    let chris = b64("\0chris@contoso.com\0Pa55w.rd");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {chris}")).await,
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("STARTTLS").await,
        "503 5.5.1 Bad sequence of commands"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Resetting");
    assert_eq!(c.cmd("STARTTLS now").await, "501 5.5.4 Invalid arguments");
    let mut c = c.starttls(&responder, "mail1.fabrikam.com").await;
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "503 5.5.2 Send hello first",
        "the EHLO before TLS is forgotten"
    );
    assert_eq!(
        c.ehlo().await,
        ehlo_reply_and(&["AUTH PLAIN LOGIN"]),
        "no STARTTLS over TLS"
    );
    assert_eq!(c.cmd("STARTTLS").await, "503 5.5.1 TLS already active");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {chris}")).await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {chris}")).await,
        "503 5.5.1 Already authenticated"
    );
    assert_eq!(c.ehlo().await, ehlo_reply_and(&["AUTH PLAIN LOGIN"]));
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<kate@fabrikam.com>").await,
        "250 2.1.5 Recipient OK"
    );
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("Subject: over TLS\r\n\r\nhello\r\n.\r\n").await;
    assert!(queued(&c.line().await, "mail1.fabrikam.com"));
    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 Service closing transmission channel"
    );
    c.closed().await;
    responder.shutdown().await;
}

#[tokio::test]
async fn auth_plain_with_and_without_an_initial_response() {
    let responder = start(tls_persona("auth_required: true\n")).await;
    let mut c = Client::greeted(&responder).await;
    let mut c = c_after_tls(c.ehlo().await, c, &responder).await;
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "530 5.7.1 Client was not authenticated"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0chris@contoso.com\0wrong")))
            .await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0nobody\0Pa55w.rd")))
            .await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(
        c.cmd(&b64("\0CHRIS@Contoso.com\0Pa55w.rd")).await,
        "235 2.7.0 Authentication successful",
        "the username's case does not matter"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<chris@contoso.com>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(c.cmd("AUTH LOGIN").await, "503 5.5.1 Already authenticated");
    responder.shutdown().await;
}

/// Checks the EHLO reply before TLS, then STARTTLS and EHLO again.
async fn c_after_tls(before: Vec<String>, c: Client, responder: &Responder) -> Client {
    assert_eq!(
        before,
        [
            "250-mx.test Hello [127.0.0.1]",
            "250-PIPELINING",
            "250-CHUNKING",
            "250 STARTTLS"
        ]
    );
    let mut c = c.starttls(responder, "localhost").await;
    assert_eq!(
        c.ehlo().await,
        [
            "250-mx.test Hello [127.0.0.1]",
            "250-PIPELINING",
            "250-CHUNKING",
            "250 AUTH PLAIN LOGIN"
        ]
    );
    c
}

#[tokio::test]
async fn auth_login_cancel_and_bad_base64() {
    let responder = start(tls_persona("")).await;
    let mut c = Client::greeted(&responder).await;
    let mut c = c_after_tls(c.ehlo().await, c, &responder).await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&b64("kate")).await, "334 UGFzc3dvcmQ6");
    assert_eq!(
        c.cmd(&b64("S3CRET")).await,
        "535 5.7.8 Authentication credentials invalid",
        "the password's case matters"
    );
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("*").await, "501 5.0.0 Authentication cancelled");
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(c.cmd("*").await, "501 5.0.0 Authentication cancelled");
    assert_eq!(
        c.cmd("AUTH PLAIN not-base64!").await,
        "501 5.5.2 Cannot decode response"
    );
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("%%%").await, "501 5.5.2 Cannot decode response");
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "504 5.5.4 Unrecognized authentication type"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK", "the session goes on");
    assert_eq!(
        c.cmd(&format!("AUTH LOGIN {}", b64("kate"))).await,
        "334 UGFzc3dvcmQ6"
    );
    assert_eq!(
        c.cmd(&b64("s3cret")).await,
        "235 2.7.0 Authentication successful"
    );
    responder.shutdown().await;
}

#[tokio::test]
async fn auth_can_be_allowed_before_tls() {
    let responder = start(tls_persona("auth_over_plaintext: true\n")).await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(
        c.ehlo().await,
        [
            "250-mx.test Hello [127.0.0.1]",
            "250-PIPELINING",
            "250-CHUNKING",
            "250-STARTTLS",
            "250 AUTH PLAIN LOGIN"
        ]
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0kate\0s3cret")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    let mut c = c.starttls(&responder, "localhost").await;
    assert_eq!(
        c.cmd("HELO contoso.com").await,
        "250 mx.test Hello [127.0.0.1]"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0kate\0s3cret")))
            .await,
        "235 2.7.0 Authentication successful",
        "STARTTLS forgot the AUTH before it"
    );
    responder.shutdown().await;
}

#[tokio::test]
async fn starttls_discards_commands_pipelined_after_it() {
    let responder = start(Persona::builtin("exchange-2013-tls").expect("built in")).await;
    let mut c = Client::greeted(&responder).await;
    c.ehlo().await;
    c.send("NOOP\r\nSTARTTLS\r\nNOOP\r\n").await;
    assert_eq!(c.line().await, "250 2.0.0 OK");
    assert_eq!(c.line().await, "220 2.0.0 SMTP server ready");
    let certificate = responder.certificate_der().expect("tls");
    // The handshake also checks that no reply to the second NOOP came in the clear.
    let mut c = c.handshake(&certificate, "mail1.fabrikam.com").await;
    assert_eq!(
        c.ehlo().await,
        ehlo_reply_and(&["AUTH PLAIN LOGIN"]),
        "the first reply over TLS answers EHLO, not the NOOP sent before the handshake"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    responder.shutdown().await;
}

#[tokio::test]
async fn a_failed_handshake_ends_only_that_session() {
    let responder = start(tls_persona("idle_timeout: 500ms\n")).await;
    let mut c = Client::greeted(&responder).await;
    assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 SMTP server ready");
    c.send("EHLO contoso.com\r\nMAIL FROM:<a@b.c>\r\n").await;
    let mut rest = Vec::new();
    match timeout(WAIT, c.stream.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Err(_) => panic!("the connection stayed open"),
    }
    assert!(
        !rest.starts_with(b"250") && !rest.starts_with(b"5"),
        "no SMTP reply to plain text sent for TLS: {rest:?}"
    );

    // A client that goes silent after STARTTLS is dropped after the idle timeout.
    let mut silent = Client::greeted(&responder).await;
    assert_eq!(silent.cmd("STARTTLS").await, "220 2.0.0 SMTP server ready");
    silent.closed().await;

    let mut c = Client::greeted(&responder).await;
    let mut c = c_after_tls(c.ehlo().await, c, &responder).await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    responder.shutdown().await;
}

#[tokio::test]
async fn shutdown_reaches_tls_sessions() {
    let responder = start(tls_persona("")).await;
    let mut c = Client::greeted(&responder).await;
    let mut c = c_after_tls(c.ehlo().await, c, &responder).await;
    timeout(WAIT, responder.shutdown())
        .await
        .expect("shutdown is prompt");
    assert_eq!(c.line().await, "421 4.3.2 Service shutting down");
    c.closed().await;
}

#[tokio::test]
async fn tls_files_are_read_relative_to_the_persona_file() {
    let dir = temp_dir("responder-tls");
    std::fs::create_dir_all(dir.join("tls")).expect("folder");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["mx.files.test".to_string()])
        .expect("names")
        .self_signed(&key)
        .expect("a certificate");
    std::fs::write(dir.join("tls/cert.pem"), cert.pem()).expect("written");
    std::fs::write(dir.join("tls/key.pem"), key.serialize_pem()).expect("written");
    let path = dir.join("files.yaml");
    std::fs::write(
        &path,
        "name: files\nhostname: mx.files.test\ntls:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n",
    )
    .expect("written");
    let files = Persona::load(path.to_str().expect("UTF-8 path")).expect("the persona loads");
    let responder = start(files).await;
    assert_eq!(
        responder.certificate_der().as_deref(),
        Some(cert.der().as_ref()),
        "the certificate from the file"
    );
    let mut c = Client::greeted(&responder).await;
    assert_eq!(
        c.ehlo().await,
        ["250-mx.files.test Hello [127.0.0.1]", "250 STARTTLS"]
    );
    assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 SMTP server ready");
    let mut c = c.handshake(cert.der(), "mx.files.test").await;
    assert_eq!(c.ehlo().await, ["250 mx.files.test Hello [127.0.0.1]"]);

    std::fs::write(
        dir.join("tls/key.pem"),
        rcgen::KeyPair::generate().expect("a key").serialize_pem(),
    )
    .expect("written");
    let mismatched = Persona::from_file(&path).expect("the files read");
    let e = Responder::start(Arc::new(mismatched), "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("the key is not the certificate's");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().starts_with("persona files: tls: "), "{e}");
    assert!(Persona::builtin("exchange-2013").is_some());
    assert!(start(persona("")).await.certificate_der().is_none());
    responder.shutdown().await;
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}

#[test]
fn serve_prints_the_certificate_fingerprint() {
    use std::io::BufRead;
    let mut child = smtp_plan(&crate::support::root())
        .args([
            "serve",
            "--persona",
            "exchange-2013-tls",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("smtp-plan serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(WAIT);
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the banner line in time");
    let re = regex::Regex::new(
        r"^smtp-plan responder: persona exchange-2013-tls listening on 127\.0\.0\.1:\d+, STARTTLS certificate SHA-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}\n$",
    )
    .unwrap();
    assert!(re.is_match(&line), "{line:?}");
}
