//! User access: the stage where users reach their mail (POP3 now, IMAP next), the
//! login guard they all pass through, and the admin's switch that keeps them out.

pub mod gate;
pub mod login;
pub mod pop3;
