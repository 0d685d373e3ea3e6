//! One SMTP session of the responder: the RFC 5321 state machine (greeting, then
//! EHLO/HELO, MAIL, RCPT, DATA or BDAT, and back to greeted; RSET and a new
//! EHLO/HELO drop the transaction), STARTTLS (RFC 3207: after the handshake the
//! session starts again from before EHLO), AUTH PLAIN and LOGIN (RFC 4954, RFC
//! 4616) against the persona's users, command parsing, and the persona's
//! replies and faults. It runs on any byte stream, so tests can use in-memory
//! pipes; the server runs it on TCP.
//!
//! A fault's replacement reply decides whether the command takes effect: 2xx and
//! 3xx let it, 4xx and 5xx cancel it (a MAIL answered `451` opens no transaction,
//! a STARTTLS answered `454` starts no handshake, an AUTH challenge answered
//! `454` ends the exchange). A malformed reply leaves the command's effect as it
//! would have been.

use super::conn::{Conn, Line, Stop, Stream};
use super::persona::{Action, Persona, Reply, ReplyTemplate, Vars, Verb, Verdict, AUTH_MECHANISMS};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Longest command line taken, without its line ending. RFC 5321 section
/// 4.5.3.1.4 sets 512 octets with CRLF, but section 4.5.3.1 asks servers to be
/// liberal and extension parameters make longer lines, so allow four times that.
const MAX_COMMAND_LINE: usize = 2048;
/// Octets kept of each message line: all the end marker and dot-stuffing need.
const MESSAGE_LINE_KEEP: usize = 2;
/// How long closing may take for each of the last write and the FIN.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A mail transaction: from an accepted MAIL to the end of the message or RSET.
#[derive(Default)]
struct Transaction {
    recipients: u32,
    /// Octets received in BDAT chunks, from the first chunk on.
    chunked: Option<u64>,
}

/// What a command changes when its reply lets it.
enum Effect {
    None,
    Hello,
    Authenticate,
    Mail,
    Rcpt,
    Reset,
    Quit,
}

/// An AUTH mechanism the responder implements.
#[derive(Clone, Copy)]
enum Mechanism {
    /// RFC 4616: one response, `authzid NUL authcid NUL passwd`.
    Plain,
    /// The username, then the password, each after its own challenge.
    Login,
}

/// How an AUTH exchange ended before the credentials could be checked.
enum Abort {
    /// Send this reply: the client cancelled, or its response was too long or
    /// not base64.
    Reply(Reply),
    /// A fault's 4xx/5xx reply stood in for a challenge and ended the exchange.
    Refused,
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
}

/// The state of one session.
pub(crate) struct Session {
    conn: Conn,
    persona: Arc<Persona>,
    /// The handshake STARTTLS runs; `None` when the persona has no `tls`.
    tls: Option<TlsAcceptor>,
    client_ip: String,
    /// EHLO or HELO was accepted. A transaction exists only after it.
    greeted: bool,
    /// STARTTLS succeeded: the session runs over TLS.
    encrypted: bool,
    /// AUTH succeeded.
    authenticated: bool,
    tx: Option<Transaction>,
    /// How often each verb has come up, for faults' `nth`.
    seen: [u32; Verb::COUNT],
}

impl Session {
    /// A session with the client at `client` on `stream`; `tls` is what
    /// STARTTLS uses when the persona has `tls`.
    pub(crate) fn new(
        stream: impl Stream + 'static,
        persona: Arc<Persona>,
        tls: Option<TlsAcceptor>,
        client: IpAddr,
    ) -> Self {
        Session {
            conn: Conn::new(Box::new(stream), persona.idle_timeout.0),
            persona,
            tls,
            client_ip: client.to_string(),
            greeted: false,
            encrypted: false,
            authenticated: false,
            tx: None,
            seen: [0; Verb::COUNT],
        }
    }

    /// Serves the client until QUIT, its disconnect, a fault or the idle timeout,
    /// then closes the connection.
    pub(crate) async fn run(&mut self) {
        match self.serve().await {
            Err(Stop::Idle) => {
                let bye = self.say(&self.persona.replies.idle_timeout);
                self.conn.close(Some(&bye), CLOSE_WAIT).await;
            }
            Ok(()) | Err(Stop::Gone) => self.conn.close(None, CLOSE_WAIT).await,
        }
    }

    /// Closes the connection because the responder stops, saying so if the
    /// session was not cut off in the middle of a reply.
    pub(crate) async fn shut_down(&mut self) {
        let bye = self.say(&self.persona.replies.shutting_down);
        self.conn.close(Some(&bye), CLOSE_WAIT).await;
    }

