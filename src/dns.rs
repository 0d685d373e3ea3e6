//! DNS for smtp-plan: one hickory resolver (with its cache) per run, built from
//! the plan's `resolver` settings or `--resolver`, answering the two questions
//! mail routing asks: the MX hosts of a domain (RFC 5321 section 5.1, RFC 7505),
//! and the addresses of a host.

use crate::plan::model::{IpFamily, ResolverSettings};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The resolver of a run.
pub struct Dns {
    resolver: TokioResolver,
    /// Which servers answer, for messages: `127.0.0.1:5353` or `system (/etc/resolv.conf)`.
    pub servers: String,
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Preference; lower is tried first.
    pub preference: u16,
    /// The exchange host, without the trailing dot.
    pub host: String,
}

/// Where a domain's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailRoute {
    /// MX hosts in the order to try them: by preference, equal preferences shuffled.
    Mx(Vec<MxHost>),
    /// No MX records, but the domain has addresses: it is its own mail host (RFC 5321 5.1).
    Implicit,
    /// A null MX (`MX 0 .`, RFC 7505): the domain accepts no mail.
    Null,
    /// No mail route: NXDOMAIN, or neither MX nor address records; says which.
    None(String),
}

/// A lookup that could not be answered (SERVFAIL, timeout, network trouble).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFailure(pub String);

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A negative or failed answer, classified.
enum Answer {
    NxDomain,
    NoData,
    Failed(String),
}

fn classify(e: &NetError) -> Answer {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(n)) if n.response_code == ResponseCode::NXDomain => {
            Answer::NxDomain
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => Answer::NoData,
        NetError::Dns(DnsError::ResponseCode(code)) => {
            Answer::Failed(format!("the server answered {}", code_name(*code)))
        }
        NetError::Timeout => Answer::Failed("no answer (timed out)".into()),
        other => Answer::Failed(other.to_string()),
    }
}

fn code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

impl Dns {
    /// A resolver for `settings`; `nameserver` (from `--resolver`) replaces the
    /// plan's name servers. With neither, the system's configuration is read.
    pub fn new(settings: &ResolverSettings, nameserver: Option<SocketAddr>) -> Result<Dns, String> {
        let servers: Vec<SocketAddr> = match nameserver {
            Some(a) => vec![a],
            None => settings.nameservers.clone(),
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = settings.timeout.unwrap_or(Duration::from_secs(20));
        opts.attempts = settings.attempts.unwrap_or(2) as usize;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.cache_size = 65_536;
        let provider = TokioRuntimeProvider::default();
        let (builder, shown) = if servers.is_empty() {
            let builder = TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
            (
                builder.with_options(opts),
                "system (/etc/resolv.conf)".to_string(),
            )
        } else {
            let configs = servers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            let shown = servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let config = ResolverConfig::from_name_servers(configs);
            (
                TokioResolver::builder_with_config(config, provider).with_options(opts),
                shown,
            )
        };
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot start the resolver: {e}"))?;
        Ok(Dns {
            resolver,
            servers: shown,
        })
    }

    /// The mail route of `domain`.
    pub async fn mail_route(&self, domain: &str) -> Result<MailRoute, DnsFailure> {
        let fqdn = absolute(domain);
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut hosts: Vec<MxHost> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some(MxHost {
                            preference: mx.preference,
                            host: mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                        }),
                        _ => None,
                    })
                    .collect();
                // RFC 7505 section 3: a single MX with the root as exchange.
                if hosts.len() == 1 && hosts[0].host.is_empty() {
                    return Ok(MailRoute::Null);
                }
                hosts.retain(|h| !h.host.is_empty());
                if hosts.is_empty() {
                    return self.implicit(domain, "no MX records").await;
                }
                Ok(MailRoute::Mx(order(hosts)))
            }
            Err(e) => match classify(&e) {
                Answer::NxDomain => Ok(MailRoute::None(format!(
                    "NXDOMAIN: {domain} does not exist (query MX {fqdn} @ {})",
                    self.servers
                ))),
                Answer::NoData => self.implicit(domain, "no MX records").await,
                Answer::Failed(why) => Err(DnsFailure(format!(
                    "query MX {fqdn} @ {}: {why}",
                    self.servers
                ))),
            },
        }
    }

    /// No MX: the domain is its own mail host if it has an address (RFC 5321 5.1).
    async fn implicit(&self, domain: &str, why: &str) -> Result<MailRoute, DnsFailure> {
        match self.addresses(domain, IpFamily::Any).await {
            Ok(_) => Ok(MailRoute::Implicit),
            Err(AddressError::None(_)) => Ok(MailRoute::None(format!(
                "{domain} has {why} and no A or AAAA records (@ {})",
                self.servers
            ))),
            Err(AddressError::Failed(f)) => Err(f),
        }
    }

    /// The addresses of `host` of the families `ip` allows, IPv4 first.
    pub async fn addresses(&self, host: &str, ip: IpFamily) -> Result<Vec<IpAddr>, AddressError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = absolute(host);
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => {
                let all: Vec<IpAddr> = found.iter().collect();
                let kept: Vec<IpAddr> = all
                    .iter()
                    .copied()
                    .filter(|a| match ip {
                        IpFamily::Any => true,
                        IpFamily::V4 => a.is_ipv4(),
                        IpFamily::V6 => a.is_ipv6(),
                    })
                    .collect();
                if kept.is_empty() {
                    return Err(AddressError::None(format!(
                        "{host} has no address of the family `ip` allows (found {all:?})"
                    )));
                }
                Ok(kept)
            }
            Err(e) => match classify(&e) {
                Answer::NxDomain => Err(AddressError::None(format!(
                    "{host}: NXDOMAIN (query A/AAAA {fqdn} @ {})",
                    self.servers
                ))),
                Answer::NoData => Err(AddressError::None(format!(
                    "{host} has no A or AAAA records (@ {})",
                    self.servers
                ))),
                Answer::Failed(why) => Err(AddressError::Failed(DnsFailure(format!(
                    "query A/AAAA {fqdn} @ {}: {why}",
                    self.servers
                )))),
            },
        }
    }
}

