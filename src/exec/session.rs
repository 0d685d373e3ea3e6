//! One SMTP session: a plan test run against one target. Runs the steps in order,
//! judges every reply against its expectation, keeps the transcript, and turns
//! whatever happens into an [`Outcome`]. Every network wait has a named timeout.

use super::job::Job;
use crate::dns::AddressError;
use crate::plan::model::{
    Action, AuthMechanism, CertCheck, Content, Message, Notify, NotifyOn, ProxyProtocol, Step,
    TlsMode, TlsVersion,
};
use crate::plan::pattern::{ConnectOutcome, Expect, Pattern};
use crate::plan::vars::{Piece, RunVar, Template};
use crate::result::{CaseResult, Direction, ErrorKind, Outcome, Transcript};
use crate::smtp::command;
use crate::smtp::connection::{Connection, ReadError, Stream};
use crate::smtp::reply::{escape, Reply};
use crate::smtp::{auth, tls};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};

/// How long the best-effort QUIT after a failure may take, sending and reading
/// together: a server that just broke the session rarely answers it.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// Why a step did not pass.
enum Stop {
    /// An expectation did not match.
    Fail(String),
    /// The session broke.
    Error(ErrorKind, String),
}

type StepResult = Result<(), Stop>;

/// A session in progress.
struct Session<'j> {
    job: &'j Job,
    start: Instant,
    transcript: Transcript,
    conn: Option<Connection>,
    address: Option<SocketAddr>,
    /// The host connected to (an MX host, for domains).
    host: String,
    captures: HashMap<String, String>,
    /// EHLO keywords of the last EHLO reply, upper case.
    capabilities: Vec<String>,
    /// Envelope recipients and sender of the current transaction (for default headers).
    sender: Option<String>,
    recipients: Vec<String>,
    messages: usize,
    /// The code of the last reply judged.
    last_code: Option<u16>,
    /// Whether the connection is TLS now.
    secure: bool,
    /// TLS facts of the session, reported whatever the transcript setting.
    facts: Vec<String>,
}

/// Runs the job's test against its target and reports the case, and whether the
/// trouble (if any) may be transient (a 4xx reply or a network error).
pub async fn run(job: &Job) -> (CaseResult, bool) {
    let mut s = Session {
        job,
        start: Instant::now(),
        transcript: Transcript::default(),
        conn: None,
        address: None,
        host: job.hosts.first().cloned().unwrap_or_default(),
        captures: HashMap::new(),
        capabilities: Vec::new(),
        sender: None,
        recipients: Vec::new(),
        messages: 0,
        last_code: None,
        secure: false,
        facts: Vec::new(),
    };
    let limit = job.settings.session;
    let steps = tokio::select! {
        r = tokio::time::timeout(limit, s.steps()) => Some(r),
        () = job.context.cancelled() => None,
    };
    let Some(steps) = steps else {
        s.note(Direction::Note, "interrupted");
        s.quit_quietly().await;
        let case = CaseResult {
            name: job.name.clone(),
            classname: job.classname.clone(),
            duration: s.start.elapsed(),
            outcome: Outcome::Skipped {
                message: "interrupted while running".into(),
            },
            transcript: s.transcript,
            facts: s.facts,
        };
        return (case, false);
    };
    let outcome = match steps {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(Stop::Fail(message))) => Outcome::Failed {
            message: s.mask(&message),
        },
        Ok(Err(Stop::Error(kind, message))) => Outcome::Errored {
            kind,
            message: s.mask(&message),
        },
        Err(_) => Outcome::Errored {
            kind: ErrorKind::Timeout,
            message: format!("session timeout after {} (phase session)", human(limit)),
        },
    };
    if outcome != Outcome::Passed && s.conn.is_some() {
        s.quit_quietly().await;
    }
    let transient = super::transient(&outcome, s.last_code);
    let case = CaseResult {
        name: job.name.clone(),
        classname: job.classname.clone(),
        duration: s.start.elapsed(),
        outcome,
        transcript: s.transcript,
        facts: s.facts,
    };
    (case, transient)
}

/// `10s`, `1m 30s`, `250ms`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Awaits `fut` for at most `limit`, naming the phase when it runs out.
async fn timed<T>(
    limit: Duration,
    phase: &str,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, Stop> {
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        Stop::Error(
            ErrorKind::Timeout,
            format!("{phase} timeout after {} while {what}", human(limit)),
        )
    })
}

