//! Splits the client's bytes into commands. imap-codec parses; this decides when to
//! send a continuation for a synchronizing literal, refuses literals and lines over
//! the limits, and skips a line that does not parse so the session can answer BAD and
//! go on.

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::CommandCodec;

pub enum Input {
    Command(Box<Command<'static>>),
    /// LIST with RFC 5258/5819 options, which imap-codec does not parse.
    ListExtended(Box<super::list_extended::ListExtended>),
    /// CREATE with RFC 6154's USE (special-use attributes): tag, name as sent, uses.
    CreateSpecialUse {
        tag: String,
        mailbox: String,
        uses: Vec<String>,
    },
    /// Nothing complete yet: read more.
    Incomplete,
    /// A synchronizing literal was announced and accepted: send `+ Ready`.
    Continue,
    /// Refuse with this tag (or untagged) and text; `close` when the client will send
    /// bytes we can no longer frame (a refused non-synchronizing literal).
    Reject {
        tag: Option<String>,
        text: String,
        close: bool,
    },
}

pub struct Framer {
    buf: Vec<u8>,
    /// End of the literal data we agreed to receive, if one is in progress.
    literal_end: usize,
    /// Buffer length when the last continuation was sent: a literal announced there
    /// has had its `+`. (A zero-length literal ends where it was announced, so its end
    /// alone cannot tell; without this, `{0}` got a `+` on every call, for ever.)
    continued_at: usize,
    max_literal: u32,
    max_line: usize,
}

impl Framer {
    pub fn new(max_literal: u32, max_line: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            literal_end: 0,
            continued_at: 0,
            max_literal,
            max_line,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Takes one CRLF-terminated line (IDLE's DONE, an AUTHENTICATE response).
    pub fn take_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buf.iter().position(|b| *b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Some(line)
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_input(&mut self) -> Input {
        if self.buf.is_empty() {
            return Input::Incomplete;
        }
        let codec = CommandCodec::default();
        let outcome = match codec.decode_static(&self.buf) {
            Ok((rest, command)) => Ok((self.buf.len() - rest.len(), command)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((consumed, command)) => {
                self.buf.drain(..consumed);
                self.literal_end = 0;
                self.continued_at = 0;
                Input::Command(Box::new(command))
            }
            Err(CommandDecodeError::Incomplete) => {
                let allowed = self.literal_end.max(self.buf.len().min(1)) + self.max_line;
                if self.buf.len() > allowed {
                    self.buf.clear();
                    self.literal_end = 0;
                    self.continued_at = 0;
                    return Input::Reject {
                        tag: None,
                        text: format!("line too long (limit {} bytes)", self.max_line),
                        close: true,
                    };
                }
                Input::Incomplete
            }
            Err(CommandDecodeError::LiteralFound { tag, length, mode }) => {
                let tag = tag.as_ref().to_string();
                if length > self.max_literal {
                    let close = mode == LiteralMode::NonSync;
                    self.buf.clear();
                    self.literal_end = 0;
                    self.continued_at = 0;
                    return Input::Reject {
                        tag: Some(tag),
                        text: format!(
                            "[TOOBIG] literal of {length} bytes is over the limit of {}",
                            self.max_literal
                        ),
                        close,
                    };
                }
                match mode {
                    LiteralMode::Sync
                        if self.buf.len() >= self.literal_end
                            && self.buf.len() > self.continued_at =>
                    {
                        self.literal_end = self.buf.len() + length as usize;
                        self.continued_at = self.buf.len();
                        Input::Continue
                    }
                    _ => {
                        self.literal_end = self.literal_end.max(self.buf.len() + length as usize);
                        Input::Incomplete
                    }
                }
            }
            Err(CommandDecodeError::Failed) => {
                // Answer with the tag if the line starts with one, and skip the line.
                let end = self.buf.iter().position(|b| *b == b'\n');
                let line_end = end.map_or(self.buf.len(), |e| e + 1);
                let line: Vec<u8> = self.buf.drain(..line_end).collect();
                self.literal_end = 0;
                self.continued_at = 0;
                let tag = line
                    .split(|b| *b == b' ')
                    .next()
                    .filter(|t| {
                        !t.is_empty()
                            && t.iter()
                                .all(|b| b.is_ascii_graphic() && *b != b'*' && *b != b'+')
                    })
                    .map(|t| String::from_utf8_lossy(t).into_owned());
                if end.is_none() && line.len() <= self.max_line {
                    // A partial line that already cannot parse: wait for its end first.
                    self.buf.splice(0..0, line);
                    return Input::Incomplete;
                }
                if let Some(list) = super::list_extended::parse(&line) {
                    return Input::ListExtended(Box::new(list));
                }
                if let Some((tag, mailbox, uses)) = super::list_extended::parse_create_use(&line) {
                    return Input::CreateSpecialUse { tag, mailbox, uses };
                }
                Input::Reject {
                    tag,
                    text: "command not understood".into(),
                    close: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::command::CommandBody;

    fn command(f: &mut Framer) -> Command<'static> {
        match f.next_input() {
            Input::Command(c) => *c,
            _ => panic!("expected a command"),
        }
    }

    #[test]
    fn commands_and_pipelining() {
        let mut f = Framer::new(1 << 20, 8192);
        f.push(b"a1 NOOP\r\na2 SELECT INBOX\r\na3 FET");
        assert_eq!(command(&mut f).tag.as_ref(), "a1");
        assert!(matches!(command(&mut f).body, CommandBody::Select { .. }));
        assert!(matches!(f.next_input(), Input::Incomplete));
        f.push(b"CH 1:* (FLAGS)\r\n");
        assert!(matches!(command(&mut f).body, CommandBody::Fetch { .. }));
    }

    #[test]
    fn synchronizing_literal_gets_one_continuation() {
        let mut f = Framer::new(1 << 20, 8192);
        f.push(b"a APPEND INBOX {11}\r\n");
        assert!(matches!(f.next_input(), Input::Continue));
        f.push(b"Hello");
        assert!(
            matches!(f.next_input(), Input::Incomplete),
            "no second continuation"
        );
        f.push(b" World\r\n");
        assert!(matches!(command(&mut f).body, CommandBody::Append { .. }));
    }

    #[test]
    fn an_empty_literal_gets_one_continuation_not_one_per_call() {
        let mut f = Framer::new(1 << 20, 8192);
        f.push(b"a LOGIN ali {0}\r\n");
        assert!(matches!(f.next_input(), Input::Continue));
        assert!(matches!(f.next_input(), Input::Incomplete));
        assert!(matches!(f.next_input(), Input::Incomplete));
        f.push(b"\r\n");
        assert!(matches!(command(&mut f).body, CommandBody::Login { .. }));
        // And the next command's literal gets its own.
        f.push(b"b LOGIN bob {0}\r\n");
        assert!(matches!(f.next_input(), Input::Continue));
        assert!(matches!(f.next_input(), Input::Incomplete));
    }

    #[test]
    fn non_synchronizing_literal_needs_no_continuation() {
        let mut f = Framer::new(1 << 20, 8192);
        f.push(b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n");
        assert!(matches!(command(&mut f).body, CommandBody::Login { .. }));
    }

    #[test]
    fn oversized_literals_and_garbage_are_refused() {
        let mut f = Framer::new(100, 8192);
        f.push(b"a APPEND INBOX {1000}\r\n");
        assert!(matches!(f.next_input(), Input::Reject { close: false, .. }));
        f.push(b"b APPEND INBOX {1000+}\r\n");
        assert!(matches!(f.next_input(), Input::Reject { close: true, .. }));

        let mut f = Framer::new(100, 8192);
        f.push(b"x1 FROBNICATE now\r\nx2 NOOP\r\n");
        match f.next_input() {
            Input::Reject { tag, close, .. } => {
                assert_eq!((tag.as_deref(), close), (Some("x1"), false))
            }
            _ => panic!("expected BAD"),
        }
        assert_eq!(command(&mut f).tag.as_ref(), "x2");

        let mut f = Framer::new(100, 64);
        f.push(&[b'a'; 200]);
        assert!(matches!(f.next_input(), Input::Reject { close: true, .. }));
    }
}