/// Why a host has no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// The name has no (usable) address.
    None(String),
    /// The lookup failed.
    Failed(DnsFailure),
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::None(m) => f.write_str(m),
            AddressError::Failed(d) => d.fmt(f),
        }
    }
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Sorts by preference and shuffles hosts of equal preference (RFC 5321 section
/// 5.1: "randomize them to spread the load").
fn order(mut hosts: Vec<MxHost>) -> Vec<MxHost> {
    let seed = std::collections::hash_map::RandomState::new();
    let mut keyed: Vec<(u16, u64, MxHost)> = hosts
        .drain(..)
        .map(|h| {
            let mut hasher = seed.build_hasher();
            hasher.write(h.host.as_bytes());
            (h.preference, hasher.finish(), h)
        })
        .collect();
    keyed.sort_by_key(|(p, r, _)| (*p, *r));
    keyed.into_iter().map(|(_, _, h)| h).collect()
}

/// The hosts as reports name them: by preference, equal preferences by name, so
/// that case names do not change from run to run.
pub fn stable_order(hosts: &[MxHost]) -> Vec<MxHost> {
    let mut v = hosts.to_vec();
    v.sort_by(|a, b| (a.preference, &a.host).cmp(&(b.preference, &b.host)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(p: u16, h: &str) -> MxHost {
        MxHost {
            preference: p,
            host: h.into(),
        }
    }

    #[test]
    fn equal_preferences_are_shuffled_but_preferences_kept() {
        let hosts = vec![mx(20, "c"), mx(10, "a"), mx(10, "b"), mx(30, "d")];
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..64 {
            let o = order(hosts.clone());
            assert_eq!(
                o.iter().map(|h| h.preference).collect::<Vec<_>>(),
                [10, 10, 20, 30]
            );
            firsts.insert(o[0].host.clone());
        }
        assert_eq!(
            firsts.len(),
            2,
            "both hosts of preference 10 come first sometimes"
        );
        assert_eq!(
            stable_order(&hosts),
            vec![mx(10, "a"), mx(10, "b"), mx(20, "c"), mx(30, "d")]
        );
    }
}
