//! FETCH and UID FETCH: flags, dates, sizes from the folder snapshot; ENVELOPE,
//! BODYSTRUCTURE and body sections from the message's bytes, read in batches off the
//! async threads. Fetching a body without PEEK marks the message \Seen.

use super::session::{flags_text, has_flag, Session};
use super::uids;
use lazaret_proto::imap::structure::{self, SectionText};
use lazaret_proto::imap::types::command::FetchModifier;
use lazaret_proto::imap::types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Section,
};
use lazaret_proto::imap::types::sequence::SequenceSet;
use lazaret_proto::imap::write;
use lazaret_store::{FlagChange, ImapCached};
use std::sync::Arc;

/// Messages read from the store per blocking call.
const BATCH: usize = 256;
/// Bytes of whole messages rendered per batch by the BODY[] fast path.
const RAW_BATCH_BYTES: u64 = 512 * 1024;

fn section_spec(section: &Option<Section<'_>>) -> (Vec<u32>, SectionText, String) {
    let join = |p: &[std::num::NonZeroU32]| {
        p.iter()
            .map(|n| n.get().to_string())
            .collect::<Vec<_>>()
            .join(".")
    };
    let path_of = |p: &Option<lazaret_proto::imap::types::fetch::Part>| {
        p.as_ref()
            .map(|p| p.0.as_ref().iter().map(|n| n.get()).collect::<Vec<u32>>())
            .unwrap_or_default()
    };
    let spec_of = |p: &Option<lazaret_proto::imap::types::fetch::Part>, suffix: &str| match p {
        Some(p) => format!("{}.{suffix}", join(p.0.as_ref())),
        None => suffix.to_string(),
    };
    let names = |v: &lazaret_proto::imap::types::core::Vec1<
        lazaret_proto::imap::types::core::AString<'_>,
    >| {
        v.as_ref()
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
            .collect::<Vec<String>>()
    };
    match section {
        None => (Vec::new(), SectionText::All, String::new()),
        Some(Section::Part(p)) => (
            p.0.as_ref().iter().map(|n| n.get()).collect(),
            SectionText::All,
            join(p.0.as_ref()),
        ),
        Some(Section::Header(p)) => (path_of(p), SectionText::Header, spec_of(p, "HEADER")),
        Some(Section::Text(p)) => (path_of(p), SectionText::Text, spec_of(p, "TEXT")),
        Some(Section::Mime(p)) => {
            let p = Some(p.clone());
            (path_of(&p), SectionText::Mime, spec_of(&p, "MIME"))
        }
        Some(Section::HeaderFields(p, list)) => {
            let n = names(list);
            let spec = spec_of(p, &format!("HEADER.FIELDS ({})", n.join(" ")));
            (
                path_of(p),
                SectionText::HeaderFields {
                    names: n,
                    not: false,
                },
                spec,
            )
        }
        Some(Section::HeaderFieldsNot(p, list)) => {
            let n = names(list);
            let spec = spec_of(p, &format!("HEADER.FIELDS.NOT ({})", n.join(" ")));
            (
                path_of(p),
                SectionText::HeaderFields {
                    names: n,
                    not: true,
                },
                spec,
            )
        }
    }
}

/// How much of the message an item needs: nothing (snapshot data), the header block,
/// the raw bytes, or the bytes parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Nothing,
    Head,
    Raw,
    Parsed,
}

fn need_of(item: &MessageDataItemName<'_>) -> Need {
    use MessageDataItemName as I;
    match item {
        I::Flags | I::InternalDate | I::Rfc822Size | I::Uid | I::ModSeq => Need::Nothing,
        I::Envelope | I::Rfc822Header => Need::Head,
        I::BodyExt {
            section:
                Some(
                    Section::Header(None)
                    | Section::HeaderFields(None, _)
                    | Section::HeaderFieldsNot(None, _),
                ),
            ..
        } => Need::Head,
        I::Rfc822 | I::BodyExt { section: None, .. } => Need::Raw,
        _ => Need::Parsed,
    }
}

fn marks_seen(item: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as I;
    matches!(
        item,
        I::BodyExt { peek: false, .. } | I::Rfc822 | I::Rfc822Text
    )
}

