//! Group commit. All writes go through one thread that owns the write connection: it
//! takes every request waiting in its channel, runs them in one transaction (each in a
//! savepoint, so one failing request does not undo the others), commits once, then
//! answers each. Concurrent SMTP sessions thus share the commit's fsync instead of
//! paying one each.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::sync::mpsc;

/// Requests committed together at most; bounds the latency a large batch adds.
const MAX_BATCH: usize = 256;

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// Runs a request; `alone` when it is the transaction's only one. Returns how to answer
/// it and whether it succeeded.
type Job = Box<dyn FnOnce(&Connection, bool) -> (Completion, bool) + Send>;

struct Request {
    job: Job,
    /// Changes nothing a cached read depends on: a batch of only such requests leaves
    /// the generation alone (see `write_quiet`).
    quiet: bool,
    /// Answers the caller when the job could not even be run.
    abort: Box<dyn FnOnce(StoreError) + Send>,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    figures: std::sync::Arc<WriterFigures>,
}

/// Upper bounds of the commit-latency buckets, in microseconds (`/metrics`).
pub const COMMIT_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];
/// Upper bounds of the batch-size buckets, in requests.
pub const BATCH_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Histograms of every group commit: how long it took (statements and fsync) and how
/// many requests it carried. Cumulative counts per bucket, as Prometheus wants them;
/// the last slot of each is everything (`+Inf`).
#[derive(Default)]
pub struct WriterFigures {
    commit_us: [std::sync::atomic::AtomicU64; 11],
    commit_sum_us: std::sync::atomic::AtomicU64,
    batch: [std::sync::atomic::AtomicU64; 9],
    batch_sum: std::sync::atomic::AtomicU64,
}

/// A copy of [`WriterFigures`] for `Store::writer_figures`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WriterHistograms {
    /// Cumulative counts for each bound of `COMMIT_BUCKETS_US`, then the total.
    pub commit_us: Vec<u64>,
    pub commit_sum_us: u64,
    /// Cumulative counts for each bound of `BATCH_BUCKETS`, then the total.
    pub batch: Vec<u64>,
    pub batch_sum: u64,
}

impl WriterFigures {
    pub(crate) fn record(&self, took_us: u64, requests: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        for (i, bound) in COMMIT_BUCKETS_US.iter().enumerate() {
            if took_us <= *bound {
                self.commit_us[i].fetch_add(1, Relaxed);
            }
        }
        self.commit_us[COMMIT_BUCKETS_US.len()].fetch_add(1, Relaxed);
        self.commit_sum_us.fetch_add(took_us, Relaxed);
        for (i, bound) in BATCH_BUCKETS.iter().enumerate() {
            if requests <= *bound {
                self.batch[i].fetch_add(1, Relaxed);
            }
        }
        self.batch[BATCH_BUCKETS.len()].fetch_add(1, Relaxed);
        self.batch_sum.fetch_add(requests, Relaxed);
    }

    pub fn snapshot(&self) -> WriterHistograms {
        use std::sync::atomic::Ordering::Relaxed;
        WriterHistograms {
            commit_us: self.commit_us.iter().map(|c| c.load(Relaxed)).collect(),
            commit_sum_us: self.commit_sum_us.load(Relaxed),
            batch: self.batch.iter().map(|c| c.load(Relaxed)).collect(),
            batch_sum: self.batch_sum.load(Relaxed),
        }
    }
}

impl Writer {
    pub fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Request>();
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = generation.clone();
        let figures = std::sync::Arc::new(WriterFigures::default());
        let recorded = figures.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, &counter, &recorded))
            .expect("spawn store writer thread");
        Writer {
            tx,
            generation,
            figures,
        }
    }

    /// Commit latency and batch size histograms so far.
    pub fn figures(&self) -> WriterHistograms {
        self.figures.snapshot()
    }

    /// Changes whenever a write transaction may have committed: what was read under
    /// one value is still current while it stays the same.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `f` inside the next group transaction and returns its result once that
    /// transaction is durably committed.
    pub fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        self.submit_as(f, false).wait()
    }

    /// As `write`, for bookkeeping no cached read shows (IMAP's `\Recent` claims):
    /// it does not move the generation, so caches such as IMAP's folder index stay
    /// valid. The caller must not rely on reads cached before it to reflect it.
    pub fn write_quiet<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        self.submit_as(f, true).wait()
    }

    /// As `write_quiet`, without waiting for (or hearing of) the commit: for records
    /// the caller need not see committed (the message event log's downloads).
    pub fn submit_quiet<F>(&self, f: F) -> Submitted<()>
    where
        F: FnOnce(&Connection) -> Result<()> + Send + 'static,
    {
        self.submit_as(f, true)
    }

    /// As `write`, without waiting: the caller does other work (ingest makes the
    /// message's bytes durable meanwhile) and then waits for the commit.
    pub fn submit<R, F>(&self, f: F) -> Submitted<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        self.submit_as(f, false)
    }

    fn submit_as<R, F>(&self, f: F, quiet: bool) -> Submitted<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (done_tx, done_rx) = mpsc::sync_channel::<Result<R>>(1);
        let abort_tx = done_tx.clone();
        let abort = Box::new(move |e: StoreError| {
            let _ = abort_tx.send(Err(e));
        });
        let job: Job = Box::new(move |conn: &Connection, alone: bool| {
            let outcome = if alone {
                guarded(conn, f)
            } else {
                in_savepoint(conn, f)
            };
            let ok = outcome.is_ok();
            let complete: Completion = Box::new(move |commit: Result<()>| {
                let result = match (commit, outcome) {
                    (Ok(()), outcome) => outcome,
                    (Err(e), _) => Err(e),
                };
                let _ = done_tx.send(result);
            });
            (complete, ok)
        });
        let sent = self.tx.send(Request { job, quiet, abort }).is_ok();
        Submitted {
            done: sent.then_some(done_rx),
        }
    }
}

