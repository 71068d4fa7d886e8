//! LIST, LSUB, STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE. Folders form a
//! hierarchy with `/` as the separator; special-use attributes (RFC 6154) come from
//! the store.

use super::session::Session;
use lazaret_proto::imap::list_extended::ListExtended;
use lazaret_proto::imap::types::mailbox::{ListMailbox, Mailbox};
use lazaret_proto::imap::types::status::StatusDataItemName;
use lazaret_proto::imap::{mutf7, write};
use lazaret_store::StoreError;

fn no(session: &mut Session, tag: &str, e: StoreError) {
    let text = match e {
        StoreError::NotFound(m) if m.starts_with('[') => m,
        StoreError::NotFound(m) => format!("[NONEXISTENT] {m}"),
        StoreError::Exists(m) => format!("[ALREADYEXISTS] {m}"),
        StoreError::Invalid(m) if m.starts_with('[') => m,
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

pub async fn create(session: &mut Session, tag: &str, name: &str, special: Option<String>) {
    let name = name.to_string();
    folder_op!(session, tag, "CREATE completed", |s, user| s.folder_create(
        &user,
        &name,
        special.as_deref()
    ))
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

/// Whether a LIST/LSUB pattern names a folder; INBOX matches in any case.
fn pattern_names(pattern: &[u8], name: &str) -> bool {
    if name == "INBOX" {
        matches(pattern, b"INBOX") || matches(&pattern.to_ascii_uppercase(), b"INBOX")
    } else {
        matches(pattern, name.as_bytes())
    }
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
        let hit = pattern_names(&full, &f.name);
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
    let hit = |name: &str| pattern_names(pattern, name);
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

/// LIST with RFC 5258 selection and return options and RFC 5819's RETURN (STATUS).
/// Selection: SUBSCRIBED (subscribed names, existing or not: `\NonExistent`), REMOTE
/// (no remote folders here: no effect), RECURSIVEMATCH (with SUBSCRIBED: a matching
/// name that is not itself selected but has a selected descendant the patterns do not
/// match is listed with `CHILDINFO ("SUBSCRIBED")`). Return: SUBSCRIBED, CHILDREN,
/// SPECIAL-USE (children and special-use are always given, as RFC 5258 allows), STATUS.
pub async fn list_extended(session: &mut Session, list: &ListExtended) {
    let tag = list.tag.as_str();
    let known_selection = ["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH"];
    if let Some(bad) = list
        .selection
        .iter()
        .find(|o| !known_selection.contains(&o.as_str()))
    {
        return session.tagged(tag, "BAD", &format!("LIST: unknown selection option {bad}"));
    }
    let subscribed_only = list.selection.iter().any(|o| o == "SUBSCRIBED");
    let recursive = list.selection.iter().any(|o| o == "RECURSIVEMATCH");
    if recursive && !subscribed_only {
        return session.tagged(
            tag,
            "BAD",
            "LIST: RECURSIVEMATCH needs another selection option (SUBSCRIBED)",
        );
    }
    let known_return = ["SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"];
    if let Some(bad) = list
        .returns
        .iter()
        .find(|o| !known_return.contains(&o.as_str()))
    {
        return session.tagged(tag, "BAD", &format!("LIST: unknown return option {bad}"));
    }
    let show_subscribed = subscribed_only || list.returns.iter().any(|o| o == "SUBSCRIBED");
    let decode = |s: &str| mutf7::decode(s).unwrap_or_else(|_| s.to_string());
    let reference = decode(&list.reference);
    let patterns: Vec<Vec<u8>> = list
        .patterns
        .iter()
        .map(|p| format!("{reference}{}", decode(p)).into_bytes())
        .collect();
    if patterns.iter().all(|p| p.is_empty()) {
        session.line("* LIST (\\Noselect) \"/\" \"\"");
        return session.tagged(tag, "OK", "LIST completed");
    }
    let hit = |name: &str| patterns.iter().any(|p| pattern_names(p, name));
    let user = session.user().to_string();
    let read = session
        .server
        .store_call(move |s| Ok((s.folders(&user)?, s.subscriptions(&user)?)))
        .await;
    let (folders, subscribed) = match read {
        Ok(r) => r,
        Err(e) => return no(session, tag, e),
    };
    let exists = |name: &str| folders.iter().find(|f| f.name == name);
    let is_subscribed = |name: &str| subscribed.iter().any(|s| s == name);
    let has_children = |name: &str| {
        let prefix = format!("{name}/");
        folders.iter().any(|f| f.name.starts_with(&prefix))
    };
    // Candidates: every folder, or every subscribed name; with RECURSIVEMATCH also the
    // parents of subscribed names.
    let mut candidates: Vec<String> = if subscribed_only {
        subscribed.clone()
    } else {
        folders.iter().map(|f| f.name.clone()).collect()
    };
    if recursive {
        for s in &subscribed {
            let mut name = s.as_str();
            while let Some((parent, _)) = name.rsplit_once('/') {
                candidates.push(parent.to_string());
                name = parent;
            }
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut reply: Vec<u8> = Vec::new();
    for name in candidates.iter().filter(|n| hit(n)) {
        let selected = !subscribed_only || is_subscribed(name);
        // RECURSIVEMATCH: a selected descendant the patterns do not match.
        let childinfo = recursive
            && subscribed
                .iter()
                .any(|s| s.starts_with(&format!("{name}/")) && !hit(s));
        if !selected && !childinfo {
            continue;
        }
        let folder = exists(name);
        let mut attrs: Vec<String> = Vec::new();
        if folder.is_none() {
            attrs.push("\\NonExistent".into());
        }
        if show_subscribed && is_subscribed(name) {
            attrs.push("\\Subscribed".into());
        }
        if folder.is_some() {
            attrs.push(if has_children(name) {
                "\\HasChildren".into()
            } else {
                "\\HasNoChildren".into()
            });
        }
        if let Some(special) = folder.and_then(|f| f.special.clone()) {
            attrs.push(special);
        }
        let mut out = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
        write::mailbox(&mut out, name);
        if childinfo && !selected {
            out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        out.extend_from_slice(b"\r\n");
        reply.extend_from_slice(&out);
        if let Some(f) = folder.filter(|_| !list.status.is_empty()) {
            reply.extend_from_slice(&status_line(f, &list.status));
        }
    }
    session.out.extend_from_slice(&reply);
    session.tagged(tag, "OK", "LIST completed");
}

/// `* STATUS name (…)` with the items asked for, by name (STATUS and LIST-STATUS).
fn status_line<S: AsRef<str>>(f: &lazaret_store::Folder, items: &[S]) -> Vec<u8> {
    let mut parts = Vec::new();
    for item in items {
        match item.as_ref() {
            "MESSAGES" => parts.push(format!("MESSAGES {}", f.messages)),
            "RECENT" => parts.push(format!("RECENT {}", f.recent)),
            "UIDNEXT" => parts.push(format!("UIDNEXT {}", f.uidnext)),
            "UIDVALIDITY" => parts.push(format!("UIDVALIDITY {}", f.uidvalidity)),
            "UNSEEN" => parts.push(format!("UNSEEN {}", f.unseen)),
            "HIGHESTMODSEQ" => parts.push(format!("HIGHESTMODSEQ {}", f.highestmodseq)),
            _ => {}
        }
    }
    let mut out = b"* STATUS ".to_vec();
    write::mailbox(&mut out, &f.name);
    out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    out
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
    let names: Vec<&str> = items
        .iter()
        .filter_map(|item| match item {
            StatusDataItemName::Messages => Some("MESSAGES"),
            StatusDataItemName::Recent => Some("RECENT"),
            StatusDataItemName::HighestModSeq => Some("HIGHESTMODSEQ"),
            StatusDataItemName::UidNext => Some("UIDNEXT"),
            StatusDataItemName::UidValidity => Some("UIDVALIDITY"),
            StatusDataItemName::Unseen => Some("UNSEEN"),
            _ => None,
        })
        .collect();
    let line = status_line(f, &names);
    session.out.extend_from_slice(&line);
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
