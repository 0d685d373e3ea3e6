//! The SMTP client side: bytes on the wire, replies, the connection. Knows nothing
//! of plans.

pub mod auth;
pub mod command;
pub mod connection;
pub mod reply;
pub mod tls;
