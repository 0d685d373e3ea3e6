//! The command line (spec section 8) as clap types. Parsing only; `app` acts on it.

use crate::exec::job::ConnectTo;
use crate::report::junit::Transcripts;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Run SMTP test plans against mail servers and report JUnit XML.
#[derive(Debug, Parser)]
#[command(name = "smtp-plan", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check plans, resolving variables; sends nothing.
    Validate {
        /// Plan files.
        #[arg(required = true, value_name = "PLAN")]
        plans: Vec<PathBuf>,
        /// Set a plan variable, overriding `vars` (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Run plans and report the results.
    Run {
        /// Plan files.
        #[arg(required = true, value_name = "PLAN")]
        plans: Vec<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Set a plan variable, overriding `vars` (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Sessions open at once across the run (overrides the plans' `concurrency`).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: Option<u32>,
        /// Run only the cases whose name (`TEST @ TARGET`) matches this regex.
        #[arg(long, value_name = "REGEX")]
        filter: Option<regex::Regex>,
        /// Which transcripts go into the JUnit report.
        #[arg(long, value_enum, default_value_t = Transcripts::Failures)]
        transcripts: Transcripts,
        /// Ask this name server (IP or IP:PORT) instead of the plans' or the system's.
        #[arg(long, value_name = "IP[:PORT]", value_parser = parse_nameserver)]
        resolver: Option<std::net::SocketAddr>,
        /// Send connections for host or domain NAME to ADDR instead (repeatable).
        #[arg(long = "connect-to", value_name = "NAME=ADDR[:PORT]", value_parser = parse_connect_to)]
        connect_to: Vec<ConnectTo>,
    },
    /// Show the mail exchangers of domains, like `nslookup -type=mx`.
    Mx {
        /// Domains.
        #[arg(required = true, value_name = "DOMAIN")]
        domains: Vec<String>,
        /// Ask this name server (IP or IP:PORT) instead of the system's.
        #[arg(long, value_name = "IP[:PORT]", value_parser = parse_nameserver)]
        resolver: Option<std::net::SocketAddr>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the built-in SMTP responder.
    Serve {
        /// A built-in persona name or a persona file.
        #[arg(long, default_value = "exchange-2013", value_name = "NAME|FILE")]
        persona: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:2525", value_name = "ADDR")]
        listen: std::net::SocketAddr,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
}

/// Parses a name server address: `IP`, `IP:PORT`, `[IPv6]:PORT` (port 53 by default).
pub fn parse_nameserver(s: &str) -> Result<std::net::SocketAddr, String> {
    parse_addr(s, 53).ok_or_else(|| format!("`{s}` is not IP or IP:PORT"))
}

fn parse_addr(s: &str, default_port: u16) -> Option<std::net::SocketAddr> {
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Some(a);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, default_port))
}

/// Parses `NAME=ADDR[:PORT]` for `--connect-to`.
pub fn parse_connect_to(s: &str) -> Result<ConnectTo, String> {
    let bad = || {
        format!(
            "`{s}` is not NAME=ADDR[:PORT] (ADDR an IP address; IPv6 with a port as [ADDR]:PORT)"
        )
    };
    let (name, addr) = s.split_once('=').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let (ip, port) = match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => (a.ip(), Some(a.port())),
        Err(_) => {
            let ip = addr
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .unwrap_or(addr);
            (ip.parse().map_err(|_| bad())?, None)
        }
    };
    Ok(ConnectTo {
        name: name.trim_end_matches('.').to_ascii_lowercase(),
        ip,
        port,
    })
}

/// Parses `NAME=VALUE`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_rules() {
        let r = parse_connect_to("MX1.Fabrikam.com.=127.0.0.2:2525").unwrap();
        assert_eq!(
            (r.name.as_str(), r.ip.to_string(), r.port),
            ("mx1.fabrikam.com", "127.0.0.2".into(), Some(2525))
        );
        let r = parse_connect_to("fabrikam.com=::1").unwrap();
        assert_eq!((r.ip.to_string(), r.port), ("::1".into(), None));
        let r = parse_connect_to("fabrikam.com=[::1]:25").unwrap();
        assert_eq!(r.port, Some(25));
        assert!(parse_connect_to("fabrikam.com=mail.example").is_err());
        assert!(parse_connect_to("=127.0.0.1").is_err());
        assert_eq!(
            parse_nameserver("127.0.0.1").unwrap().to_string(),
            "127.0.0.1:53"
        );
        assert_eq!(
            parse_nameserver("[::1]:5353").unwrap().to_string(),
            "[::1]:5353"
        );
    }

    #[test]
    fn vars_split_at_the_first_equals_sign() {
        assert_eq!(parse_var("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_var("a="), Ok(("a".into(), String::new())));
        assert!(parse_var("=b").is_err());
        assert!(parse_var("ab").is_err());
    }
}
