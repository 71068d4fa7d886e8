//! Ingest: the body goes to the bucket with a create-only PUT, and only once the
//! service has it do the rows commit (message, parts, the first event, an `inbound`
//! queue item with its recipients). A failed commit deletes the object again; a
//! crash between the two leaves an object no row names, which the orphan sweep
//! removes after an hour. The commit notifies every node that `inbound` has work.
//! A forgery `[auth_checks]` caught goes to quarantine in the same commit.

use super::cached::Cached;
use super::{add_recipients, pg, record_event, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::events::accepted_row;
use crate::embedded::ingest::Prepared;
use crate::MessageMetadata;
use crate::{now, Accepted, Incoming, Result, AUTH_CHECKS_ACTOR};
use lazaret_core::state::QUEUE_INBOUND;

impl PostgresStore {
    pub fn ingest(&self, incoming: Incoming) -> Result<Accepted> {
        let objects = self.objects()?;
        let mut prepared = Prepared::new(incoming)?;
        let accepted = Accepted {
            id: prepared.incoming.id.clone(),
            size: prepared.size,
        };
        let data = std::mem::take(&mut prepared.incoming.data);
        objects.put(&accepted.id, data)?;
        let committed = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let item = insert(&tx, &prepared).await?;
            // A forgery the authentication checks caught: quarantined in the commit
            // that stores it, so no recipient ever sees it.
            let caught = prepared.incoming.auth.as_ref();
            if let Some(reason) = caught.and_then(|a| a.quarantine.as_deref()) {
                let ids = [format!("q{item}")];
                super::quarantine::quarantine(&tx, &ids, AUTH_CHECKS_ACTOR, reason).await?;
            }
            tx.execute_cached(
                "SELECT pg_notify($1, $2)",
                &[&QUEUE_CHANNEL, &QUEUE_INBOUND],
            )
            .await?;
            super::commit(tx).await
        });
        if let Err(e) = committed {
            objects.delete(vec![accepted.id.clone()]);
            return Err(e);
        }
        Ok(accepted)
    }
}

/// Inserts the message, its parts, its first event and a queue item in `inbound` for
/// its recipients; returns the queue item's id.
pub(super) async fn insert(tx: &deadpool_postgres::Transaction<'_>, p: &Prepared) -> Result<i64> {
    let received = now();
    let message = insert_message(tx, p, received).await?;
    let item: i64 = tx
        .query_one_cached(
            "INSERT INTO queue_items(message, queue, state, next_attempt, created)
             VALUES($1, $2, 'ready', $3, $3) RETURNING id",
            &[&message, &QUEUE_INBOUND, &received],
        )
        .await?
        .get(0);
    let rcpts: Vec<String> = p
        .incoming
        .rcpt_to
        .iter()
        .map(|r| r.to_ascii_lowercase())
        .collect();
    add_recipients(tx, item, &rcpts).await?;
    Ok(item)
}

/// Inserts the message row, its parts, its text for `find --body` and its first
/// event; returns the row's id.
pub(super) async fn insert_message(
    tx: &deadpool_postgres::Transaction<'_>,
    p: &Prepared,
    received: i64,
) -> Result<i64> {
    let (incoming, meta) = (&p.incoming, &p.meta);
    let scan = incoming.scan.as_ref();
    let message: i64 = tx
        .query_one_cached(
            "INSERT INTO messages(uid, sha256, md5, size, received, env_from, helo, peer,
                 hdr_from, hdr_to, hdr_cc, subject, date, message_id,
                 scan_version, scan_content, verdict, auth)
             VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)
             RETURNING id",
            &[
                &incoming.id,
                &p.digests.sha256,
                &p.digests.md5,
                &(p.size as i64),
                &received,
                &incoming.mail_from,
                &incoming.helo,
                &incoming.peer,
                &meta.from,
                &meta.to,
                &meta.cc,
                &meta.subject,
                &meta.date,
                &meta.message_id,
                &scan.map(|s| &s.version),
                &scan.map(|s| &s.content_version),
                &scan.and_then(|s| s.verdict.as_ref()),
                &incoming.auth.as_ref().map(|a| &a.results),
            ],
        )
        .await?
        .get(0);
    insert_parts(tx, message, meta).await?;
    insert_text(tx, message, meta).await?;
    super::clusters::record(tx, message, &p.fingerprint).await?;
    let (kind, who, detail) = accepted_row(incoming, meta);
    record_event(tx, message, received, kind, &who, &detail).await?;
    Ok(message)
}

/// The message's parts and archive members, for `find --attachment` and hash
/// signatures: one statement for all.
pub(super) async fn insert_parts(
    tx: &deadpool_postgres::Transaction<'_>,
    message: i64,
    meta: &MessageMetadata,
) -> Result<()> {
    if !meta.parts.is_empty() {
        let parts = &meta.parts;
        let numbers: Vec<i32> = (0..parts.len() as i32).collect();
        let types: Vec<&str> = parts.iter().map(|x| x.content_type.as_str()).collect();
        let names: Vec<Option<&str>> = parts.iter().map(|x| x.filename.as_deref()).collect();
        let sizes: Vec<i64> = parts.iter().map(|x| x.size as i64).collect();
        let sha256: Vec<&str> = parts.iter().map(|x| x.sha256.as_str()).collect();
        let inside: Vec<Option<i32>> = parts.iter().map(|x| x.inside.map(|i| i as i32)).collect();
        let md5: Vec<&str> = parts.iter().map(|x| x.md5.as_str()).collect();
        // One statement for all parts: an archive can list hundreds of members.
        tx.execute_cached(
            "INSERT INTO parts(message, part, content_type, filename, size, sha256, inside, md5)
             SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::bigint[],
                                      $6::text[], $7::int[], $8::text[])",
            &[
                &message, &numbers, &types, &names, &sizes, &sha256, &inside, &md5,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The message's text, for `find --body`.
pub(super) async fn insert_text(
    tx: &deadpool_postgres::Transaction<'_>,
    message: i64,
    meta: &MessageMetadata,
) -> Result<()> {
    if !meta.text.is_empty() {
        tx.execute_cached(
            "INSERT INTO message_text(message, body) VALUES($1, $2)",
            &[&message, &meta.text],
        )
        .await?;
    }
    Ok(())
}
