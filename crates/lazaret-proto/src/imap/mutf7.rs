//! Mailbox names in modified UTF-7 (RFC 3501 5.1.3), the form IMAP4rev1 clients send
//! and expect; Lazaret keeps names in UTF-8 and converts at the protocol's edge.
//!
//! Written here rather than taken from a crate: the one on crates.io (`utf7-imap`)
//! decodes without reporting malformed input, and a server must refuse a malformed
//! name with NO instead of storing whatever a lenient decoder made of it.
//!
//! Printable ASCII other than `&` stands for itself, `&` is `&-`, and anything else is
//! a run of UTF-16 in base64 (with `,` for `/`, no padding) between `&` and `-`.

use base64::alphabet::Alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::fmt;

const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn engine() -> GeneralPurpose {
    let alphabet = Alphabet::new(ALPHABET).expect("a valid 64-character alphabet");
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    )
}

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(&'static str);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a valid modified UTF-7 mailbox name: {}", self.0)
    }
}

impl std::error::Error for Invalid {}

fn direct(c: char) -> bool {
    (' '..='~').contains(&c) && c != '&'
}

/// A UTF-8 name as clients see it.
pub fn encode(name: &str) -> String {
    if name.chars().all(direct) {
        return name.to_string();
    }
    let engine = engine();
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine.encode(bytes));
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if direct(c) {
            flush(&mut run, &mut out);
            out.push(c);
        } else if c == '&' {
            flush(&mut run, &mut out);
            out.push_str("&-");
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A name as a client sent it, in UTF-8; refuses what is not modified UTF-7.
pub fn decode(wire: &str) -> Result<String, Invalid> {
    if !wire.contains('&') {
        return if wire.chars().all(direct) {
            Ok(wire.to_string())
        } else {
            Err(Invalid("8-bit or control characters must be encoded"))
        };
    }
    let engine = engine();
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(at) = rest.find('&') {
        let (plain, tail) = rest.split_at(at);
        if !plain.chars().all(direct) {
            return Err(Invalid("8-bit or control characters must be encoded"));
        }
        out.push_str(plain);
        let tail = &tail[1..];
        let end = tail
            .find('-')
            .ok_or(Invalid("`&` without its closing `-`"))?;
        let encoded = &tail[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = engine
                .decode(encoded)
                .map_err(|_| Invalid("bad base64 between `&` and `-`"))?;
            if bytes.len() % 2 != 0 {
                return Err(Invalid("an odd number of UTF-16 bytes"));
            }
            let units = bytes.chunks(2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            for c in char::decode_utf16(units) {
                let c = c.map_err(|_| Invalid("an unpaired UTF-16 surrogate"))?;
                if direct(c) || c == '&' {
                    return Err(Invalid("printable ASCII must not be encoded"));
                }
                out.push(c);
            }
        }
        rest = &tail[end + 1..];
    }
    if !rest.chars().all(direct) {
        return Err(Invalid("8-bit or control characters must be encoded"));
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_rfc_3501_writes_them() {
        for (utf8, wire) in [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Q&A", "Q&-A"),
            ("日本語", "&ZeVnLIqe-"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀 mail", "&2D3eAA- mail"),
        ] {
            assert_eq!(encode(utf8), wire, "{utf8}");
            assert_eq!(decode(wire).as_deref(), Ok(utf8), "{wire}");
        }
    }

    /// Hand-written parsing must not panic on any input (until `fuzz/` covers it):
    /// random strings over the characters that matter, and every decoded name
    /// encodes back to what was decoded.
    #[test]
    fn random_input_never_panics_and_round_trips() {
        let alphabet: Vec<char> = "&-+,/AZaz09 ü日\u{1F600}\t".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            let len = (state % 12) as usize;
            let mut s = String::new();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(utf8) = decode(&s) {
                assert_eq!(
                    decode(&encode(&utf8)).as_deref(),
                    Ok(utf8.as_str()),
                    "{s:?}"
                );
            }
            let _ = decode(&encode(&s));
        }
    }

    #[test]
    fn refuses_what_is_not_modified_utf7() {
        for bad in [
            "Entw&APw",  // no closing -
            "&Jjo!-",    // not base64
            "Entwürfe",  // raw 8-bit
            "&AGE-",     // "a", printable ASCII, encoded
            "&2D0-",     // an unpaired surrogate
            "&AP-",      // leftover bits
            "tab\there", // control character
        ] {
            assert!(decode(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
