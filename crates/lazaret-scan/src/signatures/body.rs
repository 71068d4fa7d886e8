//! ClamAV body signatures (`.ndb`): `NAME:TARGET:OFFSET:HEXSIG[:MIN_FLEVEL[:MAX_FLEVEL]]`.
//!
//! Supported: TARGET 0 (any file), 1 (PE, files starting `MZ`) and 6 (ELF); OFFSET `*`,
//! `N`, `N,SHIFT`, `EOF-N`, `EOF-N,SHIFT`; in HEXSIG hex bytes, `??`, nibbles `a?`/`?a`,
//! `*`, `{N}`, `{N-}`, `{-M}`, `{N-M}`, `[N-M]`, alternatives `(aa|bbcc|??dd)` and
//! negated single bytes `!(aa|bb)`. Anything else is refused with the reason, so a file
//! either means the same to Lazaret as to ClamAV or is not loaded.
//!
//! Each signature becomes one byte regex (checked once a candidate is seen) and its
//! longest run of fixed bytes, the anchor the multi-pattern prefilter looks for. The
//! regex is compiled the first time its anchor is seen: most signatures never are, and
//! compiling thousands of them up front made loading a set slower than ClamAV's.

use regex::bytes::{Regex, RegexBuilder};
use std::fmt::Write;
use std::sync::OnceLock;

/// Where a match must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Any,
    /// At `start` from the beginning (or, `from_end`, that many bytes before the end),
    /// or up to `shift` bytes later.
    At {
        start: u64,
        shift: u64,
        from_end: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Any,
    Pe,
    Elf,
}

