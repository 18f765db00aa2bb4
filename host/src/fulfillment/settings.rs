//! Fulfillment's settings: the workers, the queue's retry policy and
//! upkeep, and the event stream. Also command-line options that read
//! environment variables (the `host` command embeds them).

use std::time::Duration;

use clap::Args;

/// A pause drawn anew for each job: `800` or `500-2000` (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl std::str::FromStr for DelayRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number =
            |part: &str| part.trim().parse::<u64>().map_err(|_| format!("{text:?} is not `ms` or `min-max` in ms"));
        let (min_ms, max_ms) = match text.split_once('-') {
            Some((min, max)) => (number(min)?, number(max)?),
            None => (number(text)?, number(text)?),
        };
        if min_ms > max_ms {
            return Err(format!("{text:?}: the minimum is above the maximum"));
        }
        Ok(Self { min_ms, max_ms })
    }
}

/// Fulfillment: the workers, the queue's retry policy and upkeep, and the event stream.
#[derive(Debug, Clone, Args)]
pub struct FulfillmentSettings {
    /// Fulfillment workers in this process (0: none; run `host worker` elsewhere).
    #[arg(long, env = "WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// How long an idle worker waits for a job before checking for shutdown, in ms.
    #[arg(long, env = "CLAIM_WAIT_MS", default_value_t = 1000)]
    pub claim_wait_ms: u64,
    /// Failed attempts before a job is dead-lettered and its order held.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// Pause before the first retry, in ms; it doubles with each attempt (at most a minute).
    #[arg(long, env = "RETRY_BACKOFF_MS", default_value_t = 1000)]
    pub retry_backoff_ms: u64,
    /// A job held longer than this (its worker died) goes back to the queue, in ms.
    #[arg(long, env = "VISIBILITY_TIMEOUT_MS", default_value_t = 30_000)]
    pub visibility_timeout_ms: u64,
    /// How often, in ms, the recovery pass asks the queue for the jobs of
    /// open (`pending`, `processing`) orders and publishes again those it lost.
    #[arg(long, env = "RECOVER_EVERY_MS", default_value_t = 5_000)]
    pub recover_every_ms: u64,
    /// A simulated processing time per job, as the seeds' worker had (`500-2000`); off by default.
    #[arg(long, env = "FULFILLMENT_DELAY_MS")]
    pub simulated_delay_ms: Option<DelayRange>,
    /// Approximate cap on the `order_events` stream's length.
    #[arg(long, env = "EVENTS_MAX_LEN", default_value_t = 100_000)]
    pub events_max_len: u64,
}

impl Default for FulfillmentSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            claim_wait_ms: 1000,
            max_attempts: 5,
            retry_backoff_ms: 1000,
            visibility_timeout_ms: 30_000,
            recover_every_ms: 5_000,
            simulated_delay_ms: None,
            events_max_len: 100_000,
        }
    }
}

impl FulfillmentSettings {
    /// This job's simulated processing time, if any.
    pub fn simulated_delay(&self) -> Option<Duration> {
        let range = self.simulated_delay_ms?;
        Some(Duration::from_millis(fastrand::u64(range.min_ms..=range.max_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_ranges_parse() {
        assert_eq!("800".parse(), Ok(DelayRange { min_ms: 800, max_ms: 800 }));
        assert_eq!("500-2000".parse(), Ok(DelayRange { min_ms: 500, max_ms: 2000 }));
        assert!("2000-500".parse::<DelayRange>().is_err());
        assert!("soon".parse::<DelayRange>().is_err());
        let settings = FulfillmentSettings { simulated_delay_ms: "5-7".parse().ok(), ..Default::default() };
        let delay = settings.simulated_delay().unwrap();
        assert!((5..=7).contains(&delay.as_millis()), "{delay:?}");
        assert_eq!(FulfillmentSettings::default().simulated_delay(), None);
    }
}
