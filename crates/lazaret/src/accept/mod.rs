//! Accept: the inbound SMTP listener and its sessions. A message leaves this stage
//! durable in queue `inbound`.

pub mod auth_checks;
pub mod rate;
pub mod received;
mod record_cache;
pub mod session;
pub mod switch;
