//! The message event log. Every step of a message's path is a `message_events` row
//! written in the transaction that makes the step (so the log never tells of a step
//! that was rolled back, and never misses one that committed), and, once that
//! transaction has committed, one structured log line (`lazaret::message`, info).
//! `lazaret trace` reads a message's rows; `lazaret exposure` reads those of a set of
//! messages to tell who received, read, downloaded and forwarded which copy.
//!
//! Only the writer thread writes rows, so the lines waiting for their commit are kept
//! in a thread-local list the writer publishes after `COMMIT` (or drops with a
//! rollback); a separate thread formats and writes them, off the commit path.

use super::*;
use crate::message_path;
use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::OnceLock;

pub const ACCEPTED: &str = "accepted";
pub const SUBMITTED: &str = "submitted";
pub const SCANNED: &str = "scanned";
pub const HELD: &str = "held";
pub const QUEUED: &str = "queued";
pub const DELIVERED: &str = "delivered";
pub const DEFERRED: &str = "deferred";
pub const BOUNCED: &str = "bounced";
pub const QUARANTINED: &str = "quarantined";
pub const RESTORED: &str = "restored";
pub const REMOVED: &str = "removed";
pub const READ: &str = "read";
pub const DOWNLOADED: &str = "downloaded";
pub const MOVED: &str = "moved";
pub const EXPUNGED: &str = "expunged";
pub const GONE: &str = "gone";

/// A committed event as the log line shows it.
struct Line {
    id: String,
    kind: &'static str,
    who: String,
    detail: String,
}

