//! `find` on PostgreSQL: one SELECT per place (queues, mailboxes, quarantine) built
//! from the filters and joined with UNION ALL, as in the embedded store
//! (embedded/find.rs, whose checks and meanings it shares). The text filters are
//! answered by `pg_trgm` GIN indexes, which serve `ILIKE '%text%'` and regular
//! expressions alike for three characters or more; globs (`--from`, `--attachment`)
//! become anchored, case-insensitive regular expressions for that reason (the
//! signature rules' conversion, which PostgreSQL reads as Rust's regex crate does).

use super::messages::summary;
use super::{pg, PostgresStore};
use crate::embedded::find::{
    auth_terms, checked_body, checked_regex, checked_sha256, like_anywhere,
};
use crate::model::{Filters, FindResult, Place, SortKey};
use crate::Result;
use lazaret_scan::signatures::rules::glob_to_regex;
use tokio_postgres::types::ToSql;

type Arg = Box<dyn ToSql + Sync + Send>;

/// The statement's parameters, numbered across every place of the union.
#[derive(Default)]
struct Args(Vec<Arg>);

impl Args {
    /// Adds a parameter; returns its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }
}

/// Conditions on the message row `m`, the same in every place.
fn message_conditions(f: &Filters, args: &mut Args, conds: &mut Vec<String>) -> Result<()> {
    if let Some(s) = f.subject.as_deref() {
        // The trigram index serves three characters or more; shorter ones scan.
        conds.push(format!(
            "m.subject ILIKE {} ESCAPE '\\'",
            args.bind(like_anywhere(s))
        ));
    }
    if let Some(re) = f.subject_re.as_deref() {
        checked_regex(re)?;
        conds.push(format!("m.subject ~* {}", args.bind(re.to_string())));
    }
    if let Some(b) = f.body.as_deref() {
        let needle = like_anywhere(checked_body(b)?);
        conds.push(format!(
            "m.id IN (SELECT message FROM message_text WHERE body ILIKE {} ESCAPE '\\')",
            args.bind(needle)
        ));
    }
    if let Some(from) = f.from.as_deref() {
        // Both senders, the envelope's and the From: header's, as in the embedded
        // store; an exact address by its index, a pattern by the trigram ones.
        let from = from.trim().to_lowercase();
        if from.contains(['*', '?', '[']) || from.starts_with('@') {
            let glob = match from.starts_with('@') {
                true => format!("*{from}"),
                false => from,
            };
            let p = args.bind(glob_to_regex(&glob));
            conds.push(format!("(m.env_from ~ {p} OR m.hdr_from ~ {p})"));
        } else {
            let p = args.bind(from);
            conds.push(format!("(lower(m.env_from)={p} OR lower(m.hdr_from)={p})"));
        }
    }
    if let Some(glob) = f.attachment.as_deref() {
        conds.push(format!(
            "m.id IN (SELECT message FROM parts WHERE filename ~ {})",
            args.bind(glob_to_regex(&glob.to_lowercase()))
        ));
    }
    if let Some(hash) = f.sha256.as_deref() {
        // The message's own digest or any decoded part's or archive member's.
        let p = args.bind(checked_sha256(hash)?);
        conds.push(format!(
            "(m.sha256={p} OR m.id IN (SELECT message FROM parts WHERE sha256={p}))"
        ));
    }
    if let Some(sig) = f.signature.as_deref() {
        conds.push(format!("m.verdict={}", args.bind(sig.to_string())));
    }
    if let Some(auth) = f.auth.as_deref() {
        for term in auth_terms(auth)? {
            conds.push(format!(
                "strpos(' ' || m.auth || ' ', {}) > 0",
                args.bind(format!(" {term} "))
            ));
        }
    }
    if let Some(t) = f.received_before {
        conds.push(format!("m.received<={}", args.bind(t)));
    }
    if let Some(t) = f.received_after {
        conds.push(format!("m.received>={}", args.bind(t)));
    }
    if let Some(n) = f.larger_than {
        conds.push(format!("m.size>{}", args.bind(n as i64)));
    }
    if let Some(cluster) = f.cluster {
        conds.push(super::clusters::member_of(&args.bind(cluster)));
    }
    Ok(())
}