impl Target {
    pub fn accepts(self, data: &[u8]) -> bool {
        match self {
            Target::Any => true,
            Target::Pe => data.starts_with(b"MZ"),
            Target::Elf => data.starts_with(b"\x7fELF"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BodySignature {
    pub name: String,
    pub target: Target,
    pub offset: Offset,
    /// The regex's source, built from the hex signature (valid by construction).
    pattern: String,
    regex: OnceLock<Option<Regex>>,
    /// The longest run of fixed bytes (empty when under 2 bytes: checked always).
    pub anchor: Vec<u8>,
}

/// Gaps longer than this make one regex too large; ClamAV databases keep theirs far
/// shorter.
const MAX_GAP: u64 = 32 * 1024;
/// Bounded gaps of one signature together: each gap byte is a regex state, and this
/// keeps every signature's compiled regex within REGEX_SIZE (measured: 16 gaps of 32 KB
/// still compile), so compiling late cannot fail.
const MAX_GAPS_TOTAL: u64 = 64 * 1024;
const REGEX_SIZE: usize = 64 << 20;

enum Token {
    Byte(u8),
    /// Byte matching `value` under `mask` (nibble wildcards, `??`).
    Masked {
        value: u8,
        mask: u8,
    },
    Gap {
        min: u64,
        max: Option<u64>,
    },
    Alternatives(Vec<Vec<Token>>),
    NotBytes(Vec<u8>),
}

impl BodySignature {
    /// Does this signature match `data` (the anchor was seen, or it has none)?
    pub fn matches(&self, data: &[u8]) -> bool {
        if !self.target.accepts(data) {
            return false;
        }
        let Some(regex) = self.regex() else {
            return false;
        };
        match self.offset {
            Offset::Any => regex.is_match(data),
            Offset::At {
                start,
                shift,
                from_end,
            } => {
                let len = data.len() as u64;
                let begin = if from_end {
                    match len.checked_sub(start) {
                        Some(b) => b,
                        None => return false,
                    }
                } else {
                    start
                };
                let Some(rest) = data.get(begin as usize..) else {
                    return false;
                };
                // Leftmost-first: the earliest possible start is found first.
                regex
                    .find(rest)
                    .is_some_and(|m| (m.start() as u64) <= shift)
            }
        }
    }

    /// Compiled on first use; `None` only if compiling failed, which MAX_GAPS_TOTAL
    /// rules out (a test compiles the largest signature allowed).
    fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| compile(&self.pattern).ok())
            .as_ref()
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(REGEX_SIZE)
        .build()
}

pub fn parse_line(line: &str) -> Result<BodySignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(4..=6).contains(&fields.len()) {
        return Err(format!(
            "expected NAME:TARGET:OFFSET:HEXSIG (4 fields separated by ':'), found {}",
            fields.len()
        ));
    }
    let name = super::check_name(fields[0])?;
    let target = match fields[1] {
        "0" => Target::Any,
        "1" => Target::Pe,
        "6" => Target::Elf,
        t => {
            return Err(format!(
                "target type {t} is not supported (0 any file, 1 PE, 6 ELF)"
            ))
        }
    };
    let offset = parse_offset(fields[2])?;
    for level in &fields[4..] {
        if !level.is_empty() {
            level
                .parse::<u32>()
                .map_err(|_| format!("functionality level {level:?} is not a number"))?;
        }
    }
    let tokens = parse_hex(fields[3])?;
    if !tokens.iter().any(|t| {
        matches!(
            t,
            Token::Byte(_) | Token::Alternatives(_) | Token::NotBytes(_)
        )
    }) {
        return Err("the signature has no fixed bytes: it would match anything".into());
    }
    let gaps: u64 = tokens
        .iter()
        .map(|t| match t {
            Token::Gap { min, max } => max.unwrap_or(*min),
            _ => 0,
        })
        .sum();
    if gaps > MAX_GAPS_TOTAL {
        return Err(format!(
            "its bounded gaps add up to {gaps} bytes, more than {MAX_GAPS_TOTAL}"
        ));
    }
    let anchored = matches!(offset, Offset::At { shift: 0, .. });
    let mut pattern = String::from(if anchored { "(?s-u)^" } else { "(?s-u)" });
    write_tokens(&tokens, &mut pattern);
    let anchor = longest_fixed_run(&tokens);
    Ok(BodySignature {
        name,
        target,
        offset,
        pattern,
        regex: OnceLock::new(),
        anchor: if anchor.len() >= 2 {
            anchor
        } else {
            Vec::new()
        },
    })
}

fn parse_offset(s: &str) -> Result<Offset, String> {
    if s == "*" {
        return Ok(Offset::Any);
    }
    let bad = || format!("offset {s:?} is not supported (use *, N, N,SHIFT, EOF-N or EOF-N,SHIFT)");
    let (start, shift) = match s.split_once(',') {
        Some((a, b)) => (a, b.parse::<u64>().map_err(|_| bad())?),
        None => (s, 0),
    };
    let (start, from_end) = match start.strip_prefix("EOF-") {
        Some(n) => (n, true),
        None => (start, false),
    };
    let start = start.parse::<u64>().map_err(|_| bad())?;
    Ok(Offset::At {
        start,
        shift,
        from_end,
    })
}

fn hex_nibble(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn parse_hex(s: &str) -> Result<Vec<Token>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let tokens = parse_seq(b, &mut i, false)?;
    if i != b.len() {
        return Err(format!("unexpected {:?} at column {}", b[i] as char, i + 1));
    }
    if tokens.is_empty() {
        return Err("empty hex signature".into());
    }
    if matches!(tokens.first(), Some(Token::Gap { .. }))
        || matches!(tokens.last(), Some(Token::Gap { .. }))
    {
        return Err("a signature cannot begin or end with a wildcard gap".into());
    }
    Ok(tokens)
}

/// Parses tokens until the end, or (inside alternatives) until `|` or `)`.
fn parse_seq(b: &[u8], i: &mut usize, in_group: bool) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    while *i < b.len() {
        let c = b[*i];
        let col = *i + 1;
        match c {
            b'|' | b')' if in_group => break,
            b'*' if !in_group => {
                out.push(Token::Gap { min: 0, max: None });
                *i += 1;
            }
            b'{' | b'[' if !in_group => {
                let close = if c == b'{' { b'}' } else { b']' };
                let end = b[*i..]
                    .iter()
                    .position(|&x| x == close)
                    .ok_or_else(|| format!("unclosed {:?} at column {col}", c as char))?;
                let inner = std::str::from_utf8(&b[*i + 1..*i + end]).unwrap_or("");
                out.push(parse_gap(inner, c == b'[').map_err(|e| format!("{e} at column {col}"))?);
                *i += end + 1;
            }
            b'(' | b'!' => {
                let negated = c == b'!';
                if negated {
                    if b.get(*i + 1) != Some(&b'(') {
                        return Err(format!("'!' must be followed by '(' at column {col}"));
                    }
                    *i += 1;
                }
                if matches!(b.get(*i + 1..*i + 3), Some(b"B)" | b"L)" | b"W)")) {
                    return Err(format!(
                        "boundary markers like (B) and (L) are not supported (column {col})"
                    ));
                }
                *i += 1;
                let mut alternatives = Vec::new();
                loop {
                    alternatives.push(parse_seq(b, i, true)?);
                    match b.get(*i) {
                        Some(b'|') => *i += 1,
                        Some(b')') => {
                            *i += 1;
                            break;
                        }
                        _ => return Err(format!("unclosed '(' at column {col}")),
                    }
                }
                if alternatives.iter().any(Vec::is_empty) {
                    return Err(format!("empty alternative at column {col}"));
                }
                if negated {
                    let mut bytes = Vec::new();
                    for alt in &alternatives {
                        match alt.as_slice() {
                            [Token::Byte(x)] => bytes.push(*x),
                            _ => {
                                return Err(format!(
                                "only single bytes can be negated, as in !(aa|bb) (column {col})"
                            ))
                            }
                        }
                    }
                    out.push(Token::NotBytes(bytes));
                } else {
                    out.push(Token::Alternatives(alternatives));
                }
            }
            _ => {
                let (hi, lo) = (c, *b.get(*i + 1).unwrap_or(&b' '));
                let token = match (hi, lo) {
                    (b'?', b'?') => Token::Masked { value: 0, mask: 0 },
                    (b'?', l) => Token::Masked {
                        value: hex_nibble(l).ok_or_else(|| bad_hex(b, *i))?,
                        mask: 0x0f,
                    },
                    (h, b'?') => Token::Masked {
                        value: hex_nibble(h).ok_or_else(|| bad_hex(b, *i))? << 4,
                        mask: 0xf0,
                    },
                    (h, l) => Token::Byte(
                        hex_nibble(h).ok_or_else(|| bad_hex(b, *i))? << 4
                            | hex_nibble(l).ok_or_else(|| bad_hex(b, *i))?,
                    ),
                };
                out.push(token);
                *i += 2;
            }
        }
    }
    Ok(out)
}

fn bad_hex(b: &[u8], i: usize) -> String {
    let end = (i + 2).min(b.len());
    format!(
        "{:?} at column {} is not a hex byte, ?? or a wildcard",
        String::from_utf8_lossy(&b[i..end]),
        i + 1
    )
}

fn parse_gap(inner: &str, brackets: bool) -> Result<Token, String> {
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a number in a gap"))
    };
    let (min, max) = match inner.split_once('-') {
        None if !brackets => {
            let n = num(inner)?;
            (n, Some(n))
        }
        None => return Err("[N-M] needs both bounds".into()),
        Some(("", m)) if !brackets => (0, Some(num(m)?)),
        Some((n, "")) if !brackets => (num(n)?, None),
        Some((n, m)) => (num(n)?, Some(num(m)?)),
    };
    if max.is_some_and(|m| m < min) {
        return Err(format!(
            "gap {{{inner}}} has its bounds the wrong way round"
        ));
    }
    if min > MAX_GAP || max.is_some_and(|m| m > MAX_GAP) {
        return Err(format!("gap {{{inner}}} is longer than {MAX_GAP} bytes"));
    }
    Ok(Token::Gap { min, max })
}

