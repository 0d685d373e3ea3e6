//! The responder's end of one connection, as bytes: command and message lines
//! read through a fixed-size buffer (an over-long line is measured and discarded,
//! never stored whole), BDAT chunks skipped by count, replies batched until the
//! client has nothing more pipelined (RFC 2920 section 3.2), and the switch to
//! TLS after STARTTLS, which drops whatever the client sent after the command.
//! Every read waits at most the idle timeout, and so do every write and the TLS
//! handshake; the session above decides what the lines mean.

use super::persona::Reply;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 8 * 1024;
/// Pending replies are written once they reach this size even if more commands
/// are still buffered, so a long pipeline cannot grow them without bound.
const FLUSH_AT: usize = 16 * 1024;

/// Why a session cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The client closed the connection, a read or write failed, a write timed
    /// out, or a fault hung up: nothing more can or should be said.
    Gone,
    /// The client sent nothing for the idle timeout.
    Idle,
}

/// One line as read: its length and whether it was longer than the bytes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    /// Octets in the line without its CRLF or LF.
    pub(crate) len: u64,
    /// The line was longer than the caller's limit; only its start was kept.
    pub(crate) truncated: bool,
}

/// What a session runs on: TCP, then TLS over it after STARTTLS (or an
/// in-memory pipe in tests).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> Stream for T {}

/// A buffered connection.
pub(crate) struct Conn {
    /// The stream, read through a buffer and written directly. `None` once it
    /// was handed to a TLS handshake that failed or was cut short.
    io: Option<BufReader<Box<dyn Stream>>>,
    /// Replies not yet written.
    out: Vec<u8>,
    idle: Duration,
    /// A write is in progress or failed, so the bytes on the wire may end mid-reply.
    writing: bool,
}

impl Conn {
    /// Wraps a connection.
    pub(crate) fn new(stream: Box<dyn Stream>, idle: Duration) -> Self {
        Conn {
            io: Some(BufReader::with_capacity(READ_BUFFER, stream)),
            out: Vec::new(),
            idle,
            writing: false,
        }
    }

    fn io(&mut self) -> Result<&mut BufReader<Box<dyn Stream>>, Stop> {
        self.io.as_mut().ok_or(Stop::Gone)
    }

    /// Queues a reply.
    pub(crate) async fn send(&mut self, reply: &Reply) -> Result<(), Stop> {
        reply.encode(&mut self.out);
        self.flush_if_full().await
    }

    /// Queues raw bytes.
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.out.extend_from_slice(bytes);
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.out.len() >= FLUSH_AT {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Writes the queued replies.
    pub(crate) async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.writing = true;
        let (io, out) = (&mut self.io, &self.out);
        let writer = io.as_mut().ok_or(Stop::Gone)?.get_mut();
        let written = timeout(self.idle, async move {
            writer.write_all(out).await?;
            writer.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                self.out.clear();
                self.writing = false;
                Ok(())
            }
            _ => Err(Stop::Gone),
        }
    }

    /// Buffered input, reading more when there is none. Queued replies are
    /// written first when the buffer is empty: the client may be waiting for them.
    async fn fill(&mut self) -> Result<&[u8], Stop> {
        if self.io()?.buffer().is_empty() {
            self.flush().await?;
        }
        let idle = self.idle;
        match timeout(idle, self.io()?.fill_buf()).await {
            Err(_) => Err(Stop::Idle),
            Ok(Err(_) | Ok([])) => Err(Stop::Gone),
            Ok(Ok(bytes)) => Ok(bytes),
        }
    }

