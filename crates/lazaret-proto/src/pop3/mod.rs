//! The POP3 server session (RFC 1939 with RFC 2449 CAPA and response codes, STLS from
//! RFC 2595, SASL PLAIN from RFC 5034). No maintained POP3 crate exists, and the
//! protocol is a handful of line commands, so it is written here and fuzzed by tests.

mod message;
mod session;

pub use message::format_for_retr;
pub use session::{Event, MaildropEntry, Session, SessionConfig};
