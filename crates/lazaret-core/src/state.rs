//! The states the admin sees: a queue is active or frozen; a queued message is ready,
//! waiting for a retry, or frozen on its own.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// System queue for mail accepted but not yet routed (and, later, not yet scanned).
pub const QUEUE_INBOUND: &str = "inbound";
/// Delivery to local mailboxes.
pub const QUEUE_LOCAL: &str = "local";
/// Mail whose processing made the server fail; held for the admin.
pub const QUEUE_POISON: &str = "poison";
/// Queues that always exist, even when empty.
pub const SYSTEM_QUEUES: [&str; 3] = [QUEUE_INBOUND, QUEUE_LOCAL, QUEUE_POISON];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Active,
    Frozen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    Ready,
    Retry,
    Frozen,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Active => "active",
            QueueState::Frozen => "frozen",
        }
    }
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Ready => "ready",
            MessageState::Retry => "retry",
            MessageState::Frozen => "frozen",
        }
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(QueueState::Active),
            "frozen" => Ok(QueueState::Frozen),
            other => Err(format!("unknown queue state {other:?} (active, frozen)")),
        }
    }
}

impl FromStr for MessageState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ready" => Ok(MessageState::Ready),
            "retry" => Ok(MessageState::Retry),
            "frozen" => Ok(MessageState::Frozen),
            other => Err(format!(
                "unknown message state {other:?} (ready, retry, frozen)"
            )),
        }
    }
}
