//! Counters the sessions keep for `/metrics` (Prometheus text format, served by the
//! admin listener): connections and messages per listener, recipients and logins by
//! outcome. Gauges that the store or the switches already know (queues, quarantine,
//! disk, process) are read when scraped, in `admin/metrics.rs`.
//!
//! Plain atomics, no metrics crate: a handful of fixed series, read by one handler.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Clone, Copy)]
pub enum Listener {
    Smtp,
    Submission,
    Imap,
    Pop3,
}

pub const LISTENERS: [(Listener, &str); 4] = [
    (Listener::Smtp, "smtp"),
    (Listener::Submission, "submission"),
    (Listener::Imap, "imap"),
    (Listener::Pop3, "pop3"),
];

/// What the server answered, by reply class.
pub const OUTCOMES: [&str; 3] = ["accepted", "deferred", "rejected"];

#[derive(Default)]
pub struct Metrics {
    open: [AtomicI64; 4],
    opened: [AtomicU64; 4],
    /// End of DATA, SMTP and submission: by outcome.
    messages: [[AtomicU64; 3]; 2],
    recipients: [[AtomicU64; 3]; 2],
    logins: [AtomicU64; 4],
    /// Recipient copies, local and remote: delivered, deferred, failed.
    deliveries: [[AtomicU64; 3]; 2],
    dsns: AtomicU64,
    scanned: AtomicU64,
    detections: AtomicU64,
}

/// Where a copy went, for `lazaret_deliveries_total{destination}`.
pub const DESTINATIONS: [&str; 2] = ["local", "remote"];
pub const DELIVERY_OUTCOMES: [&str; 3] = ["delivered", "deferred", "failed"];

/// Open while the session lasts.
pub struct OpenSession<'a> {
    metrics: &'a Metrics,
    listener: Listener,
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.metrics.open[self.listener as usize].fetch_sub(1, Relaxed);
    }
}

/// How a login ended, for `lazaret_logins_total{outcome}`.
#[derive(Clone, Copy)]
pub enum LoginOutcome {
    Succeeded,
    Failed,
    Throttled,
    Disabled,
}

pub const LOGIN_OUTCOMES: [(LoginOutcome, &str); 4] = [
    (LoginOutcome::Succeeded, "succeeded"),
    (LoginOutcome::Failed, "failed"),
    (LoginOutcome::Throttled, "throttled"),
    (LoginOutcome::Disabled, "disabled"),
];

fn outcome(code: u16) -> usize {
    match code {
        200..=399 => 0,
        400..=499 => 1,
        _ => 2,
    }
}

impl Metrics {
    pub fn session(&self, listener: Listener) -> OpenSession<'_> {
        self.open[listener as usize].fetch_add(1, Relaxed);
        self.opened[listener as usize].fetch_add(1, Relaxed);
        OpenSession {
            metrics: self,
            listener,
        }
    }

    /// A message at the end of DATA, answered with `code`. `submission`: which port.
    pub fn message(&self, submission: bool, code: u16) {
        self.messages[submission as usize][outcome(code)].fetch_add(1, Relaxed);
    }

    pub fn recipient(&self, submission: bool, code: u16) {
        self.recipients[submission as usize][outcome(code)].fetch_add(1, Relaxed);
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Copies delivered, deferred and failed, locally (`remote` false) or to another
    /// server.
    pub fn deliveries(&self, remote: bool, delivered: usize, deferred: usize, failed: usize) {
        let row = &self.deliveries[remote as usize];
        for (counter, n) in row.iter().zip([delivered, deferred, failed]) {
            counter.fetch_add(n as u64, Relaxed);
        }
    }

    pub fn dsn(&self) {
        self.dsns.fetch_add(1, Relaxed);
    }

    /// Messages the after-queue scanner looked at, and how many it found something in.
    pub fn scanned(&self, messages: usize, detections: u64) {
        self.scanned.fetch_add(messages as u64, Relaxed);
        self.detections.fetch_add(detections, Relaxed);
    }

    pub fn delivery_count(&self, destination: usize, outcome: usize) -> u64 {
        self.deliveries[destination][outcome].load(Relaxed)
    }

    pub fn dsn_count(&self) -> u64 {
        self.dsns.load(Relaxed)
    }

    pub fn scan_counts(&self) -> (u64, u64) {
        (self.scanned.load(Relaxed), self.detections.load(Relaxed))
    }

    pub fn open(&self, listener: Listener) -> i64 {
        self.open[listener as usize].load(Relaxed)
    }

    pub fn opened(&self, listener: Listener) -> u64 {
        self.opened[listener as usize].load(Relaxed)
    }

    /// (submission?, outcome index) → count.
    pub fn messages(&self, submission: bool, outcome: usize) -> u64 {
        self.messages[submission as usize][outcome].load(Relaxed)
    }

    pub fn recipients(&self, submission: bool, outcome: usize) -> u64 {
        self.recipients[submission as usize][outcome].load(Relaxed)
    }

    pub fn logins(&self, outcome: LoginOutcome) -> u64 {
        self.logins[outcome as usize].load(Relaxed)
    }
}