    fn vars(&self) -> Vars<'_> {
        Vars {
            hostname: self.persona.hostname(),
            client_ip: &self.client_ip,
        }
    }

    fn say(&self, template: &ReplyTemplate) -> Reply {
        template.render(&self.vars())
    }

    async fn serve(&mut self) -> Result<(), Stop> {
        let greeting = Reply {
            code: 220,
            text: self.persona.banner.render(&self.vars()),
        };
        self.respond(&[Verb::Greeting], &greeting).await?;
        let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
        loop {
            let read = self.conn.read_line(&mut line, MAX_COMMAND_LINE).await?;
            let flow = if read.truncated {
                let reply = self.say(&self.persona.replies.line_too_long);
                self.decide(&[], reply, Effect::None).await?
            } else {
                self.command(&line).await?
            };
            if let Flow::Close = flow {
                return self.conn.flush().await;
            }
        }
    }

    async fn command(&mut self, line: &[u8]) -> Result<Flow, Stop> {
        let text = String::from_utf8_lossy(line);
        let (word, args) = match text.split_once([' ', '\t']) {
            Some((word, args)) => (word, args.trim_matches([' ', '\t'])),
            None => (&text[..], ""),
        };
        let replies = &self.persona.replies;
        let Some(verb) = Verb::command(word) else {
            let reply = self.say(&replies.unrecognized);
            return self.decide(&[], reply, Effect::None).await;
        };
        let (reply, effect) = match verb {
            Verb::Starttls => return self.starttls(args).await,
            Verb::Auth => return self.auth(args).await,
            Verb::Data => return self.data(args).await,
            Verb::Bdat => return self.bdat(args).await,
            Verb::Ehlo | Verb::Helo => self.hello(verb, args),
            Verb::Mail => self.mail(args),
            Verb::Rcpt => self.rcpt(args),
            Verb::Rset => (self.say(&replies.rset), Effect::Reset),
            Verb::Noop => (self.say(&replies.noop), Effect::None),
            Verb::Vrfy if args.is_empty() => (self.say(&replies.invalid_arguments), Effect::None),
            Verb::Vrfy => (self.say(&replies.vrfy), Effect::None),
            Verb::Expn => (self.say(&replies.expn), Effect::None),
            Verb::Quit => (self.say(&replies.quit), Effect::Quit),
            // Verb::command never names these.
            Verb::Greeting | Verb::EndOfData | Verb::Any => {
                (self.say(&replies.unrecognized), Effect::None)
            }
        };
        self.decide(&[verb], reply, effect).await
    }

    /// Sends `reply` (or what a fault puts in its place) and applies `effect` if
    /// the reply sent lets it.
    async fn decide(&mut self, verbs: &[Verb], reply: Reply, effect: Effect) -> Result<Flow, Stop> {
        if !self.respond(verbs, &reply).await? {
            return Ok(Flow::Continue);
        }
        match effect {
            Effect::None => {}
            Effect::Hello => {
                self.greeted = true;
                self.tx = None;
            }
            Effect::Authenticate => self.authenticated = true,
            Effect::Mail => self.tx = Some(Transaction::default()),
            Effect::Rcpt => {
                if let Some(tx) = &mut self.tx {
                    tx.recipients = tx.recipients.saturating_add(1);
                }
            }
            Effect::Reset => self.tx = None,
            Effect::Quit => return Ok(Flow::Close),
        }
        Ok(Flow::Continue)
    }

    /// Sends the reply for an event named by `verbs` (every event but the
    /// greeting is also `any`), unless the first matching fault says otherwise.
    /// `Ok(false)` when a fault's 4xx/5xx reply cancels the command's effect.
    async fn respond(&mut self, verbs: &[Verb], reply: &Reply) -> Result<bool, Stop> {
        let any = !verbs.contains(&Verb::Greeting);
        for verb in verbs.iter().chain(any.then_some(&Verb::Any)) {
            let n = &mut self.seen[verb.index()];
            *n = n.saturating_add(1);
        }
        let persona = Arc::clone(&self.persona);
        let fault = persona.faults.iter().find(|f| {
            (verbs.contains(&f.command) || (any && f.command == Verb::Any))
                && f.nth.is_none_or(|n| n == self.seen[f.command.index()])
        });
        let Some(fault) = fault else {
            self.conn.send(reply).await?;
            return Ok(true);
        };
        if let Some(delay) = fault.delay {
            self.conn.flush().await?;
            tokio::time::sleep(delay).await;
        }
        match &fault.action {
            None => self.conn.send(reply).await.map(|()| true),
            Some(Action::Disconnect) => {
                self.conn.flush().await?;
                Err(Stop::Gone)
            }
            Some(Action::Reply(template)) => {
                let instead = self.say(template);
                self.conn.send(&instead).await?;
                Ok(instead.positive())
            }
            Some(Action::Malformed(bytes)) => self.conn.send_raw(bytes).await.map(|()| true),
        }
    }

    fn hello(&self, verb: Verb, args: &str) -> (Reply, Effect) {
        let replies = &self.persona.replies;
        if !valid_domain(args) {
            return (self.say(&replies.invalid_domain), Effect::None);
        }
        if verb == Verb::Helo {
            return (self.say(&replies.helo), Effect::Hello);
        }
        let mut reply = self.say(&replies.ehlo);
        if reply.code / 100 == 2 {
            let starttls = (self.tls.is_some() && !self.encrypted).then_some("STARTTLS");
            let auth = self.auth_offered().then_some(AUTH_MECHANISMS);
            let written = self.persona.capabilities.iter().map(|c| c.0.as_str());
            for capability in written.chain(starttls).chain(auth) {
                reply.text.push('\n');
                reply.text.push_str(capability);
            }
        }
        (reply, Effect::Hello)
    }

    /// Whether AUTH is offered now: the persona has users, and the session is
    /// encrypted or the persona allows AUTH in the clear.
    fn auth_offered(&self) -> bool {
        !self.persona.users.is_empty() && (self.encrypted || self.persona.auth_over_plaintext)
    }

    /// STARTTLS (RFC 3207): the ready reply, the handshake, and a fresh start.
    async fn starttls(&mut self, args: &str) -> Result<Flow, Stop> {
        let replies = &self.persona.replies;
        let acceptor = match &self.tls {
            Some(acceptor) if args.is_empty() && !self.encrypted && self.tx.is_none() => {
                acceptor.clone()
            }
            tls => {
                let refusal = if !args.is_empty() {
                    &replies.invalid_arguments
                } else if tls.is_none() {
                    &replies.tls_not_available
                } else if self.encrypted {
                    &replies.already_tls
                } else {
                    &replies.bad_sequence
                };
                let reply = self.say(refusal);
                return self.decide(&[Verb::Starttls], reply, Effect::None).await;
            }
        };
        let ready = self.say(&replies.starttls_ready);
        if !self.respond(&[Verb::Starttls], &ready).await? {
            return Ok(Flow::Continue);
        }
        self.conn.start_tls(&acceptor).await?;
        // Section 4.2: the server forgets what the client told it before TLS
        // (EHLO, AUTH); the client starts again with EHLO.
        self.encrypted = true;
        self.greeted = false;
        self.authenticated = false;
        self.tx = None;
        Ok(Flow::Continue)
    }

    /// AUTH (RFC 4954) with PLAIN or LOGIN, the initial response optional.
    async fn auth(&mut self, args: &str) -> Result<Flow, Stop> {
        let replies = &self.persona.replies;
        let mut words = args.split_ascii_whitespace();
        let (mechanism, initial) = (words.next(), words.next());
        let known = |m: &str| {
            if m.eq_ignore_ascii_case("PLAIN") {
                Some(Mechanism::Plain)
            } else if m.eq_ignore_ascii_case("LOGIN") {
                Some(Mechanism::Login)
            } else {
                None
            }
        };
        let checked = match mechanism.map(known) {
            _ if self.persona.users.is_empty() => Err(&replies.unrecognized),
            None => Err(&replies.invalid_arguments),
            _ if words.next().is_some() => Err(&replies.invalid_arguments),
            _ if !self.greeted => Err(&replies.need_hello),
            _ if self.authenticated => Err(&replies.auth_already),
            _ if self.tx.is_some() => Err(&replies.bad_sequence),
            Some(None) => Err(&replies.auth_mechanism_unknown),
            Some(Some(_)) if !self.auth_offered() => Err(&replies.auth_encryption_required),
            Some(Some(mechanism)) => Ok(mechanism),
        };
        let mechanism = match checked {
            Ok(mechanism) => mechanism,
            Err(refusal) => {
                let reply = self.say(refusal);
                return self.decide(&[Verb::Auth], reply, Effect::None).await;
            }
        };
        let initial = initial.map(decode_initial);
        let valid = match mechanism {
            Mechanism::Plain => self.plain(initial).await?,
            Mechanism::Login => self.login(initial).await?,
        };
        let replies = &self.persona.replies;
        let (reply, effect) = match valid {
            Ok(true) => (self.say(&replies.auth_ok), Effect::Authenticate),
            Ok(false) => (self.say(&replies.auth_failed), Effect::None),
            Err(Abort::Reply(reply)) => (reply, Effect::None),
            Err(Abort::Refused) => return Ok(Flow::Continue),
        };
        self.decide(&[Verb::Auth], reply, effect).await
    }

    /// AUTH PLAIN's one response (RFC 4616), after an empty challenge when the
    /// command had none: whether it holds a user's credentials. An authorization
    /// identity other than the username fails, like a wrong password.
    async fn plain(
        &mut self,
        initial: Option<Option<Vec<u8>>>,
    ) -> Result<Result<bool, Abort>, Stop> {
        let response = match initial {
            Some(decoded) => decoded.ok_or_else(|| self.cannot_decode()),
            None => self.challenge("").await?,
        };
        Ok(response.map(|message| {
            let mut fields = message.split(|&b| b == 0);
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(authz), Some(user), Some(pass), None) => {
                    (authz.is_empty() || authz.eq_ignore_ascii_case(user))
                        && self.persona.user(user, pass)
                }
                _ => false,
            }
        }))
    }

    /// AUTH LOGIN's username (on the command line, or after `334 Username:`) and
    /// password (after `334 Password:`), each base64: whether they are a user's.
    async fn login(
        &mut self,
        initial: Option<Option<Vec<u8>>>,
    ) -> Result<Result<bool, Abort>, Stop> {
        let username = match initial {
            Some(decoded) => decoded.ok_or_else(|| self.cannot_decode()),
            None => self.challenge(&BASE64.encode("Username:")).await?,
        };
        let username = match username {
            Ok(username) => username,
            Err(abort) => return Ok(Err(abort)),
        };
        let password = self.challenge(&BASE64.encode("Password:")).await?;
        Ok(password.map(|password| self.persona.user(&username, &password)))
    }

    /// Sends a `334` challenge and reads the client's response line, decoded.
    async fn challenge(&mut self, text: &str) -> Result<Result<Vec<u8>, Abort>, Stop> {
        let challenge = Reply {
            code: 334,
            text: text.to_string(),
        };
        if !self.respond(&[Verb::Auth], &challenge).await? {
            return Ok(Err(Abort::Refused));
        }
        let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
        let read = self.conn.read_line(&mut line, MAX_COMMAND_LINE).await?;
        let replies = &self.persona.replies;
        let response = line.trim_ascii();
        Ok(if read.truncated {
            Err(Abort::Reply(self.say(&replies.line_too_long)))
        } else if response == b"*" {
            Err(Abort::Reply(self.say(&replies.auth_cancelled)))
        } else {
            BASE64.decode(response).map_err(|_| self.cannot_decode())
        })
    }

    fn cannot_decode(&self) -> Abort {
        Abort::Reply(self.say(&self.persona.replies.auth_cannot_decode))
    }

    fn mail(&self, args: &str) -> (Reply, Effect) {
        let replies = &self.persona.replies;
        let refusal = if !self.greeted {
            &replies.need_hello
        } else if self.tx.is_some() {
            &replies.sender_already_specified
        } else if self.persona.auth_required && !self.authenticated {
            &replies.auth_required
        } else {
            let size = split_path(args, "FROM:")
                .filter(|(path, _)| path.is_empty() || valid_address(path))
                .and_then(|(_, params)| declared_size(params));
            match size {
                None => &replies.invalid_arguments,
                Some(size) if self.over_limit(size) => &replies.size_exceeded,
                Some(_) => return (self.say(&replies.mail_ok), Effect::Mail),
            }
        };
        (self.say(refusal), Effect::None)
    }

    fn rcpt(&self, args: &str) -> (Reply, Effect) {
        let replies = &self.persona.replies;
        let refusal = if !self.greeted {
            &replies.need_hello
        } else if self.tx.is_none() {
            &replies.need_mail
        } else {
            let verdict = match split_path(args, "TO:") {
                // RFC 5321 section 4.5.1: <postmaster> must always be accepted.
                Some((path, _)) if path.eq_ignore_ascii_case("postmaster") => Some(Verdict::Known),
                Some((path, _)) if valid_address(path) => Some(self.persona.recipient(path)),
                _ => None,
            };
            match verdict {
                None => &replies.invalid_arguments,
                Some(Verdict::Known) => return (self.say(&replies.rcpt_ok), Effect::Rcpt),
                Some(Verdict::UnknownUser) => &replies.user_unknown,
                Some(Verdict::RelayDenied) => &replies.relay_denied,
            }
        };
        (self.say(refusal), Effect::None)
    }

    /// Why DATA or BDAT cannot start a message now (no transaction with a recipient).
    fn not_ready(&self) -> Reply {
        let replies = &self.persona.replies;
        self.say(if !self.greeted {
            &replies.need_hello
        } else if self.tx.is_none() {
            &replies.need_mail
        } else {
            &replies.need_rcpt
        })
    }

    fn over_limit(&self, size: u64) -> bool {
        self.persona.max_size > 0 && size > self.persona.max_size
    }

    async fn data(&mut self, args: &str) -> Result<Flow, Stop> {
        let replies = &self.persona.replies;
        let refusal = match &self.tx {
            Some(tx) if tx.recipients > 0 && tx.chunked.is_some() => {
                Some(self.say(&replies.bad_sequence))
            }
            Some(tx) if tx.recipients > 0 && !args.is_empty() => {
                Some(self.say(&replies.invalid_arguments))
            }
            Some(tx) if tx.recipients > 0 => None,
            _ => Some(self.not_ready()),
        };
        if let Some(reply) = refusal {
            return self.decide(&[Verb::Data], reply, Effect::None).await;
        }
        let go_ahead = self.say(&replies.data_start);
        if !self.respond(&[Verb::Data], &go_ahead).await? {
            return Ok(Flow::Continue);
        }
        let size = self.read_message().await?;
        self.tx = None;
        let replies = &self.persona.replies;
        let done = self.say(if self.over_limit(size) {
            &replies.size_exceeded
        } else {
            &replies.queued
        });
        self.respond(&[Verb::EndOfData], &done).await?;
        Ok(Flow::Continue)
    }

    /// Reads message lines up to the lone dot and returns the message size after
    /// un-dot-stuffing. Nothing of the message is kept.
    async fn read_message(&mut self) -> Result<u64, Stop> {
        let mut start = Vec::with_capacity(MESSAGE_LINE_KEEP);
        let mut size: u64 = 0;
        loop {
            let line = self.conn.read_line(&mut start, MESSAGE_LINE_KEEP).await?;
            match message_line(&start, line) {
                None => return Ok(size),
                Some(octets) => size = size.saturating_add(octets),
            }
        }
    }

    async fn bdat(&mut self, args: &str) -> Result<Flow, Stop> {
        let Some((size, last)) = parse_bdat(args) else {
            let reply = self.say(&self.persona.replies.invalid_arguments);
            return self.decide(&[Verb::Bdat], reply, Effect::None).await;
        };
        // RFC 3030 section 2: the chunk follows the command whatever the reply.
        self.conn.discard(size).await?;
        let total = match &mut self.tx {
            Some(tx) if tx.recipients > 0 => {
                let total = tx.chunked.unwrap_or(0).saturating_add(size);
                tx.chunked = Some(total);
                total
            }
            _ => {
                let reply = self.not_ready();
                return self.decide(&[Verb::Bdat], reply, Effect::None).await;
            }
        };
        let over = self.over_limit(total);
        if over || last {
            self.tx = None;
        }
        let replies = &self.persona.replies;
        let reply = self.say(if over {
            &replies.size_exceeded
        } else if last {
            &replies.queued
        } else {
            &replies.bdat_ok
        });
        let verbs: &[Verb] = if last {
            &[Verb::Bdat, Verb::EndOfData]
        } else {
            &[Verb::Bdat]
        };
        if !self.respond(verbs, &reply).await? {
            self.tx = None;
        }
        Ok(Flow::Continue)
    }
}

