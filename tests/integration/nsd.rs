//! A real authoritative DNS server, NSD (Debian package `nsd`), for interop tests.
//!
//! [`Nsd::start`] serves a table in [`TestDns::start`](crate::dns::TestDns::start)'s
//! format from a private NSD on a loopback port, so the MX code can be checked against
//! a real server's answers as well as against the in-process [`TestDns`](crate::dns::TestDns).
//!
//! Zone layout: one zone per top-level domain of the table's names (`test` for
//! [`CASES`](crate::dns::CASES)), with an SOA (`ns.test. hostmaster.test. 1 3600 600
//! 86400 300`) and an NS record, every record at TTL 300. Every name in the table is
//! then inside a zone NSD serves, so an absent name gets NXDOMAIN (a name outside all
//! zones would get REFUSED). Each `servfail NAME` line declares a zone NAME whose zone
//! file does not exist: NSD logs `error: zonefile ... does not exist` and answers
//! SERVFAIL (not AA, EDE 14 "Zone is configured but not loaded") for NAME and
//! everything below it.
//!
//! What NSD 4.6.1 answers for the cases (`dig +norec @127.0.0.1 -p PORT NAME TYPE`):
//!
//! ```text
//! multi.test MX        NOERROR aa  MX 20 mx2, MX 10 mx1, MX 30 mx3 (zone file order, no rotation)
//!                                  authority: test. NS ns.test.; additional: A of mx1, mx2, mx3
//! equal.test MX        NOERROR aa  MX 10 a, MX 10 b, MX 10 c; additional: their A records
//! mx1.multi.test A     NOERROR aa  A 127.0.0.11
//! implicit-a.test MX   NOERROR aa  no answer, authority: test. SOA (NODATA)
//! implicit-a.test A    NOERROR aa  A 127.0.0.31
//! implicit-aaaa.test AAAA  NOERROR aa  AAAA ::1 (and NODATA for A)
//! implicit-both.test A / AAAA  NOERROR aa  A 127.0.0.32 / AAAA ::1
//! nullmx.test MX       NOERROR aa  MX 0 .
//! noaddr.test MX       NOERROR aa  MX 10 mx.noaddr.test. (no additional)
//! mx.noaddr.test A     NXDOMAIN aa authority: test. SOA
//! alias.cname.test A   NOERROR aa  CNAME real.cname.test., A 127.0.0.41
//! alias.cname.test AAAA  NOERROR aa  CNAME real.cname.test.; authority: test. SOA
//! mx.refuse-first.test A  NOERROR aa  A 127.0.0.51, A 127.0.0.52
//! servfail.test MX     SERVFAIL    (not aa) EDE 14: Zone is configured but not loaded
//! mx.servfail.test A   SERVFAIL    (the same)
//! nomail.test MX/A/AAAA  NOERROR aa  no answer, authority: test. SOA (NODATA)
//! nothing.test MX      NXDOMAIN aa authority: test. SOA
//! example.com A        REFUSED     (outside every zone; EDE 20 Not Authoritative)
//! ```
//!
//! The rcode, AA flag, answer section and negative SOA are the same as
//! [`TestDns`](crate::dns::TestDns)'s (the test below checks that); NSD adds NS records
//! in the authority section and the MX hosts' addresses in the additional section.
//! UDP and TCP both work.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::dns::{
    assert_negative, exchange_tcp, exchange_udp, mx_answers, parse_table, query, Line, TestDns,
    CASES, TTL,
};

/// How long [`Nsd::start`] waits for NSD to answer.
const READY: Duration = Duration::from_secs(10);

