//! SEARCH and UID SEARCH. Flag, size, date and set criteria are answered from the
//! folder snapshot; header and text criteria read and parse the messages they must
//! look into (the admin's `find` has the indexed search; a user's folder is small).

use super::session::{has_flag, Session};
use lazaret_proto::imap::structure;
use lazaret_proto::imap::types::search::SearchKey;
use lazaret_proto::imap::write::days_from_civil;
use lazaret_store::FolderEntry;

fn needs_content(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().any(needs_content),
        K::Not(k) => needs_content(k),
        K::Or(a, b) => needs_content(a) || needs_content(b),
        K::Bcc(_)
        | K::Body(_)
        | K::Cc(_)
        | K::From(_)
        | K::Header(..)
        | K::Subject(_)
        | K::Text(_)
        | K::To(_) => true,
        K::SentBefore(_) | K::SentOn(_) | K::SentSince(_) => true,
        _ => false,
    }
}

fn uses_modseq(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::ModSequence { .. } => true,
        K::And(keys) => keys.as_ref().iter().any(uses_modseq),
        K::Not(k) => uses_modseq(k),
        K::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        _ => false,
    }
}

fn day_of(date: &chrono::NaiveDate) -> i64 {
    use chrono::Datelike;
    days_from_civil(date.year() as i64, date.month(), date.day())
}

fn contains(haystack: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    haystack.to_lowercase().contains(&needle)
}

struct Candidate<'a> {
    seq: usize,
    recent: bool,
    entry: &'a FolderEntry,
    raw: Option<&'a [u8]>,
    parsed: Option<&'a mail_parser::Message<'a>>,
    max_seq: usize,
    max_uid: i64,
}

fn header_text(c: &Candidate<'_>, name: &str) -> String {
    let Some(m) = c.parsed else {
        return String::new();
    };
    let spec = structure::SectionText::HeaderFields {
        names: vec![name.to_string()],
        not: false,
    };
    let block = structure::section(m, &[], &spec).unwrap_or_default();
    let text = String::from_utf8_lossy(&block).into_owned();
    // Drop the field name: only values are searched.
    text.split_once(':')
        .map_or(String::new(), |(_, v)| v.to_string())
}

/// An address header as FROM/TO/CC/BCC search it: the field as written, and each
/// address as `name <mailbox@domain>` once parsed (comments and folding dropped, so
/// `<user (comment)@ domain.org>` is found as `user@domain.org`), group names too.
fn address_text(c: &Candidate<'_>, name: &str) -> String {
    let mut text = header_text(c, name);
    let Some(m) = c.parsed else {
        return text;
    };
    let address = match name {
        "From" => m.from(),
        "To" => m.to(),
        "Cc" => m.cc(),
        _ => m.bcc(),
    };
    let add = |text: &mut String, a: &mail_parser::Addr<'_>| {
        text.push('\n');
        if let Some(n) = &a.name {
            text.push_str(n);
            text.push(' ');
        }
        if let Some(addr) = &a.address {
            text.push('<');
            text.push_str(addr);
            text.push('>');
        }
    };
    match address {
        Some(mail_parser::Address::List(list)) => list.iter().for_each(|a| add(&mut text, a)),
        Some(mail_parser::Address::Group(groups)) => {
            for g in groups {
                if let Some(n) = &g.name {
                    text.push('\n');
                    text.push_str(n);
                }
                g.addresses.iter().for_each(|a| add(&mut text, a));
            }
        }
        None => {}
    }
    text
}

fn in_set(set: &lazaret_proto::imap::types::sequence::SequenceSet, value: u64, max: u64) -> bool {
    use lazaret_proto::imap::types::sequence::{SeqOrUid, Sequence};
    let v = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => u64::from(n.get()),
        SeqOrUid::Asterisk => max,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => v(a) == value,
        Sequence::Range(a, b) => {
            let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
            (lo..=hi).contains(&value)
        }
    })
}

