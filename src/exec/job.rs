//! Expansion: plans x targets -> jobs. Each job is one (test, resolved target)
//! pair with its effective settings and its unique report name. `domain:` targets
//! and domain lines of `file:` lists need MX resolution, which is not in this
//! version: their jobs carry a DNS error instead of an address.

use crate::plan::model::{
    HostPort, IpFamily, ListEntry, Plan, SessionSettings, TargetKind, TlsMode,
};
use crate::result::ErrorKind;
use std::collections::HashSet;
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
            connect: s.connect_timeout.unwrap_or(Duration::from_secs(10)),
            reply: s.reply_timeout.unwrap_or(Duration::from_secs(60)),
            data: s.data_timeout.unwrap_or(Duration::from_secs(180)),
            session: s.session_timeout.unwrap_or(Duration::from_secs(600)),
            retries: s.retries.unwrap_or(0),
            retry_delay: s.retry_delay.unwrap_or(Duration::from_secs(5)),
            source_address: s.source_address,
            ip: s.ip.unwrap_or(IpFamily::Any),
        }
    }
}

/// One (test, target) session to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Position in the run, for stable ordering and unique message ids.
    pub index: usize,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Index of the suite (plan test) in the run's report.
    pub suite: usize,
    /// Index of the test in the plan.
    pub test: usize,
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The domain for MX targets.
    pub domain: Option<String>,
    /// An address to use instead of resolving `host` (responders).
    pub fixed_addr: Option<SocketAddr>,
    /// `TEST @ TARGET`.
    pub name: String,
    /// `PLAN.TEST`.
    pub classname: String,
    /// Settings.
    pub settings: Effective,
    /// Unique per run.
    pub run_id: Arc<str>,
    /// Set when the target cannot be run (the case errors with this).
    pub unavailable: Option<(ErrorKind, String)>,
}

/// Where a job connects, before settings are applied.
struct Place {
    host: String,
    port: Option<u16>,
    domain: Option<String>,
    fixed: Option<SocketAddr>,
    label: Option<String>,
    unavailable: Option<(ErrorKind, String)>,
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
#[derive(Debug, Clone)]
pub struct Expansion {
    /// One per plan test.
    pub suites: Vec<Suite>,
    /// Jobs in plan order.
    pub jobs: Vec<Job>,
}

/// Expands plans into jobs. `responders` gives the address of the running
/// responder of each persona; `keep` decides by case name whether a job runs
/// (`--filter`).
pub fn expand(
    plans: &[Arc<Plan>],
    responders: &dyn Fn(&str) -> Option<SocketAddr>,
    keep: &dyn Fn(&str) -> bool,
    run_id: &Arc<str>,
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
                for place in places(&target.kind, responders) {
                    let port = place.port.or(settings.port).unwrap_or(match eff.tls {
                        TlsMode::None => 25,
                        TlsMode::Implicit => 465,
                    });
                    let shown = target
                        .name
                        .clone()
                        .or(place.label.clone())
                        .unwrap_or_else(|| host_port(&place.host, port));
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
                        host: place.host,
                        port,
                        domain: place.domain,
                        fixed_addr: place.fixed,
                        name,
                        classname: format!("{}.{}", plan.name, test.name),
                        settings: eff.clone(),
                        run_id: run_id.clone(),
                        unavailable: place.unavailable,
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

fn places(kind: &TargetKind, responders: &dyn Fn(&str) -> Option<SocketAddr>) -> Vec<Place> {
    let host = |hp: &HostPort| Place {
        host: hp.host.clone(),
        port: hp.port,
        domain: None,
        fixed: None,
        label: None,
        unavailable: None,
    };
    let domain = |d: &str| {
        Place {
        host: d.to_string(),
        port: None,
        domain: Some(d.to_string()),
        fixed: None,
        label: Some(d.to_string()),
        unavailable: Some((
            ErrorKind::Dns,
            format!("MX resolution for domain `{d}` is not available in this version of smtp-plan; use a `host:` target"),
        )),
    }
    };
    match kind {
        TargetKind::Host(hp) => vec![host(hp)],
        TargetKind::Domain { domain: d, .. } => vec![domain(d)],
        TargetKind::List { entries, .. } => entries
            .iter()
            .map(|e| match e {
                ListEntry::Host(hp) => host(hp),
                ListEntry::Domain(d) => domain(d),
            })
            .collect(),
        TargetKind::Responder(persona) => {
            let addr = responders(persona);
            vec![Place {
                host: addr.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string()),
                port: addr.map(|a| a.port()),
                domain: None,
                fixed: addr,
                // The port is ephemeral: the report names the persona so that
                // case names stay the same from run to run.
                label: Some(format!("responder:{}", persona_label(persona))),
                unavailable: addr.is_none().then(|| {
                    (
                        ErrorKind::Connect,
                        format!("responder `{persona}` did not start"),
                    )
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
