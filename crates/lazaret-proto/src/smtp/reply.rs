//! SMTP replies that know their code and enhanced status code.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (RFC 3463), e.g. [5, 1, 1].
    pub status: [u8; 3],
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, status: [u8; 3], text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            text: text.into(),
        }
    }

    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Writes the reply in wire form, one line per line of text.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.lines().collect();
        let lines = if lines.is_empty() { vec![""] } else { lines };
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let [a, b, c] = self.status;
            out.extend_from_slice(format!("{}{sep}{a}.{b}.{c} {line}\r\n", self.code).as_bytes());
        }
    }

    pub fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, [5, 5, 1], text)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.status;
        write!(f, "{} {a}.{b}.{c} {}", self.code, self.text)
    }
}
