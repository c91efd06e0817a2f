//! Ingest rate limits: `--max-events-per-second` per token, as a token
//! bucket per token id. (The query limits live in the query layer,
//! `cxdb_query::QueryLimits`, so every protocol gets them.)
//!
//! A bucket holds one second of events and refills continuously. A request
//! of `n` events passes when the bucket holds `n` (or is full, for a batch
//! bigger than one second's worth: it then borrows from the next seconds,
//! so the average rate still holds). A refused request takes nothing and is
//! told how long until it would pass: HTTP 429 with `Retry-After`, gRPC
//! `RESOURCE_EXHAUSTED` with the wait in the message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{Error, Result};

/// Buckets kept before full (idle) ones are dropped; a token seen again
/// starts with a full bucket, which is what an idle bucket holds anyway.
const MAX_BUCKETS: usize = 10_000;

/// Events per second per token; `None` is unlimited.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: Option<u32>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Events that may pass now; negative after a batch bigger than the
    /// bucket (a debt repaid by waiting).
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(events_per_sec: Option<u32>) -> Self {
        Self {
            rate: events_per_sec.filter(|r| *r > 0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` events from `key`'s bucket, or refuses with
    /// [`Error::RateLimited`] (kind `ResourceExhausted`) saying when to retry.
    pub(crate) fn check(&self, key: &str, n: usize) -> Result<()> {
        self.check_at(key, n, Instant::now())
    }

    fn check_at(&self, key: &str, n: usize, now: Instant) -> Result<()> {
        let Some(limit) = self.rate else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let rate = f64::from(limit);
        let n = n as f64;
        let mut buckets = self.buckets.lock();
        let refilled = |b: &Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            (b.tokens + elapsed * rate).min(rate)
        };
        if !buckets.contains_key(key) && buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| refilled(b) < rate);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        bucket.tokens = refilled(bucket);
        bucket.at = now;
        let needed = n.min(rate);
        if bucket.tokens >= needed {
            bucket.tokens -= n;
            return Ok(());
        }
        Err(Error::RateLimited {
            limit,
            retry_after: Duration::from_secs_f64((needed - bucket.tokens) / rate),
        })
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_for(r: Result<()>) -> Duration {
        match r {
            Err(Error::RateLimited { retry_after, .. }) => retry_after,
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    fn close(a: Duration, secs: f64) -> bool {
        (a.as_secs_f64() - secs).abs() < 1e-6
    }

    #[test]
    fn a_full_bucket_passes_one_second_of_events_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(Some(100));
        let t0 = Instant::now();
        limiter
            .check_at("a", 60, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        limiter
            .check_at("a", 40, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        // Empty: 25 events need 0.25 s of refill.
        let wait = refused_for(limiter.check_at("a", 25, t0));
        assert!(close(wait, 0.25), "{wait:?}");
        // A refusal takes nothing: after 0.25 s exactly 25 pass, then none.
        let t1 = t0 + Duration::from_millis(250);
        limiter
            .check_at("a", 25, t1)
            .unwrap_or_else(|e| panic!("{e}"));
        let wait = refused_for(limiter.check_at("a", 1, t1));
        assert!(close(wait, 0.01), "{wait:?}");
        // Idle for long: the bucket holds one second, not more.
        let t2 = t1 + Duration::from_secs(60);
        limiter
            .check_at("a", 100, t2)
            .unwrap_or_else(|e| panic!("{e}"));
        refused_for(limiter.check_at("a", 1, t2));
    }

    #[test]
    fn each_token_has_its_own_bucket() {
        let limiter = RateLimiter::new(Some(10));
        let t0 = Instant::now();
        limiter
            .check_at("a", 10, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        refused_for(limiter.check_at("a", 1, t0));
        limiter
            .check_at("b", 10, t0)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_batch_bigger_than_the_bucket_passes_when_full_and_is_paid_back() {
        let limiter = RateLimiter::new(Some(100));
        let t0 = Instant::now();
        // 250 events: passes on a full bucket, leaving a debt of 150.
        limiter
            .check_at("a", 250, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        // 10 more need the debt repaid and 10 refilled: 1.6 s.
        let wait = refused_for(limiter.check_at("a", 10, t0));
        assert!(close(wait, 1.6), "{wait:?}");
        // The next big batch waits for a full bucket: 2.5 s after the first.
        let wait = refused_for(limiter.check_at("a", 250, t0 + Duration::from_secs(1)));
        assert!(close(wait, 1.5), "{wait:?}");
        limiter
            .check_at("a", 250, t0 + Duration::from_millis(2500))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn unlimited_and_empty_requests_always_pass() {
        let limiter = RateLimiter::new(None);
        let t0 = Instant::now();
        for _ in 0..1000 {
            limiter
                .check_at("a", 1_000_000, t0)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(RateLimiter::new(Some(0)).rate, None);
        let limiter = RateLimiter::new(Some(1));
        limiter
            .check_at("a", 1, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        limiter
            .check_at("a", 0, t0)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_refusal_says_the_limit_and_when_to_retry() {
        let limiter = RateLimiter::new(Some(100));
        let t0 = Instant::now();
        limiter
            .check_at("a", 100, t0)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = limiter
            .check_at("a", 35, t0)
            .err()
            .unwrap_or_else(|| panic!("passed"));
        assert_eq!(e.kind(), crate::ErrorKind::ResourceExhausted);
        assert_eq!(
            e.to_string(),
            "rate limit of 100 events/s for this token exceeded; retry in 0.35 s"
        );
        assert_eq!(retry_after_secs(Duration::from_millis(350)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn http_answers_429_with_retry_after_and_grpc_resource_exhausted() {
        use axum::response::IntoResponse;
        let refused = || Error::RateLimited {
            limit: 100,
            retry_after: Duration::from_millis(1350),
        };
        let response = refused().into_response();
        assert_eq!(response.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from_static("2"))
        );
        let status = tonic::Status::from(refused());
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "rate limit of 100 events/s for this token exceeded; retry in 1.35 s"
        );
    }

    #[test]
    fn idle_buckets_are_dropped_when_there_are_many() {
        let limiter = RateLimiter::new(Some(10));
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS {
            limiter
                .check_at(&i.to_string(), 10, t0)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // One second later every bucket is full again: all are dropped.
        limiter
            .check_at("new", 1, t0 + Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limiter.buckets.lock().len(), 1);
    }
}