fn matches(key: &SearchKey<'_>, c: &Candidate<'_>) -> bool {
    use SearchKey as K;
    let flag = |f: &str| has_flag(&c.entry.flags, f);
    let internal_day = c.entry.internal_date.div_euclid(86_400);
    // RFC 3501: the Date: header's date "disregarding time and timezone" — the day
    // as the sender wrote it, not that instant's day in UTC.
    let sent_day = || {
        c.parsed
            .and_then(|m| m.date())
            .map(|d| days_from_civil(d.year as i64, d.month as u32, d.day as u32))
            .unwrap_or(internal_day)
    };
    match key {
        K::And(keys) => keys.as_ref().iter().all(|k| matches(k, c)),
        K::Or(a, b) => matches(a, c) || matches(b, c),
        K::Not(k) => !matches(k, c),
        K::All => true,
        K::ModSequence { modseq, .. } => c.entry.modseq >= (*modseq).min(i64::MAX as u64) as i64,
        K::Recent => c.recent,
        K::Old => !c.recent,
        K::New => c.recent && !flag("\\Seen"),
        K::SequenceSet(set) => in_set(set, c.seq as u64, c.max_seq as u64),
        K::Uid(set) => in_set(set, c.entry.uid as u64, c.max_uid as u64),
        K::Answered => flag("\\Answered"),
        K::Deleted => flag("\\Deleted"),
        K::Draft => flag("\\Draft"),
        K::Flagged => flag("\\Flagged"),
        K::Seen => flag("\\Seen"),
        K::Unanswered => !flag("\\Answered"),
        K::Undeleted => !flag("\\Deleted"),
        K::Undraft => !flag("\\Draft"),
        K::Unflagged => !flag("\\Flagged"),
        K::Unseen => !flag("\\Seen"),
        K::Keyword(k) => flag(k.as_ref()),
        K::Unkeyword(k) => !flag(k.as_ref()),
        K::Larger(n) => c.entry.size > u64::from(*n),
        K::Smaller(n) => c.entry.size < u64::from(*n),
        K::Before(d) => internal_day < day_of(d.as_ref()),
        K::On(d) => internal_day == day_of(d.as_ref()),
        K::Since(d) => internal_day >= day_of(d.as_ref()),
        K::SentBefore(d) => sent_day() < day_of(d.as_ref()),
        K::SentOn(d) => sent_day() == day_of(d.as_ref()),
        K::SentSince(d) => sent_day() >= day_of(d.as_ref()),
        K::From(s) => contains(&address_text(c, "From"), s.as_ref()),
        K::To(s) => contains(&address_text(c, "To"), s.as_ref()),
        K::Cc(s) => contains(&address_text(c, "Cc"), s.as_ref()),
        K::Bcc(s) => contains(&address_text(c, "Bcc"), s.as_ref()),
        K::Subject(s) => contains(&header_text(c, "Subject"), s.as_ref()),
        K::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            let v = header_text(c, &name);
            let present = c.parsed.is_some_and(|m| {
                m.parts.first().is_some_and(|p| {
                    p.headers
                        .iter()
                        .any(|h| h.name.as_str().eq_ignore_ascii_case(&name))
                })
            });
            present && contains(&v, value.as_ref())
        }
        K::Body(s) => {
            let body = c.parsed.map(|m| {
                (0..m.text_body.len().max(1))
                    .filter_map(|i| m.body_text(i))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            contains(&body.unwrap_or_default(), s.as_ref())
        }
        K::Text(s) => c
            .raw
            .is_some_and(|r| contains(&String::from_utf8_lossy(r), s.as_ref())),
    }
}

/// Messages read per store call when criteria look into contents: a big folder is
/// searched a batch at a time, never held in memory whole.
const BATCH: usize = 256;

pub async fn search(session: &mut Session, tag: &str, criteria: &[SearchKey<'static>], uid: bool) {
    if criteria.iter().any(uses_modseq) {
        session.condstore = true;
    }
    if let Err(e) = session.track_modseq().await {
        session.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
        return;
    }
    let content = criteria.iter().any(needs_content);
    let sel = session.selected.as_ref().expect("selected");
    // Shared with the session (copy on write), so this clone is a reference count.
    let entries = sel.entries.clone();
    let recent = sel.recent.clone();
    let sel_recent = |uid: i64| recent.iter().any(|&(from, to)| uid >= from && uid < to);
    let max_uid = entries.last().map_or(0, |e| e.uid);
    let mut hits = Vec::new();
    let mut top_modseq: Option<i64> = None;
    for (n, chunk) in entries.chunks(BATCH).enumerate() {
        let bodies: Vec<Option<Vec<u8>>> = if content {
            let blobs: Vec<String> = chunk.iter().map(|e| e.message.clone()).collect();
            session
                .server
                .store_call(move |s| Ok(blobs.iter().map(|b| s.message_raw(b).ok()).collect()))
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for (k, entry) in chunk.iter().enumerate() {
            let seq = n * BATCH + k + 1;
            let raw = bodies.get(k).and_then(|b| b.as_deref());
            let parsed = raw.and_then(structure::parse);
            let c = Candidate {
                seq,
                recent: sel_recent(entry.uid),
                entry,
                raw,
                parsed: parsed.as_ref(),
                max_seq: entries.len(),
                max_uid,
            };
            if criteria.iter().all(|key| matches(key, &c)) {
                top_modseq = top_modseq.max(Some(entry.modseq));
                hits.push(if uid {
                    entry.uid.to_string()
                } else {
                    seq.to_string()
                });
            }
        }
    }
    let mut line = String::from("* SEARCH");
    for h in &hits {
        line.push(' ');
        line.push_str(h);
    }
    // A MODSEQ criterion turns CONDSTORE on and the answer carries the highest
    // mod-sequence of the messages found (RFC 7162 3.1.5).
    if criteria.iter().any(uses_modseq) {
        if let Some(top) = top_modseq {
            line.push_str(&format!(" (MODSEQ {top})"));
        }
    }
    session.line(&line);
    session.tagged(
        tag,
        "OK",
        &format!("{}SEARCH completed", if uid { "UID " } else { "" }),
    );
}
