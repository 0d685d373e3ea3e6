//! Checking a raw plan for meaning and turning it into the model: version,
//! durations, reply patterns, targets (including reading `file:` lists), tests and
//! their steps, variables, CR/LF injection, AUTH over plaintext, secrets. Every
//! problem of a file is reported in one pass, each at its line and column.

use super::error::{did_you_mean, Diagnostic, Source};
use super::load::Reporter;
use super::locate::{Path, Seg};
use super::model::*;
use super::pattern::{CodePattern, EnhancedPattern, Expect, Pattern};
use super::raw::*;
use super::vars::{expand, Piece, Scope, Template};
use crate::responder::BUILT_IN_PERSONAS;
use indexmap::IndexMap;
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

/// What validation needs from outside the plan file.
pub struct Options<'a> {
    /// `--var NAME=VALUE` overrides, later wins.
    pub vars: &'a [(String, String)],
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Validates `raw`, read from `file`, adding to what `r` has already found.
pub fn validate(
    raw: RawPlan,
    r: Reporter,
    file: &FsPath,
    opts: &Options,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut c = Checker {
        r,
        env: opts.env,
        vars: IndexMap::new(),
        dir: file.parent().map(FsPath::to_path_buf).unwrap_or_default(),
        extra: Vec::new(),
        secrets: Vec::new(),
    };
    let plan = c.plan(raw, file, opts.vars);
    let mut diags = c.r.finish();
    diags.extend(c.extra);
    if diags.is_empty() {
        Ok(plan)
    } else {
        Err(diags)
    }
}

struct Checker<'a> {
    r: Reporter<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    vars: IndexMap<String, Template>,
    dir: PathBuf,
    /// Diagnostics about other files (`file:` target lists).
    extra: Vec<Diagnostic>,
    secrets: Vec<String>,
}

fn key(path: &Path, k: &str) -> Path {
    let mut p = path.clone();
    p.push(Seg::Key(k.to_string()));
    p
}

fn idx(path: &Path, i: usize) -> Path {
    let mut p = path.clone();
    p.push(Seg::Index(i));
    p
}

const VERBS: &[&str] = &[
    "connect",
    "ehlo",
    "helo",
    "starttls",
    "auth",
    "mail_from",
    "rcpt_to",
    "data",
    "bdat",
    "rset",
    "noop",
    "quit",
    "vrfy",
    "expn",
    "send",
    "pipeline",
];

/// The verbs a step may carry inside `pipeline`, and whether each must come last
/// in the group (RFC 2920 section 3.1).
fn pipelinable(verb: &str) -> Option<bool> {
    match verb {
        "mail_from" | "rcpt_to" | "rset" | "send" => Some(false),
        "data" | "bdat" | "noop" | "quit" | "vrfy" | "expn" => Some(true),
        _ => None,
    }
}

