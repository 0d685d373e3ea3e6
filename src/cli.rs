//! The command line (spec section 8) as clap types. Parsing only; `app` acts on it.

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
    fn vars_split_at_the_first_equals_sign() {
        assert_eq!(parse_var("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_var("a="), Ok(("a".into(), String::new())));
        assert!(parse_var("=b").is_err());
        assert!(parse_var("ab").is_err());
    }
}