/// Whether the item hands the client the message's body or a part of it: what the
/// exposure report calls a download (a header-only fetch is not one).
fn downloads(item: &MessageDataItemName<'_>) -> bool {
    use lazaret_proto::imap::types::fetch::{MessageDataItemName as I, Section};
    match item {
        I::Rfc822 | I::Rfc822Text | I::Binary { .. } => true,
        I::BodyExt { section, .. } => !matches!(
            section,
            Some(
                Section::Header(_)
                    | Section::HeaderFields(..)
                    | Section::HeaderFieldsNot(..)
                    | Section::Mime(_)
            )
        ),
        _ => false,
    }
}

/// Records in the message event log, once per message and session, that the user's
/// client downloaded these messages (without waiting for the commit).
fn note_downloads(session: &mut Session, items: &[MessageDataItemName<'_>], indexes: &[usize]) {
    if !items.iter().any(downloads) {
        return;
    }
    let Some(sel) = session.selected.as_ref() else {
        return;
    };
    let mut entries = Vec::new();
    for &i in indexes {
        let entry = sel.entries[i].entry;
        if session.downloaded.insert(entry) {
            entries.push(entry);
        }
    }
    let detail = format!("imap {}", sel.name);
    let user = session.user().to_string();
    session
        .server
        .store
        .record_downloads(&user, &detail, entries);
}

pub async fn fetch(
    session: &mut Session,
    tag: &str,
    set: &SequenceSet,
    items: MacroOrMessageDataItemNames<'static>,
    uid: bool,
    modifiers: &[FetchModifier],
) {
    let mut items: Vec<MessageDataItemName<'static>> = match items {
        MacroOrMessageDataItemNames::Macro(m) => m
            .expand()
            .into_iter()
            .map(|i| i.into_static_item())
            .collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    };
    if items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }
        )
    }) {
        session.tagged(tag, "BAD", "BINARY is not supported");
        return;
    }
    // Once QRESYNC is enabled every FETCH response carries the UID (RFC 7162 3.2.4).
    if (uid || session.qresync) && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
        items.insert(0, MessageDataItemName::Uid);
    }
    let changed_since = modifiers.iter().find_map(|m| match m {
        FetchModifier::ChangedSince(n) => Some(n.get().min(i64::MAX as u64) as i64),
        FetchModifier::Vanished => None,
    });
    let vanished = modifiers
        .iter()
        .any(|m| matches!(m, FetchModifier::Vanished));
    if vanished && !(uid && session.qresync && changed_since.is_some()) {
        session.tagged(
            tag,
            "BAD",
            "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled",
        );
        return;
    }
    // Asking for MODSEQ or CHANGEDSINCE turns CONDSTORE on; from then on every FETCH
    // response carries MODSEQ (RFC 7162 3.1.4.1).
    if changed_since.is_some()
        || items
            .iter()
            .any(|i| matches!(i, MessageDataItemName::ModSeq))
    {
        session.condstore = true;
    }
    if let Err(e) = session.track_modseq().await {
        session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
        return;
    }
    if session.condstore
        && !items
            .iter()
            .any(|i| matches!(i, MessageDataItemName::ModSeq))
    {
        items.push(MessageDataItemName::ModSeq);
    }
    let mut indexes = session.resolve(set, uid);
    if let Some(since) = changed_since {
        let sel = session.selected.as_ref().expect("selected");
        indexes.retain(|&i| sel.entries[i].modseq > since);
        if vanished {
            let ranges = uids::uid_ranges(set, sel.uidnext - 1);
            let gone = uids::missing(&sel.entries, &ranges);
            if !gone.is_empty() {
                let line = format!("* VANISHED (EARLIER) {}", uids::ranges_text(&gone));
                session.line(&line);
            }
        }
    }
    let cacheable = items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::Envelope | MessageDataItemName::BodyStructure
        )
    });

    note_downloads(session, &items, &indexes);

    // \Seen first, so the FETCH responses show it.
    let mut flags_changed = Vec::new();
    if items.iter().any(marks_seen) && !session.read_only() {
        let sel = session.selected.as_ref().expect("selected");
        let unseen: Vec<i64> = indexes
            .iter()
            .filter(|&&i| !has_flag(&sel.entries[i].flags, "\\Seen"))
            .map(|&i| sel.entries[i].entry)
            .collect();
        if !unseen.is_empty() {
            let (user, folder) = (session.user().to_string(), sel.name.clone());
            let changed = session
                .server
                .store_call(move |s| {
                    s.set_flags(
                        &user,
                        &folder,
                        unseen,
                        FlagChange::Add,
                        vec!["\\Seen".into()],
                        None,
                    )
                })
                .await
                .unwrap_or_default();
            let sel = session.selected.as_mut().expect("selected");
            for (entry, flags, modseq) in changed.entries {
                if let Some(e) = Arc::make_mut(&mut sel.entries)
                    .iter_mut()
                    .find(|e| e.entry == entry)
                {
                    e.flags = flags;
                    e.modseq = modseq;
                    flags_changed.push(entry);
                }
            }
            session.announce();
        }
    }
    if !flags_changed.is_empty()
        && !items
            .iter()
            .any(|i| matches!(i, MessageDataItemName::Flags))
    {
        items.push(MessageDataItemName::Flags);
    }

    if items.iter().all(is_raw_only) {
        raw_batches(session, &indexes, Arc::new(items)).await;
        session.tagged(
            tag,
            "OK",
            &format!("{}FETCH completed", if uid { "UID " } else { "" }),
        );
        return;
    }
    // Batches are read from the store one ahead of the one being written out, so
    // disk reads and the socket overlap.
    let chunks: Vec<Vec<usize>> = indexes.chunks(BATCH).map(<[usize]>::to_vec).collect();
    let items = Arc::new(items);
    let blobs_of = |session: &Session, chunk: &[usize]| -> Vec<String> {
        let sel = session.selected.as_ref().expect("selected");
        chunk
            .iter()
            .map(|&i| sel.entries[i].message.clone())
            .collect()
    };
    let mut pending = chunks.first().map(|c| {
        tokio::spawn(load(
            session.server.clone(),
            blobs_of(session, c),
            items.clone(),
            cacheable,
        ))
    });
    for (n, chunk) in chunks.iter().enumerate() {
        let Some(loading) = pending.take() else { break };
        let (cached, bodies) = loading.await.unwrap_or_default();
        if let Some(next) = chunks.get(n + 1) {
            pending = Some(tokio::spawn(load(
                session.server.clone(),
                blobs_of(session, next),
                items.clone(),
                cacheable,
            )));
        }
        let mut fresh = Vec::new();
        let Some(sel) = session.selected.as_ref() else {
            break;
        };
        for (k, &i) in chunk.iter().enumerate() {
            let entry = &sel.entries[i];
            let raw = bodies.get(k).and_then(|b| b.as_deref());
            let from_cache = cached.get(k).cloned().unwrap_or_default();
            let parse = items.iter().any(|i| {
                matches!(
                    need_with_cache(i, Some(&from_cache)),
                    Need::Head | Need::Parsed
                )
            });
            // BODY[] and RFC822 are the bytes as stored: no need to parse for them.
            let parsed = if parse {
                raw.and_then(structure::parse)
            } else {
                None
            };
            let mut computed = ImapCached::default();
            // Written straight into the session's output: a body is copied once.
            let out = &mut session.out;
            out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b' ');
                }
                if matches!(item, MessageDataItemName::Flags) {
                    flags_item(out, entry, sel.is_recent(entry.uid));
                    continue;
                }
                render(
                    out,
                    item,
                    entry,
                    raw,
                    parsed.as_ref(),
                    &from_cache,
                    &mut computed,
                );
            }
            out.extend_from_slice(b")\r\n");
            if computed != ImapCached::default() && parsed.is_some() {
                fresh.push((entry.message.clone(), computed));
            }
        }
        if !fresh.is_empty() {
            // Filled in the background: the client is not kept waiting for the write.
            let server = session.server.clone();
            tokio::spawn(async move {
                let _ = server.store_call(move |s| s.imap_cache_put(fresh)).await;
            });
        }
        // Large fetches go out as they are built, not held whole in memory.
        if session.out.len() > 256 * 1024 {
            let _ = session.flush().await;
        }
    }
    session.tagged(
        tag,
        "OK",
        &format!("{}FETCH completed", if uid { "UID " } else { "" }),
    );
}

