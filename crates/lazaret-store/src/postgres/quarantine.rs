//! Quarantine, restore and removal on the shared database, with the embedded store's
//! semantics (embedded/quarantine.rs): each call is one transaction over the ids it
//! is given; the origin (jsonb) says exactly where a message goes back to. Rows are
//! taken `FOR UPDATE`: an item another node is routing or delivering at that moment
//! is waited for, and then found gone (skipped) or taken.
//!
//! Also import, which fills one folder in one transaction.

use super::folders::{add_entry, folder_id, next_modseq, take_uids};
use super::local::notify_users;
use super::{add_recipients, ingest, pg, record_event, release, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::events::{QUARANTINED, REMOVED, RESTORED};
use crate::embedded::ingest::{imported, Prepared};
use crate::embedded::messages::address_list;
use crate::embedded::quarantine::{add_user, parse_id, Origin};
use crate::folder_rules::{canonical, join_flags, parse_flags, valid_folder};
use crate::model::{ActionReport, ImportMessage, MessageSummary, QuarantineDetail};
use crate::{now, Incoming, Result, StoreError};
use deadpool_postgres::Transaction;
use std::collections::BTreeSet;

impl PostgresStore {
    pub fn quarantine(&self, ids: &[String], actor: &str, reason: &str) -> Result<ActionReport> {
        let (ids, actor, reason) = (ids.to_vec(), actor.to_string(), reason.to_string());
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let report = quarantine(&tx, &ids, &actor, &reason).await?;
            notify_users(&tx, &report.users).await?;
            super::commit(tx).await?;
            Ok(report)
        })?;
        self.after(&report);
        Ok(report)
    }

    pub fn quarantine_restore(&self, ids: &[String]) -> Result<ActionReport> {
        let ids = ids.to_vec();
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let (report, queues) = restore(&tx, &ids).await?;
            notify_users(&tx, &report.users).await?;
            for queue in queues {
                tx.execute("SELECT pg_notify($1, $2)", &[&QUEUE_CHANNEL, &queue])
                    .await
                    .map_err(pg)?;
            }
            super::commit(tx).await?;
            Ok(report)
        })?;
        self.after(&report);
        Ok(report)
    }

    /// Deletes for good, with the DSNs (their objects written first) queued in the
    /// same transaction.
    pub fn remove(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport> {
        let objects = self.objects()?;
        let mut prepared = dsns
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        let written: Vec<String> = prepared.iter().map(|p| p.incoming.id.clone()).collect();
        objects.put_many(
            prepared
                .iter_mut()
                .map(|p| (p.incoming.id.clone(), std::mem::take(&mut p.incoming.data)))
                .collect(),
        )?;
        let ids = ids.to_vec();
        let removed = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let report = remove(&tx, &ids, &prepared).await?;
            notify_users(&tx, &report.users).await?;
            if !prepared.is_empty() {
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&QUEUE_CHANNEL, &lazaret_core::state::QUEUE_INBOUND],
                )
                .await
                .map_err(pg)?;
            }
            super::commit(tx).await?;
            Ok(report)
        });
        match removed {
            Ok(report) => {
                self.after(&report);
                Ok(report)
            }
            Err(e) => {
                objects.delete(written);
                Err(e)
            }
        }
    }

    pub fn quarantine_detail(&self, id: &str) -> Result<QuarantineDetail> {
        let not_found = || {
            StoreError::NotFound(
                "no such quarantined message (ids look like x12; see `lazaret quarantine list`)"
                    .into(),
            )
        };
        let Some(('x', n)) = parse_id(id) else {
            return Err(not_found());
        };
        let id = id.to_string();
        let detail = self.with_client(move |c| async move {
            let Some(r) = c
                .query_opt(
                    "SELECT m.env_from, z.recipients, m.subject, COALESCE(m.date, m.received),
                            m.size, m.sha256, m.uid, z.origin_location, z.reason, m.verdict,
                            z.at, z.actor, z.origin::text
                     FROM quarantine z JOIN messages m ON m.id=z.message WHERE z.id=$1",
                    &[&n],
                )
                .await
                .map_err(pg)?
            else {
                return Ok(None);
            };
            let message = MessageSummary {
                id: id.clone(),
                location: "quarantine".into(),
                from: r.get(0),
                to: address_list(r.get(1)),
                subject: r.get(2),
                date: r.get(3),
                size: r.get::<_, i64>(4) as u64,
                state: "quarantined".into(),
                sha256: r.get(5),
                uid: None,
                message: r.get(6),
                attempts: None,
                next_attempt: None,
                last_error: None,
                origin: r.get(7),
                reason: r.get(8),
                verdict: r.get(9),
            };
            let (recipients, flags) = Origin::recipients_and_flags(r.get(12));
            Ok(Some(QuarantineDetail {
                id,
                origin: r.get(7),
                quarantined: r.get(10),
                actor: r.get(11),
                reason: r.get(8),
                recipients,
                flags,
                headers: String::new(),
                message,
            }))
        })?;
        let mut detail = detail.ok_or_else(not_found)?;
        detail.headers =
            String::from_utf8_lossy(&self.message_head(&detail.message.message)?).into_owned();
        Ok(detail)
    }

    /// Stores messages into one folder of a user: the objects first (several requests
    /// at a time), then every row in one transaction; a failed commit deletes the
    /// objects again.
    pub fn import(&self, user: &str, folder: &str, messages: Vec<ImportMessage>) -> Result<u64> {
        let user = user.trim().to_ascii_lowercase();
        let folder = canonical(folder);
        if !valid_folder(&folder) {
            return Err(StoreError::Invalid(format!(
                "{folder:?} is not a valid folder name"
            )));
        }
        let objects = self.objects()?;
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            let p = Prepared::new(imported(m.data))?;
            prepared.push((p, m.flags, m.internal_date));
        }
        let written: Vec<String> = prepared
            .iter()
            .map(|(p, ..)| p.incoming.id.clone())
            .collect();
        objects.put_many(
            prepared
                .iter_mut()
                .map(|(p, ..)| (p.incoming.id.clone(), std::mem::take(&mut p.incoming.data)))
                .collect(),
        )?;
        let notified = user.clone();
        let imported = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if tx
                .query_opt("SELECT 1 FROM users WHERE address=$1 FOR SHARE", &[&user])
                .await
                .map_err(pg)?
                .is_none()
            {
                return Err(StoreError::NotFound(format!(
                    "no user {user}; add it first with `lazaret user add {user}`"
                )));
            }
            let box_id = folder_or_new(&tx, &user, &folder).await?;
            let (_, mut uid, modseq) = take_uids(&tx, box_id, prepared.len() as i64).await?;
            let t = now();
            for (p, flags, internal_date) in &prepared {
                // Imported mail keeps its date, as in the embedded store.
                let received = internal_date.unwrap_or(t);
                let message = ingest::insert_message(&tx, p, received).await?;
                let flags = join_flags(flags);
                add_entry(&tx, box_id, uid, message, &flags, received, modseq).await?;
                uid += 1;
            }
            notify_users(&tx, &[notified]).await?;
            super::commit(tx).await?;
            Ok(prepared.len() as u64)
        });
        match imported {
            Ok(n) => {
                self.folders_changed();
                Ok(n)
            }
            Err(e) => {
                objects.delete(written);
                Err(e)
            }
        }
    }

    /// A committed action that changed folders: this node's sessions look again now.
    fn after(&self, report: &ActionReport) {
        if !report.users.is_empty() {
            self.folders_changed();
        }
    }
}

