//! Expansion: plans x targets -> jobs. Each job is one (test, resolved target)
//! pair with its effective settings and its unique report name. Domains are
//! resolved to their mail route before expansion (`routes`); a domain whose DNS
//! answer already decides the case (null MX, no route, a failed lookup) gets a
//! job whose outcome is preset.

use crate::dns::{stable_order, Dns, DnsFailure, MailRoute};
use crate::plan::model::{
    ExpectMx, HostPort, IpFamily, ListEntry, MxMode, Plan, ProxyProtocol, SessionSettings,
    TargetKind, TlsMode,
};
use crate::result::{ErrorKind, Outcome};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Settings with every default filled in (spec section 4).
#[derive(Debug, Clone)]
pub struct Effective {
    /// EHLO/HELO name.
    pub helo: String,
    /// TLS mode.
    pub tls: TlsMode,
    /// Whether certificate verification failures fail the session.
    pub tls_verify: bool,
    /// A CA bundle to trust instead of the Mozilla roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// TCP connect.
    pub connect: Duration,
    /// One reply.
    pub reply: Duration,
    /// Message body and final reply.
    pub data: Duration,
    /// Whole session.
    pub session: Duration,
    /// Extra attempts.
    pub retries: u32,
    /// First delay between attempts.
    pub retry_delay: Duration,
    /// Local address.
    pub source_address: Option<IpAddr>,
    /// Address families.
    pub ip: IpFamily,
    /// Send a PROXY protocol header first.
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl Effective {
    fn from(s: &SessionSettings, hostname: &str) -> Effective {
        Effective {
            helo: s
                .helo
                .as_ref()
                .and_then(|t| t.static_text())
                .unwrap_or_else(|| hostname.to_string()),
            tls: s.tls.unwrap_or(TlsMode::None),
            tls_verify: s.tls_verify.unwrap_or(true),
            ca_file: s.ca_file.clone(),
            connect: s.connect_timeout.unwrap_or(Duration::from_secs(10)),
            reply: s.reply_timeout.unwrap_or(Duration::from_secs(60)),
            data: s.data_timeout.unwrap_or(Duration::from_secs(180)),
            session: s.session_timeout.unwrap_or(Duration::from_secs(600)),
            retries: s.retries.unwrap_or(0),
            retry_delay: s.retry_delay.unwrap_or(Duration::from_secs(5)),
            source_address: s.source_address,
            ip: s.ip.unwrap_or(IpFamily::Any),
            proxy_protocol: s.proxy_protocol,
        }
    }
}

/// `--connect-to NAME=ADDR[:PORT]`: connections for host or domain NAME go to ADDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    /// The host or domain name, lower case.
    pub name: String,
    /// Where to connect instead.
    pub ip: IpAddr,
    /// The port instead, when given.
    pub port: Option<u16>,
}

/// What every job of a run shares.
pub struct Context {
    /// The run's resolver, or why it could not be made.
    pub dns: Result<Dns, String>,
    /// `--connect-to` rules.
    pub connect_to: Vec<ConnectTo>,
    /// Unique per run.
    pub run_id: Arc<str>,
    /// Becomes true when the run is interrupted (Ctrl-C, SIGTERM).
    pub cancel: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Resolves when the run is interrupted (never, if the sender is gone unused).
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Context {
    /// The `--connect-to` rule for `name`, if any.
    pub fn redirect(&self, name: &str) -> Option<&ConnectTo> {
        self.connect_to
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name.trim_end_matches('.')))
    }
}

/// The mail routes of the domains of a run, looked up before expansion.
pub type Routes = HashMap<String, Result<MailRoute, DnsFailure>>;

/// One (test, target) session to run.
#[derive(Clone)]
pub struct Job {
    /// Position in the run, for stable ordering and unique message ids.
    pub index: usize,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Index of the suite (plan test) in the run's report.
    pub suite: usize,
    /// Index of the test in the plan.
    pub test: usize,
    /// Hosts to try, in order, until one accepts a connection (MX hosts, or the
    /// host or domain itself).
    pub hosts: Vec<String>,
    /// Port.
    pub port: u16,
    /// The domain for MX targets.
    pub domain: Option<String>,
    /// An address to use instead of resolving (responders).
    pub fixed_addr: Option<SocketAddr>,
    /// `TEST @ TARGET`.
    pub name: String,
    /// `PLAN.TEST`.
    pub classname: String,
    /// Settings.
    pub settings: Effective,
    /// Shared by the run.
    pub context: Arc<Context>,
    /// When set, the case ends this way without connecting.
    pub preset: Option<Outcome>,
}

