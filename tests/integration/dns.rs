//! An in-process authoritative DNS server for hermetic MX tests.
//!
//! [`TestDns`] answers from a fixed table (see [`TestDns::start`] for the format) on a
//! loopback port, over UDP and TCP, the way an authoritative server answers for its own
//! zones: AA set, NXDOMAIN for names that do not exist, NODATA (NOERROR, no answer, an
//! SOA in the authority section) for names that exist without the asked type, CNAMEs
//! followed within the table. [`CASES`] is the table the MX tests use. The helpers
//! [`query`], [`exchange_udp`] and [`exchange_tcp`] ask a server directly, with no
//! resolver in between (they are also used against the real NSD in `nsd.rs`).
//!
//! Nothing here reaches beyond 127.0.0.1, and nothing uses the system resolver.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The TTL of every record [`TestDns`] serves, and the SOA MINIMUM, so also the TTL of
/// negative answers (RFC 2308): long enough that a client's cache never expires during
/// a test.
pub const TTL: u32 = 300;

/// The standard MX cases, in [`TestDns::start`]'s format. Every address is on loopback.
///
/// - `multi.test`: three MX hosts listed out of preference order (20, 10, 30): the
///   client must sort by preference (mx1 127.0.0.11, mx2 .12, mx3 .13).
/// - `equal.test`: three MX hosts of equal preference 10 (a .21, b .22, c .23): tried
///   in random order.
/// - `implicit-a.test`: no MX, an A record (127.0.0.31): the domain is its own
///   implicit MX (RFC 5321 5.1).
/// - `implicit-aaaa.test`: no MX, only an AAAA record (::1): implicit MX over IPv6.
/// - `implicit-both.test`: no MX, A 127.0.0.32 and AAAA ::1.
/// - `nullmx.test`: the null MX `0 .` (RFC 7505): the domain accepts no mail.
/// - `noaddr.test`: MX 10 `mx.noaddr.test`, a host that is not in the table at all,
///   so its A and AAAA lookups get NXDOMAIN: an MX host with no address.
/// - `cname.test`: MX 10 `alias.cname.test`, a CNAME to `real.cname.test`
///   (127.0.0.41): the address lookup of an MX host follows a CNAME.
/// - `refuse-first.test`: one MX host with two addresses, 127.0.0.51 (tests leave it
///   closed: connection refused) and 127.0.0.52 (tests listen there): the client must
///   try the next address.
/// - `servfail.test`: every query for it (and any name below it) gets SERVFAIL.
/// - `nomail.test`: exists (a TXT record) but has no MX and no A/AAAA: "no MX and no
///   address" (NODATA for MX, A and AAAA).
/// - `nothing.test` is not in the table: NXDOMAIN.
pub const CASES: &str = "\
# Sorting by preference: listed 20, 10, 30.
multi.test MX 20 mx2.multi.test
multi.test MX 10 mx1.multi.test
multi.test MX 30 mx3.multi.test
mx1.multi.test A 127.0.0.11
mx2.multi.test A 127.0.0.12
mx3.multi.test A 127.0.0.13

# Equal preference: random order among a, b, c.
equal.test MX 10 a.equal.test
equal.test MX 10 b.equal.test
equal.test MX 10 c.equal.test
a.equal.test A 127.0.0.21
b.equal.test A 127.0.0.22
c.equal.test A 127.0.0.23

# Implicit MX: no MX, the domain's own addresses.
implicit-a.test A 127.0.0.31
implicit-aaaa.test AAAA ::1
implicit-both.test A 127.0.0.32
implicit-both.test AAAA ::1

# Null MX (RFC 7505).
nullmx.test MX 0 .

# An MX host with no address: mx.noaddr.test is absent (NXDOMAIN).
noaddr.test MX 10 mx.noaddr.test

# An MX host that is a CNAME.
cname.test MX 10 alias.cname.test
alias.cname.test CNAME real.cname.test
real.cname.test A 127.0.0.41

# Two addresses; tests listen only on the second.
refuse-first.test MX 10 mx.refuse-first.test
mx.refuse-first.test A 127.0.0.51
mx.refuse-first.test A 127.0.0.52

# A broken zone.
servfail servfail.test

# Exists, but no MX and no address.
nomail.test TXT v=spf1 -all

