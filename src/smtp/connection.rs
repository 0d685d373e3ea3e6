//! One SMTP connection: a byte stream (plain TCP now, TLS later) with the reply
//! parser in front of it. Leftover bytes after a reply stay buffered for the next
//! one. No timeouts here: the caller wraps every await with a named one.

use super::reply::{ProtocolError, Reply, ReplyParser};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream an SMTP session can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why no reply could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed.
    Io(io::Error),
    /// The server closed the connection; `partial` holds bytes of an unfinished reply.
    Closed {
        /// Bytes received after the last complete reply.
        partial: Option<Vec<u8>>,
    },
    /// The bytes are not a valid reply.
    Protocol(ProtocolError),
}

/// A connection with its reply parser.
pub struct Connection {
    stream: Box<dyn Stream>,
    parser: ReplyParser,
    buf: Box<[u8]>,
}

impl Connection {
    /// Wraps an open stream.
    pub fn new(stream: Box<dyn Stream>) -> Self {
        Connection {
            stream,
            parser: ReplyParser::new(Default::default()),
            buf: vec![0; 8192].into_boxed_slice(),
        }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads the next complete reply.
    pub async fn read_reply(&mut self) -> Result<Reply, ReadError> {
        loop {
            if let Some(r) = self.parser.next_reply().map_err(ReadError::Protocol)? {
                return Ok(r);
            }
            let n = self
                .stream
                .read(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed {
                    partial: self.parser.take_partial(),
                });
            }
            self.parser.feed(&self.buf[..n]);
        }
    }

    /// Bytes received but not yet part of a returned reply.
    pub fn buffered(&self) -> usize {
        self.parser.buffered()
    }

    /// The stream, for a TLS upgrade. Bytes still buffered are dropped: call
    /// [`Connection::buffered`] first.
    pub fn into_stream(self) -> Box<dyn Stream> {
        self.stream
    }

    /// Closes the write side (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