/// An initial response on the AUTH line (RFC 4954 section 4), decoded: `=` is
/// the empty response; `None` when it is not base64.
fn decode_initial(word: &str) -> Option<Vec<u8>> {
    if word == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(word).ok()
}

/// One message line (RFC 5321 section 4.5.2) given its first octets: `None` for
/// the lone dot that ends the message, else the octets it adds to the message
/// once un-dot-stuffed, its CRLF included.
fn message_line(start: &[u8], line: Line) -> Option<u64> {
    if !line.truncated && start == b"." {
        return None;
    }
    let stuffed = u64::from(start.first() == Some(&b'.'));
    Some(line.len - stuffed + 2)
}

/// Splits the arguments of MAIL (`FROM:`) or RCPT (`TO:`) into the path and its
/// parameters (RFC 5321 section 4.1.2). Like Exchange, also takes a space after
/// the colon and a path without angle brackets (`MAIL FROM:chris@contoso.com`,
/// as the telnet runbook types it). A source route (`<@a,@b:user@d>`) is dropped.
fn split_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start_matches([' ', '\t']);
    let (path, params) = match rest.strip_prefix('<') {
        Some(inner) => {
            let end = inner.find('>')?;
            let params = &inner[end + 1..];
            if !params.is_empty() && !params.starts_with([' ', '\t']) {
                return None;
            }
            (&inner[..end], params)
        }
        None => rest.split_once([' ', '\t']).unwrap_or((rest, "")),
    };
    let path = match path.strip_prefix('@') {
        Some(route) => route.split_once(':')?.1,
        None => path,
    };
    Some((path, params.trim_matches([' ', '\t'])))
}