/// Where a job connects, before settings are applied.
struct Place {
    hosts: Vec<String>,
    port: Option<u16>,
    domain: Option<String>,
    fixed: Option<SocketAddr>,
    /// The host reports name with the port (default: the first of `hosts`).
    shown_host: Option<String>,
    /// A name reports use as it is (responders).
    label: Option<String>,
    preset: Option<Outcome>,
}

impl Place {
    fn host(hp: &HostPort) -> Place {
        Place {
            hosts: vec![hp.host.clone()],
            port: hp.port,
            domain: None,
            fixed: None,
            shown_host: None,
            label: None,
            preset: None,
        }
    }
}

/// A suite of the run: which plan and test it reports.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The report name.
    pub name: String,
    /// Plan index in the run.
    pub plan: usize,
    /// Test index in the plan.
    pub test: usize,
}

/// The expansion of a run.
#[derive(Clone)]
pub struct Expansion {
    /// One per plan test.
    pub suites: Vec<Suite>,
    /// Jobs in plan order.
    pub jobs: Vec<Job>,
}

/// The domains whose mail route the plans need (all but `--connect-to` ones).
pub fn domains(plans: &[Arc<Plan>], context: &Context) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for plan in plans {
        for test in &plan.tests {
            for &t in &test.targets {
                let list: Vec<&str> = match &plan.targets[t].kind {
                    TargetKind::Domain { domain, .. } => vec![domain.as_str()],
                    TargetKind::List { entries, .. } => entries
                        .iter()
                        .filter_map(|e| match e {
                            ListEntry::Domain(d) => Some(d.as_str()),
                            ListEntry::Host(_) => None,
                        })
                        .collect(),
                    _ => vec![],
                };
                for d in list {
                    if context.redirect(d).is_none() && seen.insert(d.to_ascii_lowercase()) {
                        out.push(d.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Expands plans into jobs. `responders` gives the address of the running
/// responder of each persona; `keep` decides by case name whether a job runs
/// (`--filter`).
pub fn expand(
    plans: &[Arc<Plan>],
    routes: &Routes,
    responders: &dyn Fn(&str) -> Result<SocketAddr, String>,
    keep: &dyn Fn(&str) -> bool,
    context: &Arc<Context>,
    hostname: &str,
) -> Expansion {
    let several = plans.len() > 1;
    let mut suites = Vec::new();
    let mut jobs = Vec::new();
    let mut all_names = HashSet::new();
    for (pi, plan) in plans.iter().enumerate() {
        for (ti, test) in plan.tests.iter().enumerate() {
            let suite = suites.len();
            let suite_name = if several {
                format!("{} / {}", plan.name, test.name)
            } else {
                test.name.clone()
            };
            suites.push(Suite {
                name: suite_name.clone(),
                plan: pi,
                test: ti,
            });
            let mut seen = HashSet::new();
            for &target_index in &test.targets {
                let target = &plan.targets[target_index];
                let settings = test
                    .settings
                    .or(&target.settings)
                    .or(&plan.settings.session);
                let eff = Effective::from(&settings, hostname);
                for place in places(&target.kind, routes, responders, context) {
                    let port = place.port.or(settings.port).unwrap_or(match eff.tls {
                        TlsMode::None => 25,
                        TlsMode::Implicit => 465,
                    });
                    let first = place
                        .shown_host
                        .clone()
                        .or_else(|| place.hosts.first().cloned())
                        .unwrap_or_default();
                    let shown = target
                        .name
                        .clone()
                        .or(place.label.clone())
                        .unwrap_or_else(|| host_port(&first, port));
                    let shown = match &place.domain {
                        Some(d) => format!("{shown} ({d})"),
                        None => shown,
                    };
                    let mut name = format!("{suite_name} @ {shown}");
                    if !seen.insert(name.clone()) || !keep(&name) {
                        continue;
                    }
                    // Two plans of one run may share their names: case names stay
                    // unique in the report all the same.
                    let base = name.clone();
                    let mut n = 1;
                    while !all_names.insert(name.clone()) {
                        n += 1;
                        name = format!("{base} [{n}]");
                    }
                    jobs.push(Job {
                        index: jobs.len(),
                        plan: plan.clone(),
                        suite,
                        test: ti,
                        hosts: place.hosts,
                        port,
                        domain: place.domain,
                        fixed_addr: place.fixed,
                        name,
                        classname: format!("{}.{}", plan.name, test.name),
                        settings: eff.clone(),
                        context: context.clone(),
                        preset: place.preset,
                    });
                }
            }
        }
    }
    Expansion { suites, jobs }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The places of a `domain:` target (or a domain line of a `file:` list).
fn domain_places(
    domain: &str,
    mx: MxMode,
    expect: Option<ExpectMx>,
    routes: &Routes,
    context: &Context,
) -> Vec<Place> {
    let place = |hosts: Vec<String>, shown: String, preset: Option<Outcome>| Place {
        hosts,
        port: None,
        domain: Some(domain.to_string()),
        fixed: None,
        shown_host: Some(shown),
        label: None,
        preset,
    };
    let here = |preset: Outcome| {
        vec![place(
            vec![domain.to_string()],
            domain.to_string(),
            Some(preset),
        )]
    };
    if context.redirect(domain).is_some() {
        return vec![place(vec![domain.to_string()], domain.to_string(), None)];
    }
    let unexpected = |what: &str| {
        let wanted = match expect {
            Some(ExpectMx::Null) => "a null MX",
            _ => "no mail route",
        };
        Outcome::Failed {
            message: format!("expected {wanted} (`expect_mx`), but {domain} {what}"),
        }
    };
    match routes.get(&domain.to_ascii_lowercase()) {
        None => here(Outcome::Errored {
            kind: ErrorKind::Dns,
            message: format!("{domain} was not resolved"),
        }),
        Some(Err(f)) => here(Outcome::Errored {
            kind: ErrorKind::Dns,
            message: f.to_string(),
        }),
        Some(Ok(MailRoute::Null)) => match expect {
            Some(ExpectMx::Null) => here(Outcome::Passed),
            Some(ExpectMx::None) => here(unexpected("has a null MX (MX 0 .)")),
            None => here(Outcome::Failed {
                message: format!("{domain} has a null MX (MX 0 ., RFC 7505): it accepts no mail"),
            }),
        },
        Some(Ok(MailRoute::None(why))) => match expect {
            Some(ExpectMx::None) => here(Outcome::Passed),
            Some(ExpectMx::Null) => here(unexpected(&format!("has no mail route at all: {why}"))),
            None => here(Outcome::Errored {
                kind: ErrorKind::Dns,
                message: format!("no mail route: {why}"),
            }),
        },
        Some(Ok(MailRoute::Implicit)) => match expect {
            Some(_) => here(unexpected("has an address, its implicit MX")),
            None => vec![place(vec![domain.to_string()], domain.to_string(), None)],
        },
        Some(Ok(MailRoute::Mx(hosts))) => {
            if expect.is_some() {
                let list: Vec<String> = hosts
                    .iter()
                    .map(|h| format!("{} {}", h.preference, h.host))
                    .collect();
                return here(unexpected(&format!("has MX records: {}", list.join(", "))));
            }
            let named = stable_order(hosts);
            match mx {
                MxMode::Primary => vec![place(
                    hosts.iter().map(|h| h.host.clone()).collect(),
                    named[0].host.clone(),
                    None,
                )],
                MxMode::All => named
                    .iter()
                    .map(|h| place(vec![h.host.clone()], h.host.clone(), None))
                    .collect(),
            }
        }
    }
}

fn places(
    kind: &TargetKind,
    routes: &Routes,
    responders: &dyn Fn(&str) -> Result<SocketAddr, String>,
    context: &Context,
) -> Vec<Place> {
    match kind {
        TargetKind::Host(hp) => vec![Place::host(hp)],
        TargetKind::Domain {
            domain,
            mx,
            expect_mx,
        } => domain_places(domain, *mx, *expect_mx, routes, context),
        TargetKind::List { entries, .. } => entries
            .iter()
            .flat_map(|e| match e {
                ListEntry::Host(hp) => vec![Place::host(hp)],
                ListEntry::Domain(d) => domain_places(d, MxMode::Primary, None, routes, context),
            })
            .collect(),
        TargetKind::Responder(persona) => {
            let started = responders(persona);
            let addr = started.as_ref().ok().copied();
            vec![Place {
                hosts: vec![addr.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string())],
                port: addr.map(|a| a.port()),
                domain: None,
                fixed: addr,
                shown_host: None,
                // The port is ephemeral: the report names the persona so that
                // case names stay the same from run to run.
                label: Some(format!("responder:{}", persona_label(persona))),
                preset: started.err().map(|e| Outcome::Errored {
                    kind: ErrorKind::Connect,
                    message: format!("responder `{persona}` did not start: {e}"),
                }),
            }]
        }
    }
}

/// A persona's name for reports: the built-in name, or the file's stem.
pub fn persona_label(persona: &str) -> String {
    std::path::Path::new(persona)
        .file_stem()
        .map_or_else(|| persona.to_string(), |s| s.to_string_lossy().into_owned())
}
