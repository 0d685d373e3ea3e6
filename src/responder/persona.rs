//! Personas: what the built-in responder says and how it misbehaves.
//!
//! A persona is a YAML file; this module owns its schema (every key documented on
//! the fields of [`Persona`] and in the comment block of
//! `plans/personas/exchange-2013.yaml`), its checks (errors carry `LINE:COL`), the
//! reply templates and their rendering, the fault list, the recipient rules, the
//! AUTH users, and reading the `tls` files (through `tls`). It does no network
//! I/O; the session asks it what to say.

use super::tls::Identity;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Names accepted by [`Persona::builtin`].
pub const BUILT_IN_PERSONAS: &[&str] = &["exchange-2013", "exchange-2013-tls"];

const EXCHANGE_2013: &str = include_str!("../../plans/personas/exchange-2013.yaml");
const EXCHANGE_2013_TLS: &str = include_str!("../../plans/personas/exchange-2013-tls.yaml");

/// The mechanisms AUTH implements, as the EHLO reply advertises them.
pub(crate) const AUTH_MECHANISMS: &str = "AUTH PLAIN LOGIN";

/// How a responder greets, which recipients exist, what every reply says, which
/// faults it injects, whether it offers STARTTLS and who may AUTH. Deserialised
/// from YAML; unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    /// `name`: what `--persona` and the serve banner call it.
    name: Token,
    /// `hostname`: the server's own name, `{hostname}` in the banner and replies.
    pub(crate) hostname: Token,
    /// `banner`: the greeting text after `220 `; placeholders as in replies.
    #[serde(default = "default_banner")]
    pub(crate) banner: Template,
    /// `capabilities`: EHLO keywords with their parameters, one per line after the
    /// hello line (`SIZE 37748736`, `PIPELINING`, ...). Advertised as written; the
    /// responder implements SIZE, PIPELINING, 8BITMIME, BINARYMIME and CHUNKING.
    /// STARTTLS and AUTH may not be listed: the responder adds them after these
    /// when `tls` and `users` make them apply.
    #[serde(default)]
    pub(crate) capabilities: Vec<Capability>,
    /// `accepted_domains`: domains this server is the final destination for. The
    /// domains of `recipients` are accepted too.
    #[serde(default)]
    accepted_domains: Vec<Domain>,
    /// `recipients`: mailboxes that exist, `user@domain`, or `*@domain` for every
    /// user of that domain. Compared without regard to ASCII case.
    #[serde(default)]
    recipients: Vec<Recipient>,
    /// `open_relay`: accept recipients in domains that are not accepted.
    #[serde(default)]
    open_relay: bool,
    /// `auth_required`: refuse MAIL with `replies.auth_required` until AUTH succeeds.
    #[serde(default)]
    pub(crate) auth_required: bool,
    /// `tls`: offer STARTTLS (RFC 3207). `cert_file` and `key_file` name a PEM
    /// certificate chain and its private key (relative paths from the persona
    /// file's folder, or from the current folder for persona text); `tls: {}`
    /// makes a self-signed certificate for `hostname`, `localhost`, `127.0.0.1`
    /// and `::1` each time the responder starts. Absent: STARTTLS gets
    /// `replies.tls_not_available`.
    #[serde(default, rename = "tls", deserialize_with = "tls_section")]
    tls_section: Option<TlsSection>,
    /// What `tls` comes to once its files are read: the certificate STARTTLS presents.
    #[serde(skip)]
    pub(crate) tls: Option<Identity>,
    /// `users`: who may AUTH (RFC 4954, mechanisms PLAIN and LOGIN), as
    /// `{ username, password }`. The username is compared without regard to ASCII
    /// case, the password exactly. Absent or empty: AUTH is an unknown command.
    #[serde(default)]
    pub(crate) users: Vec<User>,
    /// `auth_over_plaintext`: offer and accept AUTH before STARTTLS too. Default
    /// false: AUTH is advertised only over TLS, and before it gets
    /// `replies.auth_encryption_required`.
    #[serde(default)]
    pub(crate) auth_over_plaintext: bool,
    /// `max_size`: the largest message in octets, checked against `MAIL ... SIZE=`
    /// and against the message received by DATA or BDAT (RFC 1870). 0: no limit.
    #[serde(default)]
    pub(crate) max_size: u64,
    /// `idle_timeout`: how long a client may send nothing before
    /// `replies.idle_timeout` and the close; also bounds each write. Default 5m.
    #[serde(default = "default_idle_timeout")]
    pub(crate) idle_timeout: Span,
    /// `replies`: the reply for each outcome; omitted keys keep the exchange-2013 text.
    #[serde(default)]
    pub(crate) replies: Replies,
    /// `faults`: misbehaviour to inject; for each reply the first matching fault applies.
    #[serde(default)]
    pub(crate) faults: Vec<Fault>,
}