/// A domain or an address literal (RFC 5321 section 4.1.3), checked loosely:
/// letters, digits, `-` and `_` in non-empty dot-separated labels, or an
/// address in brackets.
fn valid_domain(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-'));
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `local@domain` with a non-empty local part free of spaces and controls.
fn valid_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
        && valid_domain(domain)
}

/// The size MAIL declares with `SIZE=` (RFC 1870), 0 without one; `None` when
/// the value is not a number. Other parameters are accepted and ignored.
fn declared_size(params: &str) -> Option<u64> {
    let mut size = 0;
    for param in params.split_ascii_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key.eq_ignore_ascii_case("SIZE") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // More digits than a u64 holds is over any limit.
            size = value.parse().unwrap_or(u64::MAX);
        }
    }
    Some(size)
}

/// `BDAT size [LAST]` (RFC 3030 section 2).
fn parse_bdat(args: &str) -> Option<(u64, bool)> {
    let mut words = args.split_ascii_whitespace();
    let size = words
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[test]
    fn message_lines_are_unstuffed_and_counted_with_crlf() {
        let line = |len, truncated| Line { len, truncated };
        assert_eq!(message_line(b".", line(1, false)), None);
        assert_eq!(message_line(b"..", line(2, false)), Some(3));
        assert_eq!(message_line(b"..", line(10, true)), Some(11));
        assert_eq!(message_line(b".a", line(3, true)), Some(4));
        assert_eq!(message_line(b"ab", line(1000, true)), Some(1002));
        assert_eq!(message_line(b"", line(0, false)), Some(2));
    }

    #[test]
    fn paths_split_like_exchange() {
        let p = |args| split_path(args, "FROM:");
        assert_eq!(p("FROM:<a@b.c>"), Some(("a@b.c", "")));
        assert_eq!(
            p("from: <a@b.c>  SIZE=10 BODY=8BITMIME"),
            Some(("a@b.c", "SIZE=10 BODY=8BITMIME"))
        );
        assert_eq!(p("FROM:chris@contoso.com"), Some(("chris@contoso.com", "")));
        assert_eq!(
            p("FROM:chris@contoso.com SIZE=1"),
            Some(("chris@contoso.com", "SIZE=1"))
        );
        assert_eq!(p("FROM:<>"), Some(("", "")));
        assert_eq!(
            p("FROM:<@relay.example,@b.example:u@d.example>"),
            Some(("u@d.example", ""))
        );
        assert_eq!(p("FROM:<a@b.c>SIZE=1"), None);
        assert_eq!(p("FROM:<a@b.c"), None);
        assert_eq!(p("TO:<a@b.c>"), None);
        assert_eq!(p("FR"), None);
        assert_eq!(p("FRÖM:<a@b.c>"), None);
        assert_eq!(
            split_path("to:<kate@fabrikam.com> NOTIFY=SUCCESS", "TO:"),
            Some(("kate@fabrikam.com", "NOTIFY=SUCCESS"))
        );
    }

    #[test]
    fn domains_and_addresses_are_checked_loosely() {
        for good in [
            "contoso.com",
            "localhost",
            "mx-1.example.org.",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "my_host",
        ] {
            assert!(valid_domain(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b",
            "[]",
            "[1.2.3.4",
            "exa$mple.com",
            "ex\u{e4}mple.com",
        ] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
        assert!(valid_address("kate@fabrikam.com"));
        assert!(valid_address("\"odd@local\"@fabrikam.com"));
        for bad in [
            "kate",
            "@fabrikam.com",
            "kate@",
            "ka te@fabrikam.com",
            "kate@fab rikam.com",
        ] {
            assert!(!valid_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn mail_parameters_and_bdat_arguments() {
        assert_eq!(declared_size(""), Some(0));
        assert_eq!(declared_size("BODY=8BITMIME size=1000"), Some(1000));
        assert_eq!(
            declared_size("SIZE=99999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(declared_size("SIZE="), None);
        assert_eq!(declared_size("SIZE=12k"), None);
        assert_eq!(declared_size("SIZE=+5"), None);
        assert_eq!(parse_bdat("100"), Some((100, false)));
        assert_eq!(parse_bdat("0 last"), Some((0, true)));
        assert_eq!(parse_bdat("  7   LAST "), Some((7, true)));
        for bad in [
            "",
            "x",
            "-1",
            "+1",
            "1 FIRST",
            "1 LAST x",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_bdat(bad), None, "{bad:?}");
        }
    }

    /// Runs a session on `input` and returns what it wrote once it ended.
    async fn session_output(persona: Persona, input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = duplex(1 << 20);
        let mut session = Session::new(server, Arc::new(persona), None, [127, 0, 0, 1].into());
        let served = tokio::spawn(async move { session.run().await });
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        served.await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_pipelined_session_is_answered_in_order() {
        let input = b"EHLO contoso.com\r\nMAIL FROM:<chris@contoso.com>\r\nRCPT TO:<kate@fabrikam.com>\r\nDATA\r\nSubject: hi\r\n\r\n..x\r\n.\r\nQUIT\r\nNOOP\r\n";
        let out = session_output(Persona::builtin("exchange-2013").unwrap(), input.to_vec()).await;
        let text = String::from_utf8(out).unwrap();
        let codes: Vec<&str> = text.lines().map(|l| &l[..4]).collect();
        assert_eq!(
            codes,
            [
                "220 ", "250-", "250-", "250-", "250-", "250-", "250-", "250-", "250 ", "250 ",
                "250 ", "354 ", "250 ", "221 "
            ]
        );
    }

    #[tokio::test]
    async fn faults_count_occurrences_and_cancel_effects() {
        let persona = Persona::from_yaml_str(
            "name: t\nhostname: h\nrecipients: ['*@h']\nfaults:\n  - { command: RCPT, nth: 2, reply: '452 4.5.3 Too many' }\n  - { command: any, nth: 9, malformed: \"2x0 odd\\r\\n\" }\n  - { command: MAIL, nth: 1, reply: '451 4.3.0 later' }\n",
        )
        .unwrap();
        let input = b"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<a@h>\r\nMAIL FROM:<>\r\nRCPT TO:<a@h>\r\nRCPT TO:<b@h>\r\nRCPT TO:<c@h>\r\nDATA\r\n.\r\nDATA\r\n";
        let out = session_output(persona, input.to_vec()).await;
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.get(..9).unwrap_or(l))
            .collect();
        assert_eq!(
            lines,
            [
                "250 h Hel",
                "451 4.3.0",
                "503 5.5.2",
                "250 2.1.0",
                "452 4.5.3",
                "250 2.1.5",
                "250 2.1.5",
                "354 Start",
                "2x0 odd",
                "503 5.5.2",
            ]
        );
    }

    /// The replies of a session on `input`, one string per line.
    async fn replies(persona: &str, input: &str) -> Vec<String> {
        let persona = Persona::from_yaml_str(persona).unwrap();
        let out = session_output(persona, input.as_bytes().to_vec()).await;
        let text = String::from_utf8(out).unwrap();
        text.split_terminator("\r\n")
            .skip(1)
            .map(String::from)
            .collect()
    }

    const USERS: &str = "name: t\nhostname: h\nrecipients: ['*@h']\nauth_over_plaintext: true\nauth_required: true\nusers:\n  - { username: Chris@Contoso.com, password: 'Pa55w.rd' }\n  - { username: kate, password: '' }\n";

    #[test]
    fn initial_responses_decode_with_equals_for_empty() {
        assert_eq!(decode_initial("="), Some(Vec::new()));
        assert_eq!(decode_initial("a2F0ZQ=="), Some(b"kate".to_vec()));
        assert_eq!(decode_initial("a2F0ZQ"), None, "padding is required");
        assert_eq!(decode_initial("!!"), None);
    }

    #[tokio::test]
    async fn auth_plain_and_login_check_the_users() {
        let plain = |s: &str| BASE64.encode(s);
        let input = format!(
            "EHLO a\r\nMAIL FROM:<>\r\nAUTH PLAIN {}\r\nAUTH PLAIN {}\r\nAUTH PLAIN {}\r\nAUTH PLAIN\r\n{}\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN {}\r\nAUTH LOGIN\r\n{}\r\n{}\r\nAUTH LOGIN {}\r\n\r\nRSET\r\nAUTH PLAIN {}\r\nMAIL FROM:<>\r\nAUTH PLAIN {}\r\n",
            plain("\0chris@contoso.com\0wrong"),
            plain("kate\0chris@contoso.com\0Pa55w.rd"),
            plain("no NULs"),
            plain("\0chris@contoso.com\0Pa55w.rd\0"),
            plain("\0\0"),
            plain("chris@contoso.com"),
            plain("pa55w.rd"),
            plain("KATE"),
            plain("\0chris@contoso.com\0Pa55w.rd"),
            plain("\0kate\0"),
        );
        let got = replies(USERS, &input).await;
        assert_eq!(
            got,
            [
                "250-h Hello [127.0.0.1]",
                "250 AUTH PLAIN LOGIN",
                "530 5.7.1 Client was not authenticated",
                "535 5.7.8 Authentication credentials invalid",
                "535 5.7.8 Authentication credentials invalid",
                "535 5.7.8 Authentication credentials invalid",
                "334 ",
                "535 5.7.8 Authentication credentials invalid",
                "334 ",
                "501 5.0.0 Authentication cancelled",
                "535 5.7.8 Authentication credentials invalid",
                "334 VXNlcm5hbWU6",
                "334 UGFzc3dvcmQ6",
                "535 5.7.8 Authentication credentials invalid",
                "334 UGFzc3dvcmQ6",
                "235 2.7.0 Authentication successful",
                "250 2.0.0 Resetting",
                "503 5.5.1 Already authenticated",
                "250 2.1.0 Sender OK",
                "503 5.5.1 Already authenticated",
            ]
        );
        let authz = format!(
            "EHLO a\r\nAUTH PLAIN {}\r\n",
            plain("CHRIS@contoso.COM\0chris@contoso.com\0Pa55w.rd")
        );
        let got = replies(USERS, &authz).await;
        assert_eq!(
            got[2], "235 2.7.0 Authentication successful",
            "an authorization identity that is the username"
        );
    }

    #[tokio::test]
    async fn auth_is_refused_out_of_place() {
        let got = replies(
            USERS,
            "AUTH PLAIN\r\nEHLO a\r\nAUTH\r\nAUTH PLAIN x y\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\nAUTH LOGIN\r\nnot base64\r\nAUTH LOGIN =\r\n*\r\n",
        )
        .await;
        assert_eq!(
            got,
            [
                "503 5.5.2 Send hello first",
                "250-h Hello [127.0.0.1]",
                "250 AUTH PLAIN LOGIN",
                "501 5.5.4 Invalid arguments",
                "501 5.5.4 Invalid arguments",
                "504 5.5.4 Unrecognized authentication type",
                "501 5.5.2 Cannot decode response",
                "334 VXNlcm5hbWU6",
                "501 5.5.2 Cannot decode response",
                "334 UGFzc3dvcmQ6",
                "501 5.0.0 Authentication cancelled",
            ]
        );
        let no_users = replies(
            "name: t\nhostname: h\n",
            "EHLO a\r\nAUTH PLAIN =\r\nSTARTTLS\r\n",
        )
        .await;
        assert_eq!(
            no_users,
            [
                "250 h Hello [127.0.0.1]",
                "500 5.3.3 Unrecognized command",
                "454 4.7.0 TLS not available"
            ]
        );
        let clear = replies(
            "name: t\nhostname: h\nusers: [{ username: a, password: b }]\n",
            "EHLO a\r\nAUTH LOGIN\r\nAUTH NTLM\r\n",
        )
        .await;
        assert_eq!(
            clear,
            [
                "250 h Hello [127.0.0.1]",
                "538 5.7.11 Encryption required for requested authentication mechanism",
                "504 5.5.4 Unrecognized authentication type",
            ]
        );
    }

    #[tokio::test]
    async fn auth_faults_apply_to_every_reply_of_the_exchange() {
        let persona = format!(
            "{USERS}faults:\n  - {{ command: AUTH, nth: 2, reply: '454 4.7.0 Temporary authentication failure' }}\n"
        );
        let got = replies(
            &persona,
            "EHLO a\r\nAUTH LOGIN\r\nY2hyaXNAY29udG9zby5jb20=\r\nNOOP\r\nAUTH LOGIN Y2hyaXNAY29udG9zby5jb20=\r\nUGE1NXcucmQ=\r\n",
        )
        .await;
        assert_eq!(
            got,
            [
                "250-h Hello [127.0.0.1]",
                "250 AUTH PLAIN LOGIN",
                "334 VXNlcm5hbWU6",
                "454 4.7.0 Temporary authentication failure",
                "250 2.0.0 OK",
                "334 UGFzc3dvcmQ6",
                "235 2.7.0 Authentication successful",
            ]
        );
    }

    fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"EHLO x\r\n".to_vec()),
            Just(b"AUTH PLAIN\r\n".to_vec()),
            Just(b"AUTH LOGIN dXNlcg==\r\n".to_vec()),
            Just(b"STARTTLS\r\n".to_vec()),
            Just(b"*\r\n".to_vec()),
            Just(b"MAIL FROM:<a@b.c> SIZE=5\r\n".to_vec()),
            Just(b"RCPT TO:<kate@fabrikam.com>\r\n".to_vec()),
            Just(b"RCPT TO:<x@y.z>\r\n".to_vec()),
            Just(b"DATA\r\n".to_vec()),
            Just(b".\r\n".to_vec()),
            Just(b"BDAT 3\r\n".to_vec()),
            Just(b"BDAT 2 LAST\r\n".to_vec()),
            Just(b"RSET\r\n".to_vec()),
            Just(b"\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(Just(b'A'), 2000..2100),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_input_gets_well_formed_replies_and_an_end(input in hostile_input()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let persona = Persona::from_yaml_str(
                "name: t\nhostname: h\nmax_size: 10\nrecipients: [kate@fabrikam.com]\ncapabilities: [CHUNKING]\nusers: [{ username: user, password: p }]\nauth_over_plaintext: true\n",
            )
            .unwrap();
            let out = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), session_output(persona, input)).await
            });
            let out = out.expect("the session ends when the input does");
            let text = String::from_utf8(out).expect("replies are UTF-8");
            prop_assert!(text.ends_with("\r\n"));
            for line in text.split_terminator("\r\n") {
                let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
                prop_assert!(matches!(code, Some(200..=599)), "{line:?}");
                prop_assert!(matches!(line.as_bytes().get(3), None | Some(b' ' | b'-')), "{line:?}");
            }
        }
    }
}
