//! Interop with real mail servers from Debian's packages: Postfix 3.7, Exim 4.96
//! (exim4-daemon-light), OpenSMTPD 6.8 and Postfix's `smtp-sink` with its fault
//! options. Each runs privately on a free loopback port, under a temporary folder,
//! with the configuration templates and plans kept in `tests/mta/`, and is stopped
//! when its [`Mta`] is dropped.
//!
//! `.ci/mta-setup.sh` installs them: `postfix` by apt (it brings `smtp-sink`); Exim
//! and OpenSMTPD, which conflict with it in dpkg, unpacked under
//! `/opt/smtp-plan-mta` (`SMTP_PLAN_MTA_ROOT` overrides the folder), with the system
//! accounts and fixed paths their binaries have compiled in. Without them the tests
//! skip with a printed reason, unless `SMTP_PLAN_INTEROP=require`.
//!
//! How each is started (`tests/mta/NAME/` holds its templates; `@DIR@`, `@PORT@` and
//! `@EXIM@` are filled in):
//!
//! - Postfix: `postfix -c DIR/conf start-fg` with `main.cf`, `master.cf` and the
//!   `vmailbox` table of known users (`kate`, `postmaster` at `example.test`); smtpd
//!   on `127.0.0.1:PORT` only, queue, data and log (`DIR/maillog`) in the folder,
//!   accepted mail discarded, STARTTLS with a self-signed certificate made here with
//!   rcgen. In its namespace (below) the startup script runs as PID 1, so it execs the
//!   master daemon in init mode (`master -i`), which stays in the foreground.
//! - Exim: `exim4 -C DIR/exim4.conf -bdf -oX PORT` (foreground daemon), `exim_path`
//!   pointing at the unpacked binary, spool and logs in the folder (owned by
//!   Debian-exim), mail queued and never delivered (`queue_only`, no queue runner),
//!   STARTTLS with the same kind of certificate.
//! - OpenSMTPD: `smtpd -d -f DIR/smtpd.conf`. Its spool `/var/spool/smtpd` and `/run`
//!   (control socket) are compiled in: the namespace bind-mounts `DIR/spool` and
//!   `DIR/run` over them. A filter chain gives the 550 5.1.1 and 554 5.7.1 replies.
//!   No STARTTLS (its handshake fails with OpenSSL 3).
//! - smtp-sink: `smtp-sink -u nobody -h mx.example.test [FAULTS] 127.0.0.1:PORT 256`
//!   (stopped with SIGKILL: as PID 1 of its namespace it would ignore SIGTERM).
//!
//! Off DNS: every server runs under `unshare --mount --pid --fork --kill-child`; in
//! that mount namespace `/etc/resolv.conf` is a private file saying
//! `nameserver 127.0.0.1` (nothing listens on port 53 there, so a lookup fails at
//! once, on loopback), and their configurations look nothing up (Postfix:
//! `smtpd_peername_lookup = no`, `disable_dns_lookups = yes`; Exim: `host_lookup`
//! and `rfc1413_hosts` empty). OpenSMTPD looks up every client's name; it finds
//! `localhost` in `/etc/hosts`. In the PID namespace the server is PID 1: when it
//! exits, the kernel ends every process it started, so [`Mta`]'s drop (SIGTERM to the
//! process group, SIGKILL after 5 s) leaves nothing behind, and `unshare` runs under
//! `setpriv --pdeathsig KILL`, so neither does a test process that dies.
//!
//! What each answers (the plans in `tests/mta/` assert these exactly):
//!
//! | step | Postfix 3.7 | Exim 4.96 | OpenSMTPD 6.8 |
//! |---|---|---|---|
//! | greeting | `220 mx.example.test ESMTP` | `220 mx.example.test ESMTP` | `220 mx.example.test ESMTP OpenSMTPD` |
//! | EHLO | `mx.example.test`, PIPELINING, SIZE 10240000, VRFY, ETRN, STARTTLS, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING | `mx.example.test Hello client.test [127.0.0.1]`, SIZE 52428800, 8BITMIME, PIPELINING, PIPECONNECT, CHUNKING, STARTTLS, SMTPUTF8, HELP | `mx.example.test Hello client.test [127.0.0.1], pleased to meet you`, 8BITMIME, ENHANCEDSTATUSCODES, SIZE 36700160, DSN, HELP |
//! | MAIL | `250 2.1.0 Ok` | `250 OK` | `250 2.0.0 Ok` |
//! | RCPT known | `250 2.1.5 Ok` | `250 Accepted` | `250 2.1.5 Destination address valid: Recipient ok` |
//! | RCPT unknown | `550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table` | `550 5.1.1 <nobody@example.test>: User unknown` | `550 5.1.1 User unknown` (the filter) |
//! | RCPT other domain | `554 5.7.1 <someone@other.test>: Relay access denied` | `550 5.7.1 Relay access denied` | `554 5.7.1 Relay access denied` (the filter) |
//! | DATA | `354 End data with <CR><LF>.<CR><LF>` | `354 Enter message, ending with "." on a line by itself` | `354 Enter mail, end with "." on a line by itself` |
//! | end of data | `250 2.0.0 Ok: queued as 255FC98E47D` | `250 OK id=1xZafC-000005-15` | `250 2.0.0 5c97a71b Message accepted for delivery` |
//! | unknown verb | `500 5.5.2 Error: command not recognized` | `500 unrecognized command` | `500 5.5.1 Invalid command: Command unrecognized` |
//! | QUIT | `221 2.0.0 Bye` | `221 mx.example.test closing connection` (after ~200 ms) | `221 2.0.0 Bye` |
//! | STARTTLS | `220 2.0.0 Ready to start TLS`, TLS 1.3 | `220 TLS go ahead`, TLS 1.3 | not offered |
//!
//! Without its filters OpenSMTPD 6.8 answers `550 Invalid recipient: <ADDRESS>` to
//! another domain and `524 5.2.4 Mailing list expansion problem: <ADDRESS>` to an
//! unknown user of its virtual table. smtp-sink answers `220 mx.example.test ESMTP`,
//! an EHLO reply whose last line is a bare `250 ` (PIPELINING, 8BITMIME, AUTH PLAIN
//! LOGIN, XCLIENT, XFORWARD, ENHANCEDSTATUSCODES, DSN), `250 2.1.0 Ok`,
//! `250 2.1.5 Ok`, `221 Bye`; with `-f CMD` `500 5.3.0 Error: command failed`, with
//! `-r CMD` `450 4.3.0 Error: command failed` (both imply `-p`: no PIPELINING in
//! the EHLO reply), and with `-q CMD` it closes the connection without a reply.
//!
//! The self-signed certificate verifies as its own `ca_file` because it is not a CA
//! certificate (no basicConstraints CA:TRUE); one made with `openssl req -x509`'s
//! defaults (CA:TRUE) fails verification with `CaUsedAsEndEntity`.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    assert_junit_valid, assert_well_formed, required, root, run, smtp_plan, temp_dir,
};