/// Reply templates, one per outcome. Each is `CODE TEXT`: a code from 200 to 599,
/// then the text, which may use `{hostname}`, `{date}` (RFC 5322, now),
/// `{client_ip}` and `{id}` (a new unique message id); a line break in the text
/// makes a multi-line reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Replies {
    /// `ehlo`: the first line of the EHLO reply; `capabilities` follow when it is 2xx.
    pub(crate) ehlo: ReplyTemplate,
    /// `helo`: the HELO reply.
    pub(crate) helo: ReplyTemplate,
    /// `mail_ok`: MAIL accepted.
    pub(crate) mail_ok: ReplyTemplate,
    /// `rcpt_ok`: RCPT accepted (a known recipient, `<postmaster>`, or relaying allowed).
    pub(crate) rcpt_ok: ReplyTemplate,
    /// `user_unknown`: RCPT to an unknown user of an accepted domain.
    pub(crate) user_unknown: ReplyTemplate,
    /// `relay_denied`: RCPT to a domain that is not accepted.
    pub(crate) relay_denied: ReplyTemplate,
    /// `auth_required`: MAIL without a successful AUTH while `auth_required` is set.
    pub(crate) auth_required: ReplyTemplate,
    /// `starttls_ready`: STARTTLS accepted; the TLS handshake follows.
    pub(crate) starttls_ready: ReplyTemplate,
    /// `tls_not_available`: STARTTLS while the persona has no `tls`.
    pub(crate) tls_not_available: ReplyTemplate,
    /// `already_tls`: STARTTLS over a connection that is already TLS.
    pub(crate) already_tls: ReplyTemplate,
    /// `auth_ok`: AUTH with the credentials of one of `users`.
    pub(crate) auth_ok: ReplyTemplate,
    /// `auth_failed`: AUTH with credentials that match no user.
    pub(crate) auth_failed: ReplyTemplate,
    /// `auth_encryption_required`: AUTH before STARTTLS without `auth_over_plaintext`.
    pub(crate) auth_encryption_required: ReplyTemplate,
    /// `auth_mechanism_unknown`: AUTH with a mechanism other than PLAIN and LOGIN.
    pub(crate) auth_mechanism_unknown: ReplyTemplate,
    /// `auth_already`: AUTH after a successful AUTH.
    pub(crate) auth_already: ReplyTemplate,
    /// `auth_cancelled`: the client answered a 334 challenge with `*`.
    pub(crate) auth_cancelled: ReplyTemplate,
    /// `auth_cannot_decode`: an AUTH response that is not base64.
    pub(crate) auth_cannot_decode: ReplyTemplate,
    /// `data_start`: DATA accepted; the message follows.
    pub(crate) data_start: ReplyTemplate,
    /// `queued`: the message was received (after DATA's end or `BDAT ... LAST`).
    pub(crate) queued: ReplyTemplate,
    /// `bdat_ok`: a BDAT chunk other than the last was received.
    pub(crate) bdat_ok: ReplyTemplate,
    /// `size_exceeded`: `SIZE=` or the message is over `max_size`.
    pub(crate) size_exceeded: ReplyTemplate,
    /// `rset`: RSET.
    pub(crate) rset: ReplyTemplate,
    /// `noop`: NOOP.
    pub(crate) noop: ReplyTemplate,
    /// `vrfy`: VRFY with an argument.
    pub(crate) vrfy: ReplyTemplate,
    /// `expn`: EXPN.
    pub(crate) expn: ReplyTemplate,
    /// `quit`: QUIT; the connection is closed after it.
    pub(crate) quit: ReplyTemplate,
    /// `unrecognized`: an unknown command or garbage.
    pub(crate) unrecognized: ReplyTemplate,
    /// `line_too_long`: a command line over 2048 octets.
    pub(crate) line_too_long: ReplyTemplate,
    /// `need_hello`: MAIL, RCPT, DATA, BDAT or AUTH before EHLO/HELO (again after
    /// STARTTLS).
    pub(crate) need_hello: ReplyTemplate,
    /// `need_mail`: RCPT, DATA or BDAT before MAIL.
    pub(crate) need_mail: ReplyTemplate,
    /// `need_rcpt`: DATA or BDAT before an accepted RCPT.
    pub(crate) need_rcpt: ReplyTemplate,
    /// `sender_already_specified`: a second MAIL in one transaction.
    pub(crate) sender_already_specified: ReplyTemplate,
    /// `bad_sequence`: DATA after BDAT chunks in the same transaction, STARTTLS
    /// or AUTH during a transaction.
    pub(crate) bad_sequence: ReplyTemplate,
    /// `invalid_domain`: EHLO/HELO without a domain or address literal.
    pub(crate) invalid_domain: ReplyTemplate,
    /// `invalid_arguments`: MAIL, RCPT, DATA, BDAT, VRFY, STARTTLS or AUTH with
    /// bad arguments.
    pub(crate) invalid_arguments: ReplyTemplate,
    /// `idle_timeout`: sent before closing an idle session.
    pub(crate) idle_timeout: ReplyTemplate,
    /// `shutting_down`: sent to open sessions when the responder stops.
    pub(crate) shutting_down: ReplyTemplate,
}

impl Default for Replies {
    fn default() -> Self {
        let t = |text: &str| {
            ReplyTemplate::try_from(text.to_string()).expect("a built-in reply text is valid")
        };
        Replies {
            ehlo: t("250 {hostname} Hello [{client_ip}]"),
            helo: t("250 {hostname} Hello [{client_ip}]"),
            mail_ok: t("250 2.1.0 Sender OK"),
            rcpt_ok: t("250 2.1.5 Recipient OK"),
            user_unknown: t("550 5.1.1 User unknown"),
            relay_denied: t("550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"),
            auth_required: t("530 5.7.1 Client was not authenticated"),
            starttls_ready: t("220 2.0.0 SMTP server ready"),
            tls_not_available: t("454 4.7.0 TLS not available"),
            already_tls: t("503 5.5.1 TLS already active"),
            auth_ok: t("235 2.7.0 Authentication successful"),
            auth_failed: t("535 5.7.8 Authentication credentials invalid"),
            auth_encryption_required: t(
                "538 5.7.11 Encryption required for requested authentication mechanism",
            ),
            auth_mechanism_unknown: t("504 5.5.4 Unrecognized authentication type"),
            auth_already: t("503 5.5.1 Already authenticated"),
            auth_cancelled: t("501 5.0.0 Authentication cancelled"),
            auth_cannot_decode: t("501 5.5.2 Cannot decode response"),
            data_start: t("354 Start mail input; end with <CRLF>.<CRLF>"),
            queued: t("250 2.6.0 <{id}@{hostname}> Queued mail for delivery"),
            bdat_ok: t("250 2.0.0 BDAT accepted"),
            size_exceeded: t("552 5.3.4 Message size exceeds fixed maximum message size"),
            rset: t("250 2.0.0 Resetting"),
            noop: t("250 2.0.0 OK"),
            vrfy: t("252 2.1.5 Cannot VRFY user"),
            expn: t("502 5.3.3 Command not implemented"),
            quit: t("221 2.0.0 Service closing transmission channel"),
            unrecognized: t("500 5.3.3 Unrecognized command"),
            line_too_long: t("500 5.5.2 Line too long"),
            need_hello: t("503 5.5.2 Send hello first"),
            need_mail: t("503 5.5.2 Need mail command"),
            need_rcpt: t("503 5.5.2 Need rcpt command"),
            sender_already_specified: t("503 5.5.2 Sender already specified"),
            bad_sequence: t("503 5.5.1 Bad sequence of commands"),
            invalid_domain: t("501 5.5.4 Invalid domain name"),
            invalid_arguments: t("501 5.5.4 Invalid arguments"),
            idle_timeout: t("421 4.4.2 {hostname} Connection timed out"),
            shutting_down: t("421 4.3.2 Service shutting down"),
        }
    }
}

