//! The PostgreSQL store (`[store] backend = "postgres"`, docs/SCALE-OUT.md): several
//! Lazaret nodes share one database for every row and one bucket for every message
//! body (`objects.rs`).
//!
//! Every call of the `Store` trait is served (`store.rs`) but `backup_snapshot`,
//! which a shared database leaves to PostgreSQL's own tools.
//!
//! `tokio-postgres` is async while store calls block: requests run on the store's own
//! runtime (`bridge`) and each call waits for its answer.

mod accounts;
mod cached;
mod check;
mod clusters;
mod events;
mod find;
mod folders;
mod ingest;
mod jobs;
mod local;
mod messages;
mod migrations;
mod nodes;
mod orphans;
mod outbound;
mod quarantine;
mod queues;
mod reclaim;
mod reindex;
mod routing;
mod scanning;
mod settings;
mod store;
mod tls;
mod wakeups;

pub use migrations::SCHEMA_VERSION;
pub use nodes::HEARTBEAT_SECONDS;

use crate::bridge::Bridge;
use crate::objects::Objects;
use crate::{Result, StoreError};
use cached::Cached;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

/// How to reach the database, and who this node is.
#[derive(Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database` (or key=value pairs).
    pub url: String,
    /// This node's name in `nodes` and in queue leases (the host name by default).
    pub node: String,
    /// Connections this node keeps open at most.
    pub connections: usize,
    /// The CA that signed the database's TLS certificate (PEM), trusted instead of the
    /// system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresSettings {
    /// Without the password: settings end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &redacted(&self.url))
            .field("node", &self.node)
            .field("connections", &self.connections)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The URL with any password replaced by `***`.
pub fn redacted(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) if config.get_password().is_some() => {
            let user = config.get_user().unwrap_or("");
            let rest = url.rsplit_once('@').map_or("", |(_, r)| r);
            match url.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{user}:***@{rest}"),
                None => "(key=value settings, password hidden)".into(),
            }
        }
        _ => url.to_string(),
    }
}

/// Waiting longer than this for a connection is an error (SMTP answers 451), not a
/// hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel `NOTIFY` wakes nodes on when a queue has new work (the payload names
/// the queue). A hint only: nodes also look on a timer.
pub const QUEUE_CHANNEL: &str = "lazaret_queue";

/// The channel a commit that gave users new mail notifies, once per user (the
/// payload), so that their IMAP sessions on every node look.
pub const MAILBOX_CHANNEL: &str = "lazaret_mailbox";

pub struct PostgresStore {
    pool: Pool,
    /// For connections of its own (the listener), outside the pool.
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// What other nodes announce (`wakeups.rs`).
    wakeups: wakeups::Wakeups,
    bridge: Bridge,
    node: String,
    /// Where message bodies go: a bucket every node reaches (None: the store keeps
    /// no mail, only accounts and settings).
    objects: Option<Objects>,
    /// `[outbreak] hold_growth`, as `set_cluster_hold` last set it (None: no holds).
    hold: std::sync::Mutex<Option<crate::model::HoldRule>>,
    /// Outbound items this node's workers took with `outbound_due`: their leases are
    /// renewed until an outcome is recorded (`outbound.rs`).
    claims: outbound::Claims,
    /// Each committed request's time (`/metrics`, as the embedded store's writer
    /// counts its group commits).
    figures: std::sync::Arc<crate::embedded::WriterFigures>,
}