/// The columns every place gives, in `summary`'s order, then the message's row id
/// (for the arrival order).
const QUEUE_COLUMNS: [&str; 18] = [
    "'q' || q.id",
    "'queue:' || q.queue",
    "m.env_from",
    "(SELECT string_agg(address, ',') FROM queue_rcpts r WHERE r.item=q.id)",
    "m.subject",
    "COALESCE(m.date, m.received)",
    "m.size",
    "q.state",
    "m.sha256",
    "NULL::bigint",
    "m.uid",
    "q.attempts::bigint",
    "q.next_attempt",
    "q.last_error",
    "NULL::text",
    "NULL::text",
    "m.verdict",
    "m.id",
];
const MAILBOX_COLUMNS: [&str; 18] = [
    "'m' || e.id",
    "'mailbox:' || b.\"user\" || '/' || b.name",
    "m.hdr_from",
    "m.hdr_to",
    "m.subject",
    "COALESCE(m.date, m.received)",
    "m.size",
    "'delivered'::text",
    "m.sha256",
    "e.uid",
    "m.uid",
    "NULL::bigint",
    "NULL::bigint",
    "NULL::text",
    "NULL::text",
    "NULL::text",
    "m.verdict",
    "m.id",
];
const QUARANTINE_COLUMNS: [&str; 18] = [
    "'x' || z.id",
    "'quarantine'::text",
    "m.env_from",
    "z.recipients",
    "m.subject",
    "COALESCE(m.date, m.received)",
    "m.size",
    "'quarantined'::text",
    "m.sha256",
    "NULL::bigint",
    "m.uid",
    "NULL::bigint",
    "NULL::bigint",
    "NULL::text",
    "z.origin_location",
    "z.reason",
    "m.verdict",
    "m.id",
];

/// The SELECT for one place, or None when the filters rule the place out.
fn place_query(
    place: Place,
    f: &Filters,
    ids_only: bool,
    args: &mut Args,
) -> Result<Option<String>> {
    let mut conds: Vec<String> = Vec::new();
    let state = f.state.as_deref().filter(|s| *s != "all");
    let (columns, from, alias) = match place {
        Place::Queues => {
            if f.mailbox.is_some() || f.quarantined_before.is_some() {
                return Ok(None);
            }
            if let Some(q) = f.queue.as_deref() {
                conds.push(format!("q.queue={}", args.bind(q.to_string())));
            }
            if let Some(s) = state {
                conds.push(format!("q.state={}", args.bind(s.to_string())));
            }
            if let Some(to) = f.to.as_deref() {
                let to = to.trim().to_lowercase();
                let (exact, anywhere) = (args.bind(to.clone()), args.bind(like_anywhere(&to)));
                conds.push(format!(
                    "(q.id IN (SELECT item FROM queue_rcpts WHERE address={exact})
                      OR lower(m.hdr_to || ',' || m.hdr_cc) LIKE {anywhere} ESCAPE '\\')"
                ));
            }
            (
                &QUEUE_COLUMNS,
                "queue_items q JOIN messages m ON m.id=q.message",
                "q",
            )
        }
        Place::Mailboxes => {
            if f.queue.is_some() || state.is_some() || f.quarantined_before.is_some() {
                return Ok(None);
            }
            if let Some(mb) = f.mailbox.as_deref() {
                match mb.split_once('/') {
                    Some((user, folder)) => {
                        let user = args.bind(user.to_lowercase());
                        let folder = args.bind(folder.to_string());
                        conds.push(format!("b.\"user\"={user} AND b.name={folder}"));
                    }
                    None => conds.push(format!("b.\"user\"={}", args.bind(mb.to_lowercase()))),
                }
            }
            if let Some(to) = f.to.as_deref() {
                let to = to.trim().to_lowercase();
                let (exact, anywhere) = (args.bind(to.clone()), args.bind(like_anywhere(&to)));
                conds.push(format!(
                    "(b.\"user\"={exact} OR lower(m.hdr_to || ',' || m.hdr_cc) LIKE {anywhere} ESCAPE '\\')"
                ));
            }
            (
                &MAILBOX_COLUMNS,
                "mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox JOIN messages m ON m.id=e.message",
                "e",
            )
        }
        Place::Quarantine => {
            if state.is_some() {
                return Ok(None);
            }
            if let Some(q) = f.queue.as_deref() {
                conds.push(format!(
                    "z.origin_location={}",
                    args.bind(format!("queue:{q}"))
                ));
            }
            if let Some(mb) = f.mailbox.as_deref() {
                // Where it was taken from: that folder, or any folder of that user.
                let cond = match mb.contains('/') {
                    true => format!("z.origin_location={}", args.bind(format!("mailbox:{mb}"))),
                    false => {
                        let p = args.bind(format!("mailbox:{}/", mb.to_lowercase()));
                        format!("left(z.origin_location, length({p}))={p}")
                    }
                };
                conds.push(cond);
            }
            if let Some(t) = f.quarantined_before {
                conds.push(format!("z.at<={}", args.bind(t)));
            }
            if let Some(to) = f.to.as_deref() {
                let p = args.bind(like_anywhere(&to.trim().to_lowercase()));
                conds.push(format!(
                    "(z.recipients LIKE {p} ESCAPE '\\' OR lower(m.hdr_to || ',' || m.hdr_cc) LIKE {p} ESCAPE '\\')"
                ));
            }
            (
                &QUARANTINE_COLUMNS,
                "quarantine z JOIN messages m ON m.id=z.message",
                "z",
            )
        }
    };
    if let Some(ids) = &f.ids {
        let kind = columns[0].chars().nth(1).unwrap_or('x');
        let numbers: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.strip_prefix(kind)?.parse().ok())
            .collect();
        conds.push(format!("{alias}.id = ANY({})", args.bind(numbers)));
    }
    message_conditions(f, args, &mut conds)?;
    let select = match ids_only {
        true => columns[0].to_string(),
        false => columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} AS c{}", i + 1))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut query = format!("SELECT {select} FROM {from}");
    if !conds.is_empty() {
        query.push_str(" WHERE ");
        query.push_str(&conds.join(" AND "));
    }
    Ok(Some(query))
}

