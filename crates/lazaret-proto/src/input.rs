//! Received bytes not yet consumed, and command-line framing with a length limit,
//! shared by every line-based session.

#[derive(Default)]
pub struct Input {
    data: Vec<u8>,
    pos: usize,
    line: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, line end included.
    Complete(Vec<u8>),
    /// No line end yet: read more.
    Incomplete,
    /// The line is over the limit; what was read of it is dropped, and the caller
    /// should `skip_line` to its end.
    TooLong,
}

impl Input {
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    pub fn rest(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.data.len());
    }

    /// Drops everything buffered (input pipelined behind STARTTLS/STLS).
    pub fn discard(&mut self) {
        self.pos = self.data.len();
        self.line.clear();
    }

    pub fn next_line(&mut self, max: usize) -> Line {
        let rest = &self.data[self.pos..];
        let newline = rest.iter().position(|&b| b == b'\n');
        let take = newline.map_or(rest.len(), |i| i + 1);
        if self.line.len() + take > max {
            self.line.clear();
            return Line::TooLong;
        }
        self.line.extend_from_slice(&rest[..take]);
        self.pos += take;
        match newline {
            Some(_) => Line::Complete(std::mem::take(&mut self.line)),
            None => Line::Incomplete,
        }
    }

    /// Consumes up to and including the next line end; false if none is buffered yet.
    pub fn skip_line(&mut self) -> bool {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                true
            }
            None => {
                self.pos = self.data.len();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let mut input = Input::default();
        input.feed(b"AB");
        assert_eq!(input.next_line(10), Line::Incomplete);
        input.feed(b"C\r\nDEF");
        assert_eq!(input.next_line(10), Line::Complete(b"ABC\r\n".to_vec()));
        assert_eq!(input.next_line(10), Line::Incomplete);
        input.feed(b"GHIJKLMNOP\r\nQ\n");
        assert_eq!(input.next_line(10), Line::TooLong);
        assert!(input.skip_line());
        assert_eq!(input.next_line(10), Line::Complete(b"Q\n".to_vec()));
    }
}
