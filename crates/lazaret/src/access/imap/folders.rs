//! LIST, LSUB, STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE. Folders form a
//! hierarchy with `/` as the separator; special-use attributes (RFC 6154) come from
//! the store.

use super::session::Session;
use lazaret_proto::imap::types::mailbox::{ListMailbox, Mailbox};
use lazaret_proto::imap::types::status::StatusDataItemName;
use lazaret_proto::imap::{mutf7, write};
use lazaret_store::StoreError;

fn no(session: &mut Session, tag: &str, e: StoreError) {
    let text = match e {
        StoreError::NotFound(m) if m.starts_with('[') => m,
        StoreError::NotFound(m) => format!("[NONEXISTENT] {m}"),
        StoreError::Exists(m) => format!("[ALREADYEXISTS] {m}"),
        StoreError::Invalid(m) => format!("[CANNOT] {m}"),
        other => format!("[UNAVAILABLE] {other}"),
    };
    session.tagged(tag, "NO", &text);
}

macro_rules! folder_op {
    ($session:expr, $tag:expr, $ok:expr, |$s:ident, $user:ident| $call:expr) => {{
        let $user = $session.user().to_string();
        match $session.server.store_call(move |$s| $call).await {
            Ok(_) => {
                $session.announce();
                $session.tagged($tag, "OK", $ok);
            }
            Err(e) => no($session, $tag, e),
        }
    }};
}

pub async fn create(session: &mut Session, tag: &str, name: &str) {
    let name = name.to_string();
    folder_op!(session, tag, "CREATE completed", |s, user| s
        .folder_create(&user, &name))
}

pub async fn delete(session: &mut Session, tag: &str, name: &str) {
    if session.selected.as_ref().is_some_and(|s| s.name == name) {
        session.selected = None;
    }
    let name = name.to_string();
    folder_op!(session, tag, "DELETE completed", |s, user| s
        .folder_delete(&user, &name))
}

pub async fn rename(session: &mut Session, tag: &str, from: &str, to: &str) {
    let (from, to) = (from.to_string(), to.to_string());
    folder_op!(session, tag, "RENAME completed", |s, user| s
        .folder_rename(&user, &from, &to))
}

pub async fn subscribe(session: &mut Session, tag: &str, name: &str, on: bool) {
    let name = name.to_string();
    let ok = if on {
        "SUBSCRIBE completed"
    } else {
        "UNSUBSCRIBE completed"
    };
    folder_op!(session, tag, ok, |s, user| s
        .folder_subscribe(&user, &name, on))
}

/// IMAP LIST wildcards: `*` matches anything, `%` anything but the separator.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| matches(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
    }
}

pub async fn list(
    session: &mut Session,
    tag: &str,
    reference: &Mailbox<'_>,
    pattern: &ListMailbox<'_>,
    subscribed_only: bool,
) {
    let command = if subscribed_only { "LSUB" } else { "LIST" };
    let reference = match reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    };
    let pattern: &[u8] = match pattern {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    };
    if pattern.is_empty() {
        session.line(&format!("* {command} (\\Noselect) \"/\" \"\""));
        session.tagged(tag, "OK", &format!("{command} completed"));
        return;
    }
    let mut full = reference.into_bytes();
    full.extend_from_slice(pattern);
    // Names are kept in UTF-8: so is the pattern (wildcards are plain ASCII).
    let full = match mutf7::decode(&String::from_utf8_lossy(&full)) {
        Ok(decoded) => decoded.into_bytes(),
        Err(_) => full,
    };
    if subscribed_only {
        return lsub(session, tag, &full).await;
    }
    let user = session.user().to_string();
    let folders = match session.server.store_call(move |s| s.folders(&user)).await {
        Ok(f) => f,
        Err(e) => return no(session, tag, e),
    };
    let names: Vec<String> = folders.iter().map(|f| f.name.clone()).collect();
    for f in &folders {
        let hit = if f.name == "INBOX" {
            let upper: Vec<u8> = full.to_ascii_uppercase();
            matches(&full, b"INBOX") || matches(&upper, b"INBOX")
        } else {
            matches(&full, f.name.as_bytes())
        };
        if !hit {
            continue;
        }
        let prefix = format!("{}/", f.name);
        let children = names.iter().any(|n| n.starts_with(&prefix));
        let mut attrs = vec![if children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }
        .to_string()];
        if let Some(special) = &f.special {
            attrs.push(special.clone());
        }
        let mut out = format!("* {command} ({}) \"/\" ", attrs.join(" ")).into_bytes();
        write::mailbox(&mut out, &f.name);
        out.extend_from_slice(b"\r\n");
        session.out.extend_from_slice(&out);
    }
    session.tagged(tag, "OK", &format!("{command} completed"));
}