/// A write handed to the writer thread; `wait` returns its result once committed.
pub struct Submitted<R> {
    done: Option<mpsc::Receiver<Result<R>>>,
}

impl<R> Submitted<R> {
    pub fn wait(self) -> Result<R> {
        match self.done {
            Some(done) => done.recv().map_err(|_| StoreError::Closed)?,
            None => Err(StoreError::Closed),
        }
    }
}

/// Runs a request; a panicking one is answered with an error (and undone by the
/// caller): it must not take the writer thread, and with it every later write, down.
fn guarded<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
        Err(StoreError::Invalid(
            "internal error while writing (a bug; see the server log)".into(),
        ))
    })
}

fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT job")?;
    let outcome = guarded(conn, f);
    match outcome {
        Ok(r) => {
            conn.execute_batch("RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn run(
    conn: Connection,
    rx: mpsc::Receiver<Request>,
    generation: &std::sync::atomic::AtomicU64,
    figures: &WriterFigures,
) {
    use std::sync::atomic::Ordering::SeqCst;
    while let Ok(first) = rx.recv() {
        let started = std::time::Instant::now();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for request in batch {
                (request.abort)(StoreError::Invalid(format!("write not started: {e}")));
            }
            continue;
        }
        let visible = batch.iter().any(|r| !r.quiet);
        let requests = batch.len() as u64;
        // A request alone in its transaction runs outside a savepoint: a savepoint
        // keeps every page the request changes in SQLite's in-memory statement
        // journal, which is cut back after each statement by walking it from its start,
        // so a bulk request's statements grew dearer as it went (a 50,000-message
        // queue delete spent 13% of the writer's time there). Failing alone, it is
        // rolled back whole, which is what its savepoint would have done.
        let alone = batch.len() == 1;
        let mut all_ok = true;
        let completions: Vec<Completion> = batch
            .into_iter()
            .map(|r| {
                let mark = super::events::pending_mark();
                let (complete, ok) = (r.job)(&conn, alone);
                if !ok {
                    // Undone by its savepoint: its events did not happen.
                    super::events::pending_truncate(mark);
                }
                all_ok &= ok;
                complete
            })
            .collect();
        // Bumped before and after: a reader that saw the old value cannot have read
        // the data this commit changes and still keep the old value.
        if visible {
            generation.fetch_add(1, SeqCst);
        }
        let commit = if alone && !all_ok {
            // Nothing to keep; the request's own error is its answer.
            conn.execute_batch("ROLLBACK").map_err(|e| failure(&e))
        } else {
            super::lookups::bump_if_changed(&conn)
                .and_then(|()| conn.execute_batch("COMMIT"))
                .map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    failure(&e)
                })
        };
        if visible {
            generation.fetch_add(1, SeqCst);
        }
        super::events::pending_publish(commit.is_ok());
        figures.record(started.elapsed().as_micros() as u64, requests);
        for complete in completions {
            complete(match &commit {
                Ok(()) => Ok(()),
                Err((e, true)) => Err(StoreError::DiskFull(format!("commit failed: {e}"))),
                Err((e, false)) => Err(StoreError::Invalid(format!("commit failed: {e}"))),
            });
        }
    }
}

/// A failed commit's text, and whether it failed for want of disk space (every request
/// of the batch gets its own copy of the error).
fn failure(e: &rusqlite::Error) -> (String, bool) {
    let full = matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull);
    (e.to_string(), full)
}
