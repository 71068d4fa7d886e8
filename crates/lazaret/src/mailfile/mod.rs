//! Mail in the files other servers keep: mbox (read for import, written by export) and
//! Maildir (read for import). No well-kept Rust crate reads and writes both with the
//! quoting rules and flags mail admins rely on, and both formats are a page each.

pub mod maildir;
pub mod mbox;

/// Turns bare LF line ends into CRLF (the store keeps mail as SMTP carries it).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 40);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}