/// The folder's id, creating it as a plain folder if it is gone (restore, import).
async fn folder_or_new(tx: &Transaction<'_>, user: &str, folder: &str) -> Result<i64> {
    if let Ok(id) = folder_id(tx, user, folder).await {
        return Ok(id);
    }
    let uidvalidity = super::accounts::new_uidvalidity(tx).await?;
    Ok(tx
        .query_one(
            "INSERT INTO mailboxes(\"user\", name, uidvalidity) VALUES($1, $2, $3)
             ON CONFLICT(\"user\", name) DO UPDATE SET name=EXCLUDED.name RETURNING id",
            &[&user, &folder, &uidvalidity],
        )
        .await
        .map_err(pg)?
        .get(0))
}

/// Where a queue item or folder entry is, its row locked; None when it is gone.
async fn origin_of(tx: &Transaction<'_>, kind: char, n: i64) -> Result<Option<(i64, Origin)>> {
    if kind == 'q' {
        let Some(r) = tx
            .query_opt(
                "SELECT message, queue, state, next_attempt, attempts, last_error, created,
                        worker_failures FROM queue_items WHERE id=$1 FOR UPDATE",
                &[&n],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let rcpts = tx
            .query(
                "SELECT address FROM queue_rcpts WHERE item=$1 ORDER BY address COLLATE \"C\"",
                &[&n],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let origin = Origin::Queue {
            queue: r.get(1),
            state: r.get(2),
            next_attempt: r.get(3),
            attempts: r.get::<_, i32>(4) as i64,
            last_error: r.get(5),
            created: r.get(6),
            worker_failures: r.get::<_, i32>(7) as i64,
            rcpts,
        };
        return Ok(Some((r.get(0), origin)));
    }
    Ok(tx
        .query_opt(
            "SELECT e.message, b.\"user\", b.name, e.flags, e.internal_date
             FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
             WHERE e.id=$1 FOR UPDATE OF e",
            &[&n],
        )
        .await
        .map_err(pg)?
        .map(|r| {
            let origin = Origin::Mailbox {
                user: r.get(1),
                folder: r.get(2),
                flags: parse_flags(r.get(3)),
                internal_date: r.get(4),
            };
            (r.get(0), origin)
        }))
}

/// Moves queue items and folder entries into quarantine, in the caller's transaction
/// (also ingest's, for a forgery caught on arrival).
pub(super) async fn quarantine(
    tx: &Transaction<'_>,
    ids: &[String],
    actor: &str,
    reason: &str,
) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    let at = now();
    // Folders that lost messages: each takes a new mod-sequence once (CONDSTORE).
    let mut folders_changed = BTreeSet::new();
    for id in ids {
        let found = match parse_id(id) {
            Some((kind @ ('q' | 'm'), n)) => origin_of(tx, kind, n).await?.map(|o| (n, o)),
            _ => None,
        };
        let Some((n, (message, origin))) = found else {
            report.skipped += 1;
            continue;
        };
        let stored = serde_json::to_string(&origin).unwrap_or_default();
        let quarantined: i64 = tx
            .query_one(
                "INSERT INTO quarantine(message, at, actor, reason, origin_location,
                     recipients, origin)
                 VALUES($1, $2, $3, $4, $5, $6, CAST($7::text AS jsonb)) RETURNING id",
                &[
                    &message,
                    &at,
                    &actor,
                    &reason,
                    &origin.location(),
                    &origin.recipients(),
                    &stored,
                ],
            )
            .await
            .map_err(pg)?
            .get(0);
        let detail = format!(
            "x{quarantined} from {} by {actor}: {reason}",
            origin.location()
        );
        record_event(tx, message, at, QUARANTINED, &origin.recipients(), &detail).await?;
        match &origin {
            Origin::Queue { .. } => {
                tx.execute("DELETE FROM queue_items WHERE id=$1", &[&n])
                    .await
                    .map_err(pg)?;
            }
            Origin::Mailbox { user, .. } => {
                let folder: i64 = tx
                    .query_one(
                        "DELETE FROM mailbox_entries WHERE id=$1 RETURNING mailbox",
                        &[&n],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                folders_changed.insert(folder);
                add_user(&mut report, user);
            }
        }
        report.done += 1;
        report.created.push(format!("x{quarantined}"));
    }
    for folder in folders_changed {
        next_modseq(tx, folder).await?;
    }
    Ok(report)
}

/// Puts quarantined messages back where they were taken from; also returns the
/// queues that got work.
async fn restore(tx: &Transaction<'_>, ids: &[String]) -> Result<(ActionReport, Vec<String>)> {
    let mut report = ActionReport::default();
    let mut queues = Vec::new();
    let t = now();
    for id in ids {
        let Some(('x', n)) = parse_id(id) else {
            report.skipped += 1;
            continue;
        };
        let Some(row) = tx
            .query_opt(
                "SELECT message, origin::text FROM quarantine WHERE id=$1 FOR UPDATE",
                &[&n],
            )
            .await
            .map_err(pg)?
        else {
            report.skipped += 1;
            continue;
        };
        let message: i64 = row.get(0);
        let origin: Origin = match serde_json::from_str(row.get(1)) {
            Ok(o) => o,
            Err(e) => {
                report
                    .failed
                    .push((id.clone(), format!("unreadable origin: {e}")));
                continue;
            }
        };
        let restored_to = origin.recipients();
        let created = match origin {
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
                let item: i64 = tx
                    .query_one(
                        "INSERT INTO queue_items(message, queue, state, next_attempt, attempts,
                             last_error, created, worker_failures)
                         VALUES($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                        &[
                            &message,
                            &queue,
                            &state,
                            &next_attempt,
                            &(attempts as i32),
                            &last_error,
                            &created,
                            &(worker_failures as i32),
                        ],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                add_recipients(tx, item, &rcpts).await?;
                if !queues.contains(&queue) {
                    queues.push(queue);
                }
                format!("q{item}")
            }
            Origin::Mailbox {
                user,
                folder,
                flags,
                internal_date,
            } => {
                if tx
                    .query_opt("SELECT 1 FROM users WHERE address=$1 FOR SHARE", &[&user])
                    .await
                    .map_err(pg)?
                    .is_none()
                {
                    report.failed.push((
                        id.clone(),
                        format!("user {user} no longer exists; add the user first"),
                    ));
                    continue;
                }
                // A folder deleted since is created again, as the user had it.
                let box_id = folder_or_new(tx, &user, &folder).await?;
                let (_, uid, modseq) = take_uids(tx, box_id, 1).await?;
                let flags = join_flags(&flags);
                let entry =
                    add_entry(tx, box_id, uid, message, &flags, internal_date, modseq).await?;
                add_user(&mut report, &user);
                format!("m{entry}")
            }
        };
        tx.execute("DELETE FROM quarantine WHERE id=$1", &[&n])
            .await
            .map_err(pg)?;
        let detail = format!("x{n} back to {created}");
        record_event(tx, message, t, RESTORED, &restored_to, &detail).await?;
        report.done += 1;
        report.created.push(created);
    }
    Ok((report, queues))
}

/// Deletes queue items, folder entries or quarantined messages for good, with DSNs
/// queued in the same transaction; messages no place holds go to the reclaim.
async fn remove(tx: &Transaction<'_>, ids: &[String], dsns: &[Prepared]) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    let mut messages = Vec::new();
    let mut folders_changed = BTreeSet::new();
    let t = now();
    for id in ids {
        let message: Option<i64> = match parse_id(id) {
            Some(('q', n)) => tx
                .query_opt(
                    "DELETE FROM queue_items WHERE id=$1 RETURNING message",
                    &[&n],
                )
                .await
                .map_err(pg)?
                .map(|r| r.get(0)),
            Some(('m', n)) => tx
                .query_opt(
                    "DELETE FROM mailbox_entries e WHERE id=$1
                     RETURNING message, (SELECT \"user\" FROM mailboxes b WHERE b.id=e.mailbox),
                               mailbox",
                    &[&n],
                )
                .await
                .map_err(pg)?
                .map(|r| {
                    add_user(&mut report, r.get(1));
                    folders_changed.insert(r.get::<_, i64>(2));
                    r.get(0)
                }),
            Some(('x', n)) => tx
                .query_opt(
                    "DELETE FROM quarantine WHERE id=$1 RETURNING message",
                    &[&n],
                )
                .await
                .map_err(pg)?
                .map(|r| r.get(0)),
            _ => None,
        };
        match message {
            Some(m) => {
                let detail = format!("{id} by an admin");
                record_event(tx, m, t, REMOVED, "", &detail).await?;
                report.done += 1;
                messages.push(m);
            }
            None => report.skipped += 1,
        }
    }
    for dsn in dsns {
        ingest::insert(tx, dsn).await?;
    }
    for folder in folders_changed {
        next_modseq(tx, folder).await?;
    }
    messages.sort_unstable();
    messages.dedup();
    release(tx, &messages).await?;
    Ok(report)
}
