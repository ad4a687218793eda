//! Per-device and per-user token buckets for the device API: one device token must not be
//! able to start unlimited calls (toll fraud, a flooded dial queue), nor flood the store with
//! reports or quality data. Over the limit the request gets 429 `rate_limited` with
//! `Retry-After`, and changes nothing.
//!
//! Buckets live in this process: with several nodes each node enforces the limits on its own
//! share of the traffic, which bounds abuse without a shared counter.
//!
//! To limit a new route, add a [`RateClass`] and call [`RateLimiter::check`] in its handler:
//!
//! ```ignore
//! app.rate_limits.check(RateClass::Quality, &auth.device.id, &auth.user.id, app.engine.now())?;
//! ```

use crate::error::ApiError;
use ringmaster_core::{DeviceId, Timestamp, UserId};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Buckets kept per class before full (idle) ones are forgotten.
const MAX_TRACKED: usize = 100_000;

/// A token bucket's size and refill: `per_minute` requests per minute on average, and a full
/// bucket allows `per_minute` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests per minute (0 refuses everything).
    pub per_minute: u32,
}

impl Rate {
    /// `n` per minute.
    pub const fn per_minute(n: u32) -> Self {
        Self { per_minute: n }
    }

    fn capacity(self) -> f64 {
        f64::from(self.per_minute)
    }

    fn per_ms(self) -> f64 {
        f64::from(self.per_minute) / 60_000.0
    }
}

/// What a limited request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// `POST /api/voip/calls`: click-to-call.
    PlaceCall,
    /// `POST /api/voip/calls/{id}/events`: device transition reports.
    Report,
    /// Pushes of call-quality data from a device.
    Quality,
}

impl RateClass {
    const ALL: [RateClass; 3] = [RateClass::PlaceCall, RateClass::Report, RateClass::Quality];

    fn index(self) -> usize {
        match self {
            RateClass::PlaceCall => 0,
            RateClass::Report => 1,
            RateClass::Quality => 2,
        }
    }

    /// The name used in error messages and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::PlaceCall => "calls",
            RateClass::Report => "reports",
            RateClass::Quality => "quality reports",
        }
    }
}

/// Limits of one class: per device and per user (all of the user's devices together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLimits {
    /// Each device's bucket.
    pub device: Rate,
    /// Each user's bucket.
    pub user: Rate,
}

/// The device API's limits. Defaults are documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Click-to-call.
    pub place_call: ClassLimits,
    /// Transition reports.
    pub report: ClassLimits,
    /// Quality data.
    pub quality: ClassLimits,
    /// Calls of one user not yet ended; click-to-call beyond it gets 429 `too_many_calls`.
    pub max_unfinished_calls: u32,
    /// Timeline entries one call may collect from device reports; later reports get 409
    /// `timeline_full`.
    pub max_timeline_entries: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            place_call: ClassLimits {
                device: Rate::per_minute(10),
                user: Rate::per_minute(20),
            },
            report: ClassLimits {
                device: Rate::per_minute(120),
                user: Rate::per_minute(600),
            },
            quality: ClassLimits {
                device: Rate::per_minute(30),
                user: Rate::per_minute(120),
            },
            max_unfinished_calls: 5,
            max_timeline_entries: 500,
        }
    }
}

