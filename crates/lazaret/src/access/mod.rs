//! User access: the stage where users reach their mail (IMAP, POP3), the login guard
//! they all pass through, and the admin's switch that keeps them out.

pub mod gate;
pub mod imap;
pub mod login;
pub mod pop3;
