//! smtp-plan: SMTP runbooks as YAML plans, run against mail servers, reported as JUnit.
//!
//! # Layout
//!
//! ```text
//! plans/*.yaml
//!   │ plan::load       YAML -> RawPlan   (syntax and shape errors with file:line:col)
//!   ▼
//! RawPlan ── plan::validate ──► Plan     (typed, checked, variables resolved, secrets marked)
//! ```
//!
//! `cli` holds the command-line types, `app` wires commands together and is the only
//! place that prints fatal errors and picks exit codes.

pub mod app;
pub mod cli;
pub mod date;
pub mod dns;
pub mod exec;
pub mod mx;
pub mod plan;
pub mod report;
pub mod responder;
pub mod result;
pub mod smtp;
