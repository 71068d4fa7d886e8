//! LIST with RFC 5258 extensions (selection options, several patterns, RETURN options)
//! and RFC 5819's RETURN (STATUS …). Parsed here because imap-codec 2.0.0-alpha.10
//! parses only the RFC 3501 form of LIST; the framer tries this parser on a line
//! imap-codec refused. Lines with literals are left to imap-codec (and refused).

/// A parsed extended LIST command. Names are as sent (modified UTF-7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListExtended {
    pub tag: String,
    /// Upper-cased: SUBSCRIBED, REMOTE, RECURSIVEMATCH, or anything else (refused later).
    pub selection: Vec<String>,
    pub reference: String,
    pub patterns: Vec<String>,
    /// Upper-cased: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS, or anything else.
    pub returns: Vec<String>,
    /// With RETURN (STATUS (…)): the items, upper-cased.
    pub status: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(String),
    Quoted(String),
    Open,
    Close,
}

fn tokens(line: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => s.push(chars.next()?),
                        c => s.push(c),
                    }
                }
                out.push(Token::Quoted(s));
            }
            // A literal: not handled here.
            '{' => return None,
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '(' | ')' | '"') || c.is_control() {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                if s.is_empty() {
                    return None;
                }
                out.push(Token::Atom(s));
            }
        }
    }
    Some(out)
}

fn string(t: &Token) -> Option<String> {
    match t {
        Token::Atom(s) | Token::Quoted(s) => Some(s.clone()),
        _ => None,
    }
}

/// `( word* )` starting at `at`: the words and the index after `)`.
fn words(t: &[Token], at: usize) -> Option<(Vec<String>, usize)> {
    if t.get(at)? != &Token::Open {
        return None;
    }
    let mut out = Vec::new();
    let mut i = at + 1;
    loop {
        match t.get(i)? {
            Token::Close => return Some((out, i + 1)),
            Token::Open => return None,
            other => out.push(string(other)?),
        }
        i += 1;
    }
}

/// The tag and tokens of `line` if it is the command `name` (tag first, then name).
fn command(line: &[u8], name: &str) -> Option<(String, Vec<Token>)> {
    let line = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let t = tokens(line)?;
    let tag = match t.first()? {
        Token::Atom(a) => a.clone(),
        _ => return None,
    };
    matches!(t.get(1)?, Token::Atom(a) if a.eq_ignore_ascii_case(name)).then_some((tag, t))
}

/// The command if `line` (one line, CRLF optional) is an extended LIST; `None` for
/// anything else, including the plain RFC 3501 LIST (imap-codec's).
pub fn parse(line: &[u8]) -> Option<ListExtended> {
    let (tag, t) = command(line, "LIST")?;
    let mut i = 2;
    let mut selection = Vec::new();
    if t.get(i)? == &Token::Open {
        let (w, next) = words(&t, i)?;
        selection = w.iter().map(|s| s.to_ascii_uppercase()).collect();
        i = next;
    }
    let reference = string(t.get(i)?)?;
    i += 1;
    let patterns = if t.get(i)? == &Token::Open {
        let (w, next) = words(&t, i)?;
        i = next;
        w
    } else {
        i += 1;
        vec![string(t.get(i - 1)?)?]
    };
    let (mut returns, mut status) = (Vec::new(), Vec::new());
    if let Some(Token::Atom(a)) = t.get(i) {
        if !a.eq_ignore_ascii_case("RETURN") || t.get(i + 1)? != &Token::Open {
            return None;
        }
        i += 2;
        loop {
            match t.get(i)? {
                Token::Close => {
                    i += 1;
                    break;
                }
                Token::Atom(a) if a.eq_ignore_ascii_case("STATUS") => {
                    let (w, next) = words(&t, i + 1)?;
                    status = w.iter().map(|s| s.to_ascii_uppercase()).collect();
                    returns.push("STATUS".to_string());
                    i = next;
                }
                Token::Atom(a) => {
                    returns.push(a.to_ascii_uppercase());
                    i += 1;
                }
                _ => return None,
            }
        }
    }
    if i != t.len() || patterns.is_empty() {
        return None;
    }
    Some(ListExtended {
        tag,
        selection,
        reference,
        patterns,
        returns,
        status,
    })
}

/// `tag CREATE name (USE (\\Sent …))` (RFC 6154 CREATE-SPECIAL-USE), which imap-codec
/// does not parse either: (tag, name as sent, the attributes).
pub fn parse_create_use(line: &[u8]) -> Option<(String, String, Vec<String>)> {
    let (tag, t) = command(line, "CREATE")?;
    let name = string(t.get(2)?)?;
    if t.get(3)? != &Token::Open
        || !matches!(t.get(4)?, Token::Atom(a) if a.eq_ignore_ascii_case("USE"))
    {
        return None;
    }
    let (uses, next) = words(&t, 5)?;
    if t.get(next)? != &Token::Close || next + 1 != t.len() {
        return None;
    }
    Some((tag, name, uses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_rfc_5258_and_5819_add() {
        let l = parse(b"a1 LIST (SUBSCRIBED RecursiveMatch) \"\" (\"INBOX\" Foo/%) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n").unwrap();
        assert_eq!(l.tag, "a1");
        assert_eq!(l.selection, ["SUBSCRIBED", "RECURSIVEMATCH"]);
        assert_eq!(l.reference, "");
        assert_eq!(l.patterns, ["INBOX", "Foo/%"]);
        assert_eq!(l.returns, ["CHILDREN", "STATUS"]);
        assert_eq!(l.status, ["MESSAGES", "UNSEEN"]);
        let l = parse(b"t LIST \"\" % RETURN (SPECIAL-USE)").unwrap();
        assert_eq!(
            (l.patterns, l.returns),
            (vec!["%".to_string()], vec!["SPECIAL-USE".to_string()])
        );
        assert!(parse(b"t LIST \"\" {5}\r\n").is_none());
        assert!(parse(b"t SELECT INBOX").is_none());
        assert!(parse(b"t LIST \"\" % RETURN").is_none());
    }

    /// Random lines made of the grammar's pieces: never a panic.
    #[test]
    fn random_lines_never_panic() {
        let pieces = [
            "a1",
            " ",
            "LIST",
            "CREATE",
            "(",
            ")",
            "\"",
            "\\",
            "RETURN",
            "STATUS",
            "USE",
            "SUBSCRIBED",
            "%",
            "*",
            "{3}",
            "\r\n",
            "INBOX",
            "ü",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            let mut line = String::new();
            for _ in 0..(state % 14) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let _ = parse(line.as_bytes());
            let _ = parse_create_use(line.as_bytes());
            let with_tag = format!("t LIST {line}");
            let _ = parse(with_tag.as_bytes());
        }
    }

    #[test]
    fn create_with_a_special_use() {
        let (tag, name, uses) =
            parse_create_use(b"c1 CREATE \"Sent Items\" (USE (\\Sent))\r\n").unwrap();
        assert_eq!((tag.as_str(), name.as_str()), ("c1", "Sent Items"));
        assert_eq!(uses, ["\\Sent"]);
        assert!(parse_create_use(b"c1 CREATE Foo").is_none());
    }
}
