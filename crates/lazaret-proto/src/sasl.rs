//! SASL PLAIN (RFC 4616), shared by POP3, IMAP and SMTP AUTH.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Decodes a PLAIN initial response into (authentication id, password). An
/// authorization id, if given, must equal the authentication id: nobody logs in as
/// someone else.
pub fn decode_plain(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    decode_plain_bytes(&raw)
}

/// The same, for a response already base64-decoded (IMAP's parser does that).
pub fn decode_plain_bytes(raw: &[u8]) -> Option<(String, String)> {
    let mut fields = raw.split(|&b| b == 0);
    let authz = fields.next()?;
    let authc = String::from_utf8(fields.next()?.to_vec()).ok()?;
    let password = String::from_utf8(fields.next()?.to_vec()).ok()?;
    if fields.next().is_some() || authc.is_empty() {
        return None;
    }
    if !authz.is_empty() && authz != authc.as_bytes() {
        return None;
    }
    Some((authc, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        // "\0alice\0secret"
        assert_eq!(
            decode_plain("AGFsaWNlAHNlY3JldA=="),
            Some(("alice".into(), "secret".into()))
        );
        // "alice\0alice\0secret"
        assert!(decode_plain("YWxpY2UAYWxpY2UAc2VjcmV0").is_some());
        // "bob\0alice\0secret": acting as another user
        assert_eq!(decode_plain("Ym9iAGFsaWNlAHNlY3JldA=="), None);
        assert_eq!(decode_plain("not base64!"), None);
        assert_eq!(decode_plain(""), None);
    }
}
