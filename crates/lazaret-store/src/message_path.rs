//! What `trace` and `exposure` make of a message: both stores read the same facts
//! (its row, its event log, where its copies are now) each from its own database, and
//! these functions turn them into the answer, so the two stores cannot tell a
//! message's path differently.

use crate::embedded::events::{
    ACCEPTED, BOUNCED, DELIVERED, DOWNLOADED, EXPUNGED, GONE, READ, SUBMITTED,
};
use crate::model::{ExposureRow, MessageTrace, TraceEvent};
use lazaret_core::state::{QUEUE_INBOUND, QUEUE_LOCAL};
use std::collections::HashMap;

/// The row of a message still stored.
pub(crate) struct Stored {
    pub uid: String,
    pub message_id: String,
    pub subject: String,
    pub env_from: String,
}

/// A queue item holding the message.
pub(crate) struct Queued {
    pub item: i64,
    pub queue: String,
    pub state: String,
    pub recipients: Vec<String>,
}

/// A mailbox entry holding the message.
pub(crate) struct Filed {
    pub user: String,
    pub folder: String,
    pub flags: String,
    pub internal_date: i64,
}

/// A quarantine row holding the message.
pub(crate) struct Held {
    pub id: i64,
    /// Comma-separated, as the quarantine row keeps them.
    pub recipients: String,
    pub origin_location: String,
}

/// Everything both reports read of one message (row id `message`). Events in log
/// order, with the store id an event row kept (see the schemas); the places in id
/// order.
pub(crate) struct Facts {
    pub message: i64,
    pub stored: Option<Stored>,
    pub events: Vec<(TraceEvent, Option<String>)>,
    pub queued: Vec<Queued>,
    pub filed: Vec<Filed>,
    pub held: Vec<Held>,
}

impl Facts {
    /// The store id and subject: from the row, else what the log kept of a message
    /// no longer stored (its `gone` row; `#ROWID` if it left none).
    fn id_and_subject(&self) -> (String, String) {
        if let Some(s) = &self.stored {
            return (s.uid.clone(), s.subject.clone());
        }
        let uid = self
            .events
            .iter()
            .find_map(|(_, u)| u.clone())
            .unwrap_or_else(|| format!("#{}", self.message));
        let subject = self
            .events
            .iter()
            .find(|(e, _)| e.event == GONE)
            .map(|(e, _)| e.detail.clone())
            .unwrap_or_default();
        (uid, subject)
    }

    /// Where the copies are now: `queue:NAME (state, qN) for RCPTS`,
    /// `mailbox:USER/FOLDER (flags)`, `quarantine:xN (from ORIGIN)`.
    fn locations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for q in &self.queued {
            let mut rcpts = q.recipients.clone();
            rcpts.sort();
            out.push(format!(
                "queue:{} ({}, q{}) for {}",
                q.queue,
                q.state,
                q.item,
                rcpts.join(", ")
            ));
        }
        for f in &self.filed {
            let flags = if f.flags.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.flags)
            };
            out.push(format!("mailbox:{}/{}{flags}", f.user, f.folder));
        }
        for h in &self.held {
            out.push(format!("quarantine:x{} (from {})", h.id, h.origin_location));
        }
        out
    }
}

/// A message's whole path (`lazaret trace`).
pub(crate) fn trace(facts: Facts) -> MessageTrace {
    let now = facts.locations();
    let (id, subject) = facts.id_and_subject();
    let (message_id, from) = match &facts.stored {
        Some(s) => (s.message_id.clone(), s.env_from.clone()),
        None => (
            facts
                .events
                .iter()
                .find_map(|(e, _)| {
                    let (_, rest) = e.detail.split_once(" message-id <")?;
                    rest.strip_suffix('>').map(str::to_string)
                })
                .unwrap_or_default(),
            facts
                .events
                .iter()
                .find(|(e, _)| e.event == ACCEPTED)
                .map(|(e, _)| e.who.clone())
                .unwrap_or_default(),
        ),
    };
    MessageTrace {
        id,
        exists: facts.stored.is_some(),
        message_id,
        subject,
        from,
        events: facts.events.into_iter().map(|(e, _)| e).collect(),
        now,
    }
}