fn default_banner() -> Template {
    Template::try_from("{hostname} ESMTP ready at {date}".to_string())
        .expect("the default banner is valid")
}

fn default_idle_timeout() -> Span {
    Span(Duration::from_secs(300))
}

impl Persona {
    /// The built-in persona called `name` (one of [`BUILT_IN_PERSONAS`]).
    pub fn builtin(name: &str) -> Option<Persona> {
        let text = match name {
            "exchange-2013" => EXCHANGE_2013,
            "exchange-2013-tls" => EXCHANGE_2013_TLS,
            _ => return None,
        };
        Some(Persona::from_yaml_str(text).expect("a built-in persona is valid"))
    }

    /// Reads a persona file, and the `tls` files it names (relative to its
    /// folder). Errors read `FILE:LINE:COL: message` when the position is known.
    pub fn from_file(path: &Path) -> Result<Persona, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read persona: {e}", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new(""));
        parse(&text, folder).map_err(|(at, message)| match at {
            Some((line, col)) => format!("{}:{line}:{col}: {message}", path.display()),
            None => format!("{}: {message}", path.display()),
        })
    }

    /// Parses persona YAML, reading the `tls` files it names (relative to the
    /// current folder). Errors read `LINE:COL: message` when the position is known.
    pub fn from_yaml_str(text: &str) -> Result<Persona, String> {
        parse(text, Path::new("")).map_err(|(at, message)| match at {
            Some((line, col)) => format!("{line}:{col}: {message}"),
            None => message,
        })
    }

    /// A built-in persona by name, else the persona file at that path.
    pub fn load(name_or_path: &str) -> Result<Persona, String> {
        if let Some(persona) = Persona::builtin(name_or_path) {
            return Ok(persona);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(format!(
                "unknown persona {name_or_path:?}: neither a built-in persona ({}) nor a file",
                BUILT_IN_PERSONAS.join(", ")
            ));
        }
        Persona::from_file(path)
    }

    /// The persona's name.
    pub fn name(&self) -> &str {
        &self.name.0
    }

    /// The server name it uses in the banner and replies.
    pub fn hostname(&self) -> &str {
        &self.hostname.0
    }

    /// Whether `username` and `password` are the credentials of one of `users`.
    pub(crate) fn user(&self, username: &[u8], password: &[u8]) -> bool {
        self.users.iter().any(|u| {
            u.username.as_bytes().eq_ignore_ascii_case(username)
                && u.password.as_bytes() == password
        })
    }

    /// Where mail for `address` (`local@domain`) stands with this persona.
    pub(crate) fn recipient(&self, address: &str) -> Verdict {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Verdict::UnknownUser;
        };
        let domain = domain.trim_end_matches('.');
        let known = self.recipients.iter().any(|r| {
            r.domain.eq_ignore_ascii_case(domain)
                && r.local
                    .as_ref()
                    .is_none_or(|l| l.eq_ignore_ascii_case(local))
        });
        let accepted = self
            .accepted_domains
            .iter()
            .map(|d| &d.0)
            .chain(self.recipients.iter().map(|r| &r.domain))
            .any(|d| d.eq_ignore_ascii_case(domain));
        match (known, accepted) {
            (true, _) => Verdict::Known,
            (false, true) => Verdict::UnknownUser,
            (false, false) if self.open_relay => Verdict::Known,
            (false, false) => Verdict::RelayDenied,
        }
    }
}

/// Parses and checks persona text, then reads the `tls` files, relative paths
/// from `folder`; on error, the 1-based position when known.
fn parse(text: &str, folder: &Path) -> Result<Persona, (Option<(usize, usize)>, String)> {
    let mut persona = parse_yaml(text)?;
    persona.tls = match &persona.tls_section {
        None => None,
        Some(TlsSection::Generate) => Some(Identity::Generate),
        Some(TlsSection::Files {
            cert_file,
            key_file,
        }) => Some(
            Identity::read(&folder.join(cert_file), &folder.join(key_file))
                .map_err(|e| (None, e))?,
        ),
    };
    Ok(persona)
}

/// Parses and checks persona YAML; on error, the 1-based position when known.
fn parse_yaml(text: &str) -> Result<Persona, (Option<(usize, usize)>, String)> {
    serde_yaml::from_str::<Persona>(text).map_err(|e| {
        let mut message = e.to_string();
        let at = e.location().map(|l| (l.line(), l.column()));
        if let Some((line, col)) = at {
            let here = format!(" at line {line} column {col}");
            if let Some(i) = message.find(&here) {
                message.replace_range(i..i + here.len(), "");
            }
        }
        (at, message)
    })
}

