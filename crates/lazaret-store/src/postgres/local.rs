//! Local delivery: due items of the `local` queue into their recipients' INBOXes.
//!
//! Each batch is one transaction. Items are taken with `FOR UPDATE SKIP LOCKED`, so
//! nodes delivering at the same time take different items, and one whose node dies
//! mid-batch is unlocked by the rollback; no lease is needed. The INBOX rows of the
//! batch are locked (in user order) up front, which serialises nodes that deliver to
//! the same INBOX: UIDs stay dense and ascending. Entries, counters and events are
//! written set-wise at the end of the batch. The commit notifies `lazaret_mailbox`
//! with each user who got mail, for IMAP sessions on every node.

use super::cached::Cached;
use super::{pg, record_events, Event, PostgresStore, MAILBOX_CHANNEL};
use crate::embedded::events::{DEFERRED, DELIVERED};
use crate::embedded::queues::no_such_user;
use crate::{now, DeliveryReport, Result};
use deadpool_postgres::Transaction;
use lazaret_core::state::QUEUE_LOCAL;
use std::collections::HashMap;

impl PostgresStore {
    pub fn deliver_local(&self, limit: usize, retry_delay_secs: i64) -> Result<DeliveryReport> {
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let t = now();
            let due = tx
                .query_cached(
                    "SELECT q.id, q.message, q.attempts,
                            ARRAY(SELECT address FROM queue_rcpts r WHERE r.item=q.id
                                  ORDER BY address)
                     FROM queue_items q
                     WHERE q.queue=$1 AND q.state IN ('ready', 'retry') AND q.next_attempt<=$2
                       AND NOT EXISTS (SELECT 1 FROM queues WHERE name=$1 AND state='frozen')
                     ORDER BY q.next_attempt, q.id
                     LIMIT $3
                     FOR UPDATE OF q SKIP LOCKED",
                    &[&QUEUE_LOCAL, &t, &(limit as i64)],
                )
                .await?;
            let users = due.iter().flat_map(|row| row.get::<_, Vec<String>>(3));
            let mut inboxes = Inboxes::lock(&tx, users.collect()).await?;
            let mut report = DeliveryReport::default();
            let mut events = Vec::new();
            let mut delivered = Vec::new();
            for row in due {
                let (item, message, attempts): (i64, i64, i32) =
                    (row.get(0), row.get(1), row.get(2));
                let rcpts: Vec<String> = row.get(3);
                let missing = inboxes.file(message, &rcpts, &mut events, &mut report.users);
                if missing.is_empty() {
                    delivered.push(item);
                    report.delivered += 1;
                    continue;
                }
                // The user vanished after RCPT was accepted: held for the admin rather
                // than lost, and tried again in case the account comes back.
                let done: Vec<&String> = rcpts.iter().filter(|r| !missing.contains(r)).collect();
                tx.execute_cached(
                    "DELETE FROM queue_rcpts WHERE item=$1 AND address=ANY($2)",
                    &[&item, &done],
                )
                .await?;
                let error = no_such_user(&missing);
                tx.execute_cached(
                    "UPDATE queue_items SET state='retry', attempts=$2, next_attempt=$3,
                         last_error=$4 WHERE id=$1",
                    &[&item, &(attempts + 1), &(t + retry_delay_secs), &error],
                )
                .await?;
                events.push(Event::new(message, DEFERRED, missing.join(", "), error));
                report.deferred += 1;
            }
            inboxes.write(&tx, t).await?;
            record_events(&tx, t, &events).await?;
            // Their recipients go with them (ON DELETE CASCADE).
            tx.execute_cached("DELETE FROM queue_items WHERE id=ANY($1)", &[&delivered])
                .await?;
            notify_users(&tx, &report.users).await?;
            super::commit(tx).await?;
            Ok(report)
        })?;
        if !report.users.is_empty() {
            self.folders_changed();
        }
        Ok(report)
    }
}

/// The INBOXes a transaction delivers to, their rows locked, with the UIDs and
/// mod-sequences it hands out kept here and written once at the end: a batch of
/// deliveries costs a fixed number of statements, not three per recipient.
pub(super) struct Inboxes {
    /// By user: the folder's id, next UID, highest mod-sequence, and whether
    /// CONDSTORE is on (then each new entry takes a new mod-sequence).
    boxes: HashMap<String, Inbox>,
    /// New entries: folder, UID, message, mod-sequence.
    entries: Vec<(i64, i64, i64, i64)>,
}

