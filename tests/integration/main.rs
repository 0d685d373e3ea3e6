//! The integration suite: one binary that drives the built `smtp-plan` and the
//! library's public API. Everything stays on this machine: no network is used.

mod golden;
mod plans;
mod support;
