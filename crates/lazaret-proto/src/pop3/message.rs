//! A stored message as RETR/TOP send it: CRLF line ends, dot-stuffed, with the final
//! "." line.

/// `top`: None for the whole message, Some(n) for the headers and n body lines.
pub fn format_for_retr(raw: &[u8], top: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 8);
    let mut in_body = false;
    let mut body_lines = 0usize;
    let mut lines = raw.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() && line.is_empty() {
            break; // the text ended with a newline: no extra empty line
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if top.is_some_and(|n| body_lines >= n) {
                break;
            }
            body_lines += 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if line.is_empty() {
            in_body = true;
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_and_normalizes() {
        let raw = b"Subject: x\n\n.hidden\r\nline2\r\nline3\n";
        assert_eq!(
            format_for_retr(raw, None),
            b"Subject: x\r\n\r\n..hidden\r\nline2\r\nline3\r\n.\r\n"
        );
        assert_eq!(
            format_for_retr(raw, Some(1)),
            b"Subject: x\r\n\r\n..hidden\r\n.\r\n"
        );
        assert_eq!(format_for_retr(raw, Some(0)), b"Subject: x\r\n\r\n.\r\n");
        assert_eq!(format_for_retr(b"", None), b".\r\n");
    }
}
