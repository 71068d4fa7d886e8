//! Per-sender rate limits (`[limits]`): messages and recipients per window, per
//! authenticated user on submission and per client IP on the inbound port, as Postfix's
//! anvil or Exchange's message rate limits. An infected client must not push thousands
//! of copies through the server; over the limit it gets `451 4.7.1` and may retry once
//! the window has moved on.
//!
//! Counted in memory with two fixed windows per limit, the current and the previous
//! one, the previous weighted by how much of it still overlaps the sliding window —
//! the usual approximation of a sliding window in constant space per sender, where a
//! list of timestamps would hold up to the limit's count.

use lazaret_core::config::RateLimit;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Senders not seen for this long are forgotten (every limit's window is shorter).
const FORGET_AFTER: Duration = Duration::from_secs(3 * 3600);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counted {
    Messages,
    Recipients,
    /// New connections, on every listener (`[limits.connections]`).
    Connections,
}

impl Counted {
    fn index(self) -> usize {
        match self {
            Counted::Messages => 0,
            Counted::Recipients => 1,
            Counted::Connections => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Counted::Messages => "messages",
            Counted::Recipients => "recipients",
            Counted::Connections => "connections",
        }
    }
}

/// A refusal: which limit, so the reply can say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub counted: Counted,
    pub limit: RateLimit,
    /// The sender's first refusal since it was last within every limit: audited.
    pub new_episode: bool,
}

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    current: u64,
    previous: u64,
}

impl Window {
    /// The estimated count over the sliding window ending now.
    fn estimate(&mut self, now: Instant, length: Duration) -> f64 {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.duration_since(start);
        if elapsed >= length * 2 {
            (self.start, self.current, self.previous) = (Some(now), 0, 0);
        } else if elapsed >= length {
            self.previous = self.current;
            self.current = 0;
            self.start = Some(start + length);
        }
        let into =
            now.duration_since(self.start.unwrap_or(now)).as_secs_f64() / length.as_secs_f64();
        self.previous as f64 * (1.0 - into).max(0.0) + self.current as f64
    }
}

#[derive(Default)]
struct Sender {
    windows: HashMap<(Counted, usize), Window>,
    /// Refused at the last attempt, per kind (messages, recipients, connections): an
    /// episode lasts until that kind is let through again, whatever the others do.
    limited: [bool; 3],
    last_seen: Option<Instant>,
}

/// The counters of one listener kind (submission users, or inbound client IPs).
pub struct RateLimiter {
    /// The limits on messages, or on connections for a limiter of connections.
    messages: Vec<RateLimit>,
    recipients: Vec<RateLimit>,
    senders: Mutex<HashMap<String, Sender>>,
    refused: std::sync::atomic::AtomicU64,
}

impl RateLimiter {
    pub fn new(messages: Vec<RateLimit>, recipients: Vec<RateLimit>) -> RateLimiter {
        RateLimiter {
            messages,
            recipients,
            senders: Mutex::new(HashMap::new()),
            refused: Default::default(),
        }
    }

    pub fn is_off(&self) -> bool {
        self.messages.is_empty() && self.recipients.is_empty()
    }

    /// Counts `n` of `counted` for `sender` if every limit has room; otherwise counts
    /// nothing and says which limit is reached.
    pub fn take(&self, sender: &str, counted: Counted, n: u64) -> Result<(), OverLimit> {
        let limits = match counted {
            Counted::Messages | Counted::Connections => &self.messages,
            Counted::Recipients => &self.recipients,
        };
        if limits.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if senders.len() > 10_000 {
            senders.retain(|_, s| {
                s.last_seen
                    .is_some_and(|t| now.duration_since(t) < FORGET_AFTER)
            });
        }
        let s = senders.entry(sender.to_ascii_lowercase()).or_default();
        s.last_seen = Some(now);
        for (i, limit) in limits.iter().enumerate() {
            let window = s.windows.entry((counted, i)).or_default();
            if window.estimate(now, limit.per) + n as f64 > limit.count as f64 {
                let new_episode = !s.limited[counted.index()];
                s.limited[counted.index()] = true;
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(OverLimit {
                    counted,
                    limit: *limit,
                    new_episode,
                });
            }
        }
        for (i, _) in limits.iter().enumerate() {
            if let Some(w) = s.windows.get_mut(&(counted, i)) {
                w.current += n;
            }
        }
        s.limited[counted.index()] = false;
        Ok(())
    }

    /// Refusals since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Senders refused at their last attempt.
    pub fn limited_now(&self) -> Vec<String> {
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = senders
            .iter()
            .filter(|(_, s)| s.limited.iter().any(|l| *l))
            .map(|(k, _)| k.clone())
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(count: u64, secs: u64) -> RateLimit {
        RateLimit {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn refuses_over_the_limit_and_only_that_sender() {
        let r = RateLimiter::new(vec![limit(3, 60)], vec![limit(5, 60)]);
        for _ in 0..3 {
            r.take("a@x", Counted::Messages, 1).unwrap();
        }
        let over = r.take("A@x", Counted::Messages, 1).unwrap_err();
        assert!(over.new_episode);
        assert_eq!(over.limit.count, 3);
        assert!(!r.take("a@x", Counted::Messages, 1).unwrap_err().new_episode);
        r.take("b@x", Counted::Messages, 1).unwrap();
        assert_eq!(r.limited_now(), ["a@x"]);
        assert!(r.take("b@x", Counted::Recipients, 6).is_err());
        r.take("b@x", Counted::Recipients, 5).unwrap();
        assert_eq!(r.refused(), 3);
    }

    #[test]
    fn an_episode_of_one_kind_is_not_ended_by_the_other_kind() {
        let r = RateLimiter::new(vec![limit(100, 60)], vec![limit(2, 60)]);
        r.take("a@x", Counted::Recipients, 2).unwrap();
        r.take("a@x", Counted::Messages, 1).unwrap();
        assert!(
            r.take("a@x", Counted::Recipients, 1)
                .unwrap_err()
                .new_episode
        );
        // The next message passes its own limit; its recipient is still over: the
        // same episode, not a new one to audit.
        r.take("a@x", Counted::Messages, 1).unwrap();
        assert!(
            !r.take("a@x", Counted::Recipients, 1)
                .unwrap_err()
                .new_episode
        );
    }

    #[test]
    fn the_window_slides() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(w.estimate(t0, minute), 0.0);
        w.current = 10;
        // Half-way through the next window half of the previous one still counts.
        let later = t0 + minute + minute / 2;
        let e = w.estimate(later, minute);
        assert!((e - 5.0).abs() < 0.01, "{e}");
        // Two windows on, nothing.
        assert_eq!(w.estimate(t0 + minute * 4, minute), 0.0);
    }
}