/// LSUB (RFC 3501 6.3.9): subscribed names matching the pattern, whether or not the
/// folder exists; where `%` stops above a subscribed name, its unsubscribed parent at
/// that level is listed `\Noselect`, so that a client can walk down to it.
async fn lsub(session: &mut Session, tag: &str, pattern: &[u8]) {
    let user = session.user().to_string();
    let names = match session
        .server
        .store_call(move |s| s.subscriptions(&user))
        .await
    {
        Ok(n) => n,
        Err(e) => return no(session, tag, e),
    };
    let hit = |name: &str| {
        if name == "INBOX" {
            matches(pattern, b"INBOX") || matches(&pattern.to_ascii_uppercase(), b"INBOX")
        } else {
            matches(pattern, name.as_bytes())
        }
    };
    let mut listed: Vec<(String, bool)> = Vec::new();
    for name in &names {
        if hit(name) {
            listed.push((name.clone(), false));
            continue;
        }
        // The nearest parent the pattern matches, if it is not subscribed itself.
        let mut parent = name.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            if hit(parent) {
                if !names.iter().any(|n| n == parent) && !listed.iter().any(|(n, _)| n == parent) {
                    listed.push((parent.to_string(), true));
                }
                break;
            }
        }
    }
    listed.sort();
    for (name, noselect) in listed {
        let attrs = if noselect { "\\Noselect" } else { "" };
        let mut out = format!("* LSUB ({attrs}) \"/\" ").into_bytes();
        write::mailbox(&mut out, &name);
        out.extend_from_slice(b"\r\n");
        session.out.extend_from_slice(&out);
    }
    session.tagged(tag, "OK", "LSUB completed");
}

pub async fn status(session: &mut Session, tag: &str, name: &str, items: &[StatusDataItemName]) {
    let user = session.user().to_string();
    let folders = match session.server.store_call(move |s| s.folders(&user)).await {
        Ok(f) => f,
        Err(e) => return no(session, tag, e),
    };
    let wanted = if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    };
    let Some(f) = folders.iter().find(|f| f.name == wanted) else {
        session.tagged(tag, "NO", &format!("[NONEXISTENT] no folder {name}"));
        return;
    };
    let mut parts = Vec::new();
    for item in items {
        match item {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", f.messages)),
            StatusDataItemName::Recent => parts.push(format!("RECENT {}", f.recent)),
            StatusDataItemName::HighestModSeq => {
                parts.push(format!("HIGHESTMODSEQ {}", f.highestmodseq))
            }
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", f.uidnext)),
            StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {}", f.uidvalidity)),
            StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", f.unseen)),
            _ => {}
        }
    }
    let mut out = b"* STATUS ".to_vec();
    write::mailbox(&mut out, &f.name);
    out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    session.out.extend_from_slice(&out);
    session.tagged(tag, "OK", "STATUS completed");
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn list_wildcards() {
        assert!(matches(b"*", b"a/b/c"));
        assert!(matches(b"%", b"Sent") && !matches(b"%", b"a/b"));
        assert!(matches(b"a/%", b"a/b") && !matches(b"a/%", b"a/b/c"));
        assert!(matches(b"S*t", b"Sent") && !matches(b"S*x", b"Sent"));
    }
}
