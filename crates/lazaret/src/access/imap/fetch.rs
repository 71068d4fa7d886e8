//! FETCH and UID FETCH: flags, dates, sizes from the folder snapshot; ENVELOPE,
//! BODYSTRUCTURE and body sections from the message's bytes, read in batches off the
//! async threads. Fetching a body without PEEK marks the message \Seen.

use super::session::{has_flag, Session};
use lazaret_proto::imap::structure::{self, SectionText};
use lazaret_proto::imap::types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Section,
};
use lazaret_proto::imap::types::sequence::SequenceSet;
use lazaret_proto::imap::write;
use lazaret_store::FlagChange;

/// Messages read from the store per blocking call.
const BATCH: usize = 64;

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

fn needs_content(item: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as I;
    !matches!(item, I::Flags | I::InternalDate | I::Rfc822Size | I::Uid)
}

fn marks_seen(item: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as I;
    matches!(
        item,
        I::BodyExt { peek: false, .. } | I::Rfc822 | I::Rfc822Text
    )
}

pub async fn fetch(
    session: &mut Session,
    tag: &str,
    set: &SequenceSet,
    items: MacroOrMessageDataItemNames<'static>,
    uid: bool,
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
    if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
        items.insert(0, MessageDataItemName::Uid);
    }
    let indexes = session.resolve(set, uid);
    let content = items.iter().any(needs_content);

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
                    )
                })
                .await
                .unwrap_or_default();
            let sel = session.selected.as_mut().expect("selected");
            for (entry, flags) in changed {
                if let Some(e) = sel.entries.iter_mut().find(|e| e.entry == entry) {
                    e.flags = flags;
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

    for chunk in indexes.chunks(BATCH) {
        let sel = session.selected.as_ref().expect("selected");
        let blobs: Vec<String> = chunk
            .iter()
            .map(|&i| sel.entries[i].message.clone())
            .collect();
        let bodies: Vec<Option<Vec<u8>>> = if content {
            session
                .server
                .store_call(move |s| Ok(blobs.iter().map(|b| s.message_raw(b).ok()).collect()))
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for (k, &i) in chunk.iter().enumerate() {
            let sel = session.selected.as_ref().expect("selected");
            let entry = &sel.entries[i];
            let raw = bodies.get(k).and_then(|b| b.as_deref());
            let parsed = raw.and_then(structure::parse);
            let mut out = format!("* {} FETCH (", i + 1).into_bytes();
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b' ');
                }
                render(&mut out, item, entry, raw, parsed.as_ref());
            }
            out.extend_from_slice(b")\r\n");
            session.out.extend_from_slice(&out);
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

fn render(
    out: &mut Vec<u8>,
    item: &MessageDataItemName<'_>,
    entry: &lazaret_store::FolderEntry,
    raw: Option<&[u8]>,
    parsed: Option<&mail_parser::Message<'_>>,
) {
    use MessageDataItemName as I;
    let empty: &[u8] = b"";
    match item {
        I::Uid => out.extend_from_slice(format!("UID {}", entry.uid).as_bytes()),
        I::Flags => {
            out.extend_from_slice(b"FLAGS ");
            write::flags(out, &entry.flags);
        }
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
            match parsed {
                Some(m) => structure::envelope(out, m),
                None => out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
            }
        }
        I::Body | I::BodyStructure => {
            let extended = matches!(item, I::BodyStructure);
            out.extend_from_slice(if extended {
                b"BODYSTRUCTURE "
            } else {
                b"BODY "
            });
            match parsed {
                Some(m) => structure::body_structure(out, m, extended),
                None => out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)"),
            }
        }
        I::BodyExt {
            section, partial, ..
        } => {
            let (path, what, spec) = section_spec(section);
            let data = parsed
                .and_then(|m| structure::section(m, &path, &what))
                .unwrap_or_default();
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