# nothing.test: absent, NXDOMAIN.
";

/// How long the server threads block before checking whether the server was dropped.
const POLL: Duration = Duration::from_millis(50);

/// Most CNAMEs followed in one answer (a loop in the table ends in SERVFAIL).
const MAX_CNAMES: usize = 8;

/// The UDP payload a server offers with EDNS (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// A DNS server on 127.0.0.1:PORT (UDP and TCP on the same port), answering from a
/// fixed table, until dropped.
pub struct TestDns {
    /// Where the server listens, UDP and TCP.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Serves `records`: one record per line, `NAME TYPE DATA`, TYPE one of `MX`
    /// (DATA `PREF HOST`; the null MX is `0 .`), `A`, `AAAA`, `CNAME` (DATA a name) and
    /// `TXT` (DATA the rest of the line, one string); plus lines `servfail NAME`: every
    /// query for NAME, or for a name below it, gets SERVFAIL. Blank lines and `#`
    /// comments are ignored. Names are absolute, written without the trailing dot
    /// (`mx1.multi.test`), and compared without regard to case.
    ///
    /// Answers are authoritative (AA; a SERVFAIL is not, as with NSD), records in table
    /// order with TTL [`TTL`]. A name that is neither in the table nor an ancestor of a
    /// name in it gets NXDOMAIN; a name asked for a type it lacks gets NODATA. Both
    /// carry an SOA for the name's top-level domain in the authority section, MINIMUM
    /// [`TTL`], so resolvers cache them. A CNAME is answered with the CNAME and, when its target is in the table,
    /// the target's records of the asked type (or NXDOMAIN/NODATA for the target).
    /// EDNS queries get an OPT record back; a UDP answer larger than the client's
    /// payload (512 bytes without EDNS) is sent truncated (TC), so the client retries
    /// over TCP. Undecodable packets and messages that are not queries are ignored.
    ///
    /// Panics on a line it cannot parse.
    pub fn start(records: &str) -> TestDns {
        Self::spawn(Some(Zone::parse(records)))
    }

    /// A server that accepts queries (UDP and TCP) and never answers: for resolver
    /// timeouts.
    pub fn silent() -> TestDns {
        Self::spawn(None)
    }