/// Deserialises a YAML string through `T::try_from`, raising the error while the
/// string is the current value, so that serde_yaml places it at that value.
fn from_string<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String, Error = String>,
{
    struct Text<T>(PhantomData<T>);
    impl<T: TryFrom<String, Error = String>> Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            T::try_from(s.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_string(Text(PhantomData))
}

/// Deserialises a YAML mapping as `Raw`, then checks it with `T::try_from`
/// while the mapping is the current value, so that serde_yaml places an error
/// at the mapping rather than at the list or key that holds it.
fn from_map<'de, D, Raw, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    Raw: Deserialize<'de>,
    T: TryFrom<Raw, Error = String>,
{
    struct Map<Raw, T>(PhantomData<(Raw, T)>);
    impl<'de, Raw: Deserialize<'de>, T: TryFrom<Raw, Error = String>> Visitor<'de> for Map<Raw, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = Raw::deserialize(de::value::MapAccessDeserializer::new(map))?;
            T::try_from(raw).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(Map(PhantomData))
}

/// `Deserialize` for types checked by their `TryFrom<String>`.
macro_rules! deserialize_from_string {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                from_string(d)
            }
        }
    )*};
}

deserialize_from_string!(
    Token,
    Capability,
    Domain,
    Recipient,
    Span,
    Template,
    ReplyTemplate,
    Verb
);

/// What the persona does with a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The mailbox exists (or relaying is open).
    Known,
    /// The domain is accepted but the user does not exist.
    UnknownUser,
    /// The domain is not accepted and relaying is closed.
    RelayDenied,
}

/// A non-empty string without whitespace or control characters.
#[derive(Debug, Clone)]
pub(crate) struct Token(pub(crate) String);

impl TryFrom<String> for Token {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} must be one word, without spaces or control characters"
            ));
        }
        Ok(Token(s))
    }
}

/// An EHLO capability line.
#[derive(Debug, Clone)]
pub(crate) struct Capability(pub(crate) String);

impl TryFrom<String> for Capability {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.trim().is_empty() || s.starts_with(' ') || s.chars().any(char::is_control) {
            return Err(format!(
                "capability {s:?} must be a keyword and its parameters on one line"
            ));
        }
        let keyword = s.split(' ').next().unwrap_or_default();
        for (added, when) in [("STARTTLS", "tls"), ("AUTH", "users")] {
            if keyword.eq_ignore_ascii_case(added) {
                return Err(format!(
                    "capability {s:?}: the responder advertises {added} itself when the persona has `{when}`"
                ));
            }
        }
        Ok(Capability(s))
    }
}

/// A domain name, lower-cased, without a trailing dot.
#[derive(Debug, Clone)]
struct Domain(String);

impl TryFrom<String> for Domain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = s.trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains('@') || d.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("{s:?} is not a domain name"));
        }
        Ok(Domain(d))
    }
}

/// A recipient rule: one mailbox, or every user of a domain (`*@domain`).
#[derive(Debug, Clone)]
struct Recipient {
    /// The local part; `None` matches every user.
    local: Option<String>,
    domain: String,
}

impl TryFrom<String> for Recipient {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("recipient {s:?} must be user@domain or *@domain");
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let Domain(domain) = Domain::try_from(domain.to_string()).map_err(|_| bad())?;
        Ok(Recipient {
            local: (local != "*").then(|| local.to_string()),
            domain,
        })
    }
}

/// A duration written for humans (`30s`, `2m`, `1h 30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span(pub(crate) Duration);

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        humantime::parse_duration(&s)
            .map(Span)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. 500ms, 30s, 5m"))
    }
}

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hostname,
    Date,
    ClientIp,
    Id,
}

const PLACEHOLDERS: &[(&str, Piece)] = &[
    ("hostname", Piece::Hostname),
    ("date", Piece::Date),
    ("client_ip", Piece::ClientIp),
    ("id", Piece::Id),
];

/// Reply text with `{placeholder}`s. A `{` not starting a placeholder name is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Piece>);

/// What a template's placeholders stand for in one session.
pub(crate) struct Vars<'a> {
    /// The persona's hostname.
    pub(crate) hostname: &'a str,
    /// The client's IP address.
    pub(crate) client_ip: &'a str,
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(format!(
                "reply text {s:?} contains a control character (only line breaks and tabs are allowed)"
            ));
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = s.as_str();
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('}') {
                let name = &after[..name_len];
                let piece = PLACEHOLDERS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, p)| p.clone())
                    .ok_or_else(|| {
                        let known: Vec<String> = PLACEHOLDERS
                            .iter()
                            .map(|(n, _)| format!("{{{n}}}"))
                            .collect();
                        format!(
                            "unknown placeholder {{{name}}}; known: {}",
                            known.join(", ")
                        )
                    })?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
                rest = &after[name_len + 1..];
            } else {
                text.push('{');
                rest = after;
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }
}

impl Template {
    /// The text with its placeholders filled in.
    pub(crate) fn render(&self, vars: &Vars) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Hostname => out.push_str(vars.hostname),
                Piece::Date => out.push_str(&crate::date::rfc5322(SystemTime::now())),
                Piece::ClientIp => out.push_str(vars.client_ip),
                Piece::Id => out.push_str(&message_id()),
            }
        }
        out
    }
}

/// A new message id, unique within this process and unlikely to repeat across
/// runs: the process start time, the process id and a counter, shaped like the
/// GUIDs Exchange puts in its queued reply.
fn message_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: OnceLock<u64> = OnceLock::new();
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        start >> 32,
        (start >> 16) & 0xffff,
        start & 0xffff,
        std::process::id() & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// A reply as written in a persona: `CODE TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyTemplate {
    code: u16,
    text: Template,
}

