//! Local delivery: due items of the `local` queue into their recipients' INBOXes.
//!
//! Each batch is one transaction. Items are taken with `FOR UPDATE SKIP LOCKED`, so
//! nodes delivering at the same time take different items, and one whose node dies
//! mid-batch is unlocked by the rollback; no lease is needed. A folder's next UID is
//! taken by updating its row, locked (in user order) for the batch, which also
//! serialises nodes that deliver to the same INBOX: UIDs stay dense and ascending. The commit notifies `lazaret_mailbox` with
//! each user who got mail, for IMAP sessions on every node.

use super::{pg, record_event, PostgresStore, MAILBOX_CHANNEL};
use crate::embedded::events::{DEFERRED, DELIVERED};
use crate::embedded::queues::no_such_user;
use crate::{now, DeliveryReport, Result};
use deadpool_postgres::Transaction;
use lazaret_core::state::QUEUE_LOCAL;

impl PostgresStore {
    pub fn deliver_local(&self, limit: usize, retry_delay_secs: i64) -> Result<DeliveryReport> {
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let t = now();
            let due = tx
                .query(
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
                .await
                .map_err(pg)?;
            // Every INBOX this batch writes to, locked up front in one order: two
            // nodes delivering to the same users then wait for each other instead of
            // deadlocking.
            let users = due.iter().flat_map(|row| row.get::<_, Vec<String>>(3));
            lock_inboxes(&tx, users.collect()).await?;
            let mut report = DeliveryReport::default();
            for row in due {
                let (item, message, attempts): (i64, i64, i32) =
                    (row.get(0), row.get(1), row.get(2));
                let rcpts: Vec<String> = row.get(3);
                let missing = into_inboxes(&tx, message, &rcpts, t, &mut report.users).await?;
                let done: Vec<&String> = rcpts.iter().filter(|r| !missing.contains(r)).collect();
                tx.execute(
                    "DELETE FROM queue_rcpts WHERE item=$1 AND address=ANY($2)",
                    &[&item, &done],
                )
                .await
                .map_err(pg)?;
                if missing.is_empty() {
                    tx.execute("DELETE FROM queue_items WHERE id=$1", &[&item])
                        .await
                        .map_err(pg)?;
                    report.delivered += 1;
                } else {
                    // The user vanished after RCPT was accepted: held for the admin
                    // rather than lost, and tried again in case the account comes back.
                    let error = no_such_user(&missing);
                    record_event(&tx, message, t, DEFERRED, &missing.join(", "), &error).await?;
                    tx.execute(
                        "UPDATE queue_items SET state='retry', attempts=$2, next_attempt=$3,
                             last_error=$4 WHERE id=$1",
                        &[&item, &(attempts + 1), &(t + retry_delay_secs), &error],
                    )
                    .await
                    .map_err(pg)?;
                    report.deferred += 1;
                }
            }
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

/// Locks the INBOX rows of these users for the transaction, in one order: two nodes
/// delivering to the same users then wait for each other instead of deadlocking.
pub(super) async fn lock_inboxes(tx: &Transaction<'_>, mut users: Vec<String>) -> Result<()> {
    users.sort();
    users.dedup();
    tx.execute(
        "SELECT 1 FROM mailboxes WHERE \"user\"=ANY($1) AND name='INBOX'
         ORDER BY \"user\" FOR UPDATE",
        &[&users],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Files `message` in the INBOX of each recipient (UIDs from the folder's row);
/// returns the recipients who have no INBOX (the account went away after RCPT was
/// accepted). `users` gains those served.
pub(super) async fn into_inboxes(
    tx: &Transaction<'_>,
    message: i64,
    rcpts: &[String],
    t: i64,
    users: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for rcpt in rcpts {
        let inbox = tx
            .query_opt(
                "UPDATE mailboxes SET uidnext=uidnext+1,
                     highestmodseq=highestmodseq+(CASE WHEN modseq_on THEN 1 ELSE 0 END)
                 WHERE \"user\"=$1 AND name='INBOX'
                 RETURNING id, uidnext-1, highestmodseq",
                &[rcpt],
            )
            .await
            .map_err(pg)?;
        let Some(inbox) = inbox else {
            missing.push(rcpt.clone());
            continue;
        };
        let (mailbox, uid, modseq): (i64, i64, i64) = (inbox.get(0), inbox.get(1), inbox.get(2));
        tx.execute(
            "INSERT INTO mailbox_entries(mailbox, uid, message, internal_date, modseq)
             VALUES($1, $2, $3, $4, $5)",
            &[&mailbox, &uid, &message, &t, &modseq],
        )
        .await
        .map_err(pg)?;
        record_event(tx, message, t, DELIVERED, rcpt, "INBOX").await?;
        if !users.contains(rcpt) {
            users.push(rcpt.clone());
        }
    }
    Ok(missing)
}

/// Tells every node's IMAP sessions of these users that they have new mail (sent with
/// the commit).
pub(super) async fn notify_users(tx: &Transaction<'_>, users: &[String]) -> Result<()> {
    for user in users {
        tx.execute("SELECT pg_notify($1, $2)", &[&MAILBOX_CHANNEL, user])
            .await
            .map_err(pg)?;
    }
    Ok(())
}
