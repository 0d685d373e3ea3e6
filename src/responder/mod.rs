//! The built-in SMTP responder: a real SMTP server on tokio that answers as a
//! persona, so plans can be tried offline and the tool's own tests need no
//! outside server (`smtp-plan serve`, `responder:` targets).
//!
//! It survives any client: garbage, over-long lines, pipelined commands,
//! disconnects at any point, idle or non-reading clients. It keeps no mail.
//!
//! - `persona`: the persona YAML schema, its checks, reply templates, faults,
//!   recipient rules and AUTH users; `plans/personas/exchange-2013.yaml` and
//!   `exchange-2013-tls.yaml` are built in.
//! - `session`: one SMTP session's state machine and command parsing, STARTTLS
//!   and AUTH (PLAIN, LOGIN) included.
//! - `conn`: the bytes of one connection: bounded line reads, batched replies,
//!   timeouts, and the switch to TLS.
//! - `tls`: the certificate (PEM files or generated at start) and the rustls
//!   server configuration.
//! - `server`: the listener, session tasks, shutdown, and `serve` for the CLI.
//!
//! The responder is a server and shares no code with the client in `smtp`.

mod conn;
mod persona;
mod server;
mod session;
mod tls;

pub use persona::{Persona, BUILT_IN_PERSONAS};
pub use server::{serve, Responder};
