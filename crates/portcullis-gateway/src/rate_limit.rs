//! Per-route, per-client request counting in fixed one-minute windows.
//!
//! Counters live in a count-min sketch: two rows of atomic slots, each
//! request increments one slot per row chosen by independent hashes of
//! (route, client address), and the estimate is the smaller of the two.
//! Memory is fixed at construction, so a flood of distinct addresses cannot
//! grow it; collisions can only overestimate a count, which errs towards
//! limiting. No lock is taken: slots are updated with compare-and-swap.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

const ROWS: usize = 2;

/// Outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Under the limit.
    Allowed,
    /// Over the limit for the current minute.
    Limited,
}

/// A fixed-size, lock-free request counter shared by every route.
pub struct RateLimiter {
    /// `ROWS * width` slots. Each packs the window (minutes since the Unix
    /// epoch, high 32 bits) and the count in that window (low 32 bits).
    slots: Box<[AtomicU64]>,
    width: usize,
    hashers: [RandomState; ROWS],
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("width", &self.width)
            .finish()
    }
}

impl RateLimiter {
    /// Creates a limiter with `width` slots per row (rounded up to a power
    /// of two). Memory is `2 * width * 8` bytes.
    pub fn new(width: usize) -> Self {
        let width = width.max(64).next_power_of_two();
        RateLimiter {
            slots: (0..ROWS * width).map(|_| AtomicU64::new(0)).collect(),
            width,
            hashers: [RandomState::new(), RandomState::new()],
        }
    }

    /// Bytes held by the counters.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }

    /// Counts a request of `client` on route `route_id` at `unix_seconds`
    /// and decides whether it is within `limit` requests per minute.
    pub fn check(
        &self,
        route_id: u64,
        client: IpAddr,
        limit: u32,
        unix_seconds: u64,
    ) -> RateDecision {
        let window = (unix_seconds / 60) as u32;
        let mut estimate = u32::MAX;
        for (row, hasher) in self.hashers.iter().enumerate() {
            let column = (hasher.hash_one((route_id, client)) as usize) & (self.width - 1);
            let slot = &self.slots[row * self.width + column];
            estimate = estimate.min(increment(slot, window));
        }
        if estimate > limit {
            RateDecision::Limited
        } else {
            RateDecision::Allowed
        }
    }
}

/// Adds one to a slot, starting a new count when the slot belongs to an
/// older window, and returns the new count.
fn increment(slot: &AtomicU64, window: u32) -> u32 {
    let mut current = slot.load(Ordering::Relaxed);
    loop {
        let slot_window = (current >> 32) as u32;
        let count = if slot_window == window {
            (current as u32).saturating_add(1)
        } else {
            1
        };
        let next = (u64::from(window) << 32) | u64::from(count);
        match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return count,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start of a minute window (divisible by 60).
    const T0: u64 = 1_800_000_000;

    #[test]
    fn limits_after_n_requests_in_a_minute() {
        let limiter = RateLimiter::new(1024);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(7, ip, 3, T0), RateDecision::Allowed);
        }
        assert_eq!(limiter.check(7, ip, 3, T0 + 59), RateDecision::Limited);
        assert_eq!(limiter.check(7, ip, 3, T0 + 60), RateDecision::Allowed);
    }

    #[test]
    fn clients_and_routes_are_counted_apart() {
        let limiter = RateLimiter::new(1024);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limiter.check(1, a, 1, T0), RateDecision::Allowed);
        assert_eq!(limiter.check(1, a, 1, T0), RateDecision::Limited);
        assert_eq!(limiter.check(1, b, 1, T0), RateDecision::Allowed);
        assert_eq!(limiter.check(2, a, 1, T0), RateDecision::Allowed);
    }

    #[test]
    fn memory_is_fixed_under_a_flood_of_addresses() {
        let limiter = RateLimiter::new(4096);
        let before = limiter.memory_bytes();
        for i in 0..200_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limiter.check(1, ip, 1_000_000, T0);
        }
        assert_eq!(limiter.memory_bytes(), before);
        assert_eq!(before, 2 * 4096 * 8);
    }

    #[test]
    fn few_false_positives_at_moderate_load() {
        // 2,000 clients each sending 5 requests against a limit of 5 in a
        // 16k-wide sketch. A client shares a slot in one row with
        // probability about 1 - e^(-2000/16384) = 0.115, in both rows about
        // 0.013, and such a pair loses about half of its 10 requests: an
        // expected 0.7% of requests limited wrongly. The hashers are seeded
        // at random, so the bound leaves room for chance.
        let limiter = RateLimiter::new(16_384);
        let mut limited = 0;
        for i in 0..2_000u32 {
            let ip = IpAddr::from((0x0A00_0000 + i).to_be_bytes());
            for _ in 0..5 {
                if limiter.check(9, ip, 5, T0) == RateDecision::Limited {
                    limited += 1;
                }
            }
        }
        assert!(
            limited < 200,
            "{limited} of 10,000 requests limited wrongly"
        );
    }
}
