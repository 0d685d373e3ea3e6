//! The checked plan: what `validate` produces and everything after it consumes.
//! Durations are parsed, patterns compiled, variables expanded (run-time ones left
//! as template holes), targets of `file:` lists read, and every test points at the
//! targets it runs on.

use super::pattern::Expect;
pub use super::raw::{AuthMechanism, ExpectMx, IpFamily, MxMode, ProxyProtocol, TlsMode};
use super::vars::Template;
use regex::Regex;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file as the user named it.
    pub file: PathBuf,
    /// The plan's name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Top-level settings.
    pub settings: Settings,
    /// Every target: the top-level ones first, then those that tests define.
    pub targets: Vec<Target>,
    /// The tests, in plan order.
    pub tests: Vec<Test>,
    /// Values to mask in every output (passwords, tokens, environment values used in `auth`).
    pub secrets: Vec<String>,
}

/// Top-level settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Per-session defaults.
    pub session: SessionSettings,
    /// Sessions open at once across the run (None: the default).
    pub concurrency: Option<u32>,
    /// Sessions open at once to one IP address (None: the default).
    pub per_host: Option<u32>,
    /// DNS settings.
    pub resolver: ResolverSettings,
}

/// Per-session settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub struct SessionSettings {
    /// EHLO/HELO name.
    pub helo: Option<Template>,
    /// TCP port.
    pub port: Option<u16>,
    /// TLS mode.
    pub tls: Option<TlsMode>,
    /// Verify certificates.
    pub tls_verify: Option<bool>,
    /// CA bundle to trust instead of the Mozilla roots (resolved against the plan's folder).
    pub ca_file: Option<PathBuf>,
    /// TCP connect and implicit-TLS handshake.
    pub connect_timeout: Option<Duration>,
    /// Any one reply.
    pub reply_timeout: Option<Duration>,
    /// Message body and final reply.
    pub data_timeout: Option<Duration>,
    /// The whole session.
    pub session_timeout: Option<Duration>,
    /// Extra attempts.
    pub retries: Option<u32>,
    /// First delay between attempts.
    pub retry_delay: Option<Duration>,
    /// Local address to bind.
    pub source_address: Option<IpAddr>,
    /// Address families.
    pub ip: Option<IpFamily>,
    /// PROXY protocol header.
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl SessionSettings {
    /// These settings, with anything unset taken from `fallback`.
    pub fn or(&self, fallback: &SessionSettings) -> SessionSettings {
        SessionSettings {
            helo: self.helo.clone().or_else(|| fallback.helo.clone()),
            port: self.port.or(fallback.port),
            tls: self.tls.or(fallback.tls),
            tls_verify: self.tls_verify.or(fallback.tls_verify),
            ca_file: self.ca_file.clone().or_else(|| fallback.ca_file.clone()),
            connect_timeout: self.connect_timeout.or(fallback.connect_timeout),
            reply_timeout: self.reply_timeout.or(fallback.reply_timeout),
            data_timeout: self.data_timeout.or(fallback.data_timeout),
            session_timeout: self.session_timeout.or(fallback.session_timeout),
            retries: self.retries.or(fallback.retries),
            retry_delay: self.retry_delay.or(fallback.retry_delay),
            source_address: self.source_address.or(fallback.source_address),
            ip: self.ip.or(fallback.ip),
            proxy_protocol: self.proxy_protocol.or(fallback.proxy_protocol),
        }
    }
}

/// DNS resolver settings; an empty `nameservers` means the system's.
#[derive(Debug, Clone, Default)]
pub struct ResolverSettings {
    /// Name servers.
    pub nameservers: Vec<SocketAddr>,
    /// Per query.
    pub timeout: Option<Duration>,
    /// Attempts per query.
    pub attempts: Option<u32>,
}

/// A target entry.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub kind: TargetKind,
    /// Report name.
    pub name: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Settings for this target.
    pub settings: SessionSettings,
}

/// The four target forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A host name or literal IP.
    Host(HostPort),
    /// A domain resolved through MX.
    Domain {
        /// The domain.
        domain: String,
        /// Which MX hosts.
        mx: MxMode,
        /// The DNS answer expected when it is not a mail route.
        expect_mx: Option<ExpectMx>,
    },
    /// A list of targets read from a file.
    List {
        /// The file, resolved against the plan's folder.
        path: PathBuf,
        /// Its entries.
        entries: Vec<ListEntry>,
    },
    /// A built-in responder persona (a name or a persona file).
    Responder(String),
}

/// A host and, when given, its port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Name or literal IP (without brackets).
    pub host: String,
    /// Port, when the entry gave one.
    pub port: Option<u16>,
}

/// One line of a `file:` target list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListEntry {
    /// A domain, resolved through MX.
    Domain(String),
    /// A host (or IP) with an optional port.
    Host(HostPort),
}