impl Checker<'_> {
    fn err(&mut self, path: &Path, msg: impl Into<String>) {
        self.r.at(path, false, 1, msg);
    }

    fn err_key(&mut self, path: &Path, k: &str, msg: impl Into<String>) {
        self.r.at(&key(path, k), true, k.chars().count(), msg);
    }

    fn plan(&mut self, raw: RawPlan, file: &FsPath, overrides: &[(String, String)]) -> Plan {
        let root: Path = Vec::new();
        if raw.version != 1 {
            self.err(
                &key(&root, "version"),
                format!(
                    "unsupported format version {}; this smtp-plan reads version 1",
                    raw.version
                ),
            );
        }
        self.define_vars(&raw.vars, overrides);
        let settings = self.settings(&raw.settings, &key(&root, "settings"));
        let mut targets = Vec::new();
        for (i, t) in raw.targets.iter().enumerate() {
            if let Some(t) = self.target(t, &idx(&key(&root, "targets"), i)) {
                targets.push(t);
            }
        }
        let top_level = targets.len();
        let top_ok = top_level == raw.targets.len();
        if raw.tests.is_empty() {
            self.err(&key(&root, "tests"), "`tests` needs at least one test");
        }
        let mut tests = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, t) in raw.tests.iter().enumerate() {
            let path = idx(&key(&root, "tests"), i);
            if let Some(first) = names.get(&t.name) {
                let line = super::locate::locate(
                    &self.r.source.text,
                    &idx(&key(&root, "tests"), *first),
                    false,
                )
                .map_or(String::new(), |(l, _)| format!(" (first at line {l})"));
                self.err(
                    &key(&path, "name"),
                    format!("duplicate test name `{}`{line}", t.name),
                );
            } else {
                names.insert(t.name.clone(), i);
            }
            let test = self.test(t, &path, &mut targets, top_level, top_ok, &settings);
            tests.push(test);
        }
        Plan {
            file: file.to_path_buf(),
            name: raw.name,
            description: raw.description,
            settings,
            targets,
            tests,
            secrets: std::mem::take(&mut self.secrets),
        }
    }

    fn define_vars(&mut self, raw: &IndexMap<String, RawScalar>, overrides: &[(String, String)]) {
        let path = vec![Seg::Key("vars".into())];
        let given: HashMap<&str, &str> = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (name, value) in raw {
            let name_ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                self.err_key(&path, name, format!("variable name `{name}` must start with a letter and hold only letters, digits, `_` and `-`"));
                continue;
            }
            if let Some(v) = given.get(name.as_str()) {
                self.vars.insert(name.clone(), Template::lit(*v));
                continue;
            }
            let text = value.to_text();
            if let Some(t) = self.expand(&text, &key(&path, name), false, &[]) {
                self.vars.insert(name.clone(), t);
            }
        }
        for (k, v) in overrides {
            if !self.vars.contains_key(k) {
                self.vars.insert(k.clone(), Template::lit(v));
            }
        }
    }

    /// Expands variables in `text` (the string at `path`), reporting bad references.
    fn expand(
        &mut self,
        text: &str,
        path: &Path,
        runtime: bool,
        captures: &[String],
    ) -> Option<Template> {
        let vars = std::mem::take(&mut self.vars);
        let scope = Scope {
            vars: &vars,
            env: self.env,
            runtime,
            captures,
        };
        let out = expand(text, &scope);
        self.vars = vars;
        match out {
            Ok(t) => Some(t),
            Err(errs) => {
                for e in errs {
                    let needle = &text[e.offset..e.offset + e.len];
                    self.r.at_text(path, needle, e.message);
                }
                None
            }
        }
    }

    /// Expands a value that must be fixed before the run starts.
    fn expand_static(&mut self, text: &str, path: &Path) -> Option<String> {
        self.expand(text, path, false, &[])
            .and_then(|t| t.static_text())
    }

    /// Refuses CR, LF and NUL in a value that goes into an SMTP command line.
    fn one_line(&mut self, t: &Template, path: &Path, what: &str) {
        for p in &t.pieces {
            let (text, from) = match p {
                Piece::Lit(s) => (s, String::new()),
                Piece::Env { name, value } => {
                    (value, format!(" (from environment variable `{name}`)"))
                }
                Piece::Run(_) => continue,
            };
            if let Some(c) = text.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
                let shown = match c {
                    '\r' => "CR",
                    '\n' => "LF",
                    _ => "NUL",
                };
                self.err(
                    path,
                    format!("{what} contains {shown}{from}, which would reach the SMTP command line (command injection); remove it"),
                );
                return;
            }
        }
    }

    fn duration(&mut self, text: &Option<String>, path: &Path, k: &str) -> Option<Duration> {
        let text = text.as_ref()?;
        let p = key(path, k);
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.err(&p, format!("`{k}` must be longer than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.r.at(
                    &p,
                    false,
                    text.chars().count(),
                    format!(
                        "`{text}` is not a duration ({e}); write it like `500ms`, `10s` or `5m`"
                    ),
                );
                None
            }
        }
    }

    /// A file named relative to the plan that must exist.
    fn existing_file(&mut self, name: &str, path: &Path) -> Option<PathBuf> {
        let text = self.expand_static(name, path)?;
        let full = self.dir.join(&text);
        if full.is_file() {
            Some(full)
        } else {
            self.r.at(
                path,
                false,
                text.chars().count(),
                format!("file `{}` does not exist", full.display()),
            );
            None
        }
    }

    fn settings(&mut self, raw: &RawSettings, path: &Path) -> Settings {
        let session = self.session(&raw.session, path);
        for (k, v) in [("concurrency", raw.concurrency), ("per_host", raw.per_host)] {
            if v == Some(0) {
                self.err(&key(path, k), format!("`{k}` must be at least 1"));
            }
        }
        let mut resolver = ResolverSettings::default();
        if let Some(r) = &raw.resolver {
            let rpath = key(path, "resolver");
            for (i, ns) in r.nameservers.iter().flatten().enumerate() {
                match parse_nameserver(ns) {
                    Some(a) => resolver.nameservers.push(a),
                    None => self.r.at(
                        &idx(&key(&rpath, "nameservers"), i),
                        false,
                        ns.chars().count(),
                        format!("`{ns}` is not a name server address: write `IP` or `IP:PORT` (`[IPv6]:PORT`)"),
                    ),
                }
            }
            resolver.timeout = self.duration(&r.timeout, &rpath, "timeout");
            if r.attempts == Some(0) {
                self.err(&key(&rpath, "attempts"), "`attempts` must be at least 1");
            }
            resolver.attempts = r.attempts;
        }
        Settings {
            session,
            concurrency: raw.concurrency,
            per_host: raw.per_host,
            resolver,
        }
    }

    fn session(&mut self, raw: &RawSessionSettings, path: &Path) -> SessionSettings {
        let helo = raw.helo.as_ref().and_then(|h| {
            let p = key(path, "helo");
            let t = self.expand(h, &p, false, &[])?;
            self.one_line(&t, &p, "the helo name");
            Some(t)
        });
        if raw.port == Some(0) {
            self.err(&key(path, "port"), "port 0 cannot be connected to");
        }
        let t = raw.timeouts.clone().unwrap_or_default();
        let tpath = key(path, "timeouts");
        let source_address = raw
            .source_address
            .as_ref()
            .and_then(|a| match a.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.r.at(
                        &key(path, "source_address"),
                        false,
                        a.chars().count(),
                        format!("`{a}` is not an IP address"),
                    );
                    None
                }
            });
        let ca_file = raw
            .ca_file
            .as_ref()
            .and_then(|f| self.existing_file(f, &key(path, "ca_file")));
        SessionSettings {
            helo,
            port: raw.port,
            tls: raw.tls,
            tls_verify: raw.tls_verify,
            ca_file,
            connect_timeout: self.duration(&t.connect, &tpath, "connect"),
            reply_timeout: self.duration(&t.reply, &tpath, "reply"),
            data_timeout: self.duration(&t.data, &tpath, "data"),
            session_timeout: self.duration(&t.session, &tpath, "session"),
            retries: raw.retries,
            retry_delay: self.duration(&raw.retry_delay, path, "retry_delay"),
            source_address,
            ip: raw.ip,
            proxy_protocol: raw.proxy_protocol,
        }
    }

    fn target(&mut self, raw: &RawTarget, path: &Path) -> Option<Target> {
        let forms: Vec<&str> = [
            ("host", raw.host.is_some()),
            ("domain", raw.domain.is_some()),
            ("file", raw.file.is_some()),
            ("responder", raw.responder.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| *k)
        .collect();
        let settings = self.session(&raw.settings, path);
        match forms.as_slice() {
            [] => {
                self.err(
                    path,
                    "a target needs one of `host`, `domain`, `file` or `responder`",
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.err_key(path, second, format!("a target is one of `host`, `domain`, `file` or `responder`; this one also has `{}`", forms[0]));
                return None;
            }
        }
        if forms[0] != "domain" {
            for (k, on) in [
                ("mx", raw.mx.is_some()),
                ("expect_mx", raw.expect_mx.is_some()),
            ] {
                if on {
                    self.err_key(path, k, format!("`{k}` applies to `domain:` targets only"));
                }
            }
        }
        if forms[0] == "responder" && raw.settings.port.is_some() {
            self.err_key(
                path,
                "port",
                "a responder listens on a port of its own choosing; remove `port`",
            );
        }
        let mut tags = Vec::new();
        for (i, t) in raw.tags.iter().flatten().enumerate() {
            if t.is_empty() || t.contains(char::is_whitespace) {
                self.err(
                    &idx(&key(path, "tags"), i),
                    format!("tag `{t}` must be one word"),
                );
            }
            tags.push(t.clone());
        }
        let name = match &raw.name {
            Some(n) => Some(self.expand_static(n, &key(path, "name"))?),
            None => None,
        };
        let kind = match forms[0] {
            "host" => {
                let p = key(path, "host");
                let text = self.expand_static(raw.host.as_deref().unwrap_or_default(), &p)?;
                match parse_host(&text) {
                    Ok(hp) => TargetKind::Host(hp),
                    Err(e) => {
                        self.r.at(&p, false, text.chars().count(), e);
                        return None;
                    }
                }
            }
            "domain" => {
                let p = key(path, "domain");
                let text = self.expand_static(raw.domain.as_deref().unwrap_or_default(), &p)?;
                if let Err(e) = check_name(&text) {
                    let hint = if text.contains(':') {
                        "; a domain has no port: set `port:` beside it"
                    } else {
                        ""
                    };
                    self.r
                        .at(&p, false, text.chars().count(), format!("{e}{hint}"));
                    return None;
                }
                TargetKind::Domain {
                    domain: text,
                    mx: raw.mx.unwrap_or(MxMode::Primary),
                    expect_mx: raw.expect_mx.map(|e| e.unwrap_or(ExpectMx::Null)),
                }
            }
            "file" => {
                let p = key(path, "file");
                let text = self.expand_static(raw.file.as_deref().unwrap_or_default(), &p)?;
                let full = self.dir.join(&text);
                match std::fs::read_to_string(&full) {
                    Ok(contents) => {
                        let list = Source::new(full.display().to_string(), contents);
                        match parse_target_list(&list) {
                            Ok(entries) if entries.is_empty() => {
                                self.r.at(
                                    &p,
                                    false,
                                    text.chars().count(),
                                    format!("`{}` lists no targets", full.display()),
                                );
                                return None;
                            }
                            Ok(entries) => TargetKind::List {
                                path: full,
                                entries,
                            },
                            Err(diags) => {
                                self.extra.extend(diags);
                                return None;
                            }
                        }
                    }
                    Err(e) => {
                        self.r.at(
                            &p,
                            false,
                            text.chars().count(),
                            format!("cannot read target list `{}`: {e}", full.display()),
                        );
                        return None;
                    }
                }
            }
            _ => {
                let p = key(path, "responder");
                let text = self.expand_static(raw.responder.as_deref().unwrap_or_default(), &p)?;
                if BUILT_IN_PERSONAS.contains(&text.as_str()) {
                    TargetKind::Responder(text)
                } else if text.ends_with(".yaml") || text.ends_with(".yml") {
                    let full = self.dir.join(&text);
                    if !full.is_file() {
                        self.r.at(
                            &p,
                            false,
                            text.chars().count(),
                            format!("persona file `{}` does not exist", full.display()),
                        );
                        return None;
                    }
                    TargetKind::Responder(full.display().to_string())
                } else {
                    let hint = match did_you_mean(&text, BUILT_IN_PERSONAS.iter().copied()) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None => format!(
                            "; built in: {}; or give a persona file (`*.yaml`)",
                            BUILT_IN_PERSONAS.join(", ")
                        ),
                    };
                    self.r.at(
                        &p,
                        false,
                        text.chars().count(),
                        format!("unknown responder persona `{text}`{hint}"),
                    );
                    return None;
                }
            }
        };
        Some(Target {
            kind,
            name,
            tags,
            settings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn test(
        &mut self,
        raw: &RawTest,
        path: &Path,
        targets: &mut Vec<Target>,
        top_level: usize,
        top_ok: bool,
        settings: &Settings,
    ) -> Test {
        let test_settings = self.session(&raw.settings, path);
        let mut chosen: Vec<usize> = Vec::new();
        let mut targets_ok = true;
        match &raw.targets {
            None => chosen.extend(0..top_level),
            Some(list) => {
                let tpath = key(path, "targets");
                for (i, entry) in list.iter().enumerate() {
                    match entry {
                        RawTestTarget::Tag(RawTagRef { tag }) => {
                            let hits: Vec<usize> = (0..top_level)
                                .filter(|&j| targets[j].tags.iter().any(|t| t == tag))
                                .collect();
                            if hits.is_empty() && top_ok {
                                let known: Vec<&str> = targets[..top_level]
                                    .iter()
                                    .flat_map(|t| t.tags.iter().map(String::as_str))
                                    .collect();
                                let hint = did_you_mean(tag, known)
                                    .map_or(String::new(), |s| format!("; did you mean `{s}`?"));
                                self.err(
                                    &key(&idx(&tpath, i), "tag"),
                                    format!("no top-level target has tag `{tag}`{hint}"),
                                );
                            }
                            targets_ok &= !hits.is_empty();
                            chosen.extend(
                                hits.into_iter()
                                    .filter(|j| !chosen.contains(j))
                                    .collect::<Vec<_>>(),
                            );
                        }
                        RawTestTarget::Target(t) => match self.target(t, &idx(&tpath, i)) {
                            Some(t) => {
                                targets.push(t);
                                chosen.push(targets.len() - 1);
                            }
                            None => targets_ok = false,
                        },
                    }
                }
            }
        }
        if chosen.is_empty() && targets_ok && top_ok {
            self.err(
                &key(path, "name"),
                format!(
                    "test `{}` has no targets: add top-level `targets`, or `targets:` to the test",
                    raw.name
                ),
            );
        }
        // AUTH over plaintext is refused unless every target this test runs on uses
        // implicit TLS (or a STARTTLS step comes first; checked per step).
        let implicit_tls = !chosen.is_empty()
            && chosen.iter().all(|&j| {
                test_settings
                    .or(&targets[j].settings)
                    .or(&settings.session)
                    .tls
                    == Some(TlsMode::Implicit)
            });
        if raw.steps.is_empty() {
            self.err(&key(path, "steps"), "a test needs at least one step");
        }
        let mut ctx = StepCtx {
            captures: Vec::new(),
            tls: implicit_tls,
            implicit: implicit_tls,
        };
        let spath = key(path, "steps");
        let mut steps = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            if let Some(step) = self.step(s, &idx(&spath, i), &mut ctx, false) {
                steps.push(step);
            }
        }
        Test {
            name: raw.name.clone(),
            targets: chosen,
            settings: test_settings,
            steps,
        }
    }

    fn step(
        &mut self,
        raw: &RawStep,
        path: &Path,
        ctx: &mut StepCtx,
        in_pipeline: bool,
    ) -> Option<Step> {
        let present: Vec<&str> = VERBS.iter().copied().filter(|v| raw.has_verb(v)).collect();
        let verb = match present.as_slice() {
            [] => {
                self.err(
                    path,
                    format!("a step needs a verb: one of {}", VERBS.join(", ")),
                );
                return None;
            }
            [one] => *one,
            [first, second, ..] => {
                self.err_key(path, second, format!("a step has one verb; this one has `{first}` and `{second}`: put each in its own `- {second}: ...` step"));
                return None;
            }
        };
        let modifiers: [(&str, bool, &[&str]); 6] = [
            ("notify", raw.notify.is_some(), &["rcpt_to"]),
            ("orcpt", raw.orcpt.is_some(), &["rcpt_to"]),
            ("params", raw.params.is_some(), &["mail_from", "rcpt_to"]),
            ("capabilities", raw.capabilities.is_some(), &["ehlo"]),
            ("absent", raw.absent.is_some(), &["ehlo"]),
            ("cert", raw.cert.is_some(), &["connect", "starttls"]),
        ];
        for (m, on, owners) in modifiers {
            if on && !owners.contains(&verb) {
                let owners: Vec<String> = owners.iter().map(|o| format!("`{o}`")).collect();
                self.err_key(
                    path,
                    m,
                    format!("`{m}` belongs to {}, not `{verb}`", owners.join(" and ")),
                );
            }
        }
        let vpath = key(path, verb);
        let name = raw.name.clone();
        let timeout = self.duration(&raw.timeout, path, "timeout");
        let within = self.duration(&raw.within, path, "within");
        let expect = match &raw.expect {
            Some(e) if verb == "pipeline" => {
                let _ = e;
                self.err_key(
                    path,
                    "expect",
                    "a `pipeline` has no reply of its own: put `expect` on its steps",
                );
                None
            }
            Some(e) => self.expect(e, &key(path, "expect"), verb == "connect"),
            None if verb == "send" => {
                self.err(
                    &vpath,
                    "`send` needs `expect`: smtp-plan cannot know what reply a raw line should get",
                );
                None
            }
            None => None,
        };
        let caps = ctx.captures.clone();
        let tpl = |c: &mut Self, text: &str, p: &Path, what: &str| -> Option<Template> {
            let t = c.expand(text, p, true, &caps)?;
            c.one_line(&t, p, what);
            Some(t)
        };
        let action = match verb {
            "connect" => {
                // A new connection is TLS again only under implicit TLS.
                ctx.tls = ctx.implicit;
                Action::Connect {
                    cert: self.cert(&raw.cert, path, &caps),
                }
            }
            "ehlo" | "helo" => {
                let arg = if verb == "ehlo" { &raw.ehlo } else { &raw.helo };
                let name = match arg.as_ref().and_then(Option::as_ref) {
                    Some(n) => Some(tpl(self, n, &vpath, "the name")?),
                    None => None,
                };
                if verb == "ehlo" {
                    Action::Ehlo {
                        name,
                        capabilities: self.words(&raw.capabilities, &key(path, "capabilities")),
                        absent: self.words(&raw.absent, &key(path, "absent")),
                    }
                } else {
                    Action::Helo { name }
                }
            }
            "starttls" => {
                if ctx.tls {
                    self.err(&vpath, "the connection is already TLS here (an earlier `starttls`, or `tls: implicit`); STARTTLS cannot be repeated (RFC 3207)");
                }
                ctx.tls = true;
                let o = raw.starttls.clone().flatten();
                let sni = match o.as_ref().and_then(|o| o.sni.as_ref()) {
                    Some(s) => Some(tpl(self, s, &key(&vpath, "sni"), "the SNI name")?),
                    None => None,
                };
                let min_version = match o.as_ref().and_then(|o| o.min_version.as_ref()) {
                    None => None,
                    Some(v) => match v.to_text().as_str() {
                        "1.2" => Some(TlsVersion::V1_2),
                        "1.3" => Some(TlsVersion::V1_3),
                        other => {
                            self.err(&key(&vpath, "min_version"), format!("`{other}` is not a TLS version smtp-plan speaks: use `\"1.2\"` or `\"1.3\"`"));
                            None
                        }
                    },
                };
                let ca_file = match o.as_ref().and_then(|o| o.ca_file.as_ref()) {
                    Some(f) => Some(self.existing_file(f, &key(&vpath, "ca_file"))?),
                    None => None,
                };
                Action::StartTls {
                    verify: o.as_ref().and_then(|o| o.verify),
                    sni,
                    min_version,
                    ca_file,
                    cert: self.cert(&raw.cert, path, &caps),
                }
            }
            "auth" => {
                let Some(a) = raw.auth.clone().flatten() else {
                    self.err(
                        &vpath,
                        "`auth` needs `{ mechanism, username, password }` (or `token` for xoauth2)",
                    );
                    return None;
                };
                if !ctx.tls && a.allow_plaintext != Some(true) {
                    self.err(&vpath, "`auth` would send credentials over a connection that is not TLS: add a `starttls` step before it, set `tls: implicit`, or say `allow_plaintext: true`");
                }
                let (want, other) = if a.mechanism == AuthMechanism::Xoauth2 {
                    ("token", "password")
                } else {
                    ("password", "token")
                };
                let (given, wrong) = if want == "token" {
                    (&a.token, &a.password)
                } else {
                    (&a.password, &a.token)
                };
                if wrong.is_some() {
                    self.err_key(
                        &vpath,
                        other,
                        format!(
                            "mechanism `{}` takes `{want}`, not `{other}`",
                            mechanism_name(a.mechanism)
                        ),
                    );
                    return None;
                }
                let Some(secret_text) = given else {
                    self.err(&vpath, format!("mechanism `{}` needs `{want}` (use `${{env:NAME}}` to keep it out of the plan)", mechanism_name(a.mechanism)));
                    return None;
                };
                let username = tpl(self, &a.username, &key(&vpath, "username"), "the user name")?;
                let secret = tpl(
                    self,
                    secret_text,
                    &key(&vpath, want),
                    &format!("the {want}"),
                )?;
                self.remember_secrets(&username, false);
                self.remember_secrets(&secret, true);
                Action::Auth {
                    mechanism: a.mechanism,
                    username,
                    secret,
                    allow_plaintext: a.allow_plaintext == Some(true),
                }
            }
            "mail_from" | "rcpt_to" => {
                let arg = if verb == "mail_from" {
                    &raw.mail_from
                } else {
                    &raw.rcpt_to
                };
                let Some(text) = arg.clone().flatten() else {
                    let hint = if verb == "mail_from" {
                        " (`<>` is the null sender)"
                    } else {
                        ""
                    };
                    self.err(&vpath, format!("`{verb}` needs an address{hint}"));
                    return None;
                };
                let bare = strip_brackets(&text);
                if bare.is_empty() && verb == "rcpt_to" {
                    self.err(&vpath, "`rcpt_to` needs an address; `<>` is only a sender");
                    return None;
                }
                let address = tpl(self, bare, &vpath, "the address")?;
                let mut params = Vec::new();
                for (i, p) in raw.params.iter().flatten().enumerate() {
                    let pp = idx(&key(path, "params"), i);
                    if p.is_empty() || p.contains(' ') {
                        self.err(&pp, format!("parameter `{p}` must be one word such as `SIZE=1000` (RFC 5321 4.1.2)"));
                    }
                    params.push(tpl(self, p, &pp, "the parameter")?);
                }
                if verb == "mail_from" {
                    Action::MailFrom { address, params }
                } else {
                    let notify = raw
                        .notify
                        .as_ref()
                        .and_then(|n| self.notify(n, &key(path, "notify")));
                    let orcpt = match &raw.orcpt {
                        Some(o) => {
                            Some(tpl(self, o, &key(path, "orcpt"), "the original recipient")?)
                        }
                        None => None,
                    };
                    Action::RcptTo {
                        address,
                        notify,
                        orcpt,
                        params,
                    }
                }
            }
            "data" | "bdat" => {
                let m = if verb == "data" { &raw.data } else { &raw.bdat };
                let m = m.clone().flatten().unwrap_or_default();
                let message = self.message(&m, &vpath, &caps)?;
                if verb == "data" {
                    if m.chunk_size.is_some() {
                        self.err_key(
                            &vpath,
                            "chunk_size",
                            "`chunk_size` belongs to `bdat`; `data` sends the message in one piece",
                        );
                    }
                    Action::Data(message)
                } else {
                    let chunk_size = match &m.chunk_size {
                        Some(s) => Some(self.size(s, &key(&vpath, "chunk_size"))?),
                        None => None,
                    };
                    Action::Bdat {
                        message,
                        chunk_size,
                    }
                }
            }
            "rset" => Action::Rset,
            "noop" => Action::Noop,
            "quit" => Action::Quit,
            "vrfy" | "expn" | "send" => {
                let arg = match verb {
                    "vrfy" => &raw.vrfy,
                    "expn" => &raw.expn,
                    _ => &raw.send,
                };
                let Some(text) = arg.clone().flatten() else {
                    self.err(&vpath, format!("`{verb}` needs an argument"));
                    return None;
                };
                let t = tpl(
                    self,
                    &text,
                    &vpath,
                    if verb == "send" {
                        "the line"
                    } else {
                        "the argument"
                    },
                )?;
                match verb {
                    "vrfy" => Action::Vrfy(t),
                    "expn" => Action::Expn(t),
                    _ => Action::Send(t),
                }
            }
            _ => {
                if in_pipeline {
                    self.err(&vpath, "a `pipeline` cannot hold another `pipeline`");
                    return None;
                }
                let list = raw.pipeline.clone().flatten().unwrap_or_default();
                if list.is_empty() {
                    self.err(&vpath, "a `pipeline` needs at least one step");
                    return None;
                }
                let mut inner = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    let ip = idx(&vpath, i);
                    let Some(step) = self.step(s, &ip, ctx, true) else {
                        continue;
                    };
                    let v = step.action.verb();
                    match pipelinable(v) {
                        None => self.err(&ip, format!("`{v}` cannot be pipelined (RFC 2920): only mail_from, rcpt_to, rset, send, and last in the group data, bdat, noop, quit, vrfy, expn")),
                        Some(true) if i + 1 != list.len() => self.err(&ip, format!("`{v}` must be the last step of a pipeline (RFC 2920 section 3.1)")),
                        _ => {}
                    }
                    inner.push(step);
                }
                Action::Pipeline(inner)
            }
        };
        let mut capture = Vec::new();
        for (name, re) in raw.capture.iter().flatten() {
            let cpath = key(&key(path, "capture"), name);
            if !name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.err_key(&key(path, "capture"), name, format!("capture name `{name}` must start with a letter and hold only letters, digits and `_`"));
                continue;
            }
            match Regex::new(re) {
                Ok(regex) => {
                    ctx.captures.push(name.clone());
                    capture.push(Capture {
                        name: name.clone(),
                        regex,
                    });
                }
                Err(e) => self.err(&cpath, format!("invalid regex: {}", regex_error(&e))),
            }
        }
        if verb == "pipeline" && !capture.is_empty() {
            self.err_key(
                path,
                "capture",
                "a `pipeline` has no reply of its own: put `capture` on its steps",
            );
        }
        let expect = expect.unwrap_or_else(|| default_expect(verb));
        Some(Step {
            name,
            action,
            expect,
            timeout,
            within,
            capture,
        })
    }

    fn remember_secrets(&mut self, t: &Template, whole: bool) {
        if whole {
            if let Some(s) = t.static_text() {
                self.secrets.push(s);
            }
        }
        for p in &t.pieces {
            match p {
                Piece::Env { value, .. } => self.secrets.push(value.clone()),
                Piece::Lit(s) if whole => self.secrets.push(s.clone()),
                _ => {}
            }
        }
        self.secrets.retain(|s| !s.is_empty());
        self.secrets.sort();
        self.secrets.dedup();
    }

    fn words(&mut self, raw: &Option<Vec<String>>, path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for (i, w) in raw.iter().flatten().enumerate() {
            if w.trim().is_empty() || w.contains(['\r', '\n']) {
                self.err(
                    &idx(path, i),
                    "a capability is a keyword such as `STARTTLS` or `SIZE`",
                );
                continue;
            }
            out.push(w.trim().to_string());
        }
        out
    }

    fn cert(&mut self, raw: &Option<RawCert>, path: &Path, caps: &[String]) -> Option<CertCheck> {
        let c = raw.as_ref()?;
        if c.valid_for_days.is_none() && c.names.as_ref().is_none_or(Vec::is_empty) {
            self.err(
                &key(path, "cert"),
                "`cert` needs `valid_for_days`, `names`, or both",
            );
        }
        let mut names = Vec::new();
        for (i, n) in c.names.iter().flatten().enumerate() {
            let p = idx(&key(&key(path, "cert"), "names"), i);
            let name = self.expand(n, &p, true, caps)?;
            if let Some(text) = name.static_text() {
                if let Err(e) = check_name(text.strip_prefix("*.").unwrap_or(&text)) {
                    self.err(&p, e);
                }
            }
            names.push(name);
        }
        Some(CertCheck {
            valid_for_days: c.valid_for_days,
            names,
        })
    }

    fn notify(&mut self, raw: &RawNotify, path: &Path) -> Option<Notify> {
        let words: Vec<(usize, &String)> = match raw {
            RawNotify::Word(w) if w.eq_ignore_ascii_case("never") => return Some(Notify::Never),
            RawNotify::Word(w) => vec![(usize::MAX, w)],
            RawNotify::List(l) => l.iter().enumerate().collect(),
        };
        let mut on = Vec::new();
        for (i, w) in words {
            let p = if i == usize::MAX {
                path.clone()
            } else {
                idx(path, i)
            };
            match w.to_ascii_lowercase().as_str() {
                "success" => on.push(NotifyOn::Success),
                "failure" => on.push(NotifyOn::Failure),
                "delay" => on.push(NotifyOn::Delay),
                "never" => {
                    self.err(&p, "`never` cannot be combined with other notifications (RFC 3461 section 4.1); write `notify: never`");
                    return None;
                }
                other => {
                    let hint = did_you_mean(other, ["success", "failure", "delay", "never"])
                        .map_or(String::new(), |s| format!("; did you mean `{s}`?"));
                    self.err(&p, format!("`{other}` is not a DSN notification: use success, failure, delay, or `never`{hint}"));
                    return None;
                }
            }
        }
        if on.is_empty() {
            self.err(
                path,
                "`notify` needs at least one of success, failure, delay (or `never`)",
            );
            return None;
        }
        on.dedup();
        Some(Notify::On(on))
    }

    fn message(&mut self, m: &RawMessage, path: &Path, caps: &[String]) -> Option<Message> {
        if m.raw.is_some() && (m.headers.is_some() || m.body.is_some()) {
            let k = if m.headers.is_some() {
                "headers"
            } else {
                "body"
            };
            self.err_key(
                path,
                k,
                "a message is `headers` and `body`, or `raw`, not both",
            );
            return None;
        }
        let size = match &m.size {
            Some(s) => Some(self.size(s, &key(path, "size"))?),
            None => None,
        };
        let content = if let Some(raw) = &m.raw {
            Content::Raw(self.expand(raw, &key(path, "raw"), true, caps)?)
        } else {
            let mut headers = Vec::new();
            let hpath = key(path, "headers");
            for (name, value) in m.headers.iter().flatten() {
                // RFC 5322 section 3.6.8: printable ASCII except the colon.
                if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
                    self.err_key(&hpath, name, format!("`{name}` is not a header field name (printable ASCII, no spaces or colons)"));
                    continue;
                }
                let vp = key(&hpath, name);
                let Some(t) = self.expand(&value.to_text(), &vp, true, caps) else {
                    continue;
                };
                self.one_line(&t, &vp, &format!("header `{name}`"));
                headers.push((name.clone(), t));
            }
            let body = match &m.body {
                Some(b) => self.expand(b, &key(path, "body"), true, caps)?,
                None => Template::default(),
            };
            Content::Parts { headers, body }
        };
        Some(Message { content, size })
    }

    fn size(&mut self, raw: &RawScalar, path: &Path) -> Option<u64> {
        let text = raw.to_text();
        match parse_size(&text) {
            Some(0) | None => {
                self.err(path, format!("`{text}` is not a size: write bytes (`1000`) or a number with a unit, `10MB` (10^6), `10MiB` (2^20), also KB, KiB, GB, GiB"));
                None
            }
            Some(n) => Some(n),
        }
    }

    fn expect(&mut self, raw: &RawExpect, path: &Path, connect: bool) -> Option<Expect> {
        let list: Vec<(Path, &RawPattern)> = match raw {
            RawExpect::One(p) => vec![(path.clone(), p)],
            RawExpect::Any(ps) => ps
                .iter()
                .enumerate()
                .map(|(i, p)| (idx(path, i), p))
                .collect(),
        };
        if list.is_empty() {
            self.err(path, "`expect` needs at least one pattern");
            return None;
        }
        let mut any = Vec::new();
        let mut ok = true;
        for (p, pat) in list {
            match self.pattern(pat, &p, connect) {
                Some(x) => any.push(x),
                None => ok = false,
            }
        }
        ok.then_some(Expect { any })
    }

    fn pattern(&mut self, raw: &RawPattern, path: &Path, connect: bool) -> Option<Pattern> {
        let fail = |c: &mut Self, width: usize, e: String| {
            c.r.at(path, false, width, e);
            None
        };
        match raw {
            RawPattern::Code(n) => {
                let text = n.to_string();
                match CodePattern::parse(&text) {
                    Ok(code) => Some(Pattern::Reply {
                        code: Some(code),
                        enhanced: None,
                        text: None,
                    }),
                    Err(e) => fail(self, text.len(), e),
                }
            }
            RawPattern::Float(f) => {
                let text = f.to_string();
                let e = EnhancedPattern::parse(&text).err().unwrap_or_default();
                fail(self, text.len(), e)
            }
            RawPattern::Text(t) => match Pattern::parse_text(t.trim(), connect) {
                Ok(p) => Some(p),
                Err(e) => fail(self, t.chars().count(), e),
            },
            RawPattern::Not(n) => {
                let inner = self.expect(&n.not, &key(path, "not"), false)?;
                Some(Pattern::Not(Box::new(inner)))
            }
            RawPattern::Parts(parts) => {
                if parts.code.is_none() && parts.enhanced.is_none() && parts.text.is_none() {
                    return fail(
                        self,
                        1,
                        "a pattern map needs `code`, `enhanced` or `text`".into(),
                    );
                }
                let code = match &parts.code {
                    Some(c) => match CodePattern::parse(&c.to_text()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.err(&key(path, "code"), e);
                            return None;
                        }
                    },
                    None => None,
                };
                let enhanced = match &parts.enhanced {
                    Some(e) => match EnhancedPattern::parse(&e.to_text()) {
                        Ok(e) => Some(e),
                        Err(msg) => {
                            self.err(&key(path, "enhanced"), msg);
                            return None;
                        }
                    },
                    None => None,
                };
                let text = match &parts.text {
                    Some(t) => match Regex::new(t) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.err(
                                &key(path, "text"),
                                format!("invalid regex: {}", regex_error(&e)),
                            );
                            return None;
                        }
                    },
                    None => None,
                };
                Some(Pattern::Reply {
                    code,
                    enhanced,
                    text,
                })
            }
        }
    }
}