/// How long a server has to answer with its 220 after it is started.
const READY: Duration = Duration::from_secs(15);
/// How long a server has to exit after SIGTERM before it gets SIGKILL.
const STOP: Duration = Duration::from_secs(5);
/// The name every MTA answers as, and the name the plans connect to (with
/// `--connect-to`), so that its certificate verifies.
const MX: &str = "mx.example.test";

/// A mail server running on 127.0.0.1:PORT, stopped (with every process it started)
/// and its folder removed on drop. The folder is kept when the test is panicking.
pub struct Mta {
    /// Which server: `postfix`, `exim`, `opensmtpd` or `smtp-sink`.
    pub kind: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its temporary folder: configuration, spool, logs.
    pub dir: PathBuf,
    /// The self-signed certificate it offers with STARTTLS, PEM (names `mx.example.test`).
    pub cert_pem: Option<String>,
    /// Its log files, relative to `dir`.
    logs: Vec<&'static str>,
    /// The signal that stops it.
    stop: &'static str,
    child: Child,
}

/// Makes a server's command line (program first) for its folder and port.
type CommandLine = Box<dyn Fn(&Path, u16) -> Vec<OsString>>;
/// Writes a server's configuration into its folder, for its port.
type Prepare = Box<dyn Fn(&Path, u16)>;