    /// How many queries the server has received and decoded so far: every one of them
    /// was answered, except by a [`TestDns::silent`] server (to test a client's cache
    /// and its retry count).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    fn spawn(zone: Option<Zone>) -> TestDns {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("UDP socket has an address");
        udp.set_read_timeout(Some(POLL)).expect("UDP read timeout");
        tcp.set_nonblocking(true).expect("non-blocking listener");
        let shared = Arc::new(Shared {
            zone,
            stop: AtomicBool::new(false),
            queries: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let threads = vec![
            {
                let shared = Arc::clone(&shared);
                thread::spawn(move || serve_udp(&udp, &shared))
            },
            {
                let shared = Arc::clone(&shared);
                thread::spawn(move || accept_tcp(&tcp, &shared))
            },
        ];
        TestDns {
            addr,
            shared,
            threads,
        }
    }
}

impl Drop for TestDns {
    /// Stops and joins every thread; the sockets close with them.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The acceptor has stopped, so no connection thread is added after this.
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for thread in connections {
            let _ = thread.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP port");
        let addr = udp.local_addr().expect("UDP socket has an address");
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// What the server threads share.
struct Shared {
    /// The table, or `None` for a silent server.
    zone: Option<Zone>,
    stop: AtomicBool,
    queries: AtomicUsize,
    /// The threads serving TCP connections, joined on drop.
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The encoded answer to the packet `bytes`, if it gets one; `udp`: whether it came
    /// over UDP (where an answer too large for the client is truncated).
    fn handle(&self, bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = Message::from_vec(bytes).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        self.queries.fetch_add(1, Ordering::SeqCst);
        let response = self.zone.as_ref()?.answer(&request);
        let encoded = response.to_vec().ok()?;
        let limit = match &request.edns {
            Some(edns) => usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD)),
            None => 512,
        };
        if udp && encoded.len() > limit {
            response.truncate().to_vec().ok()
        } else {
            Some(encoded)
        }
    }
}

/// Locks a mutex, whether or not a thread panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Answers datagrams until the server is dropped.
fn serve_udp(socket: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; 65_535];
    while !shared.stopped() {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                if let Some(reply) = shared.handle(&buf[..len], true) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Accepts TCP connections until the server is dropped, one thread each.
fn accept_tcp(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((stream, _)) => {
                let for_thread = Arc::clone(shared);
                let thread = thread::spawn(move || serve_tcp(stream, &for_thread));
                let mut connections = lock(&shared.connections);
                connections.retain(|t| !t.is_finished());
                connections.push(thread);
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Answers the length-prefixed queries on one connection (RFC 7766: several may come
/// on one connection) until the peer closes it or the server is dropped.
fn serve_tcp(mut stream: TcpStream, shared: &Shared) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(POLL)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .is_err()
    {
        return;
    }
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while !shared.stopped() {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return,
        }
        while let Some(message) = take_frame(&mut pending) {
            let Some(reply) = shared.handle(&message, false) else {
                continue;
            };
            let Ok(len) = u16::try_from(reply.len()) else {
                return;
            };
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if stream.write_all(&framed).is_err() {
                return;
            }
        }
    }
}

/// Removes one complete length-prefixed message from the front of `pending`.
fn take_frame(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*pending.first()?, *pending.get(1)?]));
    if pending.len() < 2 + len {
        return None;
    }
    let frame = pending[2..2 + len].to_vec();
    pending.drain(..2 + len);
    Some(frame)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// One line of a table in [`TestDns::start`]'s format.
pub enum Line {
    /// `NAME TYPE DATA`: a record of the absolute name NAME.
    Record(Name, RData),
    /// `servfail NAME`: NAME and every name below it get SERVFAIL.
    ServFail(Name),
}

/// Parses a table in [`TestDns::start`]'s format, in order. Panics on a line it
/// cannot parse.
pub fn parse_table(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fail = |why: &str| -> ! { panic!("DNS table line {}: {why}: {line}", number + 1) };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields[0] == "servfail" {
            match fields[1..] {
                [name] => lines.push(Line::ServFail(name_of(name))),
                _ => fail("expected `servfail NAME`"),
            }
            continue;
        }
        let [owner, kind, data @ ..] = fields.as_slice() else {
            fail("expected `NAME TYPE DATA`");
        };
        let rdata = match (kind.to_ascii_uppercase().as_str(), data) {
            ("A", [ip]) => RData::A(A(ip.parse().unwrap_or_else(|_| fail("bad IPv4")))),
            ("AAAA", [ip]) => RData::AAAA(AAAA(ip.parse().unwrap_or_else(|_| fail("bad IPv6")))),
            ("MX", [pref, host]) => RData::MX(MX::new(
                pref.parse().unwrap_or_else(|_| fail("bad preference")),
                name_of(host),
            )),
            ("CNAME", [target]) => RData::CNAME(CNAME(name_of(target))),
            ("TXT", [_, ..]) => RData::TXT(TXT::new(vec![data.join(" ")])),
            _ => fail("unknown type or wrong data"),
        };
        lines.push(Line::Record(name_of(owner), rdata));
    }
    lines
}

/// The parsed table: records by owner name in table order, and the SERVFAIL names.
struct Zone {
    records: HashMap<Name, Vec<RData>>,
    servfail: Vec<Name>,
}

impl Zone {
    fn parse(text: &str) -> Zone {
        let mut zone = Zone {
            records: HashMap::new(),
            servfail: Vec::new(),
        };
        for line in parse_table(text) {
            match line {
                Line::Record(owner, rdata) => zone.records.entry(owner).or_default().push(rdata),
                Line::ServFail(name) => zone.servfail.push(name),
            }
        }
        zone
    }

    /// The response to `request`.
    fn answer(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            response.set_edns(edns);
        }
        response.add_queries(request.queries.iter().cloned());
        if request.metadata.op_code != OpCode::Query {
            response.metadata.authoritative = false;
            response.metadata.response_code = ResponseCode::NotImp;
            return response;
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.authoritative = false;
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        self.resolve(query, &mut response);
        response
    }

