//! The SMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES and STARTTLS). Command syntax is parsed by `smtp-proto`; this
//! module keeps the state machine, the limits and the replies.

mod reply;
mod session;

pub use reply::Reply;
pub use session::{Envelope, Event, RcptVerdict, Session, SessionConfig};
