//! Ingest: the body goes to the bucket with a create-only PUT, and only once the
//! service has it do the rows commit (message, parts, the first event, an `inbound`
//! queue item with its recipients). A failed commit deletes the object again; a
//! crash between the two leaves an object no row names, which the orphan sweep
//! removes after an hour. The commit notifies every node that `inbound` has work.
//! A forgery `[auth_checks]` caught goes to quarantine in the same commit.

use super::cached::Cached;
use super::{add_recipients, pg, record_dated_events, Event, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::clusters::Fingerprint;
use crate::embedded::events::accepted_row;
use crate::embedded::ingest::Prepared;
use crate::MessageMetadata;
use crate::{now, Accepted, Incoming, Result, StoreError, AUTH_CHECKS_ACTOR};
use lazaret_core::state::QUEUE_INBOUND;
use std::collections::HashMap;

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

/// Inserts one message's rows (`insert_messages`); returns its row id.
pub(super) async fn insert_message(
    tx: &deadpool_postgres::Transaction<'_>,
    p: &Prepared,
    received: i64,
) -> Result<i64> {
    let ids = insert_messages(tx, &[(p, received)]).await?;
    Ok(ids[0])
}

/// Inserts the rows of new messages (each with when it arrived): the message, its
/// parts, its text for `find --body`, its fingerprint and its first event. One
/// statement per table for any number of messages: an import of 500 costs five
/// round trips, not 2,500. Returns the row ids, in the order given.
pub(super) async fn insert_messages(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: &[(&Prepared, i64)],
) -> Result<Vec<i64>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: &dyn Fn(&Prepared) -> Option<&str>| -> Vec<Option<&str>> {
        messages.iter().map(|(p, _)| f(p)).collect()
    };
    let uids = column(&|p| Some(&p.incoming.id));
    let sha256 = column(&|p| Some(&p.digests.sha256));
    let md5 = column(&|p| Some(&p.digests.md5));
    let env_from = column(&|p| Some(&p.incoming.mail_from));
    let helo = column(&|p| Some(&p.incoming.helo));
    let peer = column(&|p| Some(&p.incoming.peer));
    let hdr_from = column(&|p| Some(&p.meta.from));
    let hdr_to = column(&|p| Some(&p.meta.to));
    let hdr_cc = column(&|p| Some(&p.meta.cc));
    let subject = column(&|p| Some(&p.meta.subject));
    let message_id = column(&|p| Some(&p.meta.message_id));
    let scan_version = column(&|p| p.incoming.scan.as_ref().map(|s| s.version.as_str()));
    let scan_content = column(&|p| {
        let scan = p.incoming.scan.as_ref();
        scan.map(|s| s.content_version.as_str())
    });
    let verdict = column(&|p| {
        let scan = p.incoming.scan.as_ref();
        scan.and_then(|s| s.verdict.as_deref())
    });
    let auth = column(&|p| p.incoming.auth.as_ref().map(|a| a.results.as_str()));
    let sizes: Vec<i64> = messages.iter().map(|(p, _)| p.size as i64).collect();
    let received: Vec<i64> = messages.iter().map(|(_, at)| *at).collect();
    let dates: Vec<Option<i64>> = messages.iter().map(|(p, _)| p.meta.date).collect();
    let rows = tx
        .query_cached(
            "INSERT INTO messages(uid, sha256, md5, size, received, env_from, helo, peer,
                 hdr_from, hdr_to, hdr_cc, subject, date, message_id,
                 scan_version, scan_content, verdict, auth)
             SELECT u.uid, u.sha256, u.md5, u.size, u.received, u.env_from, u.helo, u.peer,
                 u.hdr_from, u.hdr_to, u.hdr_cc, u.subject, u.date, u.message_id,
                 u.scan_version, u.scan_content, u.verdict, u.auth
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[],
                         $16::text[], $17::text[], $18::text[])
                 WITH ORDINALITY AS u(uid, sha256, md5, size, received, env_from, helo,
                     peer, hdr_from, hdr_to, hdr_cc, subject, date, message_id,
                     scan_version, scan_content, verdict, auth, n)
             ORDER BY u.n
             RETURNING id, uid",
            &[
                &uids,
                &sha256,
                &md5,
                &sizes,
                &received,
                &env_from,
                &helo,
                &peer,
                &hdr_from,
                &hdr_to,
                &hdr_cc,
                &subject,
                &dates,
                &message_id,
                &scan_version,
                &scan_content,
                &verdict,
                &auth,
            ],
        )
        .await?;
    // RETURNING promises no order: each id is matched to its message by store id.
    let by_uid: HashMap<String, i64> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    let ids: Vec<i64> = messages
        .iter()
        .map(|(p, _)| by_uid.get(&p.incoming.id).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| StoreError::Postgres("a message row came back without its id".into()))?;
    let metas: Vec<(i64, &MessageMetadata)> = ids
        .iter()
        .zip(messages)
        .map(|(id, (p, _))| (*id, &p.meta))
        .collect();
    insert_parts(tx, &metas).await?;
    insert_text(tx, &metas).await?;
    let fingerprints: Vec<(i64, &Fingerprint)> = ids
        .iter()
        .zip(messages)
        .map(|(id, (p, _))| (*id, &p.fingerprint))
        .collect();
    super::clusters::record(tx, &fingerprints).await?;
    let events: Vec<Event> = ids
        .iter()
        .zip(messages)
        .map(|(id, (p, _))| {
            let (kind, who, detail) = accepted_row(&p.incoming, &p.meta);
            Event::new(*id, kind, who, detail)
        })
        .collect();
    record_dated_events(tx, &received, &events).await?;
    Ok(ids)
}

