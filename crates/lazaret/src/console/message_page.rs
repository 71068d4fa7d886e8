//! `/messages/{id}`: one message, queued (`q…`), in a mailbox (`m…`) or quarantined
//! (`x…`), shown safely: its headers, its text part as plain text, its attachments by
//! name, type, size and SHA-256. Nothing is rendered as HTML and no attachment opens
//! in the browser; the raw message downloads only as a `message/rfc822` attachment.

use super::layout::{self, bytes, time};
use super::{Admin, Console, PageError, PageResult};
use crate::admin;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use maud::html;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Text beyond this is cut: the page is for recognising a worm, not for reading.
const MAX_TEXT: usize = 64 * 1024;

fn valid_id(id: &str) -> Result<(), PageError> {
    let ok = id.len() > 1
        && id.starts_with(['q', 'm', 'x'])
        && id[1..].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(PageError::Status(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a message id (q…, m… or x…, as find shows them)"),
        ))
    }
}

struct Attachment {
    name: String,
    content_type: String,
    size: usize,
    sha256: String,
}

struct Shown {
    headers: Vec<(String, String)>,
    text: String,
    text_cut: bool,
    html_only: bool,
    attachments: Vec<Attachment>,
}

fn dissect(raw: &[u8]) -> Shown {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Shown {
            headers: Vec::new(),
            text: String::from_utf8_lossy(&raw[..raw.len().min(MAX_TEXT)]).into_owned(),
            text_cut: raw.len() > MAX_TEXT,
            html_only: false,
            attachments: Vec::new(),
        };
    };
    let wanted = [
        "From",
        "Sender",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "Authentication-Results",
        "X-Lazaret-Scan",
    ];
    let headers = message
        .headers_raw()
        .filter(|(name, _)| wanted.iter().any(|w| w.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.to_string(), value.trim().replace(['\r', '\n'], " ")))
        .collect();
    // The first text/plain part; failing that the first HTML part's source, escaped
    // when shown: a worm's HTML is evidence, not a page to render. (mail-parser's
    // `body_text` would convert HTML to text, hiding what the message really holds.)
    let first = |ids: &[u32]| {
        ids.iter()
            .filter_map(|&i| message.parts.get(i as usize))
            .find_map(|p| match &p.body {
                PartType::Text(t) => Some((t.to_string(), false)),
                PartType::Html(h) => Some((h.to_string(), true)),
                _ => None,
            })
    };
    let (mut text, html_only) = first(&message.text_body)
        .or_else(|| first(&message.html_body))
        .unwrap_or_default();
    let text_cut = text.len() > MAX_TEXT;
    if text_cut {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    let attachments = message
        .attachments()
        .map(|part| {
            let contents = part.contents();
            Attachment {
                name: part.attachment_name().unwrap_or("(no name)").to_string(),
                content_type: part
                    .content_type()
                    .map(|c| match c.subtype() {
                        Some(sub) => format!("{}/{sub}", c.ctype()),
                        None => c.ctype().to_string(),
                    })
                    .unwrap_or_else(|| match part.body {
                        PartType::Message(_) => "message/rfc822".into(),
                        _ => "application/octet-stream".into(),
                    }),
                size: contents.len(),
                sha256: hex::encode(Sha256::digest(contents)),
            }
        })
        .collect();
    Shown {
        headers,
        text,
        text_cut,
        html_only,
        attachments,
    }
}

pub async fn show(
    State(console): State<Arc<Console>>,
    admin: Admin,
    Path(id): Path<String>,
) -> PageResult {
    valid_id(&id)?;
    let server = console.server.clone();
    let key = id.clone();
    let raw = server
        .store_call(move |s| s.message_raw(&key))
        .await
        .map_err(admin::ApiError::from)?;
    let size = raw.len();
    let shown = tokio::task::spawn_blocking(move || dissect(&raw))
        .await
        .map_err(|e| PageError::Status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let quarantine = if id.starts_with('x') {
        let key = id.clone();
        server
            .store_call(move |s| s.quarantine_detail(&key))
            .await
            .ok()
    } else {
        None
    };
    let body = html! {
        p { (id) " · " (bytes(size as u64)) " · "
            a href={ "/messages/" (id) "/raw" } { "Download the raw message (.eml)" } }
        @if let Some(q) = &quarantine {
            section aria-labelledby="quarantined" {
                h2 #quarantined { "Quarantined" }
                dl.facts {
                    dt { "When" } dd { (time(Some(q.quarantined))) }
                    dt { "By" } dd { (q.actor) }
                    dt { "Why" } dd { (q.reason) }
                    dt { "Taken from" } dd { (q.origin) }
                    @if !q.recipients.is_empty() { dt { "Recipients / flags" } dd { (q.recipients.join(", ")) } }
                }
                form.inline method="post" action="/quarantine/restore" {
                    (layout::csrf(&admin))
                    input type="hidden" name="ids" value=(id);
                    button type="submit" { "Restore this message" }
                }
            }
        }
        section aria-labelledby="headers" {
            h2 #headers { "Headers" }
            dl.headers {
                @for (name, value) in &shown.headers { dt { (name) } dd { (value) } }
            }
        }
        section aria-labelledby="attachments" {
            h2 #attachments { "Attachments" }
            @if shown.attachments.is_empty() { p { "None." } } @else {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" class="num" { "Size" } th scope="col" { "SHA-256" } } }
                    tbody { @for a in &shown.attachments {
                        tr { td { (a.name) } td { (a.content_type) } td.num { (bytes(a.size as u64)) }
                             td { a href={ "/find?in=all&sha256=" (a.sha256) } { code { (a.sha256) } } } }
                    } }
                }
            }
        }
        section aria-labelledby="text" {
            h2 #text { @if shown.html_only { "HTML source (not rendered)" } @else { "Text" } }
            pre.body { (shown.text) }
            @if shown.text_cut { p.hint { "Cut at 64 KB; download the raw message for the rest." } }
        }
    };
    Ok(layout::page("Message", "/find", &admin, body).into_response())
}

pub async fn raw(
    State(console): State<Arc<Console>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> PageResult {
    valid_id(&id)?;
    let key = id.clone();
    let data = console
        .server
        .store_call(move |s| s.message_raw(&key))
        .await
        .map_err(admin::ApiError::from)?;
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.eml\""),
            ),
        ],
        data,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::dissect;

    #[test]
    fn attachments_are_listed_with_their_digest_and_html_is_kept_as_text() {
        let raw = b"From: a@b.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>\r\n--x\r\nContent-Type: application/octet-stream; name=\"w.scr\"\r\nContent-Disposition: attachment; filename=\"w.scr\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVo=\r\n--x--\r\n";
        let shown = dissect(raw);
        assert!(shown.html_only);
        assert!(shown.text.contains("<script>"));
        assert_eq!(shown.attachments.len(), 1);
        assert_eq!(shown.attachments[0].name, "w.scr");
        assert_eq!(shown.attachments[0].size, 2);
        // SHA-256 of "MZ", the decoded attachment.
        assert_eq!(
            shown.attachments[0].sha256,
            "9b8db510ef42b8ed54a3712636fda55a4f8cfcd5493e20b74ab00cd4f3979f2d"
        );
    }
}