/// What is needed to start one server.
struct Launch {
    kind: &'static str,
    /// The program and its arguments, given the folder and the port.
    command: CommandLine,
    /// Writes the configuration into the folder for the port.
    prepare: Prepare,
    /// Folders bind-mounted in the server's namespace: (inside the folder, target).
    binds: Vec<(&'static str, &'static str)>,
    /// The signal that stops it: SIGTERM, or SIGKILL for a server that keeps no
    /// state and, as PID 1 of its namespace, would ignore SIGTERM (smtp-sink).
    stop: &'static str,
    logs: Vec<&'static str>,
    cert_pem: Option<String>,
}

impl Mta {
    /// A private Postfix: smtpd with the local domain `example.test`, STARTTLS with a
    /// self-signed certificate. `None` (with the reason printed) when Postfix is not
    /// installed, unless `SMTP_PLAN_INTEROP=require`.
    pub fn postfix() -> Option<Mta> {
        let postfix = available("Postfix", || {
            let postfix = find_program("postfix").ok_or(
                "Postfix is not installed (Debian package `postfix`; .ci/mta-setup.sh installs it)",
            )?;
            can_isolate()?;
            Ok(postfix)
        })?;
        let (cert, key) = certificate();
        let cert_pem = cert.clone();
        Some(Mta::start(Launch {
            kind: "postfix",
            command: Box::new(move |dir, _| {
                vec![
                    postfix.clone().into(),
                    "-c".into(),
                    dir.join("conf").into(),
                    "start-fg".into(),
                ]
            }),
            prepare: Box::new(move |dir, port| {
                let conf = dir.join("conf");
                fs::create_dir_all(&conf).unwrap();
                fs::create_dir_all(dir.join("queue")).unwrap();
                for file in ["main.cf", "master.cf", "vmailbox"] {
                    fs::write(conf.join(file), template("postfix", file, dir, port)).unwrap();
                }
                fs::write(conf.join("cert.pem"), &cert).unwrap();
                write_private(&conf.join("key.pem"), &key, None);
            }),
            binds: vec![],
            stop: "TERM",
            logs: vec!["maillog", "stdout.log"],
            cert_pem: Some(cert_pem),
        }))
    }

