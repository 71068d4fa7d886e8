//! When to try a temporarily failed message again, and when to give up on it.

use lazaret_core::config::DeliveryConfig;

/// The time of the next attempt after `attempts` failed ones, or None when the message
/// has been queued for `give_up_after` and must be returned to its sender. The last
/// attempt is placed at the give-up time itself, so a message gets its full lifetime.
pub fn next_attempt(config: &DeliveryConfig, now: i64, created: i64, attempts: i64) -> Option<i64> {
    let deadline = created + config.give_up_after.0 as i64;
    if now >= deadline {
        return None;
    }
    let step = (attempts.max(0) as usize).min(config.retry_schedule.len() - 1);
    let wait = config.retry_schedule[step].0 as i64;
    Some((now + wait).min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_gives_up_after_the_lifetime() {
        let c = DeliveryConfig::default();
        assert_eq!(next_attempt(&c, 1000, 1000, 0), Some(1300));
        assert_eq!(next_attempt(&c, 1000, 1000, 1), Some(1600));
        assert_eq!(next_attempt(&c, 1000, 1000, 99), Some(1000 + 14400));
        let five_days = 5 * 86400;
        assert_eq!(
            next_attempt(&c, 1000 + five_days - 10, 1000, 50),
            Some(1000 + five_days)
        );
        assert_eq!(next_attempt(&c, 1000 + five_days, 1000, 50), None);
    }
}
