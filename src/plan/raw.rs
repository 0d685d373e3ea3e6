//! The serde mirror of a plan file: one Rust type per YAML map, field names exactly
//! as users write them. These types are the single source of the plan's shape: the
//! JSON Schema (`smtp-plan schema`, `schemas/plan.schema.json`) is generated from
//! them, and the structural checker (`structure.rs`) walks that schema to report
//! unknown keys and wrong types. Nothing outside `plan` sees a `Raw*` type;
//! `validate.rs` turns them into the checked model of `model.rs`.
//!
//! Values that need checking beyond their YAML type (durations, reply patterns,
//! addresses, variables) stay strings here so that every such mistake in a file can
//! be reported in one pass instead of stopping at the first.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// Deserializes a key that may be written with no value (`- quit:`), keeping
/// "present but empty" (`Some(None)`) apart from "absent" (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A smtp-plan plan, format version 1.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "smtp-plan plan")]
pub struct RawPlan {
    /// Format version; only `1` exists.
    pub version: i64,
    /// Plan name; becomes the JUnit `<testsuites name>`.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// String variables, used as `${name}`.
    #[serde(default)]
    pub vars: IndexMap<String, RawScalar>,
    /// Defaults for every target and test.
    #[serde(default)]
    pub settings: RawSettings,
    /// Where tests connect, unless a test lists its own.
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    /// The checks to run; at least one.
    pub tests: Vec<RawTest>,
}

/// A scalar written where text is expected; numbers and booleans are taken as
/// their text (`count: 5` means `"5"`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawScalar {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl RawScalar {
    /// The scalar as the text it stands for.
    pub fn to_text(&self) -> String {
        match self {
            RawScalar::Text(s) => s.clone(),
            RawScalar::Int(i) => i.to_string(),
            RawScalar::Float(f) => f.to_string(),
            RawScalar::Bool(b) => b.to_string(),
        }
    }
}

/// Top-level settings: the per-session settings plus those that only make sense
/// for the whole run.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Per-session settings.
    #[serde(flatten)]
    pub session: RawSessionSettings,
    /// Sessions open at once across the whole run (default 64).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Sessions open at once to one IP address (default 2).
    #[serde(default)]
    pub per_host: Option<u32>,
    /// DNS resolver used for `domain:` targets and host names.
    #[serde(default)]
    pub resolver: Option<RawResolver>,
}

/// Settings that may be set at the top, per target and per test.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSessionSettings {
    /// Name used by `ehlo`/`helo` steps given no argument (default: this machine's hostname).
    #[serde(default)]
    pub helo: Option<String>,
    /// TCP port (default 25, or 465 with `tls: implicit`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `none`, or `implicit` (TLS from the first byte, RFC 8314).
    #[serde(default)]
    pub tls: Option<TlsMode>,
    /// Verify the server certificate chain and name (default true).
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// A PEM file of CA certificates to trust instead of the Mozilla roots
    /// (a private CA), relative to the plan file.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Named per-phase timeouts.
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    /// Extra attempts for a test whose failure was a 4xx reply or a network error.
    #[serde(default)]
    pub retries: Option<u32>,
    /// First delay between attempts, doubling each time (default 5s).
    #[serde(default)]
    pub retry_delay: Option<String>,
    /// Local IP address to bind outgoing connections to.
    #[serde(default)]
    pub source_address: Option<String>,
    /// Address families to connect over.
    #[serde(default)]
    pub ip: Option<IpFamily>,
    /// Send a PROXY protocol header before SMTP.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// TLS mode of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP; `starttls` may upgrade it.
    None,
    /// TLS from the first byte (RFC 8314).
    Implicit,
}

/// Address families to connect over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv6 and IPv4.
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// Named timeouts, each a duration such as `500ms`, `10s` or `5m`.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// TCP connect, and the implicit-TLS handshake (default 10s).
    #[serde(default)]
    pub connect: Option<String>,
    /// Waiting for any one reply (default 60s).
    #[serde(default)]
    pub reply: Option<String>,
    /// Sending the message body and getting the final reply (default 180s).
    #[serde(default)]
    pub data: Option<String>,
    /// The whole session of one test on one target (default 10m).
    #[serde(default)]
    pub session: Option<String>,
}

/// DNS resolver settings.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    /// Name servers as `ip` or `ip:port` (`[v6]:port`); default: the system's.
    #[serde(default)]
    pub nameservers: Option<Vec<String>>,
    /// Per DNS query (default 20s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Attempts per DNS query (default 2).
    #[serde(default)]
    pub attempts: Option<u32>,
}

