//! Lazaret's rule format for an admin in a hurry (`.rules` files), one rule a line:
//!
//! ```text
//! # NAME                 KIND       PATTERN (the rest of the line)
//! Worm.Invoice.Attach    filename   invoice_*.pdf.exe
//! Worm.Invoice.Subject   header     Subject: (?i)^(re: |fwd: )*your invoice
//! Worm.Invoice.Lure      body       (?i)open the attached invoice today
//! ```
//!
//! `filename` is a glob (`*`, `?`, `[...]`, case-insensitive) over attachment names and
//! the names of files inside archives (the last path component, or the whole path when
//! the glob has a `/`); `header` is `Field-Name: REGEX` over each such header's decoded
//! value; `body` is a REGEX over the text a reader sees (text parts, HTML without tags).

use regex::{Regex, RegexBuilder};

#[derive(Debug, Clone)]
pub enum RuleKind {
    FileName,
    /// The header field's name, lower case.
    Header(String),
    Body,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub regex: Regex,
    /// For file names: match the whole path inside archives, not just the last name.
    pub whole_path: bool,
}

pub fn parse_line(line: &str) -> Result<Rule, String> {
    let mut fields = line.splitn(3, char::is_whitespace);
    let (Some(name), Some(kind), Some(pattern)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected NAME KIND PATTERN (KIND: filename, header or body)".into());
    };
    let name = super::check_name(name)?;
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    let build = |re: &str| {
        RegexBuilder::new(re)
            .size_limit(8 << 20)
            .build()
            .map_err(|e| format!("bad regular expression: {e}"))
    };
    match kind {
        "filename" => Ok(Rule {
            name,
            kind: RuleKind::FileName,
            regex: build(&glob_to_regex(pattern))?,
            whole_path: pattern.contains('/'),
        }),
        "header" => {
            let Some((field, re)) = pattern.split_once(':') else {
                return Err("a header rule is `Field-Name: REGEX`".into());
            };
            let field = field.trim();
            if field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("{field:?} is not a header field name"));
            }
            Ok(Rule {
                name,
                kind: RuleKind::Header(field.to_ascii_lowercase()),
                regex: build(re.trim_start())?,
                whole_path: false,
            })
        }
        "body" => Ok(Rule {
            name,
            kind: RuleKind::Body,
            regex: build(pattern)?,
            whole_path: false,
        }),
        other => Err(format!(
            "unknown rule kind {other:?} (use filename, header or body)"
        )),
    }
}

/// Shell-style glob to an anchored, case-insensitive regex. Hand-written: the syntax is
/// three characters, and a glob crate would not share the regex engine already here.
/// The store's `find` on PostgreSQL hands the same text to PostgreSQL, whose regular
/// expressions read it alike (`(?is)`, classes, escapes).
pub fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("(?is)^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let mut class = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == ']' {
                        closed = true;
                        break;
                    }
                    class.push(d);
                }
                if closed && !class.is_empty() {
                    re.push('[');
                    if let Some(rest) = class.strip_prefix('!') {
                        re.push('^');
                        class = rest.to_string();
                    }
                    re.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                    re.push(']');
                } else {
                    re.push_str(&regex::escape(&format!("[{class}")));
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match() {
        let r = parse_line("W.A filename invoice_*.PDF.exe").unwrap();
        assert!(r.regex.is_match("Invoice_77.pdf.EXE") && !r.regex.is_match("invoice.pdf"));
        let r = parse_line("W.B\theader  Subject: (?i)^re: urgent").unwrap();
        assert!(matches!(&r.kind, RuleKind::Header(h) if h == "subject"));
        assert!(r.regex.is_match("RE: Urgent payment"));
        let r = parse_line("W.C filename doc[0-9].zip").unwrap();
        assert!(r.regex.is_match("doc7.zip") && !r.regex.is_match("docx.zip"));
        assert!(parse_line("W.D body (unclosed")
            .unwrap_err()
            .contains("regular"));
        assert!(parse_line("W.E header no colon here")
            .unwrap_err()
            .contains("Field-Name"));
        assert!(parse_line("W.F smell bad")
            .unwrap_err()
            .contains("unknown rule kind"));
        assert!(parse_line("W.G body").unwrap_err().contains("expected"));
    }
}