    /// Fills in the answer to `query`, following CNAMEs inside the table.
    fn resolve(&self, query: &Query, response: &mut Message) {
        let asked = query.query_type();
        let mut name = query.name().clone();
        for _ in 0..=MAX_CNAMES {
            if self.servfail.iter().any(|broken| broken.zone_of(&name)) {
                servfail(response);
                return;
            }
            let Some(rdatas) = self.records.get(&name) else {
                let exists = self.records.keys().any(|owner| name.zone_of(owner));
                if !exists {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                response.add_authority(soa_for(&name));
                return;
            };
            let cname = rdatas.iter().find_map(|rdata| match rdata {
                RData::CNAME(CNAME(target)) if asked != RecordType::CNAME => Some(target),
                _ => None,
            });
            if let Some(target) = cname {
                response.add_answer(Record::from_rdata(
                    name.clone(),
                    TTL,
                    RData::CNAME(CNAME(target.clone())),
                ));
                name = target.clone();
                continue;
            }
            let matching: Vec<Record> = rdatas
                .iter()
                .filter(|rdata| rdata.record_type() == asked)
                .map(|rdata| Record::from_rdata(name.clone(), TTL, rdata.clone()))
                .collect();
            if matching.is_empty() {
                response.add_authority(soa_for(&name));
            }
            response.add_answers(matching);
            return;
        }
        servfail(response);
    }
}

/// Turns `response` into a SERVFAIL: no records, not authoritative (as NSD answers).
fn servfail(response: &mut Message) {
    response.answers.clear();
    response.authorities.clear();
    response.metadata.authoritative = false;
    response.metadata.response_code = ResponseCode::ServFail;
}

/// An absolute name from the table's spelling (without the trailing dot).
fn name_of(text: &str) -> Name {
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&absolute).unwrap_or_else(|e| panic!("bad DNS name {text:?}: {e}"))
}

/// The SOA of the zone `name` is in: the server plays authority for every top-level
/// domain (`test.` for the cases).
fn soa_for(name: &Name) -> Record {
    let apex = name.trim_to(1);
    let soa = SOA::new(
        name_of("ns.test"),
        name_of("hostmaster.test"),
        1,
        3600,
        600,
        86_400,
        TTL,
    );
    Record::from_rdata(apex, TTL, RData::SOA(soa))
}

/// A query for `name` (written without the trailing dot) and `kind`, with recursion
/// desired, and EDNS (payload 1232) when `edns`.
pub fn query(name: &str, kind: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name_of(name), kind));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(opt);
    }
    message
}

/// Sends `request` to `server` over UDP and returns the response, or the error
/// (`WouldBlock`/`TimedOut` when nothing came within `timeout`).
pub fn exchange_udp(
    server: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> io::Result<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    socket.send(&request.to_vec().map_err(io::Error::other)?)?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let len = socket.recv(&mut buf)?;
        let response = Message::from_vec(&buf[..len]).map_err(io::Error::other)?;
        if response.metadata.id == request.metadata.id {
            return Ok(response);
        }
    }
}

/// Sends `request` to `server` over a new TCP connection and returns the response.
pub fn exchange_tcp(
    server: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> io::Result<Message> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    send_frame(&mut stream, request)?;
    read_frame(&mut stream)
}

/// Writes `message` with its 2-byte length prefix.
fn send_frame(stream: &mut TcpStream, message: &Message) -> io::Result<()> {
    let bytes = message.to_vec().map_err(io::Error::other)?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(&bytes)
}

/// Reads one length-prefixed message.
fn read_frame(stream: &mut TcpStream) -> io::Result<Message> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut bytes)?;
    Message::from_vec(&bytes).map_err(io::Error::other)
}

/// The answer section's MX records as `(preference, "host")`, host without the
/// trailing dot (`"."` for the null MX), in the order served.
pub fn mx_answers(response: &Message) -> Vec<(u16, String)> {
    response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some((mx.preference, text_of(&mx.exchange))),
            _ => None,
        })
        .collect()
}

/// The answer section's A and AAAA addresses, in the order served.
pub fn address_answers(response: &Message) -> Vec<std::net::IpAddr> {
    response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.into()),
            RData::AAAA(aaaa) => Some(aaaa.0.into()),
            _ => None,
        })
        .collect()
}