struct StepCtx {
    captures: Vec<String>,
    /// The connection is TLS at this point of the test.
    tls: bool,
    /// Every target of the test uses implicit TLS.
    implicit: bool,
}

impl RawStep {
    fn has_verb(&self, verb: &str) -> bool {
        match verb {
            "connect" => self.connect.is_some(),
            "ehlo" => self.ehlo.is_some(),
            "helo" => self.helo.is_some(),
            "starttls" => self.starttls.is_some(),
            "auth" => self.auth.is_some(),
            "mail_from" => self.mail_from.is_some(),
            "rcpt_to" => self.rcpt_to.is_some(),
            "data" => self.data.is_some(),
            "bdat" => self.bdat.is_some(),
            "rset" => self.rset.is_some(),
            "noop" => self.noop.is_some(),
            "quit" => self.quit.is_some(),
            "vrfy" => self.vrfy.is_some(),
            "expn" => self.expn.is_some(),
            "send" => self.send.is_some(),
            "pipeline" => self.pipeline.is_some(),
            _ => false,
        }
    }
}

fn mechanism_name(m: AuthMechanism) -> &'static str {
    match m {
        AuthMechanism::Plain => "plain",
        AuthMechanism::Login => "login",
        AuthMechanism::CramMd5 => "cram-md5",
        AuthMechanism::Xoauth2 => "xoauth2",
    }
}