impl TryFrom<String> for ReplyTemplate {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || {
            format!("reply {s:?} must start with a code from 200 to 599, then a space and the text")
        };
        let code = s
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(bad)?;
        let text = match &s[3..] {
            "" => "",
            rest => rest.strip_prefix(' ').ok_or_else(bad)?,
        };
        Ok(ReplyTemplate {
            code,
            text: Template::try_from(text.to_string())?,
        })
    }
}

impl ReplyTemplate {
    /// The reply with its placeholders filled in.
    pub(crate) fn render(&self, vars: &Vars) -> Reply {
        Reply {
            code: self.code,
            text: self.text.render(vars),
        }
    }
}

/// A reply ready to send: a code and text whose line breaks separate the lines
/// of a multi-line reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl Reply {
    /// 2xx or 3xx.
    pub(crate) fn positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form (RFC 5321 section 4.2.1): `CODE-text` for every line
    /// but the last, `CODE text` for the last, each ending in CRLF. An empty last
    /// line is just `CODE`, except for a 334 challenge, which keeps its space
    /// (RFC 4954 section 4: `"334" SP [base64]`).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            out.extend_from_slice(self.code.to_string().as_bytes());
            if !(last && line.is_empty() && self.code != 334) {
                out.push(if last { b' ' } else { b'-' });
                out.extend_from_slice(line.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The `tls` section as written.
#[derive(Debug, Clone)]
enum TlsSection {
    /// Neither file: generate a certificate at start.
    Generate,
    /// `cert_file` and `key_file`, relative to the persona's folder.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

/// `tls` as written: `cert_file` and `key_file` together, or neither.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

impl TryFrom<RawTls> for TlsSection {
    type Error = String;
    fn try_from(raw: RawTls) -> Result<Self, String> {
        match (raw.cert_file, raw.key_file) {
            (None, None) => Ok(TlsSection::Generate),
            (Some(cert_file), Some(key_file)) => Ok(TlsSection::Files {
                cert_file,
                key_file,
            }),
            _ => Err(
                "needs both cert_file and key_file, or neither (a certificate is then generated)"
                    .to_string(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for TlsSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_map::<D, RawTls, TlsSection>(d)
    }
}

/// `tls:` with no value is `tls: {}`, so that writing the key turns TLS on.
fn tls_section<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TlsSection>, D::Error> {
    Ok(Some(
        Option::<TlsSection>::deserialize(d)?.unwrap_or(TlsSection::Generate),
    ))
}

/// A user AUTH accepts. Debug output leaves the password out.
#[derive(Clone)]
pub(crate) struct User {
    username: String,
    password: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A user as written: `{ username, password }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: String,
    password: String,
}

impl TryFrom<RawUser> for User {
    type Error = String;
    fn try_from(raw: RawUser) -> Result<Self, String> {
        if raw.username.is_empty() {
            return Err("the username must not be empty".to_string());
        }
        // AUTH PLAIN separates the fields with NUL: such credentials could never match.
        if raw.username.contains('\0') || raw.password.contains('\0') {
            return Err("the username and password must not contain NUL".to_string());
        }
        Ok(User {
            username: raw.username,
            password: raw.password,
        })
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_map::<D, RawUser, User>(d)
    }
}

/// Where a fault applies: a command, or one of the replies that answer no command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// The 220 greeting.
    Greeting,
    Ehlo,
    Helo,
    Starttls,
    /// Every reply of an AUTH exchange, its 334 challenges included.
    Auth,
    Mail,
    Rcpt,
    Data,
    Bdat,
    /// The reply after a message: after DATA's final dot, or to `BDAT ... LAST`.
    EndOfData,
    Rset,
    Noop,
    Vrfy,
    Expn,
    Quit,
    /// Every reply but the greeting, unrecognised commands included.
    Any,
}

const VERBS: [(&str, Verb); 16] = [
    ("greeting", Verb::Greeting),
    ("EHLO", Verb::Ehlo),
    ("HELO", Verb::Helo),
    ("STARTTLS", Verb::Starttls),
    ("AUTH", Verb::Auth),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("BDAT", Verb::Bdat),
    ("end_of_data", Verb::EndOfData),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("VRFY", Verb::Vrfy),
    ("EXPN", Verb::Expn),
    ("QUIT", Verb::Quit),
    ("any", Verb::Any),
];

impl Verb {
    /// How many verbs there are, for per-verb counters.
    pub(crate) const COUNT: usize = VERBS.len();

    /// This verb's slot in a per-verb counter array.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The SMTP command named `word` (any case), if the responder knows it.
    pub(crate) fn command(word: &str) -> Option<Verb> {
        VERBS
            .iter()
            .find(|(name, v)| {
                name.eq_ignore_ascii_case(word)
                    && !matches!(v, Verb::Greeting | Verb::EndOfData | Verb::Any)
            })
            .map(|(_, v)| *v)
    }
}

impl TryFrom<String> for Verb {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = VERBS.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown command {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Misbehaviour injected before or instead of one reply.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    /// Which replies it applies to.
    pub(crate) command: Verb,
    /// Only the Nth (1-based) occurrence of `command` in a session.
    pub(crate) nth: Option<u32>,
    /// Wait this long before replying.
    pub(crate) delay: Option<Duration>,
    /// What to do instead of the normal reply.
    pub(crate) action: Option<Action>,
}

/// What a fault does instead of the normal reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Close the connection without replying.
    Disconnect,
    /// Send this reply instead.
    Reply(ReplyTemplate),
    /// Send these bytes as they are.
    Malformed(Vec<u8>),
}

/// A fault as written: `command`, optional `nth`, then `delay` and at most one of
/// `disconnect`, `reply`, `malformed`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    command: Verb,
    #[serde(default)]
    nth: Option<u32>,
    #[serde(default)]
    delay: Option<Span>,
    #[serde(default)]
    disconnect: bool,
    #[serde(default)]
    reply: Option<ReplyTemplate>,
    #[serde(default)]
    malformed: Option<String>,
}

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_map::<D, RawFault, Fault>(d)
    }
}

impl TryFrom<RawFault> for Fault {
    type Error = String;
    fn try_from(raw: RawFault) -> Result<Self, String> {
        if raw.nth == Some(0) {
            return Err("fault nth counts from 1".to_string());
        }
        if raw.malformed.as_ref().is_some_and(String::is_empty) {
            return Err("fault malformed must not be empty".to_string());
        }
        let mut actions = Vec::new();
        if raw.disconnect {
            actions.push(Action::Disconnect);
        }
        actions.extend(raw.reply.map(Action::Reply));
        actions.extend(raw.malformed.map(|m| Action::Malformed(m.into_bytes())));
        if actions.len() > 1 {
            return Err("a fault has at most one of disconnect, reply and malformed".to_string());
        }
        let action = actions.pop();
        if action.is_none() && raw.delay.is_none() {
            return Err("a fault needs delay, disconnect: true, reply or malformed".to_string());
        }
        Ok(Fault {
            command: raw.command,
            nth: raw.nth,
            delay: raw.delay.map(|s| s.0),
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: test\nhostname: mx.example.org\n";

    fn persona(extra: &str) -> Persona {
        Persona::from_yaml_str(&format!("{MINIMAL}{extra}")).expect("the test persona is valid")
    }

    fn error(extra: &str) -> String {
        Persona::from_yaml_str(&format!("{MINIMAL}{extra}")).expect_err("the persona is invalid")
    }

    fn vars() -> Vars<'static> {
        Vars {
            hostname: "mx.example.org",
            client_ip: "192.0.2.7",
        }
    }

    #[test]
    fn every_built_in_persona_parses() {
        for name in BUILT_IN_PERSONAS {
            let p = Persona::builtin(name).expect("listed personas exist");
            assert_eq!(p.name(), *name);
        }
        assert!(Persona::builtin("sendmail-8").is_none());
    }

    #[test]
    fn exchange_2013_matches_the_runbook() {
        let p = Persona::builtin("exchange-2013").unwrap();
        assert_eq!(p.hostname(), "mail1.fabrikam.com");
        let v = Vars {
            hostname: p.hostname(),
            client_ip: "172.16.0.1",
        };
        let banner = p.banner.render(&v);
        assert!(
            banner.starts_with("mail1.fabrikam.com Microsoft ESMTP MAIL Service ready at "),
            "{banner}"
        );
        let caps: Vec<&str> = p.capabilities.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            caps,
            [
                "SIZE 37748736",
                "PIPELINING",
                "DSN",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "BINARYMIME",
                "CHUNKING"
            ]
        );
        assert!(!p.auth_required);
        assert_eq!(p.max_size, 37_748_736);
        assert_eq!(p.idle_timeout, Span(Duration::from_secs(300)));
        assert!(p.faults.is_empty());
        let r = p.replies.ehlo.render(&v);
        assert_eq!(
            (r.code, r.text.as_str()),
            (250, "mail1.fabrikam.com Hello [172.16.0.1]")
        );
    }

    #[test]
    fn the_built_in_file_spells_out_the_default_replies() {
        let p = Persona::builtin("exchange-2013").unwrap();
        assert_eq!(
            format!("{:?}", p.replies),
            format!("{:?}", Replies::default())
        );
    }

    #[test]
    fn omitted_keys_take_defaults() {
        let p = persona("");
        assert_eq!(p.name(), "test");
        assert!(p.capabilities.is_empty());
        assert_eq!(p.max_size, 0);
        assert!(!p.open_relay && !p.auth_required);
        let r = p.replies.mail_ok.render(&vars());
        assert_eq!((r.code, r.text.as_str()), (250, "2.1.0 Sender OK"));
        assert!(p
            .banner
            .render(&vars())
            .starts_with("mx.example.org ESMTP ready at "));
    }

    #[test]
    fn replies_can_be_overridden_one_by_one() {
        let p = persona("replies:\n  rcpt_ok: '250 Fine, {client_ip}'\n");
        let r = p.replies.rcpt_ok.render(&vars());
        assert_eq!((r.code, r.text.as_str()), (250, "Fine, 192.0.2.7"));
        let r = p.replies.user_unknown.render(&vars());
        assert_eq!(r.text, "5.1.1 User unknown");
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = error("banner: hi\nbanners: [x]\n");
        assert!(e.starts_with("4:1: unknown field `banners`"), "{e}");
        let e = error("replies:\n  quit: '2x1 bye'\n");
        assert!(e.starts_with("4:9: replies.quit: "), "{e}");
        assert!(e.contains("must start with a code"), "{e}");
        let e = error("idle_timeout: soon\n");
        assert!(e.starts_with("3:15: "), "{e}");
        assert!(e.contains("invalid duration \"soon\""), "{e}");
        let e = error("faults:\n  - command: HELP\n    delay: 1s\n");
        assert!(e.starts_with("4:14: "), "{e}");
        assert!(e.contains("unknown command \"HELP\""), "{e}");
        let e = Persona::from_yaml_str("name: [").unwrap_err();
        assert!(e.starts_with("1:"), "{e}");
        let e = Persona::from_yaml_str("hostname: x\n").unwrap_err();
        assert!(e.contains("missing field `name`"), "{e}");
    }

    #[test]
    fn from_file_prefixes_the_path() {
        let path =
            std::env::temp_dir().join(format!("smtp-plan-persona-{}.yaml", std::process::id()));
        std::fs::write(&path, "name: x\nhostname: h\nmax_size: big\n").unwrap();
        let e = Persona::from_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(e.starts_with(&format!("{}:3:11: ", path.display())), "{e}");
        let e = Persona::from_file(Path::new("/nonexistent/persona.yaml")).unwrap_err();
        assert!(
            e.starts_with("/nonexistent/persona.yaml: cannot read persona"),
            "{e}"
        );
    }

    #[test]
    fn load_takes_a_name_or_a_path() {
        assert_eq!(
            Persona::load("exchange-2013").unwrap().name(),
            "exchange-2013"
        );
        let e = Persona::load("exchange-2099").unwrap_err();
        assert!(e.contains("unknown persona \"exchange-2099\""), "{e}");
        assert!(e.contains("exchange-2013"), "{e}");
        let p = Persona::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/plans/personas/exchange-2013.yaml"
        ));
        assert_eq!(p.unwrap().name(), "exchange-2013");
    }

    #[test]
    fn names_and_hostnames_are_single_words() {
        assert!(error("capabilities: ['']\n").contains("capability"));
        let e = Persona::from_yaml_str("name: a b\nhostname: h\n").unwrap_err();
        assert!(e.contains("one word"), "{e}");
    }

    #[test]
    fn templates_fill_placeholders_and_keep_other_braces() {
        let t = Template::try_from("{hostname} at {client_ip} {x {} {".to_string()).unwrap();
        assert_eq!(t.render(&vars()), "mx.example.org at 192.0.2.7 {x {} {");
        let t = Template::try_from("<{id}> <{id}>".to_string()).unwrap();
        let text = t.render(&vars());
        let ids: Vec<&str> = text.split(' ').collect();
        assert_ne!(ids[0], ids[1], "every {{id}} is new");
        assert_eq!(ids[0].len(), "<12345678-1234-1234-1234-123456789012>".len());
        let t = Template::try_from("{date}".to_string()).unwrap();
        assert!(t.render(&vars()).ends_with(" +0000"));
        let e = Template::try_from("{hostnme}".to_string()).unwrap_err();
        assert!(e.contains("unknown placeholder {hostnme}"), "{e}");
        assert!(Template::try_from("a\rb".to_string()).is_err());
        assert!(Template::try_from("a\0b".to_string()).is_err());
    }

    #[test]
    fn reply_templates_need_a_code() {
        for bad in [
            "", "25", "2500 x", "199 x", "600 x", "abc x", "250x", "٢٥٠ x",
        ] {
            assert!(ReplyTemplate::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
        let r = ReplyTemplate::try_from("421".to_string())
            .unwrap()
            .render(&vars());
        assert_eq!((r.code, r.text.as_str()), (421, ""));
    }

    #[test]
    fn replies_encode_single_and_multi_line() {
        let mut out = Vec::new();
        Reply {
            code: 250,
            text: "a\nb\nc".into(),
        }
        .encode(&mut out);
        Reply {
            code: 421,
            text: String::new(),
        }
        .encode(&mut out);
        Reply {
            code: 220,
            text: "ready".into(),
        }
        .encode(&mut out);
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n421\r\n220 ready\r\n");
    }

    #[test]
    fn recipients_match_exactly_or_by_domain() {
        let p = persona(
            "accepted_domains: [Fabrikam.com.]\nrecipients: [Kate@fabrikam.com, '*@contoso.com']\n",
        );
        assert_eq!(p.recipient("kate@fabrikam.com"), Verdict::Known);
        assert_eq!(p.recipient("KATE@FABRIKAM.COM"), Verdict::Known);
        assert_eq!(p.recipient("kate@fabrikam.com."), Verdict::Known);
        assert_eq!(p.recipient("nobody@fabrikam.com"), Verdict::UnknownUser);
        assert_eq!(p.recipient("anyone@contoso.com"), Verdict::Known);
        assert_eq!(p.recipient("kate@sub.fabrikam.com"), Verdict::RelayDenied);
        assert_eq!(p.recipient("kate@example.net"), Verdict::RelayDenied);
        let open = persona("accepted_domains: [fabrikam.com]\nopen_relay: true\n");
        assert_eq!(open.recipient("kate@example.net"), Verdict::Known);
        assert_eq!(open.recipient("kate@fabrikam.com"), Verdict::UnknownUser);
        assert!(error("recipients: [kate]\n").contains("user@domain"));
        assert!(error("recipients: ['kate@']\n").contains("user@domain"));
        assert!(error("accepted_domains: ['a b']\n").contains("not a domain"));
    }

    #[test]
    fn faults_take_one_action() {
        let p = persona(
            "faults:\n  - command: rcpt\n    nth: 2\n    delay: 250ms\n    reply: '451 4.3.0 Try later'\n  - command: greeting\n    malformed: \"25O OK\\r\\n\"\n  - command: any\n    disconnect: true\n",
        );
        let f = &p.faults;
        assert_eq!((f[0].command, f[0].nth), (Verb::Rcpt, Some(2)));
        assert_eq!(f[0].delay, Some(Duration::from_millis(250)));
        assert!(matches!(&f[0].action, Some(Action::Reply(r)) if r.code == 451));
        assert_eq!(f[1].action, Some(Action::Malformed(b"25O OK\r\n".to_vec())));
        assert_eq!(
            (f[2].command, &f[2].action),
            (Verb::Any, &Some(Action::Disconnect))
        );
        let two = error("faults:\n  - command: DATA\n    disconnect: true\n    reply: '554 no'\n");
        assert!(two.contains("at most one"), "{two}");
        assert!(error("faults:\n  - command: DATA\n").contains("needs delay"));
        assert!(
            error("faults:\n  - command: DATA\n    nth: 0\n    delay: 1s\n").contains("from 1")
        );
        assert!(error("faults:\n  - command: DATA\n    malformed: ''\n").contains("not be empty"));
        assert!(
            error("faults:\n  - command: DATA\n    delay: 1s\n    after: 2\n")
                .contains("unknown field `after`")
        );
    }

    #[test]
    fn exchange_2013_tls_adds_starttls_and_a_user() {
        let plain = Persona::builtin("exchange-2013").unwrap();
        assert!(plain.tls.is_none() && plain.users.is_empty());
        let p = Persona::builtin("exchange-2013-tls").unwrap();
        assert_eq!(p.hostname(), "mail1.fabrikam.com");
        assert!(matches!(p.tls, Some(Identity::Generate)));
        assert!(!p.auth_over_plaintext && !p.auth_required);
        assert!(p.user(b"chris@contoso.com", b"Pa55w.rd"));
        assert!(p.user(b"Chris@Contoso.COM", b"Pa55w.rd"));
        assert!(!p.user(b"chris@contoso.com", b"pa55w.rd"));
        assert!(!p.user(b"chris", b"Pa55w.rd"));
        let caps = |p: &Persona| {
            p.capabilities
                .iter()
                .map(|c| c.0.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(caps(&p), caps(&plain));
        assert_eq!(p.max_size, plain.max_size);
        assert!(
            !format!("{:?}", p.users).contains("Pa55w.rd"),
            "Debug hides passwords"
        );
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        assert!(matches!(persona("tls: {}\n").tls, Some(Identity::Generate)));
        assert!(matches!(persona("tls:\n").tls, Some(Identity::Generate)));
        assert!(persona("").tls.is_none());
        let e = error("tls:\n  cert_file: a.pem\n");
        assert!(
            e.starts_with("4:3: tls: needs both cert_file and key_file"),
            "{e}"
        );
        let e = error("tls: { cert: a.pem }\n");
        assert!(e.contains("unknown field `cert`"), "{e}");
        let e = error("tls: { cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem }\n");
        assert!(
            e.starts_with("tls.cert_file: cannot read /nonexistent/c.pem: "),
            "{e}"
        );
    }

    #[test]
    fn tls_files_are_found_beside_the_persona_file() {
        let dir =
            std::env::temp_dir().join(format!("smtp-plan-persona-tls-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("keys/cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("keys/key.pem"), key.serialize_pem()).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(
            &path,
            "name: p\nhostname: mx.test\ntls: { cert_file: keys/cert.pem, key_file: keys/key.pem }\n",
        )
        .unwrap();
        let p = Persona::from_file(&path).unwrap();
        let Some(Identity::Pem { chain, .. }) = &p.tls else {
            panic!("the files are read: {:?}", p.tls);
        };
        assert_eq!(chain, &[cert.der().clone()]);
        std::fs::write(
            &path,
            "name: p\nhostname: mx.test\ntls: { cert_file: keys/cert.pem, key_file: key.pem }\n",
        )
        .unwrap();
        let e = Persona::from_file(&path).unwrap_err();
        let expected = format!(
            "{}: tls.key_file: cannot read {}: ",
            path.display(),
            dir.join("key.pem").display()
        );
        assert!(e.starts_with(&expected), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_need_a_username_and_no_nul() {
        let p = persona("users:\n  - { username: a, password: '' }\nauth_over_plaintext: true\n");
        assert!(p.auth_over_plaintext);
        assert!(p.user(b"A", b""));
        let e = error("users:\n  - { username: '', password: x }\n");
        assert!(
            e.starts_with("4:5: users[0]: the username must not be empty"),
            "{e}"
        );
        let e = error("users:\n  - { username: a, password: \"x\\0y\" }\n");
        assert!(e.contains("must not contain NUL"), "{e}");
        let e = error("users:\n  - { username: a }\n");
        assert!(e.contains("missing field `password`"), "{e}");
        let e = error("users:\n  - { username: a, password: b, role: admin }\n");
        assert!(e.contains("unknown field `role`"), "{e}");
    }

    #[test]
    fn starttls_and_auth_are_not_listed_as_capabilities() {
        let e = error("capabilities: [PIPELINING, starttls]\n");
        assert!(e.starts_with("3:28: capabilities[1]: capability \"starttls\": the responder advertises STARTTLS itself when the persona has `tls`"), "{e}");
        let e = error("capabilities: [AUTH LOGIN]\n");
        assert!(
            e.contains("advertises AUTH itself when the persona has `users`"),
            "{e}"
        );
        assert_eq!(
            persona("capabilities: [AUTHX]\n").capabilities[0].0,
            "AUTHX"
        );
    }

    #[test]
    fn challenges_keep_their_space() {
        let mut out = Vec::new();
        Reply {
            code: 334,
            text: String::new(),
        }
        .encode(&mut out);
        assert_eq!(out, b"334 \r\n");
    }

    #[test]
    fn commands_are_case_insensitive_verbs() {
        assert_eq!(Verb::command("mail"), Some(Verb::Mail));
        assert_eq!(Verb::command("BdAt"), Some(Verb::Bdat));
        assert_eq!(Verb::command("starttls"), Some(Verb::Starttls));
        assert_eq!(Verb::command("Auth"), Some(Verb::Auth));
        assert_eq!(Verb::command("greeting"), None);
        assert_eq!(Verb::command("end_of_data"), None);
        assert_eq!(Verb::command("any"), None);
        assert_eq!(Verb::command("HELP"), None);
        assert_eq!(Verb::COUNT, Verb::Any.index() + 1);
    }
}
