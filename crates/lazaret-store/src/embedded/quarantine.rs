//! Taking messages out of queues and mailboxes (quarantine, delete), putting them back
//! exactly where they were (restore), and importing mail into a folder. Each call is
//! one transaction over the ids it is given, so an interrupted bulk action leaves every
//! message either done or untouched; callers pass batches and report progress.

use super::folders::{
    add_entry, folder_id, join_flags, next_modseq, parse_flags, take_uids, valid_folder,
};
use super::{release, EmbeddedStore, Prepared};
use crate::model::*;
use crate::{now, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Everything needed to put a message back where it was.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Origin {
    Queue {
        queue: String,
        state: String,
        next_attempt: i64,
        attempts: i64,
        last_error: Option<String>,
        created: i64,
        worker_failures: i64,
        rcpts: Vec<String>,
    },
    Mailbox {
        user: String,
        folder: String,
        flags: Vec<String>,
        internal_date: i64,
    },
}

/// Splits `q12` into ('q', 12).
pub(crate) fn parse_id(id: &str) -> Option<(char, i64)> {
    let kind = id.chars().next()?;
    let n = id.get(1..)?.parse().ok()?;
    matches!(kind, 'q' | 'm' | 'x').then_some((kind, n))
}

fn queue_origin(c: &Connection, item: i64) -> Result<Option<(i64, Origin)>> {
    let row = c
        .prepare_cached(
            "SELECT message, queue, state, next_attempt, attempts, last_error, created,
                    worker_failures FROM queue_items WHERE id=?1",
        )?
        .query_row([item], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Origin::Queue {
                    queue: r.get(1)?,
                    state: r.get(2)?,
                    next_attempt: r.get(3)?,
                    attempts: r.get(4)?,
                    last_error: r.get(5)?,
                    created: r.get(6)?,
                    worker_failures: r.get(7)?,
                    rcpts: Vec::new(),
                },
            ))
        })
        .optional()?;
    let Some((message, mut origin)) = row else {
        return Ok(None);
    };
    if let Origin::Queue { rcpts, .. } = &mut origin {
        *rcpts = c
            .prepare_cached("SELECT address FROM queue_rcpts WHERE item=?1 ORDER BY address")?
            .query_map([item], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(Some((message, origin)))
}

fn mailbox_origin(c: &Connection, entry: i64) -> Result<Option<(i64, Origin)>> {
    Ok(c.prepare_cached(
        "SELECT e.message, b.user, b.name, e.flags, e.internal_date
         FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox WHERE e.id=?1",
    )?
    .query_row([entry], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Origin::Mailbox {
                user: r.get(1)?,
                folder: r.get(2)?,
                flags: parse_flags(&r.get::<_, String>(3)?),
                internal_date: r.get(4)?,
            },
        ))
    })
    .optional()?)
}

impl Origin {
    pub(crate) fn location(&self) -> String {
        match self {
            Origin::Queue { queue, .. } => format!("queue:{queue}"),
            Origin::Mailbox { user, folder, .. } => format!("mailbox:{user}/{folder}"),
        }
    }

    pub(crate) fn recipients(&self) -> String {
        match self {
            Origin::Queue { rcpts, .. } => rcpts.join(","),
            Origin::Mailbox { user, .. } => user.clone(),
        }
    }

    /// What `quarantine show` lists: the recipients it had (queued mail) or its
    /// flags (mailbox mail).
    pub(crate) fn recipients_and_flags(stored: &str) -> (Vec<String>, Vec<String>) {
        match serde_json::from_str::<Origin>(stored) {
            Ok(Origin::Queue { rcpts, .. }) => (rcpts, Vec::new()),
            Ok(Origin::Mailbox { user, flags, .. }) => (vec![user], flags),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }
}

pub(crate) fn add_user(report: &mut ActionReport, user: &str) {
    if !report.users.iter().any(|u| u == user) {
        report.users.push(user.to_string());
    }
}

/// Moves queue items and mailbox entries into quarantine.
pub(super) fn quarantine(
    c: &Connection,
    ids: &[String],
    actor: &str,
    reason: &str,
) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    let at = now();
    // Folders that lost messages: each takes a new mod-sequence once (CONDSTORE).
    let mut folders_changed = std::collections::BTreeSet::new();
    for id in ids {
        let found = match parse_id(id) {
            Some(('q', n)) => queue_origin(c, n)?.map(|o| (n, o)),
            Some(('m', n)) => mailbox_origin(c, n)?.map(|o| (n, o)),
            _ => None,
        };
        let Some((n, (message, origin))) = found else {
            report.skipped += 1;
            continue;
        };
        c.prepare_cached(&format!(
            "INSERT INTO quarantine(id, message, at, actor, reason, origin_location,
               recipients, origin) VALUES({}, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            super::schema::NEXT_QUARANTINE_ID
        ))?
        .execute(params![
            message,
            at,
            actor,
            reason,
            origin.location(),
            origin.recipients(),
            serde_json::to_string(&origin).unwrap_or_default()
        ])?;
        let quarantined = c.last_insert_rowid();
        super::events::record(
            c,
            message,
            super::events::QUARANTINED,
            &origin.recipients(),
            &format!(
                "x{quarantined} from {} by {actor}: {reason}",
                origin.location()
            ),
        )?;
        match &origin {
            Origin::Queue { .. } => {
                c.prepare_cached("DELETE FROM queue_items WHERE id=?1")?
                    .execute([n])?;
            }
            Origin::Mailbox { user, .. } => {
                let folder: i64 = c
                    .prepare_cached("DELETE FROM mailbox_entries WHERE id=?1 RETURNING mailbox")?
                    .query_row([n], |r| r.get(0))?;
                folders_changed.insert(folder);
                add_user(&mut report, user);
            }
        }
        report.done += 1;
        report.created.push(format!("x{quarantined}"));
    }
    for folder in folders_changed {
        next_modseq(c, folder)?;
    }
    Ok(report)
}

