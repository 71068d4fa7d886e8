//! Statements of the hot paths (ingest, routing, delivery, scanning, import, IMAP,
//! bulk actions), prepared once per connection and kept with it. Given as text, each
//! statement costs a second round trip and a parse and plan on the server every
//! time. Only fixed texts are run this way: the cache lives as long as the connection
//! and never evicts. Searches are not: their plans depend on the pattern searched.

use super::pg;
use crate::Result;
use deadpool_postgres::GenericClient;
use std::future::Future;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// `execute`, `query`, `query_one` and `query_opt` of a connection or transaction,
/// with the statement prepared once per connection.
pub(super) trait Cached: GenericClient {
    fn execute_cached(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<u64>> + Send;
    fn query_cached(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send;
    fn query_one_cached(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Row>> + Send;
    fn query_opt_cached(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Option<Row>>> + Send;
}

impl<C: GenericClient> Cached for C {
    async fn execute_cached(&self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        let statement = self.prepare_cached(sql).await.map_err(pg)?;
        self.execute(&statement, params).await.map_err(pg)
    }

    async fn query_cached(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.prepare_cached(sql).await.map_err(pg)?;
        self.query(&statement, params).await.map_err(pg)
    }

    async fn query_one_cached(&self, sql: &'static str, params: Params<'_>) -> Result<Row> {
        let statement = self.prepare_cached(sql).await.map_err(pg)?;
        self.query_one(&statement, params).await.map_err(pg)
    }

    async fn query_opt_cached(&self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>> {
        let statement = self.prepare_cached(sql).await.map_err(pg)?;
        self.query_opt(&statement, params).await.map_err(pg)
    }
}