impl Session<'_> {
    fn mask(&self, text: &str) -> String {
        crate::result::mask(text, &self.job.plan.secrets)
    }

    fn note(&mut self, direction: Direction, text: &str) {
        let at = self.start.elapsed();
        self.transcript
            .push(at, direction, text, &self.job.plan.secrets);
    }

    fn test_steps(&self) -> &[Step] {
        &self.job.plan.tests[self.job.test].steps
    }

    async fn steps(&mut self) -> StepResult {
        let steps = self.test_steps();
        let implicit_connect = !matches!(
            steps.first().map(|s| &s.action),
            Some(Action::Connect { .. })
        );
        let ends_with_quit = matches!(steps.last().map(|s| &s.action), Some(Action::Quit));
        let mut number = 0;
        if implicit_connect {
            self.connect(&Expect::code("220"), None, None, None)
                .await
                .map_err(|e| prefix(e, 0, "connect"))?;
        }
        for i in 0..self.test_steps().len() {
            number += 1;
            let step = &self.job.plan.tests[self.job.test].steps[i];
            let verb = step.action.verb();
            let label = match &step.name {
                Some(n) => format!("{verb} ({n})"),
                None => verb.to_string(),
            };
            self.step(step)
                .await
                .map_err(|e| prefix(e, number, &label))?;
        }
        if !ends_with_quit && self.conn.is_some() {
            // The implicit QUIT is not judged (spec section 6).
            self.quit_quietly().await;
        }
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> StepResult {
        let started = Instant::now();
        let reply = match &step.action {
            Action::Connect { cert } => {
                return self
                    .connect(&step.expect, step.within, step.timeout, cert.as_ref())
                    .await
            }
            Action::Pipeline(inner) => return self.pipeline(inner).await,
            Action::Data(m) => return self.data(step, m).await,
            Action::Bdat {
                message,
                chunk_size,
            } => return self.bdat(step, message, *chunk_size).await,
            Action::StartTls { .. } => return self.starttls(step).await,
            Action::Auth { .. } => return self.auth(step).await,
            _ => {
                let cmd = self.command_text(&step.action)?;
                self.send_line(&cmd).await?;
                self.reply(step.timeout, "reply", &cmd).await?
            }
        };
        self.judge(step, &reply, started.elapsed())?;
        match &step.action {
            Action::Ehlo {
                capabilities,
                absent,
                ..
            } => self.check_capabilities(&reply, capabilities, absent)?,
            Action::Quit => self.close().await,
            Action::Rset => {
                self.sender = None;
                self.recipients.clear();
            }
            _ => {}
        }
        Ok(())
    }

    /// The command a simple step sends.
    fn command_text(&mut self, action: &Action) -> Result<String, Stop> {
        Ok(match action {
            Action::Ehlo { name, .. } => format!("EHLO {}", self.helo_name(name)?),
            Action::Helo { name } => format!("HELO {}", self.helo_name(name)?),
            Action::MailFrom { address, params } => {
                let a = self.render(address)?;
                let params = self.render_all(params)?;
                self.sender = Some(a.clone());
                self.recipients.clear();
                command::mail_from(&a, &params)
            }
            Action::RcptTo {
                address,
                notify,
                orcpt,
                params,
            } => {
                let a = self.render(address)?;
                let notify = notify.as_ref().map(notify_value);
                let orcpt = orcpt.as_ref().map(|o| self.render(o)).transpose()?;
                let params = self.render_all(params)?;
                self.recipients.push(a.clone());
                command::rcpt_to(&a, notify.as_deref(), orcpt.as_deref(), &params)
            }
            Action::Rset => "RSET".into(),
            Action::Noop => "NOOP".into(),
            Action::Quit => "QUIT".into(),
            Action::Vrfy(t) => format!("VRFY {}", self.render(t)?),
            Action::Expn(t) => format!("EXPN {}", self.render(t)?),
            Action::Send(t) => self.render(t)?,
            Action::Data(_) => "DATA".into(),
            Action::Connect { .. }
            | Action::StartTls { .. }
            | Action::Auth { .. }
            | Action::Bdat { .. }
            | Action::Pipeline(_) => {
                return Err(Stop::Error(
                    ErrorKind::Protocol,
                    format!("`{}` cannot be sent as one command", action.verb()),
                ))
            }
        })
    }

    fn helo_name(&mut self, name: &Option<Template>) -> Result<String, Stop> {
        match name {
            Some(t) => self.render(t),
            None => Ok(self.job.settings.helo.clone()),
        }
    }

    /// Fills the run-time variables of a template.
    fn render(&self, t: &Template) -> Result<String, Stop> {
        let mut out = String::new();
        for p in &t.pieces {
            match p {
                Piece::Lit(s) | Piece::Env { value: s, .. } => out.push_str(s),
                Piece::Run(v) => out.push_str(&match v {
                    RunVar::TargetHost => self.host.clone(),
                    RunVar::TargetDomain => self.job.domain.clone().unwrap_or_default(),
                    RunVar::TargetPort => self.job.port.to_string(),
                    RunVar::TargetAddress => {
                        self.address.map(|a| a.ip().to_string()).unwrap_or_default()
                    }
                    RunVar::TestName => self.job.plan.tests[self.job.test].name.clone(),
                    RunVar::RunId => self.job.context.run_id.to_string(),
                    RunVar::SettingsHelo => self.job.settings.helo.clone(),
                    RunVar::Capture(c) => self.captures.get(c).cloned().unwrap_or_default(),
                }),
            }
        }
        Ok(out)
    }

    fn render_all(&self, ts: &[Template]) -> Result<Vec<String>, Stop> {
        ts.iter().map(|t| self.render(t)).collect()
    }

    fn conn(&mut self) -> Result<&mut Connection, Stop> {
        self.conn
            .as_mut()
            .ok_or_else(|| Stop::Error(ErrorKind::Protocol, "the connection is closed".into()))
    }

    async fn send_line(&mut self, text: &str) -> StepResult {
        let bytes = command::line(text).map_err(|e| Stop::Error(ErrorKind::Protocol, e))?;
        self.note(Direction::Client, &escape(text.as_bytes()));
        self.send_bytes(&bytes, self.job.settings.reply, "sending the command")
            .await
    }

    async fn send_bytes(&mut self, bytes: &[u8], limit: Duration, what: &str) -> StepResult {
        let phase = if what.contains("message") {
            "data"
        } else {
            "reply"
        };
        let conn = self.conn()?;
        match timed(limit, phase, what, conn.send(bytes)).await? {
            Ok(()) => Ok(()),
            Err(e) => {
                self.conn = None;
                Err(Stop::Error(
                    ErrorKind::Protocol,
                    format!("connection lost while {what}: {e}"),
                ))
            }
        }
    }

    /// Reads one reply within the step's timeout (or the phase default), noting it.
    async fn reply(
        &mut self,
        step_timeout: Option<Duration>,
        phase: &str,
        after: &str,
    ) -> Result<Reply, Stop> {
        let limit = step_timeout.unwrap_or(match phase {
            "data" => self.job.settings.data,
            _ => self.job.settings.reply,
        });
        let what = format!("waiting for the reply to {}", first_word(after));
        let conn = self.conn()?;
        let read = timed(limit, phase, &what, conn.read_reply()).await?;
        match read {
            Ok(r) => {
                self.note_reply(&r);
                Ok(r)
            }
            Err(e) => Err(self.read_failed(e, &what)),
        }
    }

    fn note_reply(&mut self, r: &Reply) {
        let code = r.code;
        let n = r.lines.len();
        for (i, line) in r.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            self.note(Direction::Server, &format!("{code}{sep}{}", escape(line)));
        }
        for v in &r.violations {
            self.note(Direction::Note, &format!("protocol violation: {v}"));
        }
    }

    fn read_failed(&mut self, e: ReadError, what: &str) -> Stop {
        self.conn = None;
        match e {
            ReadError::Io(e) => Stop::Error(
                ErrorKind::Protocol,
                format!("connection lost while {what}: {e}"),
            ),
            ReadError::Closed { partial: None } => {
                self.note(Direction::Note, "connection closed by the server");
                Stop::Error(
                    ErrorKind::Protocol,
                    format!("connection closed by the server while {what}"),
                )
            }
            ReadError::Closed {
                partial: Some(bytes),
            } => {
                let shown = escape(&bytes[..bytes.len().min(512)]);
                self.note(Direction::Server, &shown);
                self.note(
                    Direction::Note,
                    "connection closed by the server in the middle of a reply",
                );
                Stop::Error(ErrorKind::Protocol, format!("connection closed in the middle of a reply while {what}; received: {shown}"))
            }
            ReadError::Protocol(p) => {
                self.note(Direction::Note, &format!("protocol error: {p}"));
                Stop::Error(ErrorKind::Protocol, format!("{p} (while {what})"))
            }
        }
    }

    /// Judges a reply against the step's expectation, latency bound and captures.
    fn judge(&mut self, step: &Step, reply: &Reply, took: Duration) -> StepResult {
        self.last_code = Some(reply.code);
        if !step
            .expect
            .matches(reply.code, reply.enhanced, &reply.text())
        {
            return Err(Stop::Fail(format!(
                "expected {}, got {}",
                step.expect,
                reply.summary()
            )));
        }
        if let Some(limit) = step.within {
            if took > limit {
                return Err(Stop::Fail(format!(
                    "reply took {}, more than `within: {}` ({})",
                    human(Duration::from_millis(took.as_millis() as u64)),
                    human(limit),
                    reply.summary()
                )));
            }
        }
        let text = reply.text();
        for c in &step.capture {
            let Some(m) = c.regex.captures(&text) else {
                return Err(Stop::Fail(format!(
                    "capture `{}`: /{}/ does not match {}",
                    c.name,
                    c.regex.as_str(),
                    reply.summary()
                )));
            };
            let value = m
                .get(1)
                .or_else(|| m.get(0))
                .map_or("", |g| g.as_str())
                .to_string();
            self.note(Direction::Note, &format!("captured {} = {value}", c.name));
            self.captures.insert(c.name.clone(), value);
        }
        Ok(())
    }

    fn check_capabilities(
        &mut self,
        reply: &Reply,
        want: &[String],
        absent: &[String],
    ) -> StepResult {
        // RFC 5321 4.1.1.1: the first line is the greeting; each later line starts with a keyword.
        self.capabilities = reply
            .lines
            .iter()
            .skip(1)
            .map(|l| String::from_utf8_lossy(l).trim().to_ascii_uppercase())
            .collect();
        let has = |c: &str| {
            let c = c.to_ascii_uppercase();
            self.capabilities.iter().any(|line| {
                *line == c
                    || line.split_whitespace().next() == Some(c.as_str())
                    || line.starts_with(&format!("{c} "))
            })
        };
        let offered = || {
            let words: Vec<&str> = self
                .capabilities
                .iter()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if words.is_empty() {
                "nothing".to_string()
            } else {
                words.join(", ")
            }
        };
        if let Some(missing) = want.iter().find(|c| !has(c)) {
            return Err(Stop::Fail(format!(
                "capability {missing} is not advertised (the server offers {})",
                offered()
            )));
        }
        if let Some(present) = absent.iter().find(|c| has(c)) {
            return Err(Stop::Fail(format!(
                "capability {present} is advertised but must be absent"
            )));
        }
        Ok(())
    }

    /// Opens the connection (trying each address in turn) and reads the greeting.
    async fn connect(
        &mut self,
        expect: &Expect,
        within: Option<Duration>,
        timeout: Option<Duration>,
        cert: Option<&CertCheck>,
    ) -> StepResult {
        // A new connection: nothing of an earlier one (TLS, capabilities) holds.
        self.secure = false;
        self.capabilities.clear();
        let outcomes: Vec<ConnectOutcome> = expect
            .any
            .iter()
            .filter_map(|p| match p {
                Pattern::Connect(o) => Some(*o),
                _ => None,
            })
            .collect();
        let started = Instant::now();
        let stream = match self.open().await {
            Ok(s) => s,
            Err((kind, outcome, message)) => {
                return match outcome {
                    Some(o) if outcomes.contains(&o) => Ok(()),
                    _ if !outcomes.is_empty() => {
                        Err(Stop::Fail(format!("expected {expect}, got: {message}")))
                    }
                    _ => Err(Stop::Error(kind, message)),
                };
            }
        };
        let mut stream = stream;
        if let Some(version) = self.job.settings.proxy_protocol {
            let (Ok(src), Ok(dst)) = (stream.local_addr(), stream.peer_addr()) else {
                return Err(Stop::Error(
                    ErrorKind::Connect,
                    "the connection has no addresses for the PROXY header".into(),
                ));
            };
            let header = command::proxy_header(version == ProxyProtocol::V2, src, dst);
            self.note(
                Direction::Note,
                &format!("PROXY protocol {version:?} header: {src} -> {dst}"),
            );
            let limit = self.job.settings.connect;
            let sent = timed(
                limit,
                "connect",
                "sending the PROXY header",
                tokio::io::AsyncWriteExt::write_all(&mut stream, &header),
            )
            .await?;
            sent.map_err(|e| {
                Stop::Error(ErrorKind::Connect, format!("sending the PROXY header: {e}"))
            })?;
        }
        self.after_open(
            Box::new(stream),
            expect,
            within,
            timeout,
            cert,
            started,
            &outcomes,
        )
        .await
    }

    /// The rest of `connect` once TCP is open: implicit TLS, then the greeting.
    #[allow(clippy::too_many_arguments)]
    async fn after_open(
        &mut self,
        stream: Box<dyn Stream>,
        expect: &Expect,
        within: Option<Duration>,
        timeout: Option<Duration>,
        cert: Option<&CertCheck>,
        started: Instant,
        outcomes: &[ConnectOutcome],
    ) -> StepResult {
        let stream = match self.job.settings.tls {
            TlsMode::None => stream,
            // RFC 8314: TLS from the first byte; the handshake counts against the connect timeout.
            TlsMode::Implicit => {
                let params = self.tls_params(None, None, None, false);
                let limit = self.job.settings.connect;
                let done = timed(
                    limit,
                    "connect",
                    "during the TLS handshake",
                    tls::handshake(stream, &params),
                )
                .await?;
                self.tls_done(done, cert)?
            }
        };
        self.conn = Some(Connection::new(stream));
        let limit = timeout.unwrap_or(self.job.settings.reply);
        let conn = self.conn()?;
        let greeting = timed(
            limit,
            "greeting",
            "waiting for the server's greeting",
            conn.read_reply(),
        )
        .await;
        let reply = match greeting {
            Err(stop) if outcomes.contains(&ConnectOutcome::Timeout) => {
                drop(stop);
                self.close().await;
                return Ok(());
            }
            Err(stop) => return Err(stop),
            Ok(Ok(r)) => r,
            Ok(Err(ReadError::Closed { partial: None }))
                if outcomes.contains(&ConnectOutcome::Closed) =>
            {
                self.note(
                    Direction::Note,
                    "connection closed by the server before a greeting",
                );
                self.conn = None;
                return Ok(());
            }
            Ok(Err(e)) => return Err(self.read_failed(e, "waiting for the server's greeting")),
        };
        self.note_reply(&reply);
        if !outcomes.is_empty() && !expect.matches(reply.code, reply.enhanced, &reply.text()) {
            return Err(Stop::Fail(format!(
                "expected {expect}, got {}",
                reply.summary()
            )));
        }
        let step = Step {
            name: None,
            action: Action::Connect { cert: None },
            expect: expect.clone(),
            timeout: None,
            within,
            capture: Vec::new(),
        };
        self.judge(&step, &reply, started.elapsed())
    }

    /// The addresses to try for `host`: a `--connect-to` rule, the responder's
    /// address, or the resolver's answer. (A function of the job, not of the
    /// session: the session is not `Sync`, so it is not borrowed across the lookup.)
    async fn addresses_of(job: &Job, host: &str) -> Result<Vec<SocketAddr>, (bool, String)> {
        if let Some(rule) = job.context.redirect(host) {
            return Ok(vec![SocketAddr::new(
                rule.ip,
                rule.port.unwrap_or(job.port),
            )]);
        }
        if let Some(a) = job.fixed_addr {
            return Ok(vec![a]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, job.port)]);
        }
        let dns = job.context.dns.as_ref().map_err(|e| (true, e.clone()))?;
        match dns.addresses(host, job.settings.ip).await {
            Ok(ips) => Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, job.port))
                .collect()),
            Err(AddressError::None(m)) => Err((false, m)),
            Err(AddressError::Failed(f)) => Err((true, f.to_string())),
        }
    }

    /// Connects to the first of the job's hosts (MX hosts in order) that accepts,
    /// trying each of a host's addresses within the connect timeout. On failure:
    /// the error kind, the connect outcome it amounts to, and a message that
    /// lists every host and address tried.
    async fn open(&mut self) -> Result<TcpStream, (ErrorKind, Option<ConnectOutcome>, String)> {
        let job = self.job;
        let mut tried = Vec::new();
        let mut last: Option<Option<ConnectOutcome>> = None;
        let mut dns_failed = false;
        for host in &job.hosts {
            let addrs = match Self::addresses_of(job, host).await {
                Ok(a) => a,
                Err((failed, message)) => {
                    self.note(Direction::Note, &message);
                    dns_failed |= failed;
                    tried.push(message);
                    continue;
                }
            };
            for addr in addrs {
                let label = if host.parse::<std::net::IpAddr>().is_ok() {
                    addr.to_string()
                } else {
                    format!("{host} {addr}")
                };
                self.note(Direction::Note, &format!("connecting to {label}"));
                let attempt = tokio::time::timeout(
                    job.settings.connect,
                    connect_from(addr, job.settings.source_address),
                )
                .await;
                match attempt {
                    Ok(Ok(s)) => {
                        self.address = Some(addr);
                        self.host.clone_from(host);
                        self.note(Direction::Note, &format!("connected to {addr}"));
                        return Ok(s);
                    }
                    Ok(Err(e)) => {
                        let outcome = (e.kind() == std::io::ErrorKind::ConnectionRefused)
                            .then_some(ConnectOutcome::Refused);
                        tried.push(format!("{label}: {e}"));
                        last = Some(outcome);
                    }
                    Err(_) => {
                        tried.push(format!(
                            "{label}: no answer within {} (phase connect)",
                            human(job.settings.connect)
                        ));
                        last = Some(Some(ConnectOutcome::Timeout));
                    }
                }
            }
        }
        let message = match (&job.domain, job.hosts.len(), tried.as_slice()) {
            (_, 1, [only]) => format!("cannot connect to {only}"),
            (Some(d), n, _) if n > 1 => format!(
                "no MX host of {d} accepted a connection: {}",
                tried.join("; ")
            ),
            _ => format!(
                "cannot connect to {}: {}",
                job.hosts.join(", "),
                tried.join("; ")
            ),
        };
        self.note(Direction::Note, &message);
        let outcome = last.flatten();
        let kind = match (last, outcome) {
            (None, _) => ErrorKind::Dns,
            (_, Some(ConnectOutcome::Timeout)) => ErrorKind::Timeout,
            _ if dns_failed && outcome.is_none() => ErrorKind::Dns,
            _ => ErrorKind::Connect,
        };
        Err((kind, outcome, message))
    }

    /// Handshake parameters: SNI and the name verified are the host connected
    /// to (kept by `--connect-to`) unless `sni` says otherwise.
    fn tls_params(
        &self,
        sni: Option<String>,
        verify: Option<bool>,
        ca_file: Option<&std::path::Path>,
        tls13_only: bool,
    ) -> tls::TlsParams {
        let s = &self.job.settings;
        tls::TlsParams {
            server_name: sni.unwrap_or_else(|| self.host.clone()),
            verify: verify.unwrap_or(s.tls_verify),
            ca_file: ca_file
                .map(std::path::Path::to_path_buf)
                .or_else(|| s.ca_file.clone()),
            tls13_only,
        }
    }

    /// Records a finished handshake and checks the certificate assertions.
    fn tls_done(
        &mut self,
        done: Result<(Box<dyn Stream>, tls::TlsFacts), String>,
        cert: Option<&CertCheck>,
    ) -> Result<Box<dyn Stream>, Stop> {
        let (stream, facts) = done.map_err(|e| {
            self.note(Direction::Note, &format!("TLS handshake failed: {e}"));
            Stop::Error(ErrorKind::Tls, format!("TLS handshake failed: {e}"))
        })?;
        for line in facts.lines() {
            self.note(Direction::Note, &line);
            self.facts.push(line);
        }
        self.secure = true;
        if let Some(c) = cert {
            let names: Vec<String> = c
                .names
                .iter()
                .map(|t| self.render(t))
                .collect::<Result<_, _>>()?;
            facts.check(c.valid_for_days, &names).map_err(Stop::Fail)?;
        }
        Ok(stream)
    }

    /// STARTTLS (RFC 3207): the 220, no bytes after it, the handshake, and a
    /// session that forgets what it learned before.
    async fn starttls(&mut self, step: &Step) -> StepResult {
        let Action::StartTls {
            verify,
            sni,
            min_version,
            ca_file,
            cert,
        } = &step.action
        else {
            unreachable!("called for starttls steps")
        };
        if self.secure {
            return Err(Stop::Error(
                ErrorKind::Tls,
                "the connection is already TLS; STARTTLS cannot be repeated (RFC 3207)".into(),
            ));
        }
        let started = Instant::now();
        self.send_line("STARTTLS").await?;
        let reply = self.reply(step.timeout, "reply", "STARTTLS").await?;
        self.judge(step, &reply, started.elapsed())?;
        if reply.code != 220 {
            // The plan expected this refusal (say `454`): no handshake.
            return Ok(());
        }
        let conn = self
            .conn
            .take()
            .ok_or_else(|| Stop::Error(ErrorKind::Protocol, "the connection is closed".into()))?;
        let extra = conn.buffered();
        if extra > 0 {
            // Bytes after the 220 were sent in plaintext and would be read as if
            // they came over TLS: the STARTTLS response injection (CVE-2011-0411 class).
            self.note(
                Direction::Note,
                &format!("{extra} bytes arrived after the 220 to STARTTLS, before the handshake"),
            );
            return Err(Stop::Error(
                ErrorKind::Tls,
                format!("the server sent {extra} bytes after its 220 to STARTTLS; refusing to start TLS (response injection)"),
            ));
        }
        let sni = sni.as_ref().map(|t| self.render(t)).transpose()?;
        let params = self.tls_params(
            sni,
            *verify,
            ca_file.as_deref(),
            *min_version == Some(TlsVersion::V1_3),
        );
        let limit = step.timeout.unwrap_or(self.job.settings.reply);
        let done = timed(
            limit,
            "reply",
            "during the TLS handshake",
            tls::handshake(conn.into_stream(), &params),
        )
        .await?;
        let stream = self.tls_done(done, cert.as_ref())?;
        self.conn = Some(Connection::new(stream));
        // RFC 3207 section 4.2: discard what was learned before TLS.
        self.capabilities.clear();
        self.sender = None;
        self.recipients.clear();
        Ok(())
    }

    /// AUTH (RFC 4954). The secret never reaches the transcript: every client
    /// line of the exchange is shown as `***`.
    async fn auth(&mut self, step: &Step) -> StepResult {
        let Action::Auth {
            mechanism,
            username,
            secret,
            allow_plaintext,
        } = &step.action
        else {
            unreachable!("called for auth steps")
        };
        if !self.secure && !allow_plaintext {
            // Validation saw a `starttls` before this step, but it did not end in
            // TLS (a refusal the plan accepted, or a new connection since).
            return Err(Stop::Error(
                ErrorKind::Tls,
                "refusing to send credentials: the connection is not TLS (say `allow_plaintext: true` to allow it)".into(),
            ));
        }
        let user = self.render(username)?;
        let pass = self.render(secret)?;
        let started = Instant::now();
        let (name, initial) = match mechanism {
            AuthMechanism::Plain => ("PLAIN", Some(auth::plain(&user, &pass))),
            AuthMechanism::Login => ("LOGIN", None),
            AuthMechanism::CramMd5 => ("CRAM-MD5", None),
            AuthMechanism::Xoauth2 => ("XOAUTH2", Some(auth::xoauth2(&user, &pass))),
        };
        let command = match &initial {
            Some(i) => format!("AUTH {name} {i}"),
            None => format!("AUTH {name}"),
        };
        let shown = if initial.is_some() {
            format!("AUTH {name} ***")
        } else {
            command.clone()
        };
        let mut reply = self.send_secret(&command, &shown, step).await?;
        let responses: Vec<String> = match mechanism {
            AuthMechanism::Login => vec![auth::b64(user.as_bytes()), auth::b64(pass.as_bytes())],
            _ => Vec::new(),
        };
        let mut queued = responses.into_iter();
        while reply.code == 334 {
            let answer = match mechanism {
                AuthMechanism::CramMd5 => {
                    let challenge = auth::unb64(&String::from_utf8_lossy(
                        reply.lines.first().map_or(&[][..], |l| l),
                    ))
                    .map_err(|e| Stop::Error(ErrorKind::Protocol, e))?;
                    auth::cram_md5(&user, &pass, &challenge)
                }
                // XOAUTH2 answers a failure with a 334 and a JSON error; the client
                // sends an empty line to get the final reply.
                AuthMechanism::Xoauth2 | AuthMechanism::Plain => String::new(),
                AuthMechanism::Login => match queued.next() {
                    Some(a) => a,
                    None => break,
                },
            };
            reply = self.send_secret(&answer, "***", step).await?;
            // CRAM-MD5, PLAIN and XOAUTH2 answer one challenge; another 334 is not
            // answered again (it would loop until the session timeout).
            if *mechanism != AuthMechanism::Login && reply.code == 334 {
                break;
            }
        }
        self.judge(step, &reply, started.elapsed())
    }

    /// Sends one line of an AUTH exchange, shown in the transcript as `shown`.
    async fn send_secret(&mut self, line: &str, shown: &str, step: &Step) -> Result<Reply, Stop> {
        let bytes = command::line(line).map_err(|e| Stop::Error(ErrorKind::Protocol, e))?;
        self.note(Direction::Client, shown);
        self.send_bytes(&bytes, self.job.settings.reply, "sending AUTH")
            .await?;
        self.reply(step.timeout, "reply", "AUTH").await
    }

    async fn data(&mut self, step: &Step, message: &Message) -> StepResult {
        let started = Instant::now();
        self.send_line("DATA").await?;
        let reply = self.reply(step.timeout, "reply", "DATA").await?;
        if reply.code != 354 {
            // Spec section 6: a reply to DATA other than 354 is judged against `expect`.
            return self.judge(step, &reply, started.elapsed());
        }
        self.send_message(step, message).await
    }

    async fn send_message(&mut self, step: &Step, message: &Message) -> StepResult {
        let started = Instant::now();
        let body = self.message_bytes(message)?;
        let payload = command::data_payload(&body);
        self.note_message(&payload);
        // One `data` bound for sending the message and getting its final reply.
        let limit = step.timeout.unwrap_or(self.job.settings.data);
        self.send_bytes(&payload, limit, "sending the message")
            .await?;
        let left = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let reply = self.reply(Some(left), "data", ".").await?;
        self.messages += 1;
        self.judge(step, &reply, started.elapsed())
    }

    /// Notes message data as it goes on the wire (dot-stuffed, ending in `.`),
    /// its first 40 lines and a count of the rest.
    fn note_message(&mut self, payload: &[u8]) {
        let text = payload.strip_suffix(b"\r\n").unwrap_or(payload);
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        let shown = lines.len().min(40);
        for l in &lines[..shown] {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            self.note(Direction::Client, &escape(l));
        }
        if lines.len() > shown {
            self.note(
                Direction::Note,
                &format!(
                    "... {} more lines of message data ({} bytes in all)",
                    lines.len() - shown,
                    payload.len()
                ),
            );
            self.note(Direction::Client, ".");
        }
    }

    /// The message as bytes, default headers added, padded to `size`.
    fn message_bytes(&mut self, m: &Message) -> Result<Vec<u8>, Stop> {
        let text = match &m.content {
            Content::Raw(t) => self.render(t)?,
            Content::Parts { headers, body } => {
                let mut given: Vec<(String, String)> = Vec::new();
                for (name, value) in headers {
                    given.push((name.clone(), self.render(value)?));
                }
                let has = |n: &str| given.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
                let mut defaults = Vec::new();
                let sender = self
                    .sender
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("postmaster@{}", self.job.settings.helo));
                if !has("From") {
                    defaults.push(("From".to_string(), format!("<{sender}>")));
                }
                if !has("To") {
                    let to: Vec<String> =
                        self.recipients.iter().map(|r| format!("<{r}>")).collect();
                    defaults.push((
                        "To".into(),
                        if to.is_empty() {
                            "undisclosed-recipients:;".into()
                        } else {
                            to.join(", ")
                        },
                    ));
                }
                if !has("Date") {
                    defaults.push((
                        "Date".into(),
                        crate::date::rfc5322(std::time::SystemTime::now()),
                    ));
                }
                if !has("Message-ID") {
                    defaults.push((
                        "Message-ID".into(),
                        format!(
                            "<{}.{}.{}@{}>",
                            self.job.context.run_id,
                            self.job.index,
                            self.messages,
                            self.job.settings.helo
                        ),
                    ));
                }
                if !has("Subject") {
                    defaults.push((
                        "Subject".into(),
                        format!("smtp-plan: {}", self.job.plan.tests[self.job.test].name),
                    ));
                }
                let mut text = String::new();
                for (k, v) in given.iter().chain(&defaults) {
                    text.push_str(&format!("{k}: {v}\r\n"));
                }
                text.push_str("\r\n");
                text.push_str(&self.render(body)?);
                text
            }
        };
        let mut bytes = command::normalise(text.as_bytes());
        if let Some(size) = m.size {
            command::pad(&mut bytes, size);
        }
        Ok(bytes)
    }

    async fn bdat(
        &mut self,
        step: &Step,
        message: &Message,
        chunk_size: Option<u64>,
    ) -> StepResult {
        let body = self.message_bytes(message)?;
        let size = chunk_size.map_or(body.len().max(1), |c| {
            usize::try_from(c).unwrap_or(usize::MAX)
        });
        let chunks: Vec<&[u8]> = if body.is_empty() {
            vec![&body[..]]
        } else {
            body.chunks(size).collect()
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let started = Instant::now();
            let last = if i + 1 == n { " LAST" } else { "" };
            let cmd = format!("BDAT {}{last}", chunk.len());
            self.note(Direction::Client, &cmd);
            self.note(
                Direction::Note,
                &format!("({} bytes of message data)", chunk.len()),
            );
            let mut bytes = command::line(&cmd).map_err(|e| Stop::Error(ErrorKind::Protocol, e))?;
            bytes.extend_from_slice(chunk);
            let limit = step.timeout.unwrap_or(self.job.settings.data);
            self.send_bytes(&bytes, limit, "sending the message")
                .await?;
            let reply = self.reply(step.timeout, "data", "BDAT").await?;
            self.judge(step, &reply, started.elapsed())?;
        }
        self.messages += 1;
        Ok(())
    }

    /// RFC 2920: the commands go out in one write; replies are judged in order.
    async fn pipeline(&mut self, inner: &[Step]) -> StepResult {
        let mut batch = Vec::new();
        let mut texts = Vec::new();
        for step in inner {
            let text = match &step.action {
                Action::Bdat { .. } => {
                    return Err(Stop::Error(
                        ErrorKind::Protocol,
                        "`bdat` inside `pipeline` is not supported; put it after the pipeline"
                            .into(),
                    ))
                }
                a => self.command_text(a)?,
            };
            batch.extend(command::line(&text).map_err(|e| Stop::Error(ErrorKind::Protocol, e))?);
            self.note(Direction::Client, &escape(text.as_bytes()));
            texts.push(text);
        }
        self.send_bytes(
            &batch,
            self.job.settings.reply,
            "sending the pipelined commands",
        )
        .await?;
        let started = Instant::now();
        for (i, (step, text)) in inner.iter().zip(&texts).enumerate() {
            let reply = self.reply(step.timeout, "reply", text).await?;
            let result = match &step.action {
                Action::Data(m) if reply.code == 354 => self.send_message(step, m).await,
                _ => self.judge(step, &reply, started.elapsed()),
            };
            result.map_err(|e| match e {
                Stop::Fail(m) => {
                    Stop::Fail(format!("command {} ({}): {m}", i + 1, step.action.verb()))
                }
                Stop::Error(k, m) => Stop::Error(
                    k,
                    format!("command {} ({}): {m}", i + 1, step.action.verb()),
                ),
            })?;
            if matches!(step.action, Action::Quit) {
                self.close().await;
            }
        }
        Ok(())
    }

    /// Closes the connection; bounded, since a TLS close flushes and a peer that
    /// stopped reading would hold it forever.
    async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(QUIT_GRACE, c.shutdown()).await;
        }
    }

    /// Best effort QUIT with a short timeout, then close.
    async fn quit_quietly(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let exchange = async {
            let reply = match conn.send(b"QUIT\r\n").await {
                Ok(()) => conn.read_reply().await.ok(),
                Err(_) => None,
            };
            conn.shutdown().await;
            reply
        };
        let reply = tokio::time::timeout(QUIT_GRACE, exchange).await;
        self.note(Direction::Client, "QUIT");
        if let Ok(Some(r)) = reply {
            self.note_reply(&r);
        }
    }
}

async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn notify_value(n: &Notify) -> String {
    match n {
        Notify::Never => "NEVER".into(),
        Notify::On(list) => list
            .iter()
            .map(|o| match o {
                NotifyOn::Success => "SUCCESS",
                NotifyOn::Failure => "FAILURE",
                NotifyOn::Delay => "DELAY",
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn first_word(cmd: &str) -> String {
    let w = cmd.split_whitespace().next().unwrap_or(cmd);
    match w.to_ascii_uppercase().as_str() {
        "." => "the message".to_string(),
        "MAIL" | "RCPT" => cmd.split(':').next().unwrap_or(w).to_ascii_uppercase(),
        _ => w.to_string(),
    }
}

/// Puts `step N verb: ` in front of a stop's message.
fn prefix(stop: Stop, number: usize, verb: &str) -> Stop {
    let at = if number == 0 {
        "implicit connect".to_string()
    } else {
        format!("step {number} {verb}")
    };
    match stop {
        Stop::Fail(m) => Stop::Fail(format!("{at}: {m}")),
        Stop::Error(k, m) => Stop::Error(k, format!("{at}: {m}")),
    }
}