fn write_tokens(tokens: &[Token], out: &mut String) {
    for t in tokens {
        match t {
            Token::Byte(b) => {
                let _ = write!(out, "\\x{b:02x}");
            }
            Token::Masked { mask: 0, .. } => out.push('.'),
            Token::Masked { value, mask } => {
                out.push('[');
                for b in 0..=255u8 {
                    if b & mask == *value {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                out.push(']');
            }
            Token::Gap { min: 0, max: None } => out.push_str(".*?"),
            Token::Gap { min, max: None } => {
                let _ = write!(out, ".{{{min},}}?");
            }
            Token::Gap { min, max: Some(m) } => {
                let _ = write!(out, ".{{{min},{m}}}?");
            }
            Token::Alternatives(alts) => {
                out.push_str("(?:");
                for (n, alt) in alts.iter().enumerate() {
                    if n > 0 {
                        out.push('|');
                    }
                    write_tokens(alt, out);
                }
                out.push(')');
            }
            Token::NotBytes(bytes) => {
                out.push_str("[^");
                for b in bytes {
                    let _ = write!(out, "\\x{b:02x}");
                }
                out.push(']');
            }
        }
    }
}

fn longest_fixed_run(tokens: &[Token]) -> Vec<u8> {
    let (mut best, mut run) = (Vec::new(), Vec::new());
    for t in tokens {
        if let Token::Byte(b) = t {
            run.push(*b);
            if run.len() > best.len() {
                best.clone_from(&run);
            }
        } else {
            run.clear();
        }
    }
    // A long anchor costs the prefilter memory and finds nothing more.
    best.truncate(32);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(hex: &str) -> BodySignature {
        parse_line(&format!("Test.Sig:0:*:{hex}")).unwrap()
    }

    #[test]
    fn wildcards_match_as_clamav_defines_them() {
        let s = sig("6162??64*7879{2}7a(3031|32)");
        assert_eq!(s.anchor, b"ab");
        assert!(s.matches(b"..abXd....xyQQz01"));
        assert!(s.matches(b"abcdxyQQz2"));
        assert!(!s.matches(b"abcdxyQz2"));
        assert!(!s.matches(b"abcdxyQQz3"));
        let s = sig("41{1-3}42[1-2]43");
        assert!(s.matches(b"A..B.C") && s.matches(b"A...B..C"));
        assert!(!s.matches(b"AB.C") && !s.matches(b"A....B.C"));
        let s = sig("4a??!(00|01)4b");
        assert!(s.matches(b"Jz\x02K") && !s.matches(b"Jz\x00K"));
        assert!(sig("?14142").matches(b"\x31AB") && !sig("?14142").matches(b"\x32AB"));
    }

    #[test]
    fn offsets() {
        let at = parse_line("T:0:2:4142").unwrap();
        assert!(at.matches(b"..AB") && !at.matches(b"...AB"));
        let shift = parse_line("T:0:2,3:4142").unwrap();
        assert!(shift.matches(b".....AB") && !shift.matches(b"......AB"));
        let eof = parse_line("T:0:EOF-2:4142").unwrap();
        assert!(eof.matches(b"xxAB") && !eof.matches(b"xABx"));
        let pe = parse_line("T:1:*:4142").unwrap();
        assert!(pe.matches(b"MZ..AB") && !pe.matches(b"..AB"));
    }

    #[test]
    fn refuses_with_reasons() {
        for (line, reason) in [
            ("T:0:*:41zz", "not a hex byte"),
            ("T:0:*:????", "no fixed bytes"),
            ("T:3:*:4142", "target type 3"),
            ("T:0:EP+0:4142", "offset"),
            ("T:0:*:41(42|43", "unclosed"),
            ("T:0:*:41{5-2}42", "wrong way"),
            ("T:0:*:41{99999}42", "longer than"),
            ("T:0:*:*4142", "begin or end"),
            ("T:0:*:41!(4243|44)45", "single bytes"),
            ("T:0:*:41(B)42", "boundary"),
            ("T:0:*", "expected"),
            ("Bad Name:0:*:4142", "name"),
            ("T:0:*:41{0-32768}42{0-32768}43{1}44", "add up to 65537"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(reason), "{line}: {e}");
        }
    }

    #[test]
    fn the_largest_signature_allowed_compiles() {
        // Compiled late, so it must never fail then: all the gap budget, in small gaps
        // and large ones, both ways the regex is used.
        let big = format!("4142{}43", "{0-32768}44".repeat(2));
        let small = format!("4142{}43", "{4096}44".repeat(16));
        for hex in [big, small] {
            for offset in ["*", "0,10"] {
                let s = parse_line(&format!("T:0:{offset}:{hex}")).unwrap();
                assert!(s.regex().is_some(), "{offset}:{hex}");
            }
        }
        assert!(sig("4142{0-32768}43").matches(b"xxAB....Cyy"));
    }
}