/// A private NSD serving a table on 127.0.0.1:PORT (UDP and TCP), stopped on drop.
pub struct Nsd {
    /// Where NSD listens, UDP and TCP.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nsd {
    /// Starts NSD with zones generated from `records` (the format of
    /// [`TestDns::start`](crate::dns::TestDns::start); zone layout and `servfail`: see
    /// the module docs), in a fresh temporary folder (config, zone files, pid file,
    /// log; no database) on a free loopback port, and waits until it answers (at most
    /// 10 s).
    ///
    /// Returns `None`, printing the reason, when NSD is not installed, unless
    /// `SMTP_PLAN_INTEROP=require`, in which case it panics with the reason. Panics if
    /// an installed NSD does not come up, with its log.
    pub fn start(records: &str) -> Option<Nsd> {
        let Some(binary) = find_nsd() else {
            let reason = "NSD is not installed (Debian package `nsd`)";
            if std::env::var("SMTP_PLAN_INTEROP").is_ok_and(|v| v == "require") {
                panic!("SMTP_PLAN_INTEROP=require, but {reason}");
            }
            eprintln!("skipping the NSD interop check: {reason}");
            return None;
        };
        let zones = Zones::from_table(records);
        let mut failures = Vec::new();
        // The port is free when chosen, but another process may take it before NSD
        // binds it: then NSD exits, and another port is tried.
        for _ in 0..5 {
            let port = free_port();
            let dir = fresh_dir();
            zones.write(&dir, port);
            let log = fs::File::create(dir.join("stderr.log")).expect("NSD stderr file");
            let child = Command::new(&binary)
                .arg("-d")
                .arg("-c")
                .arg(dir.join("nsd.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("NSD stdout file"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
            let mut nsd = Nsd {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                child,
                dir,
            };
            match nsd.wait_ready(&zones.probe) {
                Ok(()) => return Some(nsd),
                Err(why) => failures.push(format!("port {port}: {why}\n{}", nsd.log())),
            }
        }
        panic!("NSD did not start:\n{}", failures.join("\n"));
    }

    /// Polls NSD with a query for `probe`'s SOA until it answers, it exits, or
    /// [`READY`] passes.
    fn wait_ready(&mut self, probe: &Name) -> Result<(), String> {
        let deadline = Instant::now() + READY;
        let request = query(&probe.to_ascii(), RecordType::SOA, false);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("NSD exited: {status}"));
            }
            if let Ok(response) = exchange_udp(self.addr, &request, Duration::from_millis(200)) {
                if response.metadata.response_code != ResponseCode::Refused {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("NSD did not answer within {READY:?}"))
    }

    /// NSD's log and its standard error, for failure messages.
    fn log(&self) -> String {
        ["nsd.log", "stderr.log"]
            .iter()
            .map(|file| fs::read_to_string(self.dir.join(file)).unwrap_or_default())
            .collect()
    }
}

impl Drop for Nsd {
    /// Sends SIGTERM to NSD's process group (NSD runs as three processes: xfrd, main
    /// and a server), waits for it (SIGKILL after 5 s), waits until the port is free,
    /// and removes the folder.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        signal(&group, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
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
        while Instant::now() < deadline && !port_free(self.addr) {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
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

/// The `nsd` binary, if installed: on PATH or in the sbin folders (not always on a
/// CI user's PATH).
fn find_nsd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nsd"))
        .find(|candidate| candidate.is_file())
}

/// A loopback port free for both UDP and TCP when asked.
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP port");
        let addr = udp.local_addr().expect("UDP socket has an address");
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// Whether nothing is bound to `addr` any more, UDP or TCP.
fn port_free(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}

/// A new empty folder under the system's temporary folder.
fn fresh_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "smtp-plan-nsd-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("NSD temp dir");
    dir
}

/// The zones generated from a table.
struct Zones {
    /// Zone file text by zone name (`test.`), one zone per top-level domain.
    files: BTreeMap<String, String>,
    /// The zones that are declared without a zone file (SERVFAIL).
    broken: Vec<String>,
    /// A zone whose SOA query shows that NSD is up.
    probe: Name,
}

impl Zones {
    fn from_table(records: &str) -> Zones {
        let mut files = BTreeMap::new();
        let mut broken = Vec::new();
        for line in parse_table(records) {
            match line {
                Line::Record(owner, rdata) => {
                    let apex = owner.trim_to(1).to_string();
                    let file = files.entry(apex.clone()).or_insert_with(|| {
                        format!(
                            "$TTL {TTL}\n{apex} IN SOA ns.test. hostmaster.test. 1 3600 600 86400 {TTL}\n\
                             {apex} IN NS ns.test.\n"
                        )
                    });
                    file.push_str(&zone_line(&owner, &rdata));
                }
                Line::ServFail(name) => broken.push(name.to_string()),
            }
        }
        for name in &broken {
            assert!(
                !files.contains_key(name),
                "servfail {name}: NSD cannot also serve it as a zone"
            );
        }
        let probe = files
            .keys()
            .chain(&broken)
            .next()
            .map(|zone| Name::from_ascii(zone).expect("zone name"))
            .expect("a table with at least one record or servfail line");
        Zones {
            files,
            broken,
            probe,
        }
    }

