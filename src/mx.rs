//! `smtp-plan mx`: the runbook's `nslookup -type=mx` step. For each domain, its
//! mail route (MX hosts by preference with their addresses, implicit MX, null MX,
//! or none) and how long the answer took, as text or JSON.

use crate::dns::{stable_order, Dns, MailRoute};
use crate::plan::model::{IpFamily, ResolverSettings};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What `mx` found.
#[derive(Debug, Serialize)]
pub struct MxReport {
    /// The name servers asked.
    pub resolver: String,
    /// One entry per domain, in the order given.
    pub domains: Vec<DomainReport>,
}

/// One domain's answer.
#[derive(Debug, Serialize)]
pub struct DomainReport {
    /// The domain.
    pub domain: String,
    /// `mx`, `implicit`, `null`, `none` (no mail route) or `error` (lookup failed).
    pub status: &'static str,
    /// What the resolver said, for `null`, `none` and `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Time taken, in milliseconds.
    pub millis: u64,
    /// The mail hosts: MX hosts by preference, or the domain itself for an implicit MX.
    pub hosts: Vec<HostReport>,
}

/// A mail host and its addresses.
#[derive(Debug, Serialize)]
pub struct HostReport {
    /// MX preference (absent for an implicit MX).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preference: Option<u16>,
    /// Host name.
    pub host: String,
    /// Its IPv4 and IPv6 addresses.
    pub addresses: Vec<String>,
    /// Why it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Looks up every domain with the system resolver or `resolver`, at most
/// [`crate::exec::PARALLEL_LOOKUPS`] at a time (each lookup holds sockets: ten
/// thousand at once would exhaust the open-file limit).
pub async fn lookup(domains: &[String], resolver: Option<SocketAddr>) -> Result<MxReport, String> {
    let dns = Arc::new(Dns::new(&ResolverSettings::default(), resolver)?);
    let limit = Arc::new(tokio::sync::Semaphore::new(crate::exec::PARALLEL_LOOKUPS));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, d) in domains.iter().enumerate() {
        let (dns, d, limit) = (dns.clone(), d.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await;
            (i, one(&dns, &d).await)
        });
    }
    let mut found: Vec<Option<DomainReport>> = domains.iter().map(|_| None).collect();
    while let Some(Ok((i, r))) = tasks.join_next().await {
        found[i] = Some(r);
    }
    Ok(MxReport {
        resolver: dns.servers.clone(),
        domains: found.into_iter().flatten().collect(),
    })
}

async fn host(dns: &Dns, preference: Option<u16>, name: &str) -> HostReport {
    let (addresses, error) = match dns.addresses(name, IpFamily::Any).await {
        Ok(a) => (a.iter().map(ToString::to_string).collect(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    HostReport {
        preference,
        host: name.to_string(),
        addresses,
        error,
    }
}

async fn one(dns: &Dns, domain: &str) -> DomainReport {
    let started = Instant::now();
    let route = dns.mail_route(domain).await;
    let (status, message, hosts) = match route {
        Ok(MailRoute::Mx(list)) => {
            let mut hosts = Vec::new();
            for h in stable_order(&list) {
                hosts.push(host(dns, Some(h.preference), &h.host).await);
            }
            ("mx", None, hosts)
        }
        Ok(MailRoute::Implicit) => ("implicit", None, vec![host(dns, None, domain).await]),
        Ok(MailRoute::Null) => (
            "null",
            Some("null MX (MX 0 ., RFC 7505): the domain accepts no mail".to_string()),
            vec![],
        ),
        Ok(MailRoute::None(why)) => ("none", Some(why), vec![]),
        Err(f) => ("error", Some(f.to_string()), vec![]),
    };
    DomainReport {
        domain: domain.to_string(),
        status,
        message,
        millis: started.elapsed().as_millis() as u64,
        hosts,
    }
}

impl MxReport {
    /// Whether every domain has a mail route with at least one address.
    pub fn all_routable(&self) -> bool {
        self.domains.iter().all(|d| {
            matches!(d.status, "mx" | "implicit") && d.hosts.iter().any(|h| !h.addresses.is_empty())
        })
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }

    /// The report as text, one block per domain.
    pub fn to_text(&self) -> String {
        let mut out = format!("resolver: {}\n", self.resolver);
        for d in &self.domains {
            let what = match d.status {
                "mx" => "MX".to_string(),
                "implicit" => {
                    "no MX; the domain's own address is its mail host (implicit MX, RFC 5321 5.1)"
                        .to_string()
                }
                _ => d.message.clone().unwrap_or_default(),
            };
            out.push_str(&format!("\n{} ({} ms): {what}\n", d.domain, d.millis));
            let width = d.hosts.iter().map(|h| h.host.len()).max().unwrap_or(0);
            for h in &d.hosts {
                let pref = h
                    .preference
                    .map_or_else(|| "   -".to_string(), |p| format!("{p:>4}"));
                let addrs = match &h.error {
                    Some(e) => format!("(no address: {e})"),
                    None => h.addresses.join(" "),
                };
                out.push_str(&format!("  {pref}  {:<width$}  {addrs}\n", h.host));
            }
        }
        out
    }
}
