//! Lazaret's shared vocabulary: the configuration file, human-friendly sizes and
//! durations, connector schedules, and the states queues and queued messages can be in.

pub mod config;
pub mod schedule;
pub mod state;
pub mod units;

pub use config::{Config, ConfigError};
pub use schedule::Schedule;
pub use state::{MessageState, QueueState};
pub use units::{Duration, Size, UnitError};