/// A name as the table writes it: lowercase, without the trailing dot (the root: `.`).
fn text_of(name: &Name) -> String {
    if name.is_root() {
        return ".".to_string();
    }
    name.to_lowercase()
        .to_ascii()
        .trim_end_matches('.')
        .to_string()
}

/// Asserts a negative answer: `code` (NXDOMAIN, or NOERROR for NODATA), no answer
/// records, AA set, and an SOA in the authority section.
pub fn assert_negative(response: &Message, code: ResponseCode) {
    assert_eq!(response.metadata.response_code, code, "{response}");
    assert!(response.answers.is_empty(), "{response}");
    assert!(response.metadata.authoritative, "{response}");
    assert!(
        response
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "negative answer without an SOA: {response}"
    );
}

const WAIT: Duration = Duration::from_secs(5);

fn ask_udp(server: &TestDns, name: &str, kind: RecordType) -> Message {
    exchange_udp(server.addr, &query(name, kind, true), WAIT).expect("UDP answer")
}

#[test]
fn mx_records_come_in_table_order_over_udp_and_tcp() {
    let dns = TestDns::start(CASES);
    let expected = vec![
        (20, "mx2.multi.test".to_string()),
        (10, "mx1.multi.test".to_string()),
        (30, "mx3.multi.test".to_string()),
    ];
    let udp = ask_udp(&dns, "multi.test", RecordType::MX);
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert!(udp.metadata.authoritative);
    assert_eq!(udp.metadata.message_type, MessageType::Response);
    assert!(udp.edns.is_some(), "an EDNS query gets an OPT record back");
    assert_eq!(mx_answers(&udp), expected);
    assert!(udp.answers.iter().all(|r| r.ttl == TTL));

    let tcp = exchange_tcp(dns.addr, &query("MULTI.test", RecordType::MX, false), WAIT)
        .expect("TCP answer");
    assert_eq!(
        mx_answers(&tcp),
        expected,
        "names match without regard to case"
    );
    assert!(tcp.edns.is_none(), "no OPT record for a query without EDNS");
    assert_eq!(dns.queries(), 2);
}

#[test]
fn every_case_answers_as_documented() {
    let dns = TestDns::start(CASES);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let addresses = |name: &str, kind| address_answers(&ask_udp(&dns, name, kind));

    let equal = ask_udp(&dns, "equal.test", RecordType::MX);
    assert_eq!(
        mx_answers(&equal),
        [
            (10, "a.equal.test"),
            (10, "b.equal.test"),
            (10, "c.equal.test")
        ]
        .map(|(p, h)| (p, h.to_string()))
    );
    assert_eq!(
        addresses("mx1.multi.test", RecordType::A),
        [ip("127.0.0.11")]
    );
    assert_eq!(addresses("c.equal.test", RecordType::A), [ip("127.0.0.23")]);
    assert_eq!(
        addresses("implicit-a.test", RecordType::A),
        [ip("127.0.0.31")]
    );
    assert_eq!(
        addresses("implicit-aaaa.test", RecordType::AAAA),
        [ip("::1")]
    );
    assert_eq!(
        addresses("implicit-both.test", RecordType::A),
        [ip("127.0.0.32")]
    );
    assert_eq!(
        addresses("implicit-both.test", RecordType::AAAA),
        [ip("::1")]
    );
    assert_eq!(
        addresses("mx.refuse-first.test", RecordType::A),
        [ip("127.0.0.51"), ip("127.0.0.52")]
    );
    assert_eq!(
        mx_answers(&ask_udp(&dns, "nullmx.test", RecordType::MX)),
        [(0, ".".to_string())]
    );
    assert_eq!(
        mx_answers(&ask_udp(&dns, "noaddr.test", RecordType::MX)),
        [(10, "mx.noaddr.test".to_string())]
    );

    // No MX: NODATA, negative-cacheable.
    for name in ["implicit-a.test", "implicit-aaaa.test", "nomail.test"] {
        assert_negative(&ask_udp(&dns, name, RecordType::MX), ResponseCode::NoError);
    }
    assert_negative(
        &ask_udp(&dns, "implicit-a.test", RecordType::AAAA),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask_udp(&dns, "implicit-aaaa.test", RecordType::A),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask_udp(&dns, "nomail.test", RecordType::A),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask_udp(&dns, "nomail.test", RecordType::AAAA),
        ResponseCode::NoError,
    );
    // An empty non-terminal exists: NODATA, not NXDOMAIN.
    assert_negative(
        &ask_udp(&dns, "test", RecordType::MX),
        ResponseCode::NoError,
    );

    // Absent names: NXDOMAIN, with the SOA of `test.`.
    let nothing = ask_udp(&dns, "nothing.test", RecordType::MX);
    assert_negative(&nothing, ResponseCode::NXDomain);
    let soa = &nothing.authorities[0];
    assert_eq!(text_of(&soa.name), "test");
    match &soa.data {
        RData::SOA(soa) => assert_eq!(soa.minimum, TTL),
        other => panic!("not an SOA: {other:?}"),
    }
    assert_negative(
        &ask_udp(&dns, "mx.noaddr.test", RecordType::A),
        ResponseCode::NXDomain,
    );
    assert_negative(
        &ask_udp(&dns, "mx.noaddr.test", RecordType::AAAA),
        ResponseCode::NXDomain,
    );

    // SERVFAIL for the name and anything below it, whatever the type.
    for (name, kind) in [
        ("servfail.test", RecordType::MX),
        ("servfail.test", RecordType::A),
        ("mx.servfail.test", RecordType::A),
    ] {
        let response = ask_udp(&dns, name, kind);
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::ServFail,
            "{response}"
        );
        assert!(response.answers.is_empty());
        assert!(!response.metadata.authoritative);
    }
}

