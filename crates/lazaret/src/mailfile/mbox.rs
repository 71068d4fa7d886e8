//! mbox, mboxrd flavour: each message starts with a `From sender date` line; body lines
//! that look like one (`>*From `) get one more `>` when written and lose one when read.

use std::io::{self, BufRead, Write};

/// One message read from an mbox file.
pub struct MboxMessage {
    /// CRLF line ends, `>From ` unquoted.
    pub data: Vec<u8>,
    /// The date of the `From ` line (unix seconds), if it could be read.
    pub date: Option<i64>,
    /// Bytes of the file this message took, for progress.
    pub bytes: u64,
}

/// Reads messages one at a time from an mbox file.
pub struct MboxReader<R> {
    input: R,
    /// The `From ` line that starts the next message, once seen.
    pending: Option<Vec<u8>>,
    line: Vec<u8>,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(input: R) -> MboxReader<R> {
        MboxReader {
            input,
            pending: None,
            line: Vec::new(),
        }
    }

    pub fn next_message(&mut self) -> io::Result<Option<MboxMessage>> {
        let mut from_line = self.pending.take();
        let mut body: Vec<u8> = Vec::new();
        let mut bytes = from_line.as_ref().map_or(0, |l| l.len() as u64);
        loop {
            self.line.clear();
            let n = self.input.read_until(b'\n', &mut self.line)?;
            if n == 0 {
                break;
            }
            if self.line.starts_with(b"From ") {
                if from_line.is_none() && body.iter().all(u8::is_ascii_whitespace) {
                    // The first message's separator (anything before it is not mail).
                    body.clear();
                    bytes += n as u64;
                    from_line = Some(self.line.clone());
                    continue;
                }
                self.pending = Some(self.line.clone());
                break;
            }
            bytes += n as u64;
            let quoted = self.line.iter().position(|&b| b != b'>');
            if let Some(p) = quoted.filter(|&p| p > 0) {
                if self.line[p..].starts_with(b"From ") {
                    body.extend_from_slice(&self.line[1..]);
                    continue;
                }
            }
            body.extend_from_slice(&self.line);
        }
        if from_line.is_none() && body.is_empty() {
            return Ok(None);
        }
        // The separator's blank line belongs to the format, not the message.
        if body.ends_with(b"\r\n\r\n") {
            body.truncate(body.len() - 2);
        } else if body.ends_with(b"\n\n") {
            body.truncate(body.len() - 1);
        }
        Ok(Some(MboxMessage {
            data: super::to_crlf(&body),
            date: from_line.as_deref().and_then(from_line_date),
            bytes,
        }))
    }
}

/// The asctime date at the end of a `From sender Mon Nov 23 07:33:05 2026` line.
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 7 {
        return None;
    }
    let [_, mon, day, hms, year] = words[words.len() - 5..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(mon))? as u32
        + 1;
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    let days =
        lazaret_proto::imap::write::days_from_civil(year.parse().ok()?, month, day.parse().ok()?);
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Writes one message in mboxrd form.
pub fn write_message(out: &mut impl Write, sender: &str, date: i64, data: &[u8]) -> io::Result<()> {
    let sender = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    };
    writeln!(out, "From {sender} {}", asctime(date))?;
    for line in data.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"));
        let line = line.unwrap_or_default();
        let quoted = line.iter().position(|&b| b != b'>');
        if quoted.is_some_and(|p| line[p..].starts_with(b"From ")) {
            out.write_all(b">")?;
        }
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")
}

fn asctime(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(unix.div_euclid(86_400)).rem_euclid(7) as usize],
        MONTHS[t.month() as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_from_quoting() {
        let a = b"Subject: one\r\n\r\nFrom the start\r\n>From quoted\r\nend\r\n";
        let b = b"Subject: two\r\n\r\nsecond\r\n";
        let mut file = Vec::new();
        write_message(&mut file, "a@x.test", 1_795_428_000, a).unwrap();
        write_message(&mut file, "", 1_795_428_001, b).unwrap();
        let text = String::from_utf8_lossy(&file).into_owned();
        assert!(
            text.starts_with("From a@x.test Mon Nov 23 10:00:00 2026\n"),
            "{text}"
        );
        assert!(text.contains("\n>From the start\n>>From quoted\n"));
        let mut reader = MboxReader::new(&file[..]);
        let first = reader.next_message().unwrap().unwrap();
        assert_eq!(first.data, a);
        assert_eq!(first.date, Some(1_795_428_000));
        let second = reader.next_message().unwrap().unwrap();
        assert_eq!(second.data, b);
        assert!(reader.next_message().unwrap().is_none());
    }
}