/// Puts quarantined messages back where they were taken from.
pub(super) fn restore(c: &Connection, ids: &[String]) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    for id in ids {
        let Some(('x', n)) = parse_id(id) else {
            report.skipped += 1;
            continue;
        };
        let row: Option<(i64, String)> = c
            .prepare_cached("SELECT message, origin FROM quarantine WHERE id=?1")?
            .query_row([n], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((message, origin)) = row else {
            report.skipped += 1;
            continue;
        };
        let origin: Origin = match serde_json::from_str(&origin) {
            Ok(o) => o,
            Err(e) => {
                report
                    .failed
                    .push((id.clone(), format!("unreadable origin: {e}")));
                continue;
            }
        };
        let restored_to = origin.recipients();
        let created =
            match origin {
                Origin::Queue {
                    queue,
                    state,
                    next_attempt,
                    attempts,
                    last_error,
                    created,
                    worker_failures,
                    rcpts,
                } => {
                    c.prepare_cached(&format!(
                        "INSERT INTO queue_items(id, message, queue, state, next_attempt,
                           attempts, last_error, created, worker_failures)
                         VALUES({}, ?1,?2,?3,?4,?5,?6,?7,?8)",
                        super::schema::NEXT_ITEM_ID
                    ))?
                    .execute(params![
                        message,
                        queue,
                        state,
                        next_attempt,
                        attempts,
                        last_error,
                        created,
                        worker_failures
                    ])?;
                    let item = c.last_insert_rowid();
                    let mut add = c.prepare_cached(
                        "INSERT OR IGNORE INTO queue_rcpts(item, address) VALUES(?1, ?2)",
                    )?;
                    for r in rcpts {
                        add.execute(params![item, r])?;
                    }
                    format!("q{item}")
                }
                Origin::Mailbox {
                    user,
                    folder,
                    flags,
                    internal_date,
                } => {
                    let exists = c
                        .prepare_cached("SELECT 1 FROM users WHERE address=?1")?
                        .exists([&user])?;
                    if !exists {
                        report.failed.push((
                            id.clone(),
                            format!("user {user} no longer exists; add the user first"),
                        ));
                        continue;
                    }
                    // A folder deleted since is created again, as the user had it.
                    let box_id =
                        match folder_id(c, &user, &folder) {
                            Ok(b) => b,
                            Err(_) => {
                                c.prepare_cached(
                            "INSERT INTO mailboxes(user, name, uidvalidity) VALUES(?1, ?2, ?3)",
                        )?
                        .execute(params![user, folder, super::folders::new_uidvalidity(c)?])?;
                                c.last_insert_rowid()
                            }
                        };
                    let (_, uid) = take_uids(c, box_id, 1)?;
                    let entry =
                        add_entry(c, box_id, uid, message, &join_flags(&flags), internal_date)?;
                    add_user(&mut report, &user);
                    format!("m{entry}")
                }
            };
        c.prepare_cached("DELETE FROM quarantine WHERE id=?1")?
            .execute([n])?;
        super::events::record(
            c,
            message,
            super::events::RESTORED,
            &restored_to,
            &format!("x{n} back to {created}"),
        )?;
        report.done += 1;
        report.created.push(created);
    }
    Ok(report)
}