thread_local! {
    /// Lines of the writer's open transaction, published at its commit.
    static PENDING: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Appends one event for `message` (its row id) to the log.
pub(super) fn record(
    c: &Connection,
    message: i64,
    kind: &'static str,
    who: &str,
    detail: &str,
) -> Result<()> {
    insert(c, message, kind, who, detail, StoreId::Look)
}

/// The message's store id, for the log line and (`Keep`) the row.
pub(super) enum StoreId<'a> {
    /// No log line: the row only. For downloads, which a client syncing a folder makes
    /// by the thousand in one command; the exposure report reads them from the rows.
    Unlogged,
    /// Read from its row when a log line is wanted.
    Look,
    /// Known; the row needs none (the messages row has it).
    Known(&'a str),
    /// Kept in the row too: the message row is going, or its id changing, and trace
    /// must still find the message by this id (see the schema).
    Keep(&'a str),
}

pub(super) fn insert(
    c: &Connection,
    message: i64,
    kind: &'static str,
    who: &str,
    detail: &str,
    id: StoreId<'_>,
) -> Result<()> {
    let kept = match id {
        StoreId::Keep(u) => Some(u),
        _ => None,
    };
    c.prepare_cached(
        "INSERT INTO message_events(message, at, kind, who, detail, uid)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![message, now(), kind, who, detail, kept])?;
    if !matches!(id, StoreId::Unlogged)
        && tracing::enabled!(target: "lazaret::message", tracing::Level::INFO)
    {
        let id = match id {
            StoreId::Known(u) | StoreId::Keep(u) => u.to_string(),
            StoreId::Unlogged | StoreId::Look => c
                .prepare_cached("SELECT uid FROM messages WHERE id=?1")?
                .query_row([message], |r| r.get(0))
                .optional()?
                .unwrap_or_else(|| format!("#{message}")),
        };
        PENDING.with(|p| {
            p.borrow_mut().push(Line {
                id,
                kind,
                who: who.to_string(),
                detail: detail.to_string(),
            })
        });
    }
    Ok(())
}

/// How many lines wait: a failed request's own lines are cut back to this mark.
pub(super) fn pending_mark() -> usize {
    PENDING.with(|p| p.borrow().len())
}

pub(super) fn pending_truncate(mark: usize) {
    PENDING.with(|p| p.borrow_mut().truncate(mark));
}

/// After the transaction: its lines go to the log if it committed, nowhere if not.
pub(super) fn pending_publish(committed: bool) {
    let lines = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if !committed || lines.is_empty() {
        return;
    }
    static LOG: OnceLock<Option<mpsc::Sender<Vec<Line>>>> = OnceLock::new();
    let sender = LOG.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Vec<Line>>();
        std::thread::Builder::new()
            .name("message-log".into())
            .spawn(move || {
                for batch in rx {
                    for l in batch {
                        emit(&l);
                    }
                }
            })
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = sender {
        let _ = tx.send(lines);
    }
}

fn emit(l: &Line) {
    emit_line(&l.id, l.kind, &l.who, &l.detail);
}

/// One committed event as a log line (both stores write the same lines).
pub(crate) fn emit_line(id: &str, kind: &str, who: &str, detail: &str) {
    // Display, not Debug: `who=bob@example.org`, not `who="bob@example.org"`.
    let shown = |s: &str| (!s.is_empty()).then(|| tracing::field::display(s.to_string()));
    let (who, detail) = (shown(who), shown(detail));
    tracing::info!(target: "lazaret::message", id = %id, who, detail, "{}", kind);
}

/// The `accepted` (or `submitted`) event of a new message.
pub(super) fn accepted(
    c: &Connection,
    message: i64,
    incoming: &Incoming,
    meta: &MessageMetadata,
) -> Result<()> {
    let (kind, who, detail) = accepted_row(incoming, meta);
    insert(
        c,
        message,
        kind,
        &who,
        &detail,
        StoreId::Known(&incoming.id),
    )
}

/// The kind, who and detail of a message's first event (any store's).
pub(crate) fn accepted_row(
    incoming: &Incoming,
    meta: &MessageMetadata,
) -> (&'static str, String, String) {
    let (kind, who, via) = match &incoming.via {
        Via::Smtp => (ACCEPTED, incoming.mail_from.as_str(), "smtp".to_string()),
        Via::Submission(user) => (SUBMITTED, user.as_str(), "submission".to_string()),
        Via::Server(what) => (ACCEPTED, incoming.mail_from.as_str(), (*what).to_string()),
    };
    let mut detail = format!("via {via}");
    if !incoming.peer.is_empty() && incoming.via != Via::Server("import") {
        detail.push_str(&format!(" from [{}]", incoming.peer));
    }
    if !incoming.rcpt_to.is_empty() {
        detail.push_str(&format!(" to {}", incoming.rcpt_to.join(", ")));
    }
    if !meta.message_id.is_empty() {
        detail.push_str(&format!(" message-id <{}>", meta.message_id));
    }
    if let Some(auth) = &incoming.auth {
        detail.push_str(&format!(" auth {}", auth.results));
    }
    (kind, who.to_string(), detail)
}

/// Events older than `before` (unix seconds) go, at most `limit` per call; returns how
/// many went. Rows are appended in time order, so the old ones are a prefix of the
/// table: no index on `at` is needed to find them.
pub(super) fn prune(c: &Connection, before: i64, limit: usize) -> Result<usize> {
    let n = c
        .prepare_cached(
            "DELETE FROM message_events WHERE id IN
               (SELECT id FROM message_events WHERE at<?1 ORDER BY id LIMIT ?2)",
        )?
        .execute(params![before, limit as i64])?;
    Ok(n)
}

/// The row ids of messages with store id `uid`, present or gone.
fn messages_with_uid(c: &Connection, uid: &str) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = c
        .prepare_cached("SELECT id FROM messages WHERE uid=?1")?
        .query_map([uid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare_cached("SELECT DISTINCT message FROM message_events WHERE uid=?1")?;
    for m in stmt.query_map([uid], |r| r.get::<_, i64>(0))? {
        let m = m?;
        if !ids.contains(&m) {
            ids.push(m);
        }
    }
    Ok(ids)
}

/// The row ids of messages whose Message-ID header is `mid` (angle brackets optional).
/// Present messages are found by their row; gone ones by their `accepted` event, which
/// reads the whole log (slower; only for messages no longer stored).
fn messages_with_message_id(c: &Connection, mid: &str) -> Result<Vec<i64>> {
    let mid = message_path::bare_message_id(mid);
    let mut ids: Vec<i64> = c
        .prepare_cached("SELECT id FROM messages WHERE message_id=?1")?
        .query_map([mid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let pattern = message_path::message_id_pattern(mid);
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT message FROM message_events
         WHERE kind IN ('accepted', 'submitted') AND detail LIKE ?1 ESCAPE '\\'",
    )?;
    for m in stmt.query_map([pattern], |r| r.get::<_, i64>(0))? {
        let m = m?;
        if !ids.contains(&m) {
            ids.push(m);
        }
    }
    Ok(ids)
}

fn events_of(c: &Connection, message: i64) -> Result<Vec<(TraceEvent, Option<String>)>> {
    let mut stmt = c.prepare_cached(
        "SELECT at, kind, who, detail, uid FROM message_events WHERE message=?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([message], |r| {
            Ok((
                TraceEvent {
                    at: r.get(0)?,
                    event: r.get(1)?,
                    who: r.get(2)?,
                    detail: r.get(3)?,
                },
                r.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// What both reports read of message `message` (see `message_path`).
fn facts(c: &Connection, message: i64) -> Result<message_path::Facts> {
    let stored = c
        .prepare_cached("SELECT uid, message_id, subject, env_from FROM messages WHERE id=?1")?
        .query_row([message], |r| {
            Ok(message_path::Stored {
                uid: r.get(0)?,
                message_id: r.get(1)?,
                subject: r.get(2)?,
                env_from: r.get(3)?,
            })
        })
        .optional()?;
    let mut rcpts = c.prepare_cached("SELECT address FROM queue_rcpts WHERE item=?1")?;
    let mut queued = Vec::new();
    let items: Vec<(i64, String, String)> = c
        .prepare_cached("SELECT id, queue, state FROM queue_items WHERE message=?1 ORDER BY id")?
        .query_map([message], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (item, queue, state) in items {
        let recipients = rcpts
            .query_map([item], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        queued.push(message_path::Queued {
            item,
            queue,
            state,
            recipients,
        });
    }
    let filed = c
        .prepare_cached(
            "SELECT b.user, b.name, e.flags, e.internal_date FROM mailbox_entries e
             JOIN mailboxes b ON b.id=e.mailbox WHERE e.message=?1 ORDER BY e.id",
        )?
        .query_map([message], |r| {
            Ok(message_path::Filed {
                user: r.get(0)?,
                folder: r.get(1)?,
                flags: r.get(2)?,
                internal_date: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let held = c
        .prepare_cached(
            "SELECT id, recipients, origin_location FROM quarantine WHERE message=?1 ORDER BY id",
        )?
        .query_map([message], |r| {
            Ok(message_path::Held {
                id: r.get(0)?,
                recipients: r.get(1)?,
                origin_location: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(message_path::Facts {
        message,
        stored,
        events: events_of(c, message)?,
        queued,
        filed,
        held,
    })
}

/// The paths of the messages with store id `id`, or with Message-ID `message_id`.
pub(super) fn trace(
    c: &Connection,
    id: Option<&str>,
    message_id: Option<&str>,
) -> Result<Vec<MessageTrace>> {
    let mut ids = match id {
        Some(uid) => messages_with_uid(c, uid.trim())?,
        None => Vec::new(),
    };
    if let Some(mid) = message_id {
        for m in messages_with_message_id(c, mid)? {
            if !ids.contains(&m) {
                ids.push(m);
            }
        }
    }
    ids.sort_unstable();
    ids.into_iter()
        .map(|m| Ok(message_path::trace(facts(c, m)?)))
        .collect()
}

/// The messages an exposure report covers: row ids.
fn scope_messages(c: &Connection, scope: &ExposureScope) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    match scope {
        ExposureScope::Cluster(cluster) => {
            let members: Vec<i64> = c
                .prepare_cached("SELECT id FROM clusters WHERE id=?1 OR parent=?1")?
                .query_map([cluster], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut present =
                c.prepare_cached("SELECT message FROM fingerprints WHERE cluster=?1")?;
            let mut gone = c.prepare_cached(
                "SELECT message FROM message_events WHERE kind='gone' AND who=?1",
            )?;
            for k in members {
                for m in present.query_map([k], |r| r.get(0))? {
                    ids.push(m?);
                }
                for m in gone.query_map([k.to_string()], |r| r.get(0))? {
                    ids.push(m?);
                }
            }
        }
        ExposureScope::Places(places) => {
            for place in places {
                let (kind, n) = place.split_at(place.len().min(1));
                let Ok(n) = n.parse::<i64>() else { continue };
                let sql = match kind {
                    "q" => "SELECT message FROM queue_items WHERE id=?1",
                    "m" => "SELECT message FROM mailbox_entries WHERE id=?1",
                    "x" => "SELECT message FROM quarantine WHERE id=?1",
                    _ => continue,
                };
                if let Some(m) = c
                    .prepare_cached(sql)?
                    .query_row([n], |r| r.get(0))
                    .optional()?
                {
                    ids.push(m);
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Every copy of the messages in `scope` and what became of it.
pub(super) fn exposure(c: &Connection, scope: &ExposureScope) -> Result<Vec<ExposureRow>> {
    let facts = scope_messages(c, scope)?
        .into_iter()
        .map(|m| facts(c, m))
        .collect::<Result<Vec<_>>>()?;
    Ok(message_path::exposure(&facts))
}
