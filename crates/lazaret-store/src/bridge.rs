//! A small tokio runtime of the store's own for its async clients (the S3 client, the
//! PostgreSQL pool). Every store call blocks, and its caller may be a thread of the
//! server's runtime (through `spawn_blocking`) that must not enter a runtime again,
//! so a request is spawned here and its answer waited for over a channel; the
//! server's runtime never waits on a remote service.

use crate::{Result, StoreError};
use std::future::Future;

pub(crate) struct Bridge {
    /// Taken only when dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// Names the client in errors ("the S3 request ended without an answer").
    what: &'static str,
}

impl Bridge {
    /// `what`: the client, as errors name it ("S3", "PostgreSQL").
    pub(crate) fn new(what: &'static str, thread_name: &str) -> Result<Bridge> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map_err(crate::io_err(format!("start the {what} client's threads")))?;
        Ok(Bridge {
            runtime: Some(runtime),
            what,
        })
    }

    /// Runs a request on the client's runtime and waits for its answer.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        request: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = tx.send(request.await);
        })?;
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Invalid(format!(
                "the {} request ended without an answer",
                self.what
            )))
        })
    }

    /// Starts a task that runs on its own (a heartbeat) until the bridge is dropped.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Closed);
        };
        runtime.spawn(task);
        Ok(())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // The store is often dropped by the server's own async code, where a runtime
        // may not be dropped the blocking way; nothing is in flight by then.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