/// Deletes queue items, mailbox entries or quarantined messages for good, with DSNs
/// (already built, blobs durable) queued in the same transaction; the messages no
/// place holds any more go to the background reclaim.
pub(super) fn remove(c: &Connection, ids: &[String], dsns: &[Prepared]) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    let mut messages = Vec::new();
    let mut folders_changed = std::collections::BTreeSet::new();
    for id in ids {
        let message: Option<i64> = match parse_id(id) {
            Some(('q', n)) => c
                .prepare_cached("DELETE FROM queue_items WHERE id=?1 RETURNING message")?
                .query_row([n], |r| r.get(0))
                .optional()?,
            Some(('m', n)) => {
                let row: Option<(i64, String, i64)> = c
                    .prepare_cached(
                        "DELETE FROM mailbox_entries WHERE id=?1
                         RETURNING message, (SELECT user FROM mailboxes b WHERE b.id=mailbox),
                                   mailbox",
                    )?
                    .query_row([n], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                row.map(|(m, user, folder)| {
                    add_user(&mut report, &user);
                    folders_changed.insert(folder);
                    m
                })
            }
            Some(('x', n)) => c
                .prepare_cached("DELETE FROM quarantine WHERE id=?1 RETURNING message")?
                .query_row([n], |r| r.get(0))
                .optional()?,
            _ => None,
        };
        match message {
            Some(m) => {
                super::events::record(
                    c,
                    m,
                    super::events::REMOVED,
                    "",
                    &format!("{id} by an admin"),
                )?;
                report.done += 1;
                messages.push(m);
            }
            None => report.skipped += 1,
        }
    }
    for dsn in dsns {
        dsn.insert(c)?;
    }
    for folder in folders_changed {
        next_modseq(c, folder)?;
    }
    messages.sort_unstable();
    messages.dedup();
    release(c, &messages)?;
    Ok(report)
}

pub(super) fn detail(c: &Connection, id: &str) -> Result<Option<(QuarantineDetail, String)>> {
    let Some(('x', n)) = parse_id(id) else {
        return Ok(None);
    };
    let filters = Filters {
        ids: Some(vec![id.to_string()]),
        ..Filters::default()
    };
    let found = super::find::find(c, &[Place::Quarantine], &filters, None, 0, Some(1))?;
    let Some(message) = found.messages.into_iter().next() else {
        return Ok(None);
    };
    let (at, actor, reason, origin_location, origin): (i64, String, String, String, String) = c
        .query_row(
            "SELECT at, actor, reason, origin_location, origin FROM quarantine WHERE id=?1",
            [n],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
    let (recipients, flags) = Origin::recipients_and_flags(&origin);
    let blob = message.message.clone();
    Ok(Some((
        QuarantineDetail {
            id: id.to_string(),
            message,
            origin: origin_location,
            quarantined: at,
            actor,
            reason,
            recipients,
            flags,
            headers: String::new(),
        },
        blob,
    )))
}

impl EmbeddedStore {
    /// Stores messages into one folder of a user in one transaction; blobs are written
    /// first and made durable together (one filesystem sync for the batch).
    pub(super) fn import_impl(
        &self,
        user: &str,
        folder: &str,
        messages: Vec<ImportMessage>,
    ) -> Result<u64> {
        let user = user.trim().to_ascii_lowercase();
        let folder = super::folders::canonical(folder);
        if !valid_folder(&folder) {
            return Err(StoreError::Invalid(format!(
                "{folder:?} is not a valid folder name"
            )));
        }
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            let mut p = Prepared::new(super::ingest::imported(m.data))?;
            p.received = m.internal_date;
            self.text
                .remember(&p.incoming.id, std::mem::take(&mut p.meta.text));
            prepared.push((p, m.flags, m.internal_date));
        }
        let ids: Vec<String> = prepared
            .iter()
            .map(|(p, ..)| p.incoming.id.clone())
            .collect();
        let batch: Vec<(&str, &[u8])> = prepared
            .iter()
            .map(|(p, ..)| (p.incoming.id.as_str(), p.incoming.data.as_slice()))
            .collect();
        let locations = self.blobs.put_batch(&batch);
        let locations = match locations {
            Ok(l) => l,
            Err(e) => {
                for id in &ids {
                    self.text.forget(id);
                }
                return Err(e);
            }
        };
        for ((p, ..), at) in prepared.iter_mut().zip(locations) {
            p.location = at;
        }
        let result = self.write(move |c| {
            if !c
                .prepare_cached("SELECT 1 FROM users WHERE address=?1")?
                .exists([&user])?
            {
                return Err(StoreError::NotFound(format!(
                    "no user {user}; add it first with `lazaret user add {user}`"
                )));
            }
            let box_id = match folder_id(c, &user, &folder) {
                Ok(b) => b,
                Err(_) => {
                    c.execute(
                        "INSERT INTO mailboxes(user, name, uidvalidity) VALUES(?1, ?2, ?3)",
                        params![user, folder, super::folders::new_uidvalidity(c)?],
                    )?;
                    c.last_insert_rowid()
                }
            };
            let (_, mut uid) = take_uids(c, box_id, prepared.len() as i64)?;
            for (p, flags, internal_date) in &prepared {
                let message = p.insert_message(c)?;
                add_entry(
                    c,
                    box_id,
                    uid,
                    message,
                    &join_flags(flags),
                    internal_date.unwrap_or_else(now),
                )?;
                uid += 1;
            }
            Ok(prepared.len() as u64)
        });
        if result.is_err() {
            for id in &ids {
                self.text.forget(id);
            }
        } else {
            self.text.wake();
        }
        result
    }
}