impl PostgresStore {
    /// Connects, brings the schema up to date and registers this node.
    pub fn open(settings: &PostgresSettings, objects: Option<Objects>) -> Result<PostgresStore> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "[store] url {:?} is not a PostgreSQL address: {e}",
                redacted(&settings.url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name(format!("lazaret {}", settings.node));
        let tls = tls::connector(settings.ca_file.as_deref())?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.connections.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            config,
            tls,
            wakeups: wakeups::Wakeups::new(),
            bridge: Bridge::new("PostgreSQL", "lazaret-pg")?,
            node: settings.node.clone(),
            objects,
            hold: std::sync::Mutex::new(None),
            claims: outbound::Claims::default(),
            figures: Default::default(),
        };
        let applied = store.with_client(|mut c| async move { migrations::apply(&mut c).await })?;
        if !applied.is_empty() {
            tracing::info!(
                "PostgreSQL schema migrated to version {SCHEMA_VERSION} (applied {applied:?})"
            );
        }
        store.register_node()?;
        store.renew_claims()?;
        store.listen()?;
        Ok(store)
    }

    /// Sets the rule that holds fast-growing clusters in `inbound` (None: no holds).
    pub fn set_cluster_hold(&self, rule: Option<crate::model::HoldRule>) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = rule;
    }

    fn hold_rule(&self) -> Option<crate::model::HoldRule> {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn objects(&self) -> Result<&Objects> {
        self.objects.as_ref().ok_or_else(|| {
            StoreError::Invalid(
                "the PostgreSQL store keeps message bodies in a bucket: set [store] blobs = \"s3\""
                    .into(),
            )
        })
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits for it.
    fn with_client<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (pool, figures) = (self.pool.clone(), self.figures.clone());
        self.bridge.run(async move {
            let client = pool.get().await.map_err(|e| {
                let e = tls::with_causes(&e);
                StoreError::Unavailable(format!("cannot reach PostgreSQL: {e}{}", tls::hint(&e)))
            })?;
            let started = std::time::Instant::now();
            let (result, request) = REQUEST
                .scope(RefCell::new(Request::default()), async move {
                    let result = f(client).await;
                    (result, REQUEST.with(|r| r.take()))
                })
                .await;
            if request.committed {
                let took = started.elapsed().as_micros() as u64;
                figures.record(took, 1);
            }
            // A request that succeeded has committed what it recorded (a failed one
            // rolled it back): only then do its events reach the log, as on one node.
            if result.is_ok() {
                for l in request.lines {
                    crate::embedded::events::emit_line(&l.id, &l.kind, &l.who, &l.detail);
                }
            }
            result
        })
    }
}

/// Notes the messages no queue item, folder entry or quarantine row holds any more,
/// for the reclaim.
pub(super) async fn release(
    tx: &deadpool_postgres::Transaction<'_>,
    candidates: &[i64],
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    tx.execute_cached(
        "INSERT INTO reclaim(message)
         SELECT DISTINCT m FROM unnest($1::bigint[]) AS m
         WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m)
           AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m)
           AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=m)
         ON CONFLICT DO NOTHING",
        &[&candidates],
    )
    .await?;
    Ok(())
}

/// Gives queue item `item` these recipients (lower-cased by the caller); a
/// recipient it already has is kept once.
pub(super) async fn add_recipients(
    tx: &deadpool_postgres::Transaction<'_>,
    item: i64,
    rcpts: &[String],
) -> Result<()> {
    tx.execute_cached(
        "INSERT INTO queue_rcpts(item, address) SELECT $1, unnest($2::text[])
         ON CONFLICT DO NOTHING",
        &[&item, &rcpts],
    )
    .await?;
    Ok(())
}