/// The messages' parts and archive members, for `find --attachment` and hash
/// signatures: one statement for all (an archive can list hundreds of members).
pub(super) async fn insert_parts(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: &[(i64, &MessageMetadata)],
) -> Result<()> {
    let all = || {
        messages
            .iter()
            .flat_map(|(id, meta)| meta.parts.iter().enumerate().map(move |(n, x)| (*id, n, x)))
    };
    if all().next().is_none() {
        return Ok(());
    }
    let ids: Vec<i64> = all().map(|(id, ..)| id).collect();
    let numbers: Vec<i32> = all().map(|(_, n, _)| n as i32).collect();
    let types: Vec<&str> = all().map(|(.., x)| x.content_type.as_str()).collect();
    let names: Vec<Option<&str>> = all().map(|(.., x)| x.filename.as_deref()).collect();
    let sizes: Vec<i64> = all().map(|(.., x)| x.size as i64).collect();
    let sha256: Vec<&str> = all().map(|(.., x)| x.sha256.as_str()).collect();
    let inside: Vec<Option<i32>> = all().map(|(.., x)| x.inside.map(|i| i as i32)).collect();
    let md5: Vec<&str> = all().map(|(.., x)| x.md5.as_str()).collect();
    tx.execute_cached(
        "INSERT INTO parts(message, part, content_type, filename, size, sha256, inside, md5)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[],
                              $6::text[], $7::int[], $8::text[])",
        &[
            &ids, &numbers, &types, &names, &sizes, &sha256, &inside, &md5,
        ],
    )
    .await?;
    Ok(())
}

/// The messages' text, for `find --body`: one statement for all.
pub(super) async fn insert_text(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: &[(i64, &MessageMetadata)],
) -> Result<()> {
    let with_text = || messages.iter().filter(|(_, meta)| !meta.text.is_empty());
    if with_text().next().is_none() {
        return Ok(());
    }
    let ids: Vec<i64> = with_text().map(|(id, _)| *id).collect();
    let bodies: Vec<&str> = with_text().map(|(_, meta)| meta.text.as_str()).collect();
    tx.execute_cached(
        "INSERT INTO message_text(message, body) SELECT * FROM unnest($1::bigint[], $2::text[])",
        &[&ids, &bodies],
    )
    .await?;
    Ok(())
}