/// Items answered from the snapshot and the message's bytes as stored.
fn is_raw_only(item: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as I;
    matches!(
        item,
        I::Uid
            | I::Flags
            | I::ModSeq
            | I::InternalDate
            | I::Rfc822Size
            | I::Rfc822
            | I::BodyExt {
                section: None,
                partial: None,
                ..
            }
    )
}

/// FETCH of whole messages (BODY[], RFC822) and snapshot items: each batch's response
/// is rendered on a blocking thread, the files read straight into it, while the
/// previous batch goes out on the socket — one copy of each message in user space.
async fn raw_batches(
    session: &mut Session,
    indexes: &[usize],
    items: Arc<Vec<MessageDataItemName<'static>>>,
) {
    let Some(sel) = session.selected.as_ref() else {
        return;
    };
    // Batches of at most RAW_BATCH_BYTES: their buffers stay under the allocator's
    // mmap threshold, so they are reused from the heap instead of being mapped and
    // page-faulted in afresh for every batch.
    let mut batches: Vec<Vec<(usize, lazaret_store::FolderEntry, bool)>> = Vec::new();
    let mut bytes = 0u64;
    for &i in indexes {
        let entry = &sel.entries[i];
        if batches.is_empty() || bytes + entry.size > RAW_BATCH_BYTES {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += entry.size;
        if let Some(last) = batches.last_mut() {
            last.push((i + 1, entry.clone(), sel.is_recent(entry.uid)));
        }
    }
    let server = session.server.clone();
    let render = |batch: Vec<(usize, lazaret_store::FolderEntry, bool)>| {
        let items = items.clone();
        let server = server.clone();
        tokio::spawn(async move {
            server
                .store_call(move |s| {
                    let mut out = Vec::with_capacity(
                        batch.iter().map(|(_, e, _)| e.size as usize + 64).sum(),
                    );
                    for (seq, entry, recent) in &batch {
                        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
                        for (n, item) in items.iter().enumerate() {
                            if n > 0 {
                                out.push(b' ');
                            }
                            match item {
                                MessageDataItemName::Rfc822
                                | MessageDataItemName::BodyExt { .. } => {
                                    out.extend_from_slice(
                                        if matches!(item, MessageDataItemName::Rfc822) {
                                            b"RFC822 "
                                        } else {
                                            b"BODY[] "
                                        },
                                    );
                                    // The stored size is the blob's length; checked after
                                    // the read, and the header rewritten if it ever differs.
                                    let header = format!("{{{}}}\r\n", entry.size);
                                    let at = out.len();
                                    out.extend_from_slice(header.as_bytes());
                                    let n =
                                        s.message_append_to(&entry.message, &mut out).unwrap_or(0);
                                    if n as u64 != entry.size {
                                        let actual = format!("{{{n}}}\r\n");
                                        out.splice(at..at + header.len(), actual.into_bytes());
                                    }
                                }
                                MessageDataItemName::Flags => flags_item(&mut out, entry, *recent),
                                other => render(
                                    &mut out,
                                    other,
                                    entry,
                                    None,
                                    None,
                                    &ImapCached::default(),
                                    &mut ImapCached::default(),
                                ),
                            }
                        }
                        out.extend_from_slice(b")\r\n");
                    }
                    Ok(out)
                })
                .await
                .unwrap_or_default()
        })
    };
    let mut batches = batches.into_iter();
    let mut pending = batches.next().map(&render);
    while let Some(running) = pending.take() {
        let rendered = running.await.unwrap_or_default();
        pending = batches.next().map(&render);
        if session.write_direct(&rendered).await.is_err() {
            return;
        }
    }
}

type Loaded = (Vec<ImapCached>, Vec<Option<Vec<u8>>>);

/// Reads what a batch needs: cached structures, then each message's header or bytes.
async fn load(
    server: std::sync::Arc<crate::server::Server>,
    blobs: Vec<String>,
    items: std::sync::Arc<Vec<MessageDataItemName<'static>>>,
    cacheable: bool,
) -> Loaded {
    server
        .store_call(move |s| {
            let cached = if cacheable {
                s.imap_cache_get(&blobs)?
            } else {
                Vec::new()
            };
            let bodies = blobs
                .iter()
                .enumerate()
                .map(|(k, b)| {
                    let need = items
                        .iter()
                        .map(|i| need_with_cache(i, cached.get(k)))
                        .max()
                        .unwrap_or(Need::Nothing);
                    match need {
                        Need::Nothing => None,
                        Need::Head => s.message_head(b).ok(),
                        _ => s.message_raw(b).ok(),
                    }
                })
                .collect();
            Ok((cached, bodies))
        })
        .await
        .unwrap_or_default()
}

fn need_with_cache(item: &MessageDataItemName<'_>, cached: Option<&ImapCached>) -> Need {
    match item {
        MessageDataItemName::Envelope if cached.is_some_and(|c| c.envelope.is_some()) => {
            Need::Nothing
        }
        MessageDataItemName::BodyStructure if cached.is_some_and(|c| c.bodystructure.is_some()) => {
            Need::Nothing
        }
        other => need_of(other),
    }
}

/// FLAGS as this session shows them: `\Recent` is the session's, not the store's.
fn flags_item(out: &mut Vec<u8>, entry: &lazaret_store::FolderEntry, recent: bool) {
    out.extend_from_slice(b"FLAGS (");
    out.extend_from_slice(flags_text(&entry.flags, recent).as_bytes());
    out.push(b')');
}

fn render(
    out: &mut Vec<u8>,
    item: &MessageDataItemName<'_>,
    entry: &lazaret_store::FolderEntry,
    raw: Option<&[u8]>,
    parsed: Option<&mail_parser::Message<'_>>,
    cached: &ImapCached,
    computed: &mut ImapCached,
) {
    use MessageDataItemName as I;
    let empty: &[u8] = b"";
    match item {
        I::Uid => out.extend_from_slice(format!("UID {}", entry.uid).as_bytes()),
        I::Flags => flags_item(out, entry, false),
        I::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", entry.modseq).as_bytes()),
        I::InternalDate => {
            out.extend_from_slice(b"INTERNALDATE ");
            out.extend_from_slice(write::date_time(entry.internal_date).as_bytes());
        }
        I::Rfc822Size => out.extend_from_slice(format!("RFC822.SIZE {}", entry.size).as_bytes()),
        I::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            write::literal(out, raw.unwrap_or(empty));
        }
        I::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let h = parsed.and_then(|m| structure::section(m, &[], &SectionText::Header));
            write::literal(out, h.as_deref().unwrap_or(empty));
        }
        I::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let t = parsed.and_then(|m| structure::section(m, &[], &SectionText::Text));
            write::literal(out, t.as_deref().unwrap_or(empty));
        }
        I::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            match (&cached.envelope, parsed) {
                (Some(e), _) => out.extend_from_slice(e),
                (None, Some(m)) => {
                    let mut e = Vec::new();
                    structure::envelope(&mut e, m);
                    out.extend_from_slice(&e);
                    computed.envelope = Some(e);
                }
                (None, None) => out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
            }
        }
        I::BodyStructure if cached.bodystructure.is_some() => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            out.extend_from_slice(cached.bodystructure.as_deref().unwrap_or_default());
        }
        I::Body | I::BodyStructure => {
            let extended = matches!(item, I::BodyStructure);
            out.extend_from_slice(if extended {
                b"BODYSTRUCTURE "
            } else {
                b"BODY "
            });
            match parsed {
                Some(m) => {
                    let mut b = Vec::new();
                    structure::body_structure(&mut b, m, extended);
                    out.extend_from_slice(&b);
                    if extended {
                        computed.bodystructure = Some(b);
                    }
                }
                None => out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)"),
            }
        }
        I::BodyExt {
            section, partial, ..
        } => {
            let (path, what, spec) = section_spec(section);
            let data: std::borrow::Cow<'_, [u8]> = match (section, parsed) {
                // BODY[] is the bytes as stored: no parse, no copy.
                (None, _) => raw.unwrap_or_default().into(),
                (_, Some(m)) => structure::section(m, &path, &what)
                    .unwrap_or_default()
                    .into(),
                _ => Vec::new().into(),
            };
            out.extend_from_slice(format!("BODY[{spec}]").as_bytes());
            match partial {
                Some((offset, length)) => {
                    let start = (*offset as usize).min(data.len());
                    let end = start.saturating_add(length.get() as usize).min(data.len());
                    out.extend_from_slice(format!("<{offset}> ").as_bytes());
                    write::literal(out, &data[start..end]);
                }
                None => {
                    out.push(b' ');
                    write::literal(out, &data);
                }
            }
        }
        // BINARY is not announced and is refused before rendering.
        _ => {}
    }
}

trait IntoStaticItem {
    fn into_static_item(self) -> MessageDataItemName<'static>;
}

impl IntoStaticItem for MessageDataItemName<'_> {
    fn into_static_item(self) -> MessageDataItemName<'static> {
        use lazaret_proto::imap::types::IntoStatic;
        self.into_static()
    }
}
