//! Abuse limits: requests per source address on `/oauth/*`, failed
//! authentications per client and per source address, dynamic
//! registrations per source address. GCRA limiters from `governor`, keyed
//! and bounded in memory (a replica's own view; the shared Redis variant
//! belongs to the scale-out work).
//!
//! A failure budget works differently from a request rate: only failures
//! spend it, and once spent the key is blocked (429 with `Retry-After`)
//! until the budget refills, even for a correct credential, so that guessing
//! costs the guesser time and moat nothing.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// The limits of one gateway.
pub struct Limits {
    requests: DefaultKeyedRateLimiter<String>,
    failures: DefaultKeyedRateLimiter<String>,
    registrations: DefaultKeyedRateLimiter<String>,
    /// Keys whose failure budget is spent, until when.
    blocked: moka::sync::Cache<String, std::time::Instant>,
    clock: DefaultClock,
}

/// Seconds to wait before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    /// Limits of `per_minute` requests, `failures_per_minute` failures and
    /// `registrations_per_hour` registrations per key.
    pub fn new(per_minute: u32, failures_per_minute: u32, registrations_per_hour: u32) -> Self {
        Self {
            requests: RateLimiter::keyed(Quota::per_minute(nz(per_minute)).allow_burst(nz(per_minute / 4 + 1))),
            failures: RateLimiter::keyed(Quota::per_minute(nz(failures_per_minute))),
            registrations: RateLimiter::keyed(Quota::per_hour(nz(registrations_per_hour))),
            blocked: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build(),
            clock: DefaultClock::default(),
        }
    }

    fn spend(&self, limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), RetryAfter> {
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now()).as_secs().max(1)))
    }

    /// One request from `addr` on `/oauth/*`.
    pub fn request(&self, addr: &str) -> Result<(), RetryAfter> {
        self.spend(&self.requests, addr)
    }

    /// One registration from `addr`.
    pub fn registration(&self, addr: &str) -> Result<(), RetryAfter> {
        self.spend(&self.registrations, addr)
    }

    /// Refuses a key (`addr:…`, `client:…`) whose failure budget is spent.
    pub fn check_blocked(&self, key: &str) -> Result<(), RetryAfter> {
        match self.blocked.get(key) {
            Some(until) => {
                let now = std::time::Instant::now();
                if until > now {
                    Err(RetryAfter(until.duration_since(now).as_secs().max(1)))
                } else {
                    self.blocked.invalidate(key);
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Spends one failure of `key`; blocks it when the budget is gone.
    pub fn failure(&self, key: &str) {
        if let Err(RetryAfter(secs)) = self.spend(&self.failures, key) {
            self.blocked.insert(key.to_owned(), std::time::Instant::now() + Duration::from_secs(secs));
        }
    }

    /// Drops the limiters' idle keys (called periodically).
    pub fn housekeeping(&self) {
        self.requests.retain_recent();
        self.failures.retain_recent();
        self.registrations.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_after_the_budget() {
        let l = Limits::new(100, 3, 10);
        for _ in 0..3 {
            assert!(l.check_blocked("addr:1.2.3.4").is_ok());
            l.failure("addr:1.2.3.4");
        }
        assert!(l.check_blocked("addr:1.2.3.4").is_ok(), "three failures fit the budget");
        l.failure("addr:1.2.3.4");
        let RetryAfter(secs) = l.check_blocked("addr:1.2.3.4").unwrap_err();
        assert!((1..=60).contains(&secs));
        assert!(l.check_blocked("addr:5.6.7.8").is_ok(), "other keys unaffected");
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let l = Limits::new(100, 3, 2);
        assert!(l.registration("a").is_ok() && l.registration("a").is_ok());
        assert!(l.registration("a").is_err());
        assert!(l.registration("b").is_ok());
    }
}