    /// A private Exim daemon from the unpacked exim4-daemon-light: the local domain
    /// `example.test`, STARTTLS with a self-signed certificate. `None` (with the reason
    /// printed) when it is not set up, unless `SMTP_PLAN_INTEROP=require`.
    pub fn exim() -> Option<Mta> {
        let (exim, owner) = available("Exim", || {
            let exim = [
                mta_root().join("exim/usr/sbin/exim4"),
                "/usr/sbin/exim4".into(),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "Exim is not unpacked in {} (run .ci/mta-setup.sh)",
                    mta_root().join("exim").display()
                )
            })?;
            let owner = account("Debian-exim").ok_or(
                "the account Debian-exim, which exim4 is built to run as, does not exist (run .ci/mta-setup.sh)",
            )?;
            can_isolate()?;
            Ok((exim, owner))
        })?;
        let (cert, key) = certificate();
        let cert_pem = cert.clone();
        let program = exim.clone();
        Some(Mta::start(Launch {
            kind: "exim",
            command: Box::new(move |dir, port| {
                vec![
                    program.clone().into(),
                    "-C".into(),
                    dir.join("exim4.conf").into(),
                    "-bdf".into(),
                    "-oX".into(),
                    port.to_string().into(),
                ]
            }),
            prepare: Box::new(move |dir, port| {
                let conf = template("exim", "exim4.conf", dir, port)
                    .replace("@EXIM@", &exim.display().to_string());
                fs::write(dir.join("exim4.conf"), conf).unwrap();
                for sub in ["spool", "log"] {
                    fs::create_dir_all(dir.join(sub)).unwrap();
                    std::os::unix::fs::chown(dir.join(sub), Some(owner.0), Some(owner.1)).unwrap();
                }
                fs::write(dir.join("cert.pem"), &cert).unwrap();
                // Read by the receiving process, which runs as Debian-exim.
                write_private(&dir.join("key.pem"), &key, Some(owner));
            }),
            binds: vec![],
            stop: "TERM",
            logs: vec!["log/mainlog", "log/rejectlog", "log/paniclog", "stdout.log"],
            cert_pem: Some(cert_pem),
        }))
    }

    /// A private OpenSMTPD from the unpacked opensmtpd package, with the local domain
    /// `example.test`. `None` (with the reason printed) when it is not set up, unless
    /// `SMTP_PLAN_INTEROP=require`.
    pub fn opensmtpd() -> Option<Mta> {
        let smtpd = available("OpenSMTPD", || {
            let smtpd = [
                mta_root().join("opensmtpd/usr/sbin/smtpd"),
                "/usr/sbin/smtpd".into(),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "OpenSMTPD is not unpacked in {} (run .ci/mta-setup.sh)",
                    mta_root().join("opensmtpd").display()
                )
            })?;
            for user in ["opensmtpd", "opensmtpq"] {
                account(user).ok_or_else(|| {
                    format!("the account {user}, which smtpd is built to use, does not exist (run .ci/mta-setup.sh)")
                })?;
            }
            for path in [
                "/usr/libexec/opensmtpd/mail.mda",
                "/var/spool/smtpd",
                "/var/lib/opensmtpd/empty",
            ] {
                if !Path::new(path).exists() {
                    return Err(format!(
                        "{path}, compiled into smtpd, does not exist (run .ci/mta-setup.sh)"
                    ));
                }
            }
            can_isolate()?;
            Ok(smtpd)
        })?;
        Some(Mta::start(Launch {
            kind: "opensmtpd",
            command: Box::new(move |dir, _| {
                vec![
                    smtpd.clone().into(),
                    "-d".into(),
                    "-f".into(),
                    dir.join("smtpd.conf").into(),
                ]
            }),
            prepare: Box::new(|dir, port| {
                fs::write(
                    dir.join("smtpd.conf"),
                    template("opensmtpd", "smtpd.conf", dir, port),
                )
                .unwrap();
                // smtpd insists on a root-owned spool with mode 0711.
                for (sub, mode) in [("spool", 0o711), ("run", 0o755)] {
                    fs::create_dir_all(dir.join(sub)).unwrap();
                    fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(mode)).unwrap();
                }
            }),
            binds: vec![("spool", "/var/spool/smtpd"), ("run", "/run")],
            stop: "TERM",
            logs: vec!["stdout.log"],
            cert_pem: None,
        }))
    }

    /// Postfix's smtp-sink with `faults` (e.g. `["-f", "rcpt"]`). `None` (with the
    /// reason printed) when it is not installed, unless `SMTP_PLAN_INTEROP=require`.
    pub fn smtp_sink(faults: &[&str]) -> Option<Mta> {
        let sink = available("smtp-sink", || {
            let sink = find_program("smtp-sink").ok_or(
                "smtp-sink is not installed (Debian package `postfix`; .ci/mta-setup.sh installs it)",
            )?;
            can_isolate()?;
            Ok(sink)
        })?;
        let faults: Vec<OsString> = faults.iter().map(OsString::from).collect();
        Some(Mta::start(Launch {
            kind: "smtp-sink",
            command: Box::new(move |_, port| {
                let mut args: Vec<OsString> =
                    vec![sink.clone().into(), "-u".into(), "nobody".into()];
                args.extend(["-h".into(), MX.into()]);
                args.extend(faults.iter().cloned());
                args.push(format!("127.0.0.1:{port}").into());
                args.push("256".into());
                args
            }),
            prepare: Box::new(|_, _| {}),
            binds: vec![],
            stop: "KILL",
            logs: vec!["stdout.log"],
            cert_pem: None,
        }))
    }

    /// Starts the server on a free port and waits for its 220. A server that exits at
    /// once (another process took the port first) is tried again on another port, up
    /// to 5 times; one that does not answer within [`READY`] fails the test with its logs.
    fn start(launch: Launch) -> Mta {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = temp_dir(&format!("mta-{}", launch.kind));
            (launch.prepare)(&dir, port);
            let argv = isolated(&dir, &launch.binds, (launch.command)(&dir, port));
            let out = fs::File::create(dir.join("stdout.log")).expect("server log file");
            let child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("server log file"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", PathBuf::from(&argv[0]).display()));
            let mut mta = Mta {
                kind: launch.kind,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                dir,
                cert_pem: launch.cert_pem.clone(),
                logs: launch.logs.clone(),
                stop: launch.stop,
                child,
            };
            match mta.wait_ready() {
                Ok(()) => {
                    mta.assert_off_dns();
                    return mta;
                }
                Err((why, exited)) => {
                    failures.push(format!("port {port}: {why}\n{}", mta.log()));
                    if !exited {
                        break;
                    }
                }
            }
        }
        panic!("{} did not start:\n{}", launch.kind, failures.join("\n"));
    }

    /// Polls until the server answers a connection with a 220 line, it exits, or
    /// [`READY`] passes. The error says whether the server exited.
    fn wait_ready(&mut self) -> Result<(), (String, bool)> {
        let deadline = Instant::now() + READY;
        let mut last = String::from("no connection yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err((format!("{} exited: {status}", self.kind), true));
            }
            match greeting(self.addr) {
                Ok(line) if line.starts_with("220") => return Ok(()),
                Ok(line) => last = format!("greeting {line:?}"),
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err((format!("no 220 within {READY:?} (last: {last})"), false))
    }

    /// Checks that the server's mount namespace has the private resolv.conf: read
    /// through `/proc/PID/root` of `unshare`, which made that namespace and is in it.
    fn assert_off_dns(&self) {
        let seen = fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", self.child.id()))
            .unwrap_or_default();
        let nameservers: Vec<&str> = seen
            .lines()
            .filter(|line| line.starts_with("nameserver"))
            .collect();
        assert_eq!(
            nameservers,
            ["nameserver 127.0.0.1"],
            "{}'s /etc/resolv.conf:\n{seen}",
            self.kind
        );
    }

    /// The server's logs, for failure messages.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .filter_map(|file| {
                let text = fs::read_to_string(self.dir.join(file)).ok()?;
                Some(format!("--- {}\n{text}", self.dir.join(file).display()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (at most 5 s) until the server's logs contain `needle`; the logs.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mta {
    /// SIGTERM to the server's process group, SIGKILL after [`STOP`]; waits for it
    /// (for a namespaced server: until every process in its PID namespace is gone)
    /// and for its port to be free, then removes its folder (kept, and named, when the
    /// test is failing).
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        signal(&group, self.stop);
        let deadline = Instant::now() + STOP;
        loop {
            match self.child.try_wait() {
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    signal(&group, "KILL");
                    let _ = self.child.wait();
                    break;
                }
                _ => break,
            }
        }
        let deadline = Instant::now() + STOP;
        while Instant::now() < deadline && TcpListener::bind(self.addr).is_err() {
            thread::sleep(Duration::from_millis(20));
        }
        if thread::panicking() {
            eprintln!(
                "{} left in {} for inspection",
                self.kind,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads the first line a server sends on a new connection (2 s at most), then says
/// QUIT so that the server logs a clean disconnect.
fn greeting(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let _ = stream.write_all(b"QUIT\r\n");
    Ok(line.trim_end().to_string())
}

/// `argv` wrapped to run in a private mount and PID namespace where /etc/resolv.conf
/// says `nameserver 127.0.0.1` and each of `binds` (a subfolder of `dir`, a target)
/// is bind-mounted. `unshare` gets SIGKILL when the thread that started it ends
/// (`setpriv --pdeathsig`), and then the server (`--kill-child`): a test process that
/// dies without dropping its [`Mta`] leaves no server behind.
fn isolated(dir: &Path, binds: &[(&str, &str)], argv: Vec<OsString>) -> Vec<OsString> {
    let resolv = dir.join("resolv.conf");
    fs::write(
        &resolv,
        "# smtp-plan interop: no resolver outside loopback\nnameserver 127.0.0.1\n",
    )
    .unwrap();
    let script = "set -e\n\
                  resolv=$1; shift\n\
                  if [ -e /etc/resolv.conf ]; then mount --bind \"$resolv\" /etc/resolv.conf; fi\n\
                  while [ \"$1\" != -- ]; do mount --bind \"$1\" \"$2\"; shift 2; done\n\
                  shift\n\
                  exec \"$@\"\n";
    let mut out: Vec<OsString> = [
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--",
        "/bin/sh",
        "-c",
        script,
        "mta-namespace",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    out.push(resolv.into());
    for (sub, target) in binds {
        out.push(dir.join(sub).into());
        out.push(target.into());
    }
    out.push("--".into());
    out.extend(argv);
    out
}

/// Whether this process may make the namespaces the servers run in (root, with
/// `setpriv` and `unshare` from util-linux); checked once.
fn can_isolate() -> Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            let out = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "--", "unshare", "--mount", "--pid"])
                .args(["--fork", "--kill-child", "true"])
                .output()
                .map_err(|e| format!("setpriv (util-linux) cannot run: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "cannot make a private mount and PID namespace (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
}

/// Runs `check`; on `Err(reason)` skips (prints the reason, returns `None`), or
/// panics under `SMTP_PLAN_INTEROP=require`.
fn available<T>(what: &str, check: impl FnOnce() -> Result<T, String>) -> Option<T> {
    match check() {
        Ok(found) => Some(found),
        Err(reason) => {
            assert!(
                !required(),
                "SMTP_PLAN_INTEROP=require, but {what} cannot run: {reason}"
            );
            eprintln!("skipping the {what} interop test: {reason}");
            None
        }
    }
}

/// Where `.ci/mta-setup.sh` unpacks Exim and OpenSMTPD.
fn mta_root() -> PathBuf {
    std::env::var_os("SMTP_PLAN_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/smtp-plan-mta"))
}

/// A program on PATH or in the sbin folders (not always on a CI user's PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The uid and gid of a system account, if it exists.
fn account(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// A template from `tests/mta/KIND/FILE` with `@DIR@` and `@PORT@` filled in.
fn template(kind: &str, file: &str, dir: &Path, port: u16) -> String {
    let path = root().join("tests/mta").join(kind).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string())
}

/// Writes a private key readable only by its owner (root, or `owner`).
fn write_private(path: &Path, pem: &str, owner: Option<(u32, u32)>) {
    fs::write(path, pem).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// A self-signed certificate for `mx.example.test` (not a CA certificate), valid
/// from yesterday for 90 days: (certificate PEM, private key PEM).
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![MX.to_string()]).expect("name");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, MX);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(90);
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// A loopback TCP port free when asked.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Sends SIGNAL to `target` (a pid, or `-PGID` for a process group) with kill(1).
fn signal(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What a run of a plan gave.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    /// The JUnit report, with every transcript (`--transcripts all`).
    junit: String,
}

/// Runs `tests/mta/PLAN` against `mta` as `mx.example.test` (`--connect-to`), with
/// its certificate beside the plan as `cert.pem`, every transcript in the report,
/// and `extra` arguments; checks the report is well-formed and valid.
fn run_plan(mta: &Mta, plan: &str, extra: &[&str]) -> Outcome {
    let dir = temp_dir("mta-plan");
    let source = root().join("tests/mta").join(plan);
    fs::copy(&source, dir.join("plan.yaml"))
        .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    if let Some(pem) = &mta.cert_pem {
        fs::write(dir.join("cert.pem"), pem).unwrap();
    }
    let out = run(smtp_plan(&dir)
        .args([
            "run",
            "plan.yaml",
            "--junit",
            "r.xml",
            "--transcripts",
            "all",
        ])
        .arg("--connect-to")
        .arg(format!("{MX}={}", mta.addr))
        .args(extra));
    let xml = fs::read(dir.join("r.xml")).unwrap_or_default();
    assert_well_formed(&xml);
    assert_junit_valid(&dir.join("r.xml"));
    let _ = fs::remove_dir_all(&dir);
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
        junit: String::from_utf8_lossy(&xml).into_owned(),
    }
}

/// Asserts that every case of the plan passed (`passed` of them) and that the
/// transcripts hold each of `lines` (exact server lines, e.g. `S: 354 ...`).
fn assert_passed(mta: &Mta, outcome: &Outcome, passed: usize, lines: &[&str]) {
    let context = || format!("{}\n{}\n{}", outcome.stdout, outcome.junit, mta.log());
    assert_eq!(outcome.code, Some(0), "{}", context());
    assert!(
        outcome
            .stdout
            .contains(&format!("{passed} passed, 0 failed, 0 errored")),
        "{}",
        context()
    );
    for line in lines {
        assert!(
            outcome.junit.contains(line),
            "{line:?} is not in the transcripts\n{}",
            context()
        );
    }
}

/// The value a plan captured as `name`, from the transcripts.
fn captured(outcome: &Outcome, name: &str) -> String {
    let re = regex::Regex::new(&format!(r"-- captured {name} = (\S+)")).unwrap();
    re.captures(&outcome.junit)
        .unwrap_or_else(|| panic!("no capture {name} in\n{}", outcome.junit))[1]
        .to_string()
}

/// Stops `mta` and checks that nothing answers on its port any more.
fn stop(mta: Mta) {
    let addr = mta.addr;
    drop(mta);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "something still listens on {addr} after the server was stopped"
    );
}

#[test]
fn postfix_answers_as_recorded_and_starttls_verifies_with_its_certificate() {
    let Some(postfix) = Mta::postfix() else {
        return;
    };
    let outcome = run_plan(&postfix, "postfix/plan.yaml", &[]);
    assert_passed(
        &postfix,
        &outcome,
        4,
        &[
            "S: 354 End data with <CR><LF>.<CR><LF>",
            "S: 220 2.0.0 Ready to start TLS",
            "-- TLS: TLSv1.3 ",
            "TLS certificate: subject CN=mx.example.test; SAN mx.example.test",
            "TLS certificate: issuer CN=mx.example.test;",
            "TLS: certificate verified",
            "TLS: certificate NOT verified: invalid peer certificate: UnknownIssuer",
        ],
    );
    // The captured queue id is the one Postfix logged for the message.
    let id = captured(&outcome, "queue_id");
    let log = postfix.wait_log(&format!("{id}: to=<kate@example.test>"));
    assert!(
        log.contains(&format!("{id}: to=<kate@example.test>, relay=none"))
            && log.contains("status=sent (example.test)"),
        "{id} discarded, per the log:\n{log}"
    );
    stop(postfix);
}

#[test]
fn exim_answers_as_recorded() {
    let Some(exim) = Mta::exim() else {
        return;
    };
    let outcome = run_plan(&exim, "exim/plan.yaml", &[]);
    assert_passed(
        &exim,
        &outcome,
        3,
        &[
            "S: 354 Enter message, ending with \".\" on a line by itself",
            "S: 220 TLS go ahead",
            "TLS: certificate verified",
        ],
    );
    let id = captured(&outcome, "message_id");
    let log = exim.wait_log(&format!("{id} <= chris@client.test"));
    assert!(
        log.contains(&format!(
            "{id} <= chris@client.test H=(client.test) [127.0.0.1]"
        )),
        "{id} received, per the log:\n{log}"
    );
    stop(exim);
}

#[test]
fn opensmtpd_answers_as_recorded() {
    let Some(opensmtpd) = Mta::opensmtpd() else {
        return;
    };
    // Its listen backlog is 5: at most 2 sessions at once.
    let outcome = run_plan(&opensmtpd, "opensmtpd/plan.yaml", &["--concurrency", "2"]);
    assert_passed(
        &opensmtpd,
        &outcome,
        2,
        &["S: 354 Enter mail, end with \".\" on a line by itself"],
    );
    let id = captured(&outcome, "message_id");
    let log = opensmtpd.wait_log(&format!("msgid={id}"));
    assert!(
        log.contains(&format!("smtp message msgid={id} ")),
        "{id} received, per the log:\n{log}"
    );
    stop(opensmtpd);
}

#[test]
fn smtp_sink_hard_rejects_rcpt_when_told_to() {
    let Some(sink) = Mta::smtp_sink(&["-f", "rcpt"]) else {
        return;
    };
    let outcome = run_plan(&sink, "smtp-sink/hard-reject-rcpt.yaml", &[]);
    assert_passed(&sink, &outcome, 1, &["S: 500 5.3.0 Error: command failed"]);
    stop(sink);
}

#[test]
fn smtp_sink_soft_rejects_mail_when_told_to() {
    let Some(sink) = Mta::smtp_sink(&["-r", "mail"]) else {
        return;
    };
    let outcome = run_plan(&sink, "smtp-sink/soft-reject-mail.yaml", &[]);
    assert_passed(&sink, &outcome, 1, &["S: 450 4.3.0 Error: command failed"]);
    stop(sink);
}

#[test]
fn smtp_sink_hanging_up_at_data_is_a_protocol_error() {
    let Some(sink) = Mta::smtp_sink(&["-q", "data"]) else {
        return;
    };
    let outcome = run_plan(&sink, "smtp-sink/disconnect-at-data.yaml", &[]);
    let context = format!("{}\n{}", outcome.stdout, outcome.junit);
    assert_eq!(outcome.code, Some(1), "{context}");
    assert!(
        outcome.stdout.contains("0 passed, 0 failed, 1 errored"),
        "{context}"
    );
    assert!(
        outcome
            .stdout
            .contains("ERROR data is cut off @ mx.example.test:25"),
        "{context}"
    );
    let message = outcome
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("protocol:"))
        .unwrap_or_else(|| panic!("no protocol error in\n{context}"));
    assert!(
        message.contains("step 4 data") && message.contains("connection closed"),
        "{context}"
    );
    assert!(
        outcome.junit.contains(r#"<error type="protocol""#),
        "{context}"
    );
    stop(sink);
}

#[test]
fn mta_plans_are_valid() {
    // The plans are checked even where the servers are not installed.
    let dir = temp_dir("mta-validate");
    fs::write(dir.join("cert.pem"), certificate().0).unwrap();
    let mut plans = Vec::new();
    for kind in ["postfix", "exim", "opensmtpd", "smtp-sink"] {
        let folder = root().join("tests/mta").join(kind);
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = format!("{kind}-{}", path.file_name().unwrap().to_string_lossy());
                fs::copy(&path, dir.join(&name)).unwrap();
                plans.push(name);
            }
        }
    }
    assert_eq!(plans.len(), 6, "{plans:?}");
    let out = run(smtp_plan(&dir).arg("validate").args(&plans));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("ok: ").count(), plans.len(), "{stdout}");
    let _ = fs::remove_dir_all(&dir);
}