/// Every copy of these messages: who received it, when, whether and when it was read,
/// downloaded or forwarded, and where it is now. Copies that were read or downloaded
/// come first (those users' machines are the ones to check), earliest first.
pub(crate) fn exposure(messages: &[Facts]) -> Vec<ExposureRow> {
    let mut rows: Vec<ExposureRow> = Vec::new();
    // Submissions in the set, by user: that user forwarded (or sent) a copy on.
    let mut forwarded: HashMap<String, i64> = HashMap::new();
    for facts in messages {
        let (uid, subject) = facts.id_and_subject();
        let mut copies: Vec<ExposureRow> = Vec::new();
        let copy = |copies: &mut Vec<ExposureRow>, who: &str, local: bool| -> usize {
            match copies.iter().position(|r| r.recipient == who) {
                Some(i) => i,
                None => {
                    copies.push(ExposureRow {
                        message: uid.clone(),
                        subject: subject.clone(),
                        recipient: who.to_string(),
                        local,
                        delivered: None,
                        read: None,
                        downloaded: None,
                        forwarded: None,
                        seen: false,
                        now: "gone".into(),
                    });
                    copies.len() - 1
                }
            }
        };
        let first = |slot: &mut Option<i64>, at: i64| {
            if slot.is_none_or(|t| at < t) {
                *slot = Some(at);
            }
        };
        for (e, _) in &facts.events {
            match e.event.as_str() {
                SUBMITTED => {
                    let at = forwarded.entry(e.who.clone()).or_insert(e.at);
                    *at = (*at).min(e.at);
                }
                DELIVERED => {
                    let local = !e.detail.starts_with("to ");
                    let i = copy(&mut copies, &e.who, local);
                    first(&mut copies[i].delivered, e.at);
                    copies[i].now = if local {
                        format!("mailbox:{}/{}", e.who, e.detail)
                    } else {
                        format!("delivered {}", e.detail)
                    };
                }
                BOUNCED => {
                    let i = copy(&mut copies, &e.who, false);
                    copies[i].now = "bounced".into();
                }
                READ => {
                    let i = copy(&mut copies, &e.who, true);
                    first(&mut copies[i].read, e.at);
                }
                DOWNLOADED => {
                    let i = copy(&mut copies, &e.who, true);
                    first(&mut copies[i].downloaded, e.at);
                    // POP3 has no \Seen: retrieving the message is reading it.
                    if e.detail.starts_with("pop3") {
                        first(&mut copies[i].read, e.at);
                    }
                }
                EXPUNGED => {
                    let i = copy(&mut copies, &e.who, true);
                    copies[i].now = "deleted by the user".into();
                }
                _ => {}
            }
        }
        // Where the copies are now, from the live rows (they also cover mail filed
        // before the log existed).
        for f in &facts.filed {
            let i = copy(&mut copies, &f.user, true);
            copies[i].now = format!("mailbox:{}/{}", f.user, f.folder);
            first(&mut copies[i].delivered, f.internal_date);
            copies[i].seen = has_seen(&f.flags);
        }
        for h in &facts.held {
            let from_mailbox = h.origin_location.starts_with("mailbox:");
            for who in h
                .recipients
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
            {
                let i = copy(&mut copies, who, from_mailbox);
                copies[i].local |= from_mailbox;
                copies[i].now = format!("quarantine:x{}", h.id);
            }
        }
        for q in &facts.queued {
            let local = q.queue == QUEUE_LOCAL || q.queue == QUEUE_INBOUND;
            for who in &q.recipients {
                let i = copy(&mut copies, who, local);
                copies[i].now = format!("queue:{} ({})", q.queue, q.state);
            }
        }
        rows.extend(copies);
    }
    for r in rows.iter_mut().filter(|r| r.local) {
        r.forwarded = forwarded.get(&r.recipient).copied();
    }
    rows.sort_by_key(|r| {
        let opened = [r.read, r.downloaded, r.forwarded]
            .into_iter()
            .flatten()
            .min();
        // A copy flagged \Seen with no logged read (read before the log existed) counts
        // as opened, at an unknown time: after those with one.
        (
            opened.is_none() && !r.seen,
            opened.is_none(),
            opened,
            r.delivered.is_none(),
            r.delivered,
            r.recipient.clone(),
        )
    });
    rows
}

fn has_seen(flags: &str) -> bool {
    flags
        .split_whitespace()
        .any(|f| f.eq_ignore_ascii_case("\\Seen"))
}

/// A Message-ID as `trace --message-id` takes it: angle brackets optional.
pub(crate) fn bare_message_id(mid: &str) -> &str {
    mid.trim().trim_start_matches('<').trim_end_matches('>')
}

/// The LIKE pattern that finds Message-ID `mid` in `accepted`/`submitted` event
/// details (`… message-id <MID>…`), with `\` as the escape character.
pub(crate) fn message_id_pattern(mid: &str) -> String {
    let escaped = mid
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("% message-id <{escaped}>%")
}
