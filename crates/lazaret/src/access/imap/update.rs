//! What changes a folder: STORE (flags), COPY and MOVE (with UIDPLUS COPYUID),
//! EXPUNGE (and CLOSE's silent one), APPEND (with APPENDUID).

use super::session::{has_flag, Session, SERVER_FLAGS};
use lazaret_proto::imap::types::datetime::DateTime;
use lazaret_proto::imap::types::extensions::binary::LiteralOrLiteral8;
use lazaret_proto::imap::types::flag::{Flag, StoreResponse, StoreType};
use lazaret_proto::imap::types::sequence::SequenceSet;
use lazaret_store::{FlagChange, StoreError};
use std::sync::Arc;

/// The flags a client asked to store, without those only the server sets.
fn flag_names(flags: &[Flag<'_>]) -> Vec<String> {
    flags
        .iter()
        .map(|f| f.to_string())
        .filter(|f| !SERVER_FLAGS.iter().any(|s| s.eq_ignore_ascii_case(f)))
        .collect()
}

/// UIDs as a compact IMAP set: `1:3,7`.
fn uid_set(uids: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let mut j = i;
        while j + 1 < uids.len() && uids[j + 1] == uids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            uids[i].to_string()
        } else {
            format!("{}:{}", uids[i], uids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[allow(clippy::too_many_arguments)]
pub async fn store(
    session: &mut Session,
    tag: &str,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: Vec<Flag<'static>>,
    uid: bool,
) {
    if session.read_only() {
        session.tagged(tag, "NO", "the folder is read-only (EXAMINE)");
        return;
    }
    let indexes = session.resolve(set, uid);
    let sel = session.selected.as_ref().expect("selected");
    let entries: Vec<i64> = indexes.iter().map(|&i| sel.entries[i].entry).collect();
    let change = match kind {
        StoreType::Replace => FlagChange::Replace,
        StoreType::Add => FlagChange::Add,
        StoreType::Remove => FlagChange::Remove,
    };
    let (user, folder, names) = (
        session.user().to_string(),
        sel.name.clone(),
        flag_names(&flags),
    );
    let result = session
        .server
        .store_call(move |s| s.set_flags(&user, &folder, entries, change, names))
        .await;
    let changed = match result {
        Ok(c) => c,
        Err(e) => {
            session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
            return;
        }
    };
    let silent = matches!(response, StoreResponse::Silent);
    let mut lines = Vec::new();
    let mut shown = Vec::new();
    let sel = session.selected.as_mut().expect("selected");
    for (entry, new_flags) in changed {
        if let Some(i) = sel.entries.iter().position(|e| e.entry == entry) {
            shown.extend(new_flags.iter().cloned());
            Arc::make_mut(&mut sel.entries)[i].flags = new_flags;
            if !silent {
                let e = &sel.entries[i];
                let uid_part = if uid {
                    format!("UID {} ", e.uid)
                } else {
                    String::new()
                };
                lines.push(format!(
                    "* {} FETCH ({uid_part}FLAGS ({}))",
                    i + 1,
                    sel.flags_of(e)
                ));
            }
        }
    }
    // Announced even when silent: the keyword is the folder's from now on.
    session.announce_keywords(&shown);
    for l in lines {
        session.line(&l);
    }
    session.announce();
    session.tagged(
        tag,
        "OK",
        &format!("{}STORE completed", if uid { "UID " } else { "" }),
    );
}

pub async fn copy(
    session: &mut Session,
    tag: &str,
    set: &SequenceSet,
    target: &str,
    uid: bool,
    remove: bool,
) {
    let command = match (uid, remove) {
        (true, true) => "UID MOVE",
        (false, true) => "MOVE",
        (true, false) => "UID COPY",
        (false, false) => "COPY",
    };
    if remove && session.read_only() {
        session.tagged(tag, "NO", "the folder is read-only (EXAMINE)");
        return;
    }
    let indexes = session.resolve(set, uid);
    if indexes.is_empty() {
        session.tagged(tag, "OK", &format!("{command} completed (nothing matched)"));
        return;
    }
    let sel = session.selected.as_ref().expect("selected");
    let entries: Vec<i64> = indexes.iter().map(|&i| sel.entries[i].entry).collect();
    let (user, from, to) = (
        session.user().to_string(),
        sel.name.clone(),
        target.to_string(),
    );
    let result = session
        .server
        .store_call(move |s| s.copy_entries(&user, &from, &to, entries, remove))
        .await;
    let (uidvalidity, pairs) = match result {
        Ok(r) => r,
        Err(StoreError::NotFound(m)) => {
            let text = if m.starts_with('[') {
                m
            } else {
                format!("[TRYCREATE] {m}")
            };
            session.tagged(tag, "NO", &text);
            return;
        }
        Err(e) => {
            session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
            return;
        }
    };
    let (old, new): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
    let copyuid = format!(
        "[COPYUID {uidvalidity} {} {}]",
        uid_set(&old),
        uid_set(&new)
    );
    session.announce();
    // Into the selected folder itself: the client learns of the new messages now.
    let into_selected = session.selected.as_ref().is_some_and(|s| {
        s.name == target || (s.name == "INBOX" && target.eq_ignore_ascii_case("INBOX"))
    });
    if remove {
        session.line(&format!("* OK {copyuid} moved"));
        let sel = session.selected.as_mut().expect("selected");
        let mut lines = Vec::new();
        for &i in indexes.iter().rev() {
            Arc::make_mut(&mut sel.entries).remove(i);
            lines.push(format!("* {} EXPUNGE", i + 1));
        }
        for l in lines {
            session.line(&l);
        }
        if into_selected {
            session.dirty = true;
            session.refresh(false).await;
        }
        session.tagged(tag, "OK", &format!("{command} completed"));
    } else {
        if into_selected {
            session.dirty = true;
            session.refresh(false).await;
        }
        session.tagged(tag, "OK", &format!("{copyuid} {command} completed"));
    }
}

/// Removes \Deleted messages (only those in `only`, for UID EXPUNGE). Reports each
/// with `* n EXPUNGE` unless `silent` (CLOSE).
pub async fn expunge(session: &mut Session, only: Option<Vec<usize>>, silent: bool) {
    let sel = session.selected.as_ref().expect("selected");
    let candidates: Vec<usize> = match only {
        Some(list) => list,
        None => (0..sel.entries.len()).collect(),
    };
    let doomed: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| has_flag(&sel.entries[i].flags, "\\Deleted"))
        .collect();
    if doomed.is_empty() {
        return;
    }
    let ids: Vec<String> = doomed
        .iter()
        .map(|&i| format!("m{}", sel.entries[i].entry))
        .collect();
    let (user, folder) = (session.user().to_string(), sel.name.clone());
    if session
        .server
        .store_call(move |s| s.mailbox_delete(&user, &folder, &ids))
        .await
        .is_err()
    {
        return;
    }
    let sel = session.selected.as_mut().expect("selected");
    let mut lines = Vec::new();
    for &i in doomed.iter().rev() {
        Arc::make_mut(&mut sel.entries).remove(i);
        lines.push(format!("* {} EXPUNGE", i + 1));
    }
    if !silent {
        for l in lines {
            session.line(&l);
        }
    }
    session.announce();
}

pub async fn append(
    session: &mut Session,
    tag: &str,
    folder: &str,
    flags: Vec<Flag<'static>>,
    date: Option<DateTime>,
    message: LiteralOrLiteral8<'static>,
) {
    let data = match message {
        LiteralOrLiteral8::Literal(l) => l.as_ref().to_vec(),
        LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
    };
    if data.len() as u64 > session.server.config.smtp.max_message_size.0 {
        session.tagged(tag, "NO", "[TOOBIG] message is over the size limit");
        return;
    }
    let internal = date.map(|d| d.as_ref().timestamp());
    let id = hex::encode(rand::random::<[u8; 8]>());
    let (user, name, names) = (
        session.user().to_string(),
        folder.to_string(),
        flag_names(&flags),
    );
    let result = session
        .server
        .store_call(move |s| s.append(&user, &name, id, data, names, internal))
        .await;
    match result {
        Ok((uidvalidity, uid)) => {
            session.announce();
            if session.selected.as_ref().is_some_and(|s| s.name == folder) {
                session.dirty = true;
                session.refresh(false).await;
            }
            session.tagged(
                tag,
                "OK",
                &format!("[APPENDUID {uidvalidity} {uid}] APPEND completed"),
            );
        }
        Err(StoreError::NotFound(m)) => {
            let text = if m.starts_with('[') {
                m
            } else {
                format!("[TRYCREATE] {m}")
            };
            session.tagged(tag, "NO", &text);
        }
        Err(e) => session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(super::uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(super::uid_set(&[5]), "5");
    }
}
