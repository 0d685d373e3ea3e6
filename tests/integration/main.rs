//! The integration suite: one binary that drives the built `smtp-plan` and the
//! library's public API. Everything stays on this machine: no network is used.

mod dns;
mod fault;
mod golden;
mod mta;
mod mx;
mod nsd;
mod plans;
mod responder;
mod run;
mod support;
mod tls;
mod tls_server;
mod verbs;