struct Inbox {
    id: i64,
    uidnext: i64,
    highestmodseq: i64,
    modseq_on: bool,
    changed: bool,
}

impl Inboxes {
    /// Locks the INBOX rows of these users for the transaction, in one order: two
    /// nodes delivering to the same users then wait for each other instead of
    /// deadlocking, and UIDs stay dense and ascending.
    pub(super) async fn lock(tx: &Transaction<'_>, mut users: Vec<String>) -> Result<Self> {
        users.sort();
        users.dedup();
        let boxes = tx
            .query_cached(
                "SELECT \"user\", id, uidnext, highestmodseq, modseq_on FROM mailboxes
                 WHERE \"user\"=ANY($1) AND name='INBOX' ORDER BY \"user\" FOR UPDATE",
                &[&users],
            )
            .await?
            .iter()
            .map(|r| {
                let inbox = Inbox {
                    id: r.get(1),
                    uidnext: r.get(2),
                    highestmodseq: r.get(3),
                    modseq_on: r.get(4),
                    changed: false,
                };
                (r.get(0), inbox)
            })
            .collect();
        Ok(Inboxes {
            boxes,
            entries: Vec::new(),
        })
    }

    /// Files `message` in the INBOX of each recipient (locked by `lock`); returns
    /// the recipients who have none (the account went away after RCPT was accepted).
    /// `events` gains a delivery each and `users` those served.
    pub(super) fn file(
        &mut self,
        message: i64,
        rcpts: &[String],
        events: &mut Vec<Event>,
        users: &mut Vec<String>,
    ) -> Vec<String> {
        let mut missing = Vec::new();
        for rcpt in rcpts {
            let Some(inbox) = self.boxes.get_mut(rcpt) else {
                missing.push(rcpt.clone());
                continue;
            };
            let uid = inbox.uidnext;
            inbox.uidnext += 1;
            if inbox.modseq_on {
                inbox.highestmodseq += 1;
            }
            inbox.changed = true;
            self.entries
                .push((inbox.id, uid, message, inbox.highestmodseq));
            events.push(Event::new(message, DELIVERED, rcpt.clone(), "INBOX"));
            if !users.contains(rcpt) {
                users.push(rcpt.clone());
            }
        }
        missing
    }

    /// Writes the entries filed and the folders' new UID and mod-sequence counters.
    pub(super) async fn write(self, tx: &Transaction<'_>, t: i64) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let (mut folders, mut uids, mut messages, mut modseqs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (folder, uid, message, modseq) in &self.entries {
            folders.push(*folder);
            uids.push(*uid);
            messages.push(*message);
            modseqs.push(*modseq);
        }
        tx.execute_cached(
            "INSERT INTO mailbox_entries(mailbox, uid, message, internal_date, modseq)
             SELECT u.f, u.uid, u.m, $4, u.ms
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $5::bigint[])
                 WITH ORDINALITY AS u(f, uid, m, ms, n)
             ORDER BY u.n",
            &[&folders, &uids, &messages, &t, &modseqs],
        )
        .await?;
        let changed: Vec<&Inbox> = self.boxes.values().filter(|b| b.changed).collect();
        let ids: Vec<i64> = changed.iter().map(|b| b.id).collect();
        let uidnexts: Vec<i64> = changed.iter().map(|b| b.uidnext).collect();
        let highest: Vec<i64> = changed.iter().map(|b| b.highestmodseq).collect();
        tx.execute_cached(
            "UPDATE mailboxes b SET uidnext=u.uidnext, highestmodseq=u.highest
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, uidnext, highest)
             WHERE b.id=u.id",
            &[&ids, &uidnexts, &highest],
        )
        .await?;
        Ok(())
    }
}

/// Tells every node's IMAP sessions of these users that they have new mail (sent with
/// the commit).
pub(super) async fn notify_users(tx: &Transaction<'_>, users: &[String]) -> Result<()> {
    for user in users {
        tx.execute_cached("SELECT pg_notify($1, $2)", &[&MAILBOX_CHANNEL, user])
            .await?;
    }
    Ok(())
}
