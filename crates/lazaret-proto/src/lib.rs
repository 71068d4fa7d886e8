//! Sans-IO protocol sessions: bytes in, replies and requests for the server out.
//! Nothing here touches a socket, a clock or the store, so every path can be unit
//! tested and fuzzed.

pub mod imap;
mod input;
pub mod pop3;
pub mod sasl;
pub mod smtp;
