//! The responder as a service: the TLS configuration made once at start (when
//! the persona has `tls`), a TCP listener, one tokio task per session with at
//! most [`MAX_SESSIONS`] at once, and a shutdown that stops accepting, tells
//! every session, and waits for them to close. `serve` wraps it for the command
//! line, running until Ctrl-C or SIGTERM.

use super::persona::Persona;
use super::session::Session;
use super::tls::{fingerprint, TlsServer};
use rustls::pki_types::CertificateDer;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Sessions served at once; further clients wait in the listen backlog.
const MAX_SESSIONS: usize = 1024;
/// Pause after a failed accept (out of file descriptors, say) before the next,
/// so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running responder. Dropping it also stops it, without waiting.
pub struct Responder {
    addr: SocketAddr,
    /// The certificate STARTTLS presents, when the persona has `tls`.
    certificate: Option<CertificateDer<'static>>,
    stop: watch::Sender<bool>,
    /// Yields `None` once the accept loop and every session have ended: each
    /// holds a sender and nothing is ever sent.
    ended: mpsc::Receiver<()>,
}

/// Resolves once shutdown begins (or the [`Responder`] is gone).
#[derive(Clone)]
struct Stopping(watch::Receiver<bool>);

impl Stopping {
    async fn wait(&mut self) {
        // An error means the sender was dropped, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl Responder {
    /// Binds `listen` (use 127.0.0.1:0 for an ephemeral port) and serves in
    /// tokio tasks on the current runtime. When the persona has `tls`, first
    /// makes the TLS configuration all sessions share, generating the
    /// certificate if the persona names no files; an error there is
    /// [`io::ErrorKind::InvalidInput`].
    pub async fn start(persona: Arc<Persona>, listen: SocketAddr) -> io::Result<Responder> {
        let tls = match &persona.tls {
            Some(identity) => Some(TlsServer::new(identity, persona.hostname()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("persona {}: {e}", persona.name()),
                )
            })?),
            None => None,
        };
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopping) = watch::channel(false);
        let (alive, ended) = mpsc::channel(1);
        let (acceptor, certificate) = match tls {
            Some(TlsServer {
                acceptor,
                certificate,
            }) => (Some(acceptor), Some(certificate)),
            None => (None, None),
        };
        tokio::spawn(accept_loop(
            listener,
            persona,
            acceptor,
            Stopping(stopping),
            alive,
        ));
        Ok(Responder {
            addr,
            certificate,
            stop,
            ended,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate STARTTLS presents (DER), when the persona has `tls`: a
    /// client that trusts exactly this certificate can verify the responder.
    pub fn certificate_der(&self) -> Option<Vec<u8>> {
        self.certificate.as_ref().map(|c| c.to_vec())
    }

    /// Stops accepting and closes open sessions promptly (each gets
    /// `replies.shutting_down` unless it was cut off mid-reply), waiting for all
    /// of them to end.
    pub async fn shutdown(self) {
        let Responder {
            stop, mut ended, ..
        } = self;
        stop.send_replace(true);
        let _ = ended.recv().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    persona: Arc<Persona>,
    tls: Option<TlsAcceptor>,
    mut stopping: Stopping,
    alive: mpsc::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_SESSIONS));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopping.wait() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(run_session(
                    stream,
                    peer,
                    Arc::clone(&persona),
                    tls.clone(),
                    stopping.clone(),
                    permit,
                    alive.clone(),
                ));
            }
            Err(_) => tokio::select! {
                () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                () = stopping.wait() => return,
            },
        }
    }
}

async fn run_session(
    stream: TcpStream,
    peer: SocketAddr,
    persona: Arc<Persona>,
    tls: Option<TlsAcceptor>,
    mut stopping: Stopping,
    _permit: OwnedSemaphorePermit,
    _alive: mpsc::Sender<()>,
) {
    // Replies are small and often followed by a wait for the client; send them now.
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(stream, persona, tls, peer.ip());
    let stopped = tokio::select! {
        () = session.run() => false,
        () = stopping.wait() => true,
    };
    if stopped {
        session.shut_down().await;
    }
}

/// For `smtp-plan serve`: starts a responder, prints
/// `smtp-plan responder: persona NAME listening on ADDR` to stderr (followed by
/// `, STARTTLS certificate SHA-256 XX:XX:...` when the persona has `tls`), runs
/// until Ctrl-C or SIGTERM, then shuts it down.
pub async fn serve(persona: Persona, listen: SocketAddr) -> io::Result<()> {
    let name = persona.name().to_string();
    let responder = Responder::start(Arc::new(persona), listen).await?;
    let tls = match &responder.certificate {
        Some(der) => format!(", STARTTLS certificate SHA-256 {}", fingerprint(der)),
        None => String::new(),
    };
    eprintln!(
        "smtp-plan responder: persona {name} listening on {}{tls}",
        responder.local_addr()
    );
    let interrupted = interrupted().await;
    responder.shutdown().await;
    interrupted
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn interrupted() -> io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
