//! Deliver: the queue runner that routes `inbound` and stores `local` mail into
//! mailboxes.

pub mod runner;