/// A test.
#[derive(Debug, Clone)]
pub struct Test {
    /// Unique name.
    pub name: String,
    /// Indexes into `Plan::targets`.
    pub targets: Vec<usize>,
    /// Settings for this test.
    pub settings: SessionSettings,
    /// The steps.
    pub steps: Vec<Step>,
}

/// A step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name shown in reports.
    pub name: Option<String>,
    /// What it does.
    pub action: Action,
    /// What the reply must look like (the verb's default when the plan gave none;
    /// empty for `pipeline`, whose steps judge their own replies).
    pub expect: Expect,
    /// Reply timeout for this step.
    pub timeout: Option<Duration>,
    /// Latency bound: a slower reply fails the step.
    pub within: Option<Duration>,
    /// Captures from the reply text.
    pub capture: Vec<Capture>,
}

/// `capture: { NAME: REGEX }`.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The variable name (`${capture.NAME}`).
    pub name: String,
    /// The regex; its first group (or the whole match when it has none) is captured.
    pub regex: Regex,
}

/// A step's verb and its arguments.
#[derive(Debug, Clone)]
pub enum Action {
    /// Open the connection and read the greeting.
    Connect {
        /// Certificate assertions (implicit TLS).
        cert: Option<CertCheck>,
    },
    /// `EHLO`.
    Ehlo {
        /// The name; `None` uses the `helo` setting.
        name: Option<Template>,
        /// Capabilities that must be advertised.
        capabilities: Vec<String>,
        /// Capabilities that must not be.
        absent: Vec<String>,
    },
    /// `HELO`.
    Helo {
        /// The name; `None` uses the `helo` setting.
        name: Option<Template>,
    },
    /// `STARTTLS` and the handshake.
    StartTls {
        /// Overrides `tls_verify`.
        verify: Option<bool>,
        /// Server name for SNI and verification.
        sni: Option<Template>,
        /// Lowest TLS version.
        min_version: Option<TlsVersion>,
        /// CA bundle for this handshake.
        ca_file: Option<PathBuf>,
        /// Certificate assertions.
        cert: Option<CertCheck>,
    },
    /// `AUTH`.
    Auth {
        /// Mechanism.
        mechanism: AuthMechanism,
        /// User name.
        username: Template,
        /// Password or token.
        secret: Template,
        /// Credentials may go over a connection that is not TLS.
        allow_plaintext: bool,
    },
    /// `MAIL FROM`.
    MailFrom {
        /// The reverse path without brackets; empty for the null sender.
        address: Template,
        /// Parameters.
        params: Vec<Template>,
    },
    /// `RCPT TO`.
    RcptTo {
        /// The forward path without brackets.
        address: Template,
        /// `NOTIFY=` (RFC 3461).
        notify: Option<Notify>,
        /// `ORCPT=`.
        orcpt: Option<Template>,
        /// Other parameters.
        params: Vec<Template>,
    },
    /// `DATA` and the message.
    Data(Message),
    /// `BDAT` chunks.
    Bdat {
        /// The message.
        message: Message,
        /// Bytes per chunk (None: the whole message in one chunk).
        chunk_size: Option<u64>,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`.
    Vrfy(Template),
    /// `EXPN`.
    Expn(Template),
    /// A raw line.
    Send(Template),
    /// Commands sent in one write.
    Pipeline(Vec<Step>),
}

impl Action {
    /// The verb as written in plans.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Connect { .. } => "connect",
            Action::Ehlo { .. } => "ehlo",
            Action::Helo { .. } => "helo",
            Action::StartTls { .. } => "starttls",
            Action::Auth { .. } => "auth",
            Action::MailFrom { .. } => "mail_from",
            Action::RcptTo { .. } => "rcpt_to",
            Action::Data(_) => "data",
            Action::Bdat { .. } => "bdat",
            Action::Rset => "rset",
            Action::Noop => "noop",
            Action::Quit => "quit",
            Action::Vrfy(_) => "vrfy",
            Action::Expn(_) => "expn",
            Action::Send(_) => "send",
            Action::Pipeline(_) => "pipeline",
        }
    }
}

/// TLS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// Certificate assertions.
#[derive(Debug, Clone, Default)]
pub struct CertCheck {
    /// Minimum days of validity left.
    pub valid_for_days: Option<u32>,
    /// Names the SAN must cover.
    pub names: Vec<Template>,
}

/// DSN notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// `NOTIFY=NEVER`.
    Never,
    /// Some of SUCCESS, FAILURE, DELAY, in the plan's order.
    On(Vec<NotifyOn>),
}

/// One DSN notification condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// SUCCESS
    Success,
    /// FAILURE
    Failure,
    /// DELAY
    Delay,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Message {
    /// Headers and body, or the whole message.
    pub content: Content,
    /// Pad the body to this many bytes.
    pub size: Option<u64>,
}

/// The message content.
#[derive(Debug, Clone)]
pub enum Content {
    /// Headers in order (defaults added when sending) and a body.
    Parts {
        /// Header fields.
        headers: Vec<(String, Template)>,
        /// The body.
        body: Template,
    },
    /// The message as given.
    Raw(Template),
}