/// The default `expect` of each verb (spec section 6).
fn default_expect(verb: &str) -> Expect {
    match verb {
        "connect" | "starttls" => Expect::code("220"),
        "auth" => Expect::code("235"),
        "quit" => Expect::code("221"),
        "vrfy" | "expn" => Expect::code("2xx"),
        "pipeline" | "send" => Expect { any: Vec::new() },
        _ => Expect::code("250"),
    }
}

/// The last line of a regex error, which says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}

fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(s)
}

/// Parses `1000`, `10KB`, `10MB`, `1GB` (powers of 1000) and `10KiB`, `10MiB`,
/// `1GiB` (powers of 1024); units are case-insensitive.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let bytes = n * mult as f64;
    (0.0..1e15).contains(&bytes).then_some(bytes as u64)
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// Checks a DNS name: letters, digits, `-`, `_`, dots between labels of 1 to 63
/// characters, 253 at most (RFC 1035 section 2.3.4); a trailing dot is allowed.
fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid host or domain name"))
    }
}

/// Parses a host entry: `name`, `name:port`, `IPv4`, `IPv4:port`, `IPv6`,
/// `[IPv6]`, `[IPv6]:port`.
pub fn parse_host(s: &str) -> Result<HostPort, String> {
    let bad_port = |p: &str| format!("`{p}` is not a port number (1 to 65535)");
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad_port(p)),
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: `[` without `]`"))?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{ip}` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => {
                Some(port(after.strip_prefix(':').ok_or_else(|| {
                    format!("`{s}`: expected `:PORT` after `]`")
                })?)?)
            }
        };
        return Ok(HostPort {
            host: ip.to_string(),
            port,
        });
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(HostPort {
            host: s.to_string(),
            port: None,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (s, None),
    };
    if host.contains(':') {
        return Err(format!(
            "`{s}` is not an address: write an IPv6 address with a port as `[ADDRESS]:PORT`"
        ));
    }
    if host.parse::<IpAddr>().is_err() {
        check_name(host)?;
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// Reads a `file:` target list: one entry a line, `#` starts a comment.
pub fn parse_target_list(src: &Source) -> Result<Vec<ListEntry>, Vec<Diagnostic>> {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    let mut diags = Vec::new();
    for (n, line) in src.text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        let entry = content.trim();
        if entry.is_empty() {
            continue;
        }
        let col = content.find(entry).unwrap_or(0);
        let col = content[..col].chars().count() + 1;
        let width = entry.chars().count();
        if entry.contains(char::is_whitespace) {
            diags.push(src.error_at(
                n + 1,
                col,
                width,
                "one target per line: a domain, `host:port` or `[IPv6]:port`",
            ));
            continue;
        }
        let parsed =
            if entry.contains(':') || entry.starts_with('[') || entry.parse::<IpAddr>().is_ok() {
                parse_host(entry).map(ListEntry::Host)
            } else {
                check_name(entry).map(|()| ListEntry::Domain(entry.to_string()))
            };
        match parsed {
            Ok(e) => {
                if seen.insert(e.clone()) {
                    entries.push(e);
                }
            }
            Err(e) => diags.push(src.error_at(n + 1, col, width, e)),
        }
        if diags.len() >= super::load::MAX_DIAGNOSTICS {
            break;
        }
    }
    if diags.is_empty() {
        Ok(entries)
    } else {
        Err(diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("10 MiB"), Some(10 << 20));
        assert_eq!(parse_size("1.5kb"), Some(1500));
        assert_eq!(parse_size("10XB"), None);
        assert_eq!(parse_size("MB"), None);
    }

    #[test]
    fn hosts() {
        let hp = |h: &str, p: Option<u16>| {
            Ok(HostPort {
                host: h.into(),
                port: p,
            })
        };
        assert_eq!(
            parse_host("mail1.fabrikam.com"),
            hp("mail1.fabrikam.com", None)
        );
        assert_eq!(
            parse_host("mail1.fabrikam.com:2525"),
            hp("mail1.fabrikam.com", Some(2525))
        );
        assert_eq!(parse_host("127.0.0.1:25"), hp("127.0.0.1", Some(25)));
        assert_eq!(parse_host("::1"), hp("::1", None));
        assert_eq!(parse_host("[::1]:2525"), hp("::1", Some(2525)));
        assert!(parse_host("[::1]2525").is_err());
        assert!(parse_host("mail:0").is_err());
        assert!(parse_host("bad host").is_err());
        assert!(parse_host("a..b").is_err());
    }

    #[test]
    fn target_lists() {
        let src = Source::new("d.txt", "# domains\nfabrikam.com\n\n mx.contoso.com:2525  # a host\n[::1]:25\nfabrikam.com\n192.0.2.1\n");
        assert_eq!(
            parse_target_list(&src).unwrap(),
            vec![
                ListEntry::Domain("fabrikam.com".into()),
                ListEntry::Host(HostPort {
                    host: "mx.contoso.com".into(),
                    port: Some(2525)
                }),
                ListEntry::Host(HostPort {
                    host: "::1".into(),
                    port: Some(25)
                }),
                ListEntry::Host(HostPort {
                    host: "192.0.2.1".into(),
                    port: None
                }),
            ]
        );
        let bad = Source::new("d.txt", "ok.test\n  bad_port.test:99999\n");
        let e = parse_target_list(&bad).unwrap_err();
        assert_eq!(e[0].to_string(), "d.txt:2:3: error: `99999` is not a port number (1 to 65535)\n2 |   bad_port.test:99999\n  |   ^^^^^^^^^^^^^^^^^^^");
    }

    #[test]
    fn nameservers() {
        assert_eq!(parse_nameserver("127.0.0.1"), "127.0.0.1:53".parse().ok());
        assert_eq!(
            parse_nameserver("127.0.0.1:5353"),
            "127.0.0.1:5353".parse().ok()
        );
        assert_eq!(parse_nameserver("[::1]:5353"), "[::1]:5353".parse().ok());
        assert_eq!(parse_nameserver("::1"), "[::1]:53".parse().ok());
        assert_eq!(parse_nameserver("dns.example"), None);
    }
}