/// A transaction that sees one moment of the database, for figures that must add up.
pub(super) async fn read_only(
    c: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>> {
    c.build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(pg)
}

/// One row of the message event log (`trace`, `exposure`), in the caller's
/// transaction.
pub(super) async fn record_event(
    tx: &deadpool_postgres::Transaction<'_>,
    message: i64,
    at: i64,
    kind: &'static str,
    who: &str,
    detail: &str,
) -> Result<()> {
    record_events(tx, at, &[Event::new(message, kind, who, detail)]).await
}

/// One event for `record_events`: the message, what happened and whom it concerns.
pub(super) struct Event {
    pub message: i64,
    pub kind: &'static str,
    pub who: String,
    pub detail: String,
    /// The message's store id, kept in the row when the message's row is going or its
    /// id changing (`trace` must still find it by that id).
    pub uid: Option<String>,
}

impl Event {
    pub fn new(
        message: i64,
        kind: &'static str,
        who: impl Into<String>,
        detail: impl Into<String>,
    ) -> Event {
        Event {
            message,
            kind,
            who: who.into(),
            detail: detail.into(),
            uid: None,
        }
    }

    pub fn keeping(mut self, uid: impl Into<String>) -> Event {
        self.uid = Some(uid.into());
        self
    }
}

/// Rows of the message event log of one moment, in one statement and in the order
/// given: a batch of 500 costs one round trip, not 500. Their log lines wait for the
/// request's commit.
pub(super) async fn record_events(
    tx: &deadpool_postgres::Transaction<'_>,
    at: i64,
    events: &[Event],
) -> Result<()> {
    record_dated_events(tx, &vec![at; events.len()], events).await
}

/// `record_events` with a time for each event (`at[i]` for `events[i]`): imported
/// mail is logged as arriving when its own date says.
pub(super) async fn record_dated_events(
    tx: &deadpool_postgres::Transaction<'_>,
    at: &[i64],
    events: &[Event],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let messages: Vec<i64> = events.iter().map(|e| e.message).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let whos: Vec<&str> = events.iter().map(|e| e.who.as_str()).collect();
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    let uids: Vec<Option<&str>> = events.iter().map(|e| e.uid.as_deref()).collect();
    // WITH ORDINALITY + ORDER BY: the rows' ids follow the order given (`trace`
    // lists a message's events by id).
    macro_rules! insert {
        () => {
            "INSERT INTO message_events AS ev(message, at, kind, who, detail, uid)
             SELECT u.m, u.at, u.k, u.w, u.d, u.uid
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::text[])
                 WITH ORDINALITY AS u(m, at, k, w, d, uid, n)
             ORDER BY u.n"
        };
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&messages, &at, &kinds, &whos, &details, &uids];
    if !tracing::enabled!(target: "lazaret::message", tracing::Level::INFO) {
        tx.execute_cached(insert!(), &params).await?;
        return Ok(());
    }
    // The store ids for the log lines come back with the insert, by row id: in the
    // order given once sorted.
    let mut ids: Vec<(i64, String)> = tx
        .query_cached(
            concat!(
                insert!(),
                " RETURNING ev.id, COALESCE(ev.uid,
                     (SELECT m.uid FROM messages m WHERE m.id=ev.message),
                     '#' || ev.message::text)"
            ),
            &params,
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    ids.sort_unstable_by_key(|(row, _)| *row);
    // Outside a request (none such today) there is nowhere to keep the lines.
    let _ = REQUEST.try_with(|r| {
        let lines = &mut r.borrow_mut().lines;
        for (e, (_, id)) in events.iter().zip(ids) {
            lines.push(LogLine {
                id,
                kind: e.kind.to_string(),
                who: e.who.clone(),
                detail: e.detail.clone(),
            });
        }
    });
    Ok(())
}

/// A message event recorded by a request's transaction, for the log once it commits.
struct LogLine {
    id: String,
    kind: String,
    who: String,
    detail: String,
}

/// What the request running in a task (`with_client`) did, for after it.
#[derive(Default)]
struct Request {
    /// Message events its transaction recorded, for the log.
    lines: Vec<LogLine>,
    /// Whether it committed a transaction (counted in the commit figures).
    committed: bool,
}

tokio::task_local! {
    static REQUEST: RefCell<Request>;
}

/// Commits a request's transaction, noting that it did for the commit figures.
pub(super) async fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<()> {
    tx.commit().await.map_err(pg)?;
    let _ = REQUEST.try_with(|r| r.borrow_mut().committed = true);
    Ok(())
}

/// A database error as the store reports it, with PostgreSQL's own message (the
/// driver's `Display` says only "db error") and SQLSTATE.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        // A NUL character, which PostgreSQL's text cannot hold (SQLite's can): the
        // request's fault, not the server's.
        Some(db) if *db.code() == tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE => {
            StoreError::Invalid(format!(
                "a name or text with a NUL character cannot be stored ({})",
                db.message()
            ))
        }
        Some(db) => StoreError::Postgres(format!("{} ({})", db.message(), db.code().code())),
        None if e.is_closed() => {
            StoreError::Unavailable(format!("the connection to PostgreSQL closed: {e}"))
        }
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn urls_are_logged_without_their_password() {
        assert_eq!(
            redacted("postgres://lazaret:s3cret@db.example:5432/mail"),
            "postgres://lazaret:***@db.example:5432/mail"
        );
        assert_eq!(
            redacted("postgres://lazaret@db.example/mail"),
            "postgres://lazaret@db.example/mail"
        );
        assert!(!redacted("host=db password=s3cret").contains("s3cret"));
    }
}