impl RateLimits {
    fn class(&self, class: RateClass) -> ClassLimits {
        match class {
            RateClass::PlaceCall => self.place_call,
            RateClass::Report => self.report,
            RateClass::Quality => self.quality,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// Token buckets keyed by id, under one rate. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub struct Buckets {
    map: HashMap<String, Bucket>,
}

impl Buckets {
    fn refilled(&self, key: &str, rate: Rate, now: Timestamp) -> Bucket {
        match self.map.get(key) {
            Some(b) => {
                let elapsed = now.saturating_since(b.at).as_millis() as f64;
                Bucket {
                    tokens: (b.tokens + elapsed * rate.per_ms()).min(rate.capacity()),
                    at: now.max(b.at),
                }
            }
            None => Bucket {
                tokens: rate.capacity(),
                at: now,
            },
        }
    }

    /// How long until `key` has a token, or zero when it has one now.
    pub fn wait(&self, key: &str, rate: Rate, now: Timestamp) -> Duration {
        let b = self.refilled(key, rate, now);
        if b.tokens >= 1.0 {
            return Duration::ZERO;
        }
        if rate.per_minute == 0 {
            return Duration::from_secs(60);
        }
        Duration::from_millis(((1.0 - b.tokens) / rate.per_ms()).ceil() as u64)
    }

    /// Spends one token of `key` (call [`Buckets::wait`] first).
    pub fn spend(&mut self, key: &str, rate: Rate, now: Timestamp) {
        let mut b = self.refilled(key, rate, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
        if self.map.len() >= MAX_TRACKED && !self.map.contains_key(key) {
            // Forget buckets that have refilled: they hold no information.
            self.map.retain(|k, old| {
                let elapsed = now.saturating_since(old.at).as_millis() as f64;
                k == key || old.tokens + elapsed * rate.per_ms() < rate.capacity()
            });
        }
        self.map.insert(key.to_owned(), b);
    }

    /// Keys tracked (for tests of the memory bound).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[derive(Debug, Default)]
struct ClassBuckets {
    devices: Buckets,
    users: Buckets,
}

/// The server's limiter: one pair of bucket sets per [`RateClass`].
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    classes: [Mutex<ClassBuckets>; 3],
}

impl RateLimiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            classes: Default::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn lock(&self, class: RateClass) -> MutexGuard<'_, ClassBuckets> {
        self.classes[class.index()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request of `class` from the device's and the user's buckets, or neither:
    /// `Err` carries how long until both have room.
    pub fn try_take(
        &self,
        class: RateClass,
        device: &DeviceId,
        user: &UserId,
        now: Timestamp,
    ) -> Result<(), Duration> {
        let limits = self.limits.class(class);
        let mut b = self.lock(class);
        let wait = b
            .devices
            .wait(device.as_str(), limits.device, now)
            .max(b.users.wait(user.as_str(), limits.user, now));
        if !wait.is_zero() {
            return Err(wait);
        }
        b.devices.spend(device.as_str(), limits.device, now);
        b.users.spend(user.as_str(), limits.user, now);
        Ok(())
    }

    /// [`RateLimiter::try_take`] as the API answer: 429 `rate_limited` with `Retry-After`.
    pub fn check(
        &self,
        class: RateClass,
        device: &DeviceId,
        user: &UserId,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        self.try_take(class, device, user, now).map_err(|wait| {
            tracing::info!(device_id = %device, user_id = %user, class = class.as_str(), ?wait, "rate limited");
            ApiError::rate_limited(format!("too many {}; retry later", class.as_str()), wait)
        })
    }

    /// Keys tracked across every class (a memory figure for tests and metrics).
    pub fn tracked(&self) -> usize {
        RateClass::ALL
            .iter()
            .map(|c| {
                let b = self.lock(*c);
                b.devices.len() + b.users.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_millis(v)
    }

    fn limiter(device: u32, user: u32) -> RateLimiter {
        let class = ClassLimits {
            device: Rate::per_minute(device),
            user: Rate::per_minute(user),
        };
        RateLimiter::new(RateLimits {
            place_call: class,
            report: class,
            quality: class,
            ..RateLimits::default()
        })
    }

    #[test]
    fn a_device_gets_its_burst_then_waits_for_the_refill() {
        let l = limiter(3, 100);
        let (d, u) = (DeviceId::new("d"), UserId::new("u"));
        for _ in 0..3 {
            assert_eq!(l.try_take(RateClass::PlaceCall, &d, &u, ms(0)), Ok(()));
        }
        // 3 per minute: one token every 20 s.
        assert_eq!(
            l.try_take(RateClass::PlaceCall, &d, &u, ms(0)),
            Err(Duration::from_secs(20))
        );
        assert_eq!(
            l.try_take(RateClass::PlaceCall, &d, &u, ms(15_000)),
            Err(Duration::from_secs(5))
        );
        assert_eq!(l.try_take(RateClass::PlaceCall, &d, &u, ms(20_000)), Ok(()));
        // Classes are separate.
        assert_eq!(l.try_take(RateClass::Report, &d, &u, ms(20_000)), Ok(()));
    }

    #[test]
    fn the_user_bucket_spans_devices_and_a_refusal_spends_nothing() {
        let l = limiter(10, 2);
        let u = UserId::new("u");
        let (a, b) = (DeviceId::new("a"), DeviceId::new("b"));
        assert!(l.try_take(RateClass::Report, &a, &u, ms(0)).is_ok());
        assert!(l.try_take(RateClass::Report, &b, &u, ms(0)).is_ok());
        assert!(l.try_take(RateClass::Report, &b, &u, ms(0)).is_err());
        // Another user's device is not affected.
        assert!(l
            .try_take(
                RateClass::Report,
                &DeviceId::new("c"),
                &UserId::new("v"),
                ms(0)
            )
            .is_ok());
        // Device a was refused by the user bucket without losing its own tokens: after the
        // user refill (30 s per token at 2/min) it gets through.
        assert!(l.try_take(RateClass::Report, &a, &u, ms(30_000)).is_ok());
    }

    #[test]
    fn a_zero_rate_refuses_everything() {
        let l = limiter(0, 10);
        let err = l
            .check(
                RateClass::Quality,
                &DeviceId::new("d"),
                &UserId::new("u"),
                ms(5),
            )
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.code, "rate_limited");
        assert_eq!(err.retry_after, Some(Duration::from_secs(60)));
    }

    #[test]
    fn refilled_buckets_are_forgotten_when_the_map_is_full() {
        let rate = Rate::per_minute(60);
        let mut b = Buckets::default();
        for i in 0..MAX_TRACKED {
            b.spend(&format!("k{i}"), rate, ms(0));
        }
        assert_eq!(b.len(), MAX_TRACKED);
        // A second later every old bucket has refilled and carries no state.
        b.spend("new", rate, ms(1_000));
        assert_eq!(b.len(), 1);
    }
}