#[test]
fn cname_is_followed_inside_the_table() {
    let dns = TestDns::start(CASES);
    let response = ask_udp(&dns, "alias.cname.test", RecordType::A);
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    let answers: Vec<(String, RData)> = response
        .answers
        .iter()
        .map(|r| (text_of(&r.name), r.data.clone()))
        .collect();
    assert_eq!(
        answers,
        vec![
            (
                "alias.cname.test".to_string(),
                RData::CNAME(CNAME(name_of("real.cname.test")))
            ),
            (
                "real.cname.test".to_string(),
                RData::A(A("127.0.0.41".parse().unwrap()))
            ),
        ]
    );
    // The target has no AAAA: the CNAME, and an SOA for NODATA.
    let aaaa = ask_udp(&dns, "alias.cname.test", RecordType::AAAA);
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert_eq!(aaaa.answers.len(), 1);
    assert_eq!(aaaa.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(aaaa.authorities[0].record_type(), RecordType::SOA);
    // Asked for the CNAME itself: only the CNAME.
    let cname = ask_udp(&dns, "alias.cname.test", RecordType::CNAME);
    assert_eq!(cname.answers.len(), 1);
    assert_eq!(cname.answers[0].record_type(), RecordType::CNAME);

    // A dangling CNAME gets NXDOMAIN for its target (RFC 6604), a loop SERVFAIL.
    let odd = TestDns::start("dangling.test CNAME gone.test\nloop.test CNAME loop.test\n");
    let dangling = ask_udp(&odd, "dangling.test", RecordType::A);
    assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(dangling.answers.len(), 1);
    let looping = ask_udp(&odd, "loop.test", RecordType::A);
    assert_eq!(looping.metadata.response_code, ResponseCode::ServFail);
    assert!(looping.answers.is_empty());
}

#[test]
fn silent_server_never_answers() {
    let dns = TestDns::silent();
    let short = Duration::from_millis(300);
    let udp = exchange_udp(dns.addr, &query("multi.test", RecordType::MX, true), short);
    let err = udp.expect_err("no UDP answer");
    assert!(is_timeout(&err), "{err}");
    let tcp = exchange_tcp(dns.addr, &query("multi.test", RecordType::MX, true), short);
    let err = tcp.expect_err("no TCP answer");
    assert!(is_timeout(&err), "{err}");
    assert_eq!(dns.queries(), 2, "both queries arrived");
}

#[test]
fn malformed_packets_are_ignored_and_the_server_keeps_answering() {
    let dns = TestDns::start(CASES);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let garbage: [&[u8]; 4] = [
        b"",
        b"\x12",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff",
        &[0xff; 600],
    ];
    for packet in garbage {
        socket.send_to(packet, dns.addr).unwrap();
    }
    let mut buf = [0u8; 512];
    let err = socket.recv(&mut buf).expect_err("no answer to garbage");
    assert!(is_timeout(&err), "{err}");

    // A response sent to the server is not answered either (no reflection loops).
    let mut response = query("multi.test", RecordType::MX, false);
    response.metadata.message_type = MessageType::Response;
    socket
        .send_to(&response.to_vec().unwrap(), dns.addr)
        .unwrap();
    let err = socket.recv(&mut buf).expect_err("no answer to a response");
    assert!(is_timeout(&err), "{err}");

    // Garbage over TCP: a bad frame, then a good query on the same connection.
    let mut stream = TcpStream::connect(dns.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"\x00\x03abc").unwrap();
    send_frame(&mut stream, &query("nullmx.test", RecordType::MX, false)).unwrap();
    let answer = read_frame(&mut stream).unwrap();
    assert_eq!(mx_answers(&answer), [(0, ".".to_string())]);
    assert_eq!(dns.queries(), 1);
    assert_eq!(
        mx_answers(&ask_udp(&dns, "multi.test", RecordType::MX)).len(),
        3
    );
}

#[test]
fn tcp_connection_carries_several_queries() {
    let dns = TestDns::start(CASES);
    let mut stream = TcpStream::connect(dns.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // Two queries written back to back in one write, then a third.
    let first = query("multi.test", RecordType::MX, true);
    let second = query("nothing.test", RecordType::MX, true);
    let mut both = Vec::new();
    for message in [&first, &second] {
        let bytes = message.to_vec().unwrap();
        both.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
        both.extend_from_slice(&bytes);
    }
    stream.write_all(&both).unwrap();
    let one = read_frame(&mut stream).unwrap();
    let two = read_frame(&mut stream).unwrap();
    assert_eq!(one.metadata.id, first.metadata.id);
    assert_eq!(mx_answers(&one).len(), 3);
    assert_eq!(two.metadata.id, second.metadata.id);
    assert_negative(&two, ResponseCode::NXDomain);
    send_frame(&mut stream, &query("equal.test", RecordType::MX, false)).unwrap();
    assert_eq!(mx_answers(&read_frame(&mut stream).unwrap()).len(), 3);
    assert_eq!(dns.queries(), 3);
}

#[test]
fn large_udp_answers_are_truncated_and_complete_over_tcp() {
    let table: String = (1..=60)
        .map(|i| format!("big.test A 127.0.1.{i}\n"))
        .collect();
    let dns = TestDns::start(&table);
    let plain = query("big.test", RecordType::A, false);
    let udp = exchange_udp(dns.addr, &plain, WAIT).unwrap();
    assert!(
        udp.metadata.truncation,
        "60 A records do not fit in 512 bytes"
    );
    assert!(udp.answers.is_empty());
    let edns = exchange_udp(dns.addr, &query("big.test", RecordType::A, true), WAIT).unwrap();
    assert!(
        !edns.metadata.truncation,
        "they fit in an EDNS payload of 1232"
    );
    assert_eq!(edns.answers.len(), 60);
    let tcp = exchange_tcp(dns.addr, &plain, WAIT).unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(address_answers(&tcp).len(), 60);
}

#[test]
fn other_opcodes_and_question_counts_are_refused_politely() {
    let dns = TestDns::start(CASES);
    let mut notify = query("multi.test", RecordType::SOA, false);
    notify.metadata.op_code = OpCode::Notify;
    let response = exchange_udp(dns.addr, &notify, WAIT).unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NotImp);
    let mut two = query("multi.test", RecordType::MX, false);
    two.add_query(Query::query(name_of("equal.test"), RecordType::MX));
    let response = exchange_udp(dns.addr, &two, WAIT).unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn dropping_the_server_frees_its_port_and_threads() {
    let dns = TestDns::start(CASES);
    let addr = dns.addr;
    // An idle TCP connection must not keep the server alive.
    let idle = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    drop(dns);
    assert!(started.elapsed() < Duration::from_secs(2), "drop is quick");
    // The port is free again for both protocols.
    UdpSocket::bind(addr).expect("UDP port released");
    TcpListener::bind(addr).expect("TCP port released");
    drop(idle);
}