    /// Writes nsd.conf for `port` and the zone files into `dir`.
    fn write(&self, dir: &Path, port: u16) {
        let d = dir.display();
        let mut conf = format!(
            "server:\n\
             \x20   ip-address: 127.0.0.1\n\
             \x20   port: {port}\n\
             \x20   do-ip6: no\n\
             \x20   server-count: 1\n\
             \x20   rrl-ratelimit: 0\n\
             \x20   username: \"\"\n\
             \x20   chroot: \"\"\n\
             \x20   database: \"\"\n\
             \x20   zonesdir: \"{d}\"\n\
             \x20   zonelistfile: \"{d}/zone.list\"\n\
             \x20   pidfile: \"{d}/nsd.pid\"\n\
             \x20   xfrdfile: \"{d}/xfrd.state\"\n\
             \x20   xfrdir: \"{d}\"\n\
             \x20   logfile: \"{d}/nsd.log\"\n\
             \x20   verbosity: 1\n\
             remote-control:\n\
             \x20   control-enable: no\n"
        );
        for (zone, text) in &self.files {
            let file = format!("{zone}zone");
            fs::write(dir.join(&file), text).expect("zone file written");
            conf.push_str(&format!(
                "zone:\n    name: \"{zone}\"\n    zonefile: \"{file}\"\n"
            ));
        }
        for zone in &self.broken {
            conf.push_str(&format!(
                "zone:\n    name: \"{zone}\"\n    zonefile: \"{zone}missing\"\n"
            ));
        }
        fs::write(dir.join("nsd.conf"), conf).expect("nsd.conf written");
    }
}

/// One record in zone file syntax.
fn zone_line(owner: &Name, rdata: &RData) -> String {
    let data = match rdata {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|text| quoted(text))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!("{owner} IN {} {data}\n", rdata.record_type())
}

/// A character-string in zone file syntax: quoted, `"`, `\` and non-printable bytes
/// escaped.
fn quoted(text: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in text {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' '..=b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// Every question the cases raise, for comparing NSD with TestDns.
const QUESTIONS: &[(&str, RecordType)] = &[
    ("multi.test", RecordType::MX),
    ("mx1.multi.test", RecordType::A),
    ("mx2.multi.test", RecordType::A),
    ("mx3.multi.test", RecordType::AAAA),
    ("equal.test", RecordType::MX),
    ("b.equal.test", RecordType::A),
    ("implicit-a.test", RecordType::MX),
    ("implicit-a.test", RecordType::A),
    ("implicit-a.test", RecordType::AAAA),
    ("implicit-aaaa.test", RecordType::MX),
    ("implicit-aaaa.test", RecordType::A),
    ("implicit-aaaa.test", RecordType::AAAA),
    ("implicit-both.test", RecordType::A),
    ("implicit-both.test", RecordType::AAAA),
    ("nullmx.test", RecordType::MX),
    ("noaddr.test", RecordType::MX),
    ("mx.noaddr.test", RecordType::A),
    ("mx.noaddr.test", RecordType::AAAA),
    ("cname.test", RecordType::MX),
    ("alias.cname.test", RecordType::A),
    ("alias.cname.test", RecordType::AAAA),
    ("alias.cname.test", RecordType::CNAME),
    ("refuse-first.test", RecordType::MX),
    ("mx.refuse-first.test", RecordType::A),
    ("servfail.test", RecordType::MX),
    ("mx.servfail.test", RecordType::A),
    ("nomail.test", RecordType::MX),
    ("nomail.test", RecordType::A),
    ("nomail.test", RecordType::AAAA),
    ("nomail.test", RecordType::TXT),
    ("nothing.test", RecordType::MX),
    ("nothing.test", RecordType::A),
];

/// What must agree between NSD and TestDns: the rcode, the AA flag, the answer section
/// in order, and the SOA of a negative answer.
fn essence(response: &Message) -> (ResponseCode, bool, Vec<String>, Vec<String>) {
    let soa = response
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .map(ToString::to_string)
        .collect();
    let answers = response.answers.iter().map(ToString::to_string).collect();
    (
        response.metadata.response_code,
        response.metadata.authoritative,
        answers,
        soa,
    )
}

#[test]
fn nsd_serves_the_cases_as_test_dns_does() {
    let Some(nsd) = Nsd::start(CASES) else {
        return;
    };
    let wait = Duration::from_secs(5);
    let ask = |addr, name, kind| {
        exchange_udp(addr, &query(name, kind, true), wait)
            .unwrap_or_else(|e| panic!("{name} {kind}: {e}"))
    };

    let multi = [
        (20, "mx2.multi.test"),
        (10, "mx1.multi.test"),
        (30, "mx3.multi.test"),
    ]
    .map(|(pref, host)| (pref, host.to_string()));
    assert_eq!(
        mx_answers(&ask(nsd.addr, "multi.test", RecordType::MX)),
        multi
    );
    let tcp = exchange_tcp(nsd.addr, &query("multi.test", RecordType::MX, false), wait)
        .expect("NSD answers over TCP");
    assert_eq!(mx_answers(&tcp), multi);
    assert_negative(
        &ask(nsd.addr, "nothing.test", RecordType::MX),
        ResponseCode::NXDomain,
    );
    assert_negative(
        &ask(nsd.addr, "nomail.test", RecordType::MX),
        ResponseCode::NoError,
    );
    let servfail = ask(nsd.addr, "servfail.test", RecordType::MX);
    assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);

    let dns = TestDns::start(CASES);
    for &(name, kind) in QUESTIONS {
        assert_eq!(
            essence(&ask(nsd.addr, name, kind)),
            essence(&ask(dns.addr, name, kind)),
            "NSD and TestDns differ on {name} {kind}"
        );
    }

    let addr = nsd.addr;
    drop(nsd);
    assert!(port_free(addr), "NSD released its port");
    let after = exchange_udp(addr, &query("multi.test", RecordType::MX, false), wait);
    assert!(after.is_err(), "NSD still answers after drop: {after:?}");
}
