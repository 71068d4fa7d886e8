//! Deliver: the local queue runner (routes `inbound`, stores `local` mail into
//! mailboxes) and outbound delivery to other servers (connectors, SMTP client,
//! retries, DSNs).

pub mod certificates;
pub mod client;
pub mod connectors;
pub mod dane;
pub mod dsn;
pub mod https_get;
pub mod mta_sts;
pub mod next_hop;
pub mod outbound;
pub mod retry;
pub mod runner;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