fn union(places: &[Place], f: &Filters, ids_only: bool) -> Result<Option<(String, Args)>> {
    let mut args = Args::default();
    let mut parts = Vec::new();
    for place in places {
        if let Some(sql) = place_query(*place, f, ids_only, &mut args)? {
            parts.push(sql);
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some((parts.join(" UNION ALL "), args)))
}

impl PostgresStore {
    pub fn find(
        &self,
        places: &[Place],
        filters: &Filters,
        sort: Option<SortKey>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<FindResult> {
        let Some((sql, args)) = union(places, filters, false)? else {
            return Ok(FindResult {
                messages: Vec::new(),
                more: false,
            });
        };
        // Ids sort as text in byte order ("C"), as SQLite sorts them; NOCASE there is
        // lower() here.
        let order = match sort.unwrap_or(SortKey::Date) {
            SortKey::Date => "u.c6, u.c1 COLLATE \"C\"",
            SortKey::Arrival => "u.c18 DESC, u.c1 COLLATE \"C\"",
            SortKey::Subject => "lower(u.c5) COLLATE \"C\", u.c6",
            SortKey::Size => "u.c7 DESC, u.c6",
            SortKey::From => "lower(u.c3) COLLATE \"C\", u.c6",
        };
        let mut query = format!("SELECT * FROM ({sql}) u ORDER BY {order}");
        // One row beyond the page tells whether there is more.
        if let Some(n) = limit {
            query.push_str(&format!(
                " LIMIT {}",
                n.saturating_add(1).min(i64::MAX as usize)
            ));
        }
        if offset > 0 {
            query.push_str(&format!(" OFFSET {}", offset.min(i64::MAX as usize)));
        }
        let mut messages = self.with_client(move |c| async move {
            let params: Vec<&(dyn ToSql + Sync)> =
                args.0.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
            let rows = c.query(query.as_str(), &params).await.map_err(pg)?;
            Ok(rows.iter().map(summary).collect::<Vec<_>>())
        })?;
        let more = limit.is_some_and(|n| messages.len() > n);
        if let Some(n) = limit {
            messages.truncate(n);
        }
        Ok(FindResult { messages, more })
    }

    pub fn find_ids(&self, places: &[Place], filters: &Filters) -> Result<Vec<String>> {
        let Some((sql, args)) = union(places, filters, true)? else {
            return Ok(Vec::new());
        };
        self.with_client(move |c| async move {
            let params: Vec<&(dyn ToSql + Sync)> =
                args.0.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
            let rows = c.query(sql.as_str(), &params).await.map_err(pg)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}
