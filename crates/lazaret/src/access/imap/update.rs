//! What changes a folder: STORE (flags), COPY and MOVE (with UIDPLUS COPYUID),
//! EXPUNGE (and CLOSE's silent one), APPEND (with APPENDUID).

use super::session::{has_flag, Session, SERVER_FLAGS};
use super::uids::uid_set;
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

/// A STORE command's arguments.
pub struct StoreRequest {
    pub kind: StoreType,
    pub response: StoreResponse,
    pub flags: Vec<Flag<'static>>,
    pub uid: bool,
    /// CONDSTORE's UNCHANGEDSINCE: leave messages changed after this mod-sequence.
    pub unchanged_since: Option<i64>,
}

pub async fn store(session: &mut Session, tag: &str, set: &SequenceSet, request: StoreRequest) {
    if session.read_only() {
        session.tagged(tag, "NO", "the folder is read-only (EXAMINE)");
        return;
    }
    let StoreRequest {
        kind,
        response,
        flags,
        uid,
        unchanged_since,
    } = request;
    if unchanged_since.is_some() {
        session.condstore = true;
    }
    if let Err(e) = session.track_modseq().await {
        session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
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
        .store_call(move |s| s.set_flags(&user, &folder, entries, change, names, unchanged_since))
        .await;
    let stored = match result {
        Ok(c) => c,
        Err(e) => {
            session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
            return;
        }
    };
    let silent = matches!(response, StoreResponse::Silent);
    let condstore = session.condstore;
    // Once QRESYNC is enabled every FETCH response carries the UID (RFC 7162 3.2.4).
    let with_uid = uid || session.qresync;
    let mut lines = Vec::new();
    let mut shown = Vec::new();
    let sel = session.selected.as_mut().expect("selected");
    let position = |sel: &super::session::Selected, entry: i64| {
        sel.entries.iter().position(|e| e.entry == entry)
    };
    for (entry, new_flags, modseq) in stored.entries {
        if let Some(i) = position(sel, entry) {
            shown.extend(new_flags.iter().cloned());
            let e = &mut Arc::make_mut(&mut sel.entries)[i];
            e.flags = new_flags;
            e.modseq = modseq;
            if !silent {
                lines.push(sel.fetch_flags_line(i, with_uid, condstore));
            } else if condstore {
                // .SILENT still tells the new mod-sequence (RFC 7162 3.1.3).
                let e = &sel.entries[i];
                let uid_part = if with_uid {
                    format!("UID {} ", e.uid)
                } else {
                    String::new()
                };
                lines.push(format!(
                    "* {} FETCH ({uid_part}MODSEQ ({}))",
                    i + 1,
                    e.modseq
                ));
            }
        }
    }
    // Messages not stored because they changed since UNCHANGEDSINCE: by UID for UID
    // STORE, else by sequence number.
    let mut modified: Vec<i64> = stored
        .modified
        .iter()
        .filter_map(|&entry| {
            let i = position(sel, entry)?;
            Some(if uid {
                sel.entries[i].uid
            } else {
                i as i64 + 1
            })
        })
        .collect();
    modified.sort_unstable();
    // Announced even when silent: the keyword is the folder's from now on.
    session.announce_keywords(&shown);
    for l in lines {
        session.line(&l);
    }
    session.announce();
    let command = if uid { "UID STORE" } else { "STORE" };
    if modified.is_empty() {
        session.tagged(tag, "OK", &format!("{command} completed"));
    } else {
        session.tagged(
            tag,
            "OK",
            &format!(
                "[MODIFIED {}] conditional {command} failed for some messages",
                uid_set(&modified)
            ),
        );
    }
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
        let mut removed = Vec::new();
        for &i in indexes.iter().rev() {
            let gone = Arc::make_mut(&mut sel.entries).remove(i);
            removed.push((i + 1, gone.uid));
        }
        session.report_expunged(&removed);
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
    let mut removed = Vec::new();
    for &i in doomed.iter().rev() {
        let gone = Arc::make_mut(&mut sel.entries).remove(i);
        removed.push((i + 1, gone.uid));
    }
    if !silent {
        session.report_expunged(&removed);
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
    if session.server.disk.refuses(data.len() as u64) {
        session.tagged(tag, "NO", crate::disk_space::IMAP_TEXT);
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
        Err(e) if e.is_disk_full() => {
            session.server.disk.note_full();
            session.tagged(tag, "NO", crate::disk_space::IMAP_TEXT);
        }
        Err(e) => session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}")),
    }
}
