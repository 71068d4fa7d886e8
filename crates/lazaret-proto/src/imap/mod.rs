//! IMAP4rev1 pieces that need no store: command framing over imap-codec (literals,
//! limits, recovery after a bad line), the response syntax (strings, literals, dates),
//! and what FETCH computes from a message's bytes (ENVELOPE, BODYSTRUCTURE, sections).

pub mod framing;
pub mod list_extended;
pub mod mutf7;
pub mod structure;
pub mod write;

pub use imap_codec::imap_types as types;
