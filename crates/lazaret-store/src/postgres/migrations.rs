//! Versioned schema migrations, applied at start-up in order, each once.
//!
//! Every node runs them when it starts; an advisory lock held for the transaction
//! makes nodes that start together take turns, and the whole set commits or none of
//! it does (PostgreSQL's DDL is transactional). A database migrated by a newer
//! Lazaret is refused rather than used with tables this version does not know.

use super::pg;
use crate::{Result, StoreError};

struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial tables",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "find: body text and sender indexes",
        sql: include_str!("migrations/0002_find.sql"),
    },
    Migration {
        version: 3,
        name: "outbreak clusters: lookup keys and the filing order",
        sql: include_str!("migrations/0003_clusters.sql"),
    },
    Migration {
        version: 4,
        name: "a new store's first rows: created, the localhost domain",
        sql: include_str!("migrations/0004_seed.sql"),
    },
    Migration {
        version: 5,
        name: "bulk admin jobs another node can finish",
        sql: include_str!("migrations/0005_jobs.sql"),
    },
    Migration {
        version: 6,
        name: "status totals kept as rows come and go",
        sql: include_str!("migrations/0006_totals.sql"),
    },
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Key of the advisory lock migrations run under ("Lazaret" in ASCII).
const MIGRATION_LOCK: i64 = 0x004c_617a_6172_6574;

/// Brings the schema up to date; returns the versions applied now.
pub(super) async fn apply(client: &mut tokio_postgres::Client) -> Result<Vec<i32>> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations(
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied bigint NOT NULL)",
    )
    .await
    .map_err(pg)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "the database's schema is version {current}, newer than this Lazaret knows \
             ({SCHEMA_VERSION}): run the Lazaret version that migrated it"
        )));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await.map_err(|e| {
            StoreError::Postgres(format!(
                "schema migration {} ({}) failed, nothing was changed: {}",
                m.version,
                m.name,
                pg(e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations(version, name, applied) VALUES($1, $2, $3)",
            &[&m.version, &m.name, &crate::now()],
        )
        .await
        .map_err(pg)?;
        applied.push(m.version);
    }
    tx.commit().await.map_err(pg)?;
    Ok(applied)
}
