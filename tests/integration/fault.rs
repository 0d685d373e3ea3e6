//! A scripted TCP server for fault tests: each accepted connection runs one
//! script of sends, reads, pauses and closes, on plain threads bound to
//! 127.0.0.1:0. It lives only as long as the test holds it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// One thing the server does.
#[derive(Clone, Debug)]
pub enum Act {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one command line (up to LF) and ignore it.
    Read,
    /// Wait.
    Pause(Duration),
    /// Write these bytes one at a time, waiting this long before each.
    Trickle(Vec<u8>, Duration),
    /// Close the connection normally.
    Close,
    /// Close with a TCP reset.
    Reset,
    /// Keep the connection open without reading or writing, until the test ends.
    Hang,
}

/// Shorthand for `Act::Send` of text.
pub fn send(s: &str) -> Act {
    Act::Send(s.as_bytes().to_vec())
}

/// A running scripted server.
pub struct FaultServer {
    /// Its address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    /// Starts a server on 127.0.0.1 that runs `script` on every connection.
    pub fn start(script: Vec<Act>) -> FaultServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script).expect("bind loopback")
    }

    /// Starts a server on `addr` (any loopback address and port).
    pub fn start_on(addr: SocketAddr, script: Vec<Act>) -> std::io::Result<FaultServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let script = script.clone();
                let flag = flag.clone();
                thread::spawn(move || play(conn, &script, &flag));
            }
        });
        Ok(FaultServer { addr, stop })
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn play(conn: TcpStream, script: &[Act], stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone socket"));
    let mut conn = conn;
    let mut line = Vec::new();
    for act in script {
        let ok = match act {
            Act::Send(b) => conn.write_all(b).is_ok(),
            Act::Read => {
                line.clear();
                matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0)
            }
            Act::Pause(d) => {
                thread::sleep(*d);
                true
            }
            Act::Trickle(bytes, gap) => bytes.iter().all(|b| {
                thread::sleep(*gap);
                !stop.load(Ordering::Relaxed) && conn.write_all(&[*b]).is_ok()
            }),
            Act::Close => return,
            Act::Reset => {
                let _ = socket_linger_zero(&conn);
                return;
            }
            Act::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
                return;
            }
        };
        if !ok {
            return;
        }
    }
    // Script done: drain until the client leaves.
    let mut sink = [0u8; 4096];
    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
}

/// SO_LINGER 0 makes the close send RST instead of FIN.
fn socket_linger_zero(conn: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO))
}
