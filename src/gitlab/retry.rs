// SPDX-License-Identifier: MIT
//! When to repeat a request: the pure classification of one attempt's
//! outcome, and the backoff (exponential, with jitter, honouring
//! `Retry-After`) bounded by the `--wait` deadline.

use std::time::{Duration, Instant};

/// How a request may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads and verify: any transient failure is retried.
    Safe,
    /// Creates and resets: GitLab issues a token. Repeated only when GitLab
    /// surely did not process it; otherwise the caller decides.
    Issuing,
}

/// What one attempt gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer with this status.
    Status(u16),
    /// A transport error before the request could reach GitLab (connection
    /// refused, no route, DNS, connect timeout).
    NotSent,
    /// A transport error after the request may have reached GitLab
    /// (connection dropped or timed out while waiting for the answer).
    Lost,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hand the answer to the caller.
    Answer,
    /// Wait, then send again.
    Retry,
    /// GitLab may have acted (made a runner, reset a token) but the answer
    /// is lost: the caller looks for what GitLab made, or repeats once.
    Ambiguous,
}

/// The retry decision. 408, 429, 502 and 503 mean the request was not
/// processed (a timeout reading it, a rate limit, a proxy without an
/// upstream, an unavailable service); 500 and 504 may come after GitLab
/// acted.
pub fn classify(outcome: Outcome, repeat: Repeat) -> Step {
    use Outcome::*;
    match (repeat, outcome) {
        (_, NotSent) => Step::Retry,
        (Repeat::Safe, Lost) => Step::Retry,
        (Repeat::Issuing, Lost) => Step::Ambiguous,
        (_, Status(408 | 429 | 502 | 503)) => Step::Retry,
        (Repeat::Safe, Status(500 | 504)) => Step::Retry,
        (Repeat::Issuing, Status(500 | 504)) => Step::Ambiguous,
        (_, Status(_)) => Step::Answer,
    }
}

pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter up to a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    delay: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn new(deadline: Instant) -> Backoff {
        Backoff {
            delay: BACKOFF_START,
            deadline,
        }
    }

    /// The wait before the next attempt, or `None` when it would pass the
    /// deadline. `retry_after` is the server's `Retry-After`; `rand` is in
    /// [0, 1). Without `Retry-After`: a random time in [d/2, d] for the
    /// current delay d. With it, r: a random time in [r, 1.5 r + d/2], so
    /// that a cluster told the same `Retry-After` does not come back in one
    /// burst.
    pub fn next(
        &mut self,
        retry_after: Option<Duration>,
        now: Instant,
        rand: f64,
    ) -> Option<Duration> {
        let rand = rand.clamp(0.0, 1.0);
        let wait = match retry_after {
            Some(r) => r
                .checked_add(r.checked_mul(1)?.mul_f64(rand / 2.0))?
                .checked_add(self.delay.mul_f64(rand / 2.0))?,
            None => self.delay.mul_f64(0.5 + rand / 2.0),
        };
        if now.checked_add(wait).is_none_or(|t| t > self.deadline) {
            return None;
        }
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        Some(wait)
    }
}

/// A number in [0, 1) from the process's random hasher seed.
pub fn random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (r % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use Outcome::*;
        use Repeat::*;
        let table = [
            (Status(200), Safe, Step::Answer),
            (Status(201), Issuing, Step::Answer),
            (Status(403), Safe, Step::Answer),
            (Status(404), Issuing, Step::Answer),
            (Status(410), Issuing, Step::Answer),
            (Status(400), Safe, Step::Answer),
            (Status(408), Issuing, Step::Retry),
            (Status(429), Safe, Step::Retry),
            (Status(429), Issuing, Step::Retry),
            (Status(502), Issuing, Step::Retry),
            (Status(503), Issuing, Step::Retry),
            (Status(500), Safe, Step::Retry),
            (Status(504), Safe, Step::Retry),
            (Status(500), Issuing, Step::Ambiguous),
            (Status(504), Issuing, Step::Ambiguous),
            (Status(501), Issuing, Step::Answer),
            (NotSent, Safe, Step::Retry),
            (NotSent, Issuing, Step::Retry),
            (Lost, Safe, Step::Retry),
            (Lost, Issuing, Step::Ambiguous),
        ];
        for (outcome, repeat, want) in table {
            assert_eq!(classify(outcome, repeat), want, "{outcome:?} {repeat:?}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_deadline() {
        let t0 = Instant::now();
        let mut b = Backoff::new(t0 + Duration::from_secs(10));
        // rand 1.0: the full delay; 0.0: half of it
        assert_eq!(b.next(None, t0, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(b.next(None, t0, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(b.next(None, t0, 1.0), Some(Duration::from_secs(2)));
        // Retry-After is honoured, plus up to half the current delay
        assert_eq!(
            b.next(Some(Duration::from_secs(3)), t0, 0.0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            b.next(Some(Duration::from_secs(3)), t0, 1.0),
            Some(Duration::from_millis(8500))
        );
        // past the deadline: give up
        assert_eq!(b.next(Some(Duration::from_secs(11)), t0, 0.0), None);
        assert_eq!(b.next(None, t0 + Duration::from_secs(10), 0.0), None);
        // a Retry-After near u64::MAX seconds never panics
        assert_eq!(b.next(Some(Duration::from_secs(u64::MAX)), t0, 0.5), None);
        // the delay stops growing at BACKOFF_MAX
        let mut b = Backoff::new(t0 + Duration::from_secs(3600));
        let waits: Vec<Duration> = (0..10).filter_map(|_| b.next(None, t0, 1.0)).collect();
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
    }
}
