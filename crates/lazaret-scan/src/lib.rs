//! What Lazaret looks at inside a message: archive members (with limits) and the text a
//! person would read, for the search index and the scanner.

pub mod archive;
pub mod text;

pub use archive::{expand, is_archive, Limits, Member, Stopped};