/// A place to connect: exactly one of `host`, `domain`, `file`, `responder`.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// A host name or literal IP address (`name:port` and `[v6]:port` also work).
    #[serde(default)]
    pub host: Option<String>,
    /// A mail domain, resolved through its MX records.
    #[serde(default)]
    pub domain: Option<String>,
    /// For `domain:`: `primary` (the first MX host that answers) or `all`.
    #[serde(default)]
    pub mx: Option<MxMode>,
    /// For `domain:`: the expected DNS answer when it is not a mail route.
    #[serde(default, deserialize_with = "present")]
    pub expect_mx: Option<Option<ExpectMx>>,
    /// A file of targets, one per line, relative to the plan file.
    #[serde(default)]
    pub file: Option<String>,
    /// A built-in responder persona, started on a loopback port.
    #[serde(default)]
    pub responder: Option<String>,
    /// Name used in reports instead of the host.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags that tests can select the target by.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Settings for this target.
    #[serde(flatten)]
    pub settings: RawSessionSettings,
}

/// How a `domain:` target picks MX hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MxMode {
    /// The first MX host, in preference order, that accepts a TCP connection.
    Primary,
    /// Every MX host, each its own test case.
    All,
}

/// The DNS answer a `domain:` target expects when it is not an ordinary mail route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExpectMx {
    /// A null MX (`MX 0 .`, RFC 7505). `expect_mx: null` means the same.
    Null,
    /// No mail route at all (NXDOMAIN, or no MX and no address).
    None,
}

/// One check: steps run as one SMTP session per target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    /// Unique name of the test.
    pub name: String,
    /// Targets of this test: target entries or `tag: NAME`; default: the top-level targets.
    #[serde(default)]
    pub targets: Option<Vec<RawTestTarget>>,
    /// The SMTP steps, in order.
    pub steps: Vec<RawStep>,
    /// Settings for this test.
    #[serde(flatten)]
    pub settings: RawSessionSettings,
}

/// A test's target: the top-level targets carrying a tag, or a target of its own.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawTestTarget {
    /// Every top-level target carrying this tag.
    Tag(RawTagRef),
    /// A target of this test only.
    Target(Box<RawTarget>),
}

/// `tag: NAME`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTagRef {
    /// The tag.
    pub tag: String,
}

/// An empty argument: `{}` or nothing.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmpty {}

/// One step: exactly one verb key, with the common keys and the verb's modifiers beside it.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Open TCP (and TLS under `tls: implicit`) and read the greeting.
    #[serde(default, deserialize_with = "present")]
    pub connect: Option<Option<RawEmpty>>,
    /// `EHLO name`; the name defaults to the `helo` setting.
    #[serde(default, deserialize_with = "present")]
    pub ehlo: Option<Option<String>>,
    /// `HELO name`; the name defaults to the `helo` setting.
    #[serde(default, deserialize_with = "present")]
    pub helo: Option<Option<String>>,
    /// `STARTTLS`, then the TLS handshake.
    #[serde(default, deserialize_with = "present")]
    pub starttls: Option<Option<RawStartTls>>,
    /// The AUTH exchange (RFC 4954).
    #[serde(default, deserialize_with = "present")]
    pub auth: Option<Option<RawAuth>>,
    /// `MAIL FROM:<address>`; `<>` is the null sender.
    #[serde(default, deserialize_with = "present")]
    pub mail_from: Option<Option<String>>,
    /// `RCPT TO:<address>`.
    #[serde(default, deserialize_with = "present")]
    pub rcpt_to: Option<Option<String>>,
    /// `DATA`, then the message.
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Option<RawMessage>>,
    /// The message as `BDAT` chunks (RFC 3030).
    #[serde(default, deserialize_with = "present")]
    pub bdat: Option<Option<RawMessage>>,
    /// `RSET`.
    #[serde(default, deserialize_with = "present")]
    pub rset: Option<Option<RawEmpty>>,
    /// `NOOP`.
    #[serde(default, deserialize_with = "present")]
    pub noop: Option<Option<RawEmpty>>,
    /// `QUIT`.
    #[serde(default, deserialize_with = "present")]
    pub quit: Option<Option<RawEmpty>>,
    /// `VRFY argument`.
    #[serde(default, deserialize_with = "present")]
    pub vrfy: Option<Option<String>>,
    /// `EXPN argument`.
    #[serde(default, deserialize_with = "present")]
    pub expn: Option<Option<String>>,
    /// One line of text, sent as given; needs `expect`.
    #[serde(default, deserialize_with = "present")]
    pub send: Option<Option<String>>,
    /// Steps whose commands go out in one write (RFC 2920).
    #[serde(default, deserialize_with = "present")]
    pub pipeline: Option<Option<Vec<RawStep>>>,

    /// Name shown in reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Reply pattern, or a list of them (any one matching passes).
    #[serde(default)]
    pub expect: Option<RawExpect>,
    /// How long to wait for this step's reply.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Fail the step when its reply took longer than this.
    #[serde(default)]
    pub within: Option<String>,
    /// Regexes over the reply text; the first group becomes `${capture.NAME}`.
    #[serde(default)]
    pub capture: Option<IndexMap<String, String>>,

    /// `rcpt_to`: DSN notifications (RFC 3461), a list or `never`.
    #[serde(default)]
    pub notify: Option<RawNotify>,
    /// `rcpt_to`: the original recipient (ORCPT, RFC 3461).
    #[serde(default)]
    pub orcpt: Option<String>,
    /// `mail_from`, `rcpt_to`: extra parameters such as `SIZE=1000` or `BODY=8BITMIME`.
    #[serde(default)]
    pub params: Option<Vec<String>>,
    /// `ehlo`: capabilities that must be advertised.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// `ehlo`: capabilities that must not be advertised.
    #[serde(default)]
    pub absent: Option<Vec<String>>,
    /// `connect` (implicit TLS), `starttls`: certificate assertions.
    #[serde(default)]
    pub cert: Option<RawCert>,
}