    /// Reads one line ending in LF (a CR before it is dropped too), keeping at
    /// most `keep` octets of it in `buf`; the rest of a longer line is read and
    /// discarded. The end of input, even mid-line, is [`Stop::Gone`].
    pub(crate) async fn read_line(&mut self, buf: &mut Vec<u8>, keep: usize) -> Result<Line, Stop> {
        buf.clear();
        let mut len: u64 = 0;
        let mut last = 0u8;
        loop {
            let bytes = self.fill().await?;
            let (chunk, used, done) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], i + 1, true),
                None => (bytes, bytes.len(), false),
            };
            let room = keep.saturating_sub(buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk[..room]);
            len += chunk.len() as u64;
            if let Some(&b) = chunk.last() {
                last = b;
            }
            self.io()?.consume(used);
            if done {
                break;
            }
        }
        if last == b'\r' {
            len -= 1;
            if buf.len() as u64 > len {
                buf.pop();
            }
        }
        Ok(Line {
            len,
            truncated: len > keep as u64,
        })
    }

    /// Reads and drops exactly `n` octets (a BDAT chunk).
    pub(crate) async fn discard(&mut self, mut n: u64) -> Result<(), Stop> {
        while n > 0 {
            let available = self.fill().await?.len();
            let take = usize::try_from(n).map_or(available, |n| n.min(available));
            self.io()?.consume(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Switches to TLS after the reply to STARTTLS (RFC 3207): writes the queued
    /// replies, drops the input already buffered (the client must wait for the
    /// 220 before its ClientHello, and anything it pipelined after STARTTLS came
    /// in the clear, so it must not be read as commands sent over TLS: the
    /// CVE-2011-0411 class of injection), then runs the server handshake within
    /// the idle timeout. A failed handshake loses the connection: [`Stop::Gone`].
    pub(crate) async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> Result<(), Stop> {
        self.flush().await?;
        let plain = self.io.take().ok_or(Stop::Gone)?.into_inner();
        match timeout(self.idle, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.io = Some(BufReader::with_capacity(READ_BUFFER, Box::new(tls)));
                Ok(())
            }
            Err(_) | Ok(Err(_)) => Err(Stop::Gone),
        }
    }

    /// Ends the connection: writes the queued replies and `last`, unless a write
    /// was cut short (the client would see half a reply followed by another), then
    /// closes our direction (after a TLS close_notify over TLS). Waits at most
    /// `limit` for each step; errors are moot.
    pub(crate) async fn close(&mut self, last: Option<&Reply>, limit: Duration) {
        let Some(io) = self.io.as_mut() else {
            return;
        };
        let writer = io.get_mut();
        if !self.writing {
            if let Some(reply) = last {
                reply.encode(&mut self.out);
            }
            if !self.out.is_empty() {
                // Cancelled here (by shutdown), a second close must not write again.
                self.writing = true;
                let _ = timeout(limit, writer.write_all(&self.out)).await;
            }
        }
        let _ = timeout(limit, writer.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls::{Identity, TlsServer};
    use super::*;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    use tokio::io::{duplex, AsyncReadExt};
    use tokio_rustls::TlsConnector;

    const IDLE: Duration = Duration::from_secs(60);

    /// Reads every line of `input` with `keep`, feeding it one byte per read.
    async fn lines(input: &[u8], keep: usize) -> Vec<(Vec<u8>, Line)> {
        let (mut client, server) = duplex(1);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&input).await;
        });
        let mut conn = Conn::new(Box::new(server), IDLE);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while let Ok(line) = conn.read_line(&mut buf, keep).await {
            got.push((buf.clone(), line));
        }
        writer.await.unwrap();
        got
    }

    fn line(len: u64, truncated: bool) -> Line {
        Line { len, truncated }
    }

    #[tokio::test]
    async fn lines_end_in_crlf_or_bare_lf() {
        let got = lines(b"EHLO a\r\nNOOP\n\r\n\nx\ry\r\npartial", 512).await;
        assert_eq!(
            got,
            [
                (b"EHLO a".to_vec(), line(6, false)),
                (b"NOOP".to_vec(), line(4, false)),
                (b"".to_vec(), line(0, false)),
                (b"".to_vec(), line(0, false)),
                (b"x\ry".to_vec(), line(3, false)),
            ]
        );
    }

    #[tokio::test]
    async fn long_lines_are_measured_not_kept() {
        let mut input = vec![b'A'; 10_000];
        input.extend_from_slice(b"\r\nNOOP\r\nabcd\r\nabc\r\n");
        let got = lines(&input, 3).await;
        assert_eq!(
            got,
            [
                (b"AAA".to_vec(), line(10_000, true)),
                (b"NOO".to_vec(), line(4, true)),
                (b"abc".to_vec(), line(4, true)),
                (b"abc".to_vec(), line(3, false)),
            ]
        );
    }

    #[tokio::test]
    async fn discard_skips_exactly_n_octets() {
        let (mut client, server) = duplex(64);
        client.write_all(b"0123456789NOOP\r\n").await.unwrap();
        drop(client);
        let mut conn = Conn::new(Box::new(server), IDLE);
        conn.discard(10).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(conn.read_line(&mut buf, 512).await, Ok(line(4, false)));
        assert_eq!(buf, b"NOOP");
        assert_eq!(conn.discard(1).await, Err(Stop::Gone));
    }

    #[tokio::test]
    async fn replies_wait_until_the_input_runs_dry() {
        let (mut client, server) = duplex(1024);
        let mut conn = Conn::new(Box::new(server), IDLE);
        client.write_all(b"A\r\nB\r\n").await.unwrap();
        let mut buf = Vec::new();
        conn.read_line(&mut buf, 512).await.unwrap();
        let reply = Reply {
            code: 250,
            text: "one".into(),
        };
        conn.send(&reply).await.unwrap();
        // B is buffered, so the reply to A is held back while B is read...
        conn.read_line(&mut buf, 512).await.unwrap();
        let mut one = [0u8; 1];
        let early = timeout(Duration::ZERO, client.read(&mut one)).await;
        assert!(early.is_err(), "nothing is written yet");
        conn.send(&reply).await.unwrap();
        // ...and both go out when the server needs more input.
        let reading = tokio::spawn(async move { conn.read_line(&mut buf, 512).await });
        let mut got = [0u8; 18];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"250 one\r\n250 one\r\n");
        drop(client);
        assert_eq!(reading.await.unwrap(), Err(Stop::Gone));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out() {
        let (_client, server) = duplex(64);
        let mut conn = Conn::new(Box::new(server), IDLE);
        let mut buf = Vec::new();
        assert_eq!(conn.read_line(&mut buf, 512).await, Err(Stop::Idle));
    }

    /// A TLS client that trusts exactly `certificate`.
    #[allow(deprecated)] // The ring provider: see `tls::provider`.
    fn connector(certificate: &CertificateDer<'static>) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    #[tokio::test]
    async fn start_tls_drops_what_was_pipelined_after_starttls() {
        let server = TlsServer::new(&Identity::Generate, "mx.test").unwrap();
        let (mut client, stream) = duplex(64 * 1024);
        let mut conn = Conn::new(Box::new(stream), IDLE);
        client.write_all(b"STARTTLS\r\nNOOP\r\n").await.unwrap();
        let mut buf = Vec::new();
        conn.read_line(&mut buf, 512).await.unwrap();
        assert_eq!(buf, b"STARTTLS");
        conn.send(&Reply {
            code: 220,
            text: "go ahead".into(),
        })
        .await
        .unwrap();
        let connector = connector(&server.certificate);
        let handshake = tokio::spawn(async move {
            let mut ready = [0u8; 14];
            client.read_exact(&mut ready).await.unwrap();
            assert_eq!(&ready, b"220 go ahead\r\n");
            let name = ServerName::try_from("mx.test").unwrap();
            let mut tls = connector.connect(name, client).await.unwrap();
            tls.write_all(b"QUIT\r\n").await.unwrap();
            tls.flush().await.unwrap();
            tls
        });
        conn.start_tls(&server.acceptor).await.unwrap();
        conn.read_line(&mut buf, 512).await.unwrap();
        assert_eq!(buf, b"QUIT", "the NOOP sent in the clear is gone");
        let mut tls = handshake.await.unwrap();
        conn.send(&Reply {
            code: 221,
            text: "bye".into(),
        })
        .await
        .unwrap();
        conn.close(None, IDLE).await;
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"221 bye\r\n");
    }

    #[tokio::test]
    async fn a_failed_handshake_loses_the_connection() {
        let server = TlsServer::new(&Identity::Generate, "mx.test").unwrap();
        let (mut client, stream) = duplex(1024);
        let mut conn = Conn::new(Box::new(stream), IDLE);
        client
            .write_all(b"this is not a TLS ClientHello\r\n")
            .await
            .unwrap();
        assert_eq!(conn.start_tls(&server.acceptor).await, Err(Stop::Gone));
        let mut buf = Vec::new();
        assert_eq!(conn.read_line(&mut buf, 512).await, Err(Stop::Gone));
        assert_eq!(conn.flush().await, Ok(()), "nothing queued");
        conn.send(&Reply {
            code: 250,
            text: "x".into(),
        })
        .await
        .unwrap();
        assert_eq!(conn.flush().await, Err(Stop::Gone));
        conn.close(None, IDLE).await;
    }
}
