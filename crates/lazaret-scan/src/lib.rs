//! What Lazaret looks at inside a message, and the scanner: the MIME walk, archive
//! and container members (with limits), the text a person would read (for search and rules), signature
//! files (a ClamAV-compatible subset and Lazaret rules), the matcher, and a clamd client.

pub mod clamd;
pub mod containers;
pub mod engine;
pub mod fingerprint;
pub mod mime;
pub mod signatures;
#[cfg(test)]
mod test_support;
pub mod text;

pub use containers::{expand, holds_files, is_archive, Limits, Member, Stopped};
pub use engine::{Detection, Engine, Report, ScanLimits};