/// `starttls` options.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStartTls {
    /// Verify the certificate (overrides `tls_verify`).
    #[serde(default)]
    pub verify: Option<bool>,
    /// Server name sent in the TLS handshake and checked against the certificate.
    #[serde(default)]
    pub sni: Option<String>,
    /// Lowest TLS version to accept: `"1.2"` or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<RawScalar>,
    /// CA certificates to trust for this handshake (overrides `ca_file`).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `auth` options.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// SASL mechanism.
    pub mechanism: AuthMechanism,
    /// User name.
    pub username: String,
    /// Password (PLAIN, LOGIN, CRAM-MD5); use `${env:NAME}`.
    #[serde(default)]
    pub password: Option<String>,
    /// OAuth 2.0 bearer token (XOAUTH2); use `${env:NAME}`.
    #[serde(default)]
    pub token: Option<String>,
    /// Allow credentials over a connection that is not TLS.
    #[serde(default)]
    pub allow_plaintext: Option<bool>,
}

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMechanism {
    /// RFC 4616.
    Plain,
    /// The LOGIN mechanism.
    Login,
    /// RFC 2195.
    CramMd5,
    /// OAuth 2.0 bearer token, as Google and Microsoft use it.
    Xoauth2,
}

/// A message for `data` or `bdat`: `headers` and `body`, or `raw`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMessage {
    /// Header fields in order; From, To, Date, Message-ID and Subject are added when missing.
    #[serde(default)]
    pub headers: Option<IndexMap<String, RawScalar>>,
    /// The message body.
    #[serde(default)]
    pub body: Option<String>,
    /// The whole message as given (headers, blank line, body).
    #[serde(default)]
    pub raw: Option<String>,
    /// Pad the body to this size, e.g. `10MB` (testing the SIZE limit).
    #[serde(default)]
    pub size: Option<RawScalar>,
    /// `bdat`: bytes per BDAT chunk.
    #[serde(default)]
    pub chunk_size: Option<RawScalar>,
}

/// DSN notifications: a list of `success`, `failure`, `delay`, or `never`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawNotify {
    /// Some of `success`, `failure`, `delay`.
    List(Vec<String>),
    /// `never`.
    Word(String),
}

/// Certificate assertions.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    /// The certificate must stay valid at least this many days.
    #[serde(default)]
    pub valid_for_days: Option<u32>,
    /// Names the certificate's SAN must cover.
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

/// An `expect`: one reply pattern or a list of them (any one matching passes).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawExpect {
    /// Any of these patterns. (Listed first: serde would otherwise read a list as
    /// the fields of `RawParts` in order.)
    Any(Vec<RawPattern>),
    /// One pattern.
    One(RawPattern),
}

/// A reply pattern: `250`, `2xx`, `2.1.5`, `250 2.1.5`, a map, or `{ not: ... }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawPattern {
    /// A reply code such as `250`.
    Code(i64),
    /// A number with a fraction: never valid, kept to explain why.
    Float(f64),
    /// `2xx`, `2.1.5`, `250 2.1.5`, or for `connect`: `refused`, `timeout`, `closed`.
    Text(String),
    /// Any reply that does not match the inner pattern.
    Not(RawNot),
    /// All of the given parts.
    Parts(RawParts),
}

/// `{ not: PATTERN }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNot {
    /// The pattern that must not match.
    pub not: Box<RawExpect>,
}

/// `{ code, enhanced, text }`: every given part must match.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParts {
    /// Reply code pattern, `250` or `2xx`.
    #[serde(default)]
    pub code: Option<RawScalar>,
    /// Enhanced status code pattern, `5.7.1` or `5.7.x`.
    #[serde(default)]
    pub enhanced: Option<RawScalar>,
    /// Regex over the whole reply text (lines joined by `\n`).
    #[serde(default)]
    pub text: Option<String>,
}
