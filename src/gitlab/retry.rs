// SPDX-License-Identifier: MIT
//! When to repeat a request: the pure classification of one attempt's
//! outcome, the backoff (exponential, with jitter, honouring
//! `Retry-After`) bounded by the `--wait` deadline, and the pacing a run
//! learns from GitLab's `RateLimit-*` headers and from its latency.

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
            None => half_to_whole(self.delay, rand),
        };
        if now.checked_add(wait).is_none_or(|t| t > self.deadline) {
            return None;
        }
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        Some(wait)
    }

    /// [`Backoff::next`] after an attempt that took `took`: a slow failure
    /// without `Retry-After` (a 502 after Workhorse's proxy timeout, an
    /// answer that never came) waits about as long again, so that the
    /// queue it met drains first, and twice as long for each slow failure
    /// the run met before (`slow_before`): Puma still serves what Workhorse
    /// gave up on, so retries that come back as fast as they failed keep
    /// the queue past the timeout for ever (a congestion collapse). Up to
    /// [`BACKOFF_MAX`]; a wait that would pass the deadline becomes a last
    /// try at a random time in the second half of what is left, not the
    /// short plain one (every congested host would come back at once).
    pub fn next_after(
        &mut self,
        retry_after: Option<Duration>,
        took: Duration,
        slow_before: u32,
        now: Instant,
        rand: f64,
    ) -> Option<Duration> {
        let wait = self.next(retry_after, now, rand)?;
        if retry_after.is_some() || took < SLOW {
            return Some(wait);
        }
        let slow = half_to_whole(took.saturating_mul(1 << slow_before.min(5)), rand)
            .min(BACKOFF_MAX.max(took));
        match now.checked_add(slow) {
            Some(t) if t <= self.deadline => Some(wait.max(slow)),
            _ => {
                let left = self.deadline.saturating_duration_since(now);
                Some(wait.max(half_to_whole(left, rand)))
            }
        }
    }
}

/// A 502 that took this long is Workhorse giving up on a request queued
/// for Puma (its proxy timeout), not a missing upstream: Puma may still
/// serve it, so a create or reset behind it may have happened.
pub const PROXY_GAVE_UP: Duration = Duration::from_secs(2);

/// An answer slower than this, with no throttle header, is a saturated
/// GitLab (requests queued for Puma's workers): the run slows down.
pub const SLOW: Duration = Duration::from_secs(1);

/// The outcome of an answer with `status` that took `took`: a slow 502
/// may have been acted on ([`PROXY_GAVE_UP`]).
pub fn outcome(status: u16, took: Duration) -> Outcome {
    if status == 502 && took >= PROXY_GAVE_UP {
        Outcome::Lost
    } else {
        Outcome::Status(status)
    }
}

/// What an answer said about GitLab's limits: the `RateLimit-*` headers
/// of a throttled answer (gitlab MR !50833, 13.8), which an unthrottled one
/// carries too behind a flag (gitlab MR !209485, ≈18.6), and `Retry-After`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `RateLimit-Name`: the throttle (`throttle_unauthenticated_api`, …).
    pub name: Option<String>,
    /// `RateLimit-Limit`: the period's quota scaled to one minute.
    pub per_minute: Option<u64>,
    /// `RateLimit-Observed`: the requests counted in this period, this one
    /// included (a refused request is counted too).
    pub observed: Option<u64>,
    /// `RateLimit-Remaining`: the period's quota left.
    pub remaining: Option<u64>,
    /// `RateLimit-Reset`: the Unix second the period ends.
    pub reset: Option<i64>,
    /// `Retry-After` in seconds.
    pub retry_after: Option<Duration>,
}

impl Limits {
    /// From an answer's headers (`header` looks one up by name).
    pub fn parse(header: impl Fn(&str) -> Option<String>) -> Limits {
        let num = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
        Limits {
            name: header("ratelimit-name")
                .map(|v| v.trim().chars().take(100).collect::<String>())
                .filter(|v| !v.is_empty()),
            per_minute: num("ratelimit-limit").filter(|l| *l > 0),
            observed: num("ratelimit-observed"),
            remaining: num("ratelimit-remaining"),
            reset: num("ratelimit-reset").and_then(|v| i64::try_from(v).ok()),
            retry_after: num("retry-after").map(Duration::from_secs),
        }
    }
}

/// The pacing of one run against one GitLab: what it learnt of the
/// throttle's period, and how many requests it sends in all and has had
/// served (each other host is taken to need as many).
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    share: f64,
    served: f64,
    /// The period's quota and length, once an unthrottled answer said
    /// them (quota = observed + remaining).
    period: Option<(u64, Duration)>,
    /// The most the throttled answers so far showed the quota is at least
    /// (a 429 late in a period shows little of it).
    quota_floor: f64,
}

/// What [`Pace::throttled`] makes of a throttled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    /// Until the period ends (`Retry-After`).
    pub reset: Duration,
    /// Until this run's turn: the requests ahead of it in this period,
    /// beyond its quota, spread at the throttle's rate after the reset.
    pub turn: Duration,
    /// The requests ahead of this one beyond the quota.
    pub ahead: u64,
}

impl Pace {
    /// `share`: the requests this run sends (its runners), at least 1.
    pub fn new(share: usize) -> Pace {
        Pace {
            share: share.max(1) as f64,
            served: 0.0,
            period: None,
            quota_floor: 0.0,
        }
    }

    /// The requests this run has still to send, at least 1.
    fn left(&self) -> f64 {
        (self.share - self.served).max(1.0)
    }

    /// The throttle's rate (requests a second) and the period's quota:
    /// known from an unthrottled answer, else the rate from
    /// `RateLimit-Limit` and the least quota the answer allows (the period
    /// is at least `Retry-After` long, and `observed` went past it).
    fn quota(&self, l: &Limits, reset: Duration) -> Option<(f64, f64)> {
        if let Some((quota, period)) = self.period
            && !period.is_zero()
        {
            return Some((quota as f64 / period.as_secs_f64(), quota as f64));
        }
        let rate = l.per_minute? as f64 / 60.0;
        let observed = l.observed? as f64;
        let quota = (rate * reset.as_secs_f64().max(1.0))
            .floor()
            .max(self.quota_floor)
            .min(observed - 1.0)
            .max(0.0);
        Some((rate, quota))
    }

    /// A 429 with `RateLimit-*` headers: come back not on the reset second
    /// (every throttled host is told the same) but at this run's turn. The
    /// answer's `RateLimit-Observed` is its place in the period: the
    /// requests before it beyond the quota go first, at the throttle's
    /// rate, each host taken to need what this run still needs. When the
    /// period is known (unthrottled answers' headers), hosts admitted
    /// early in it wait their turn too ([`Pace::answered`]), so the places
    /// count whole hosts: `observed × share` requests before the reset's
    /// quota. `rand` in [0, 1) spreads the turn over one host's slot.
    /// `None` without the headers (plain backoff).
    pub fn throttled(&mut self, l: &Limits, rand: f64) -> Option<Throttled> {
        // a second at least: `Retry-After: 0` is no reason to hammer
        let reset = l.retry_after?.max(Duration::from_secs(1));
        let (rate, quota) = self.quota(l, reset)?;
        if rate <= 0.0 {
            return None;
        }
        if self.period.is_none() {
            self.quota_floor = self
                .quota_floor
                .max((rate * reset.as_secs_f64().max(1.0)).floor());
        }
        let observed = l.observed? as f64;
        let left = self.left();
        let ahead = match self.period {
            Some(_) => (observed * self.share - quota - left).max(0.0),
            None => ((observed - quota).max(1.0) - 1.0) * left,
        };
        let turn =
            Duration::try_from_secs_f64((ahead + rand.clamp(0.0, 1.0) * left) / rate).ok()?;
        Some(Throttled {
            reset,
            turn,
            ahead: ahead as u64,
        })
    }

    /// An answer GitLab served (not throttled), that took `took`: the wait
    /// before this run's next request. With an unthrottled answer's
    /// headers (the period learnt from them): when the hosts up to this
    /// one's place (`RateLimit-Observed`), each sending this run's share,
    /// need more than the period's quota, the rest of this run waits for
    /// the reset and its turn after it, rather than meet a 429. No
    /// throttle headers and a slow answer: Puma's queue is long; wait up
    /// to half the time it took, so that the queue does not grow past
    /// Workhorse's timeout. `now_unix` is the clock's Unix second.
    pub fn answered(&mut self, l: &Limits, took: Duration, now_unix: i64, rand: f64) -> Duration {
        let rand = rand.clamp(0.0, 1.0);
        self.served += 1.0;
        let done = self.served >= self.share;
        if let (Some(observed), Some(remaining)) = (l.observed, l.remaining) {
            let quota = observed.saturating_add(remaining);
            if let Some(per_minute) = l.per_minute
                && quota > 0
                && let Ok(period) =
                    Duration::try_from_secs_f64(quota as f64 * 60.0 / per_minute as f64)
            {
                self.period = Some((quota, period));
            }
            let Some((quota, period)) = self.period.filter(|(q, p)| *q > 0 && !p.is_zero()) else {
                return Duration::ZERO;
            };
            let need = observed as f64 * self.share;
            if done || need <= quota as f64 {
                return Duration::ZERO;
            }
            let Some(reset) = l.reset else {
                return Duration::ZERO;
            };
            let reset = Duration::from_secs(reset.saturating_sub(now_unix).max(0) as u64);
            let rate = quota as f64 / period.as_secs_f64();
            let left = self.left();
            let ahead = (need - quota as f64 - left).max(0.0);
            let turn =
                Duration::try_from_secs_f64((ahead + rand * left) / rate).unwrap_or_default();
            return reset.saturating_add(turn);
        }
        if took >= SLOW && !done {
            return took.mul_f64(rand / 2.0);
        }
        Duration::ZERO
    }
}

/// The longest `Retry-After` taken for a hint rather than a limit.
pub const HINT_MAX: Duration = Duration::from_secs(300);

/// A `Retry-After` without `RateLimit-*` headers that passes the deadline
/// but is at most [`HINT_MAX`] (GitLab's database migrations answer
/// `Retry-After: 60`, whatever they have left) is a hint, not a quota:
/// rather than give up at once, try once more at a random time in the
/// second half of what is left (`left`), so that a short migration does
/// not fail every host that boots during it. `None` for a longer one (a
/// limit this run cannot outwait: say so now) or less than a second left.
pub fn last_try(retry_after: Duration, left: Duration, rand: f64) -> Option<Duration> {
    (retry_after <= HINT_MAX && left >= Duration::from_secs(1)).then(|| half_to_whole(left, rand))
}

/// A random time in [d/2, d] for `rand` in [0, 1]: the jitter of every
/// wait here, so that hosts told the same thing do not come back together.
pub fn half_to_whole(d: Duration, rand: f64) -> Duration {
    d.mul_f64(0.5 + rand.clamp(0.0, 1.0) / 2.0)
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

    #[test]
    fn a_slow_failure_waits_about_as_long_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (took, retry_after, slow failures before, rand, deadline in s, want)
        let table = [
            // fast: the plain backoff
            (ms(100), None, 0, 1.0, 60, Some(ms(500))),
            (ms(100), None, 3, 1.0, 60, Some(ms(500))),
            // slow (a 502 after 5 s in Puma's queue): 2.5 s to 5 s
            (s(5), None, 0, 0.0, 60, Some(ms(2500))),
            (s(5), None, 0, 1.0, 60, Some(s(5))),
            // after slow failures before it: twice as long each, up to 30 s
            (s(5), None, 1, 1.0, 60, Some(s(10))),
            (s(5), None, 2, 0.0, 60, Some(s(10))),
            (s(5), None, 3, 1.0, 60, Some(s(30))),
            (s(5), None, 40, 1.0, 60, Some(s(30))),
            // Retry-After wins
            (s(5), Some(s(1)), 2, 0.0, 60, Some(s(1))),
            // the slow wait would pass the deadline: a last try in the
            // second half of what is left, never the short plain one
            (s(5), None, 0, 1.0, 2, Some(s(2))),
            (s(5), None, 0, 0.0, 2, Some(s(1))),
            (s(5), None, 4, 0.0, 20, Some(s(10))),
            // even the plain one would
            (s(5), None, 0, 1.0, 0, None),
        ];
        for (took, retry_after, before, rand, deadline, want) in table {
            let mut b = Backoff::new(t0 + s(deadline));
            assert_eq!(
                b.next_after(retry_after, took, before, t0, rand),
                want,
                "{took:?} {retry_after:?} {before} {rand} {deadline}"
            );
        }
    }

    #[test]
    fn a_retry_after_past_the_deadline_gets_one_last_try_within_it() {
        let s = Duration::from_secs;
        // (retry_after, left, rand, want)
        let table = [
            (s(60), s(58), 0.0, Some(s(29))),
            (s(60), s(58), 1.0, Some(s(58))),
            (s(60), s(1), 0.0, Some(Duration::from_millis(500))),
            (s(60), Duration::from_millis(999), 1.0, None),
            (s(300), s(58), 1.0, Some(s(58))),
            // an hour (GitLab.com's budget without headers), or junk: a
            // limit, not a hint
            (s(301), s(58), 1.0, None),
            (s(3600), s(58), 1.0, None),
            (s(u64::MAX), s(58), 1.0, None),
        ];
        for (retry_after, left, rand, want) in table {
            assert_eq!(
                last_try(retry_after, left, rand),
                want,
                "{retry_after:?} {left:?} {rand}"
            );
        }
    }

    #[test]
    fn a_slow_502_may_have_been_acted_on() {
        let ms = Duration::from_millis;
        let table = [
            (502, ms(30), Outcome::Status(502)),
            (502, ms(1999), Outcome::Status(502)),
            (502, ms(2000), Outcome::Lost),
            (502, ms(60_000), Outcome::Lost),
            (503, ms(60_000), Outcome::Status(503)),
            (429, ms(5000), Outcome::Status(429)),
        ];
        for (status, took, want) in table {
            assert_eq!(outcome(status, took), want, "{status} {took:?}");
        }
        // so a create behind a slow 502 is ambiguous; a read is retried
        assert_eq!(
            classify(outcome(502, ms(5000)), Repeat::Issuing),
            Step::Ambiguous
        );
        assert_eq!(classify(outcome(502, ms(5000)), Repeat::Safe), Step::Retry);
    }

    fn limits(pairs: &[(&str, &str)]) -> Limits {
        Limits::parse(|name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        })
    }

    /// A throttled answer of Rack::Attack: `quota` a `period` s, the
    /// `observed`-th request, `left` s of the period left.
    fn throttled(quota: u64, period: u64, observed: u64, left: u64) -> Limits {
        let per_minute = (quota * 60).div_ceil(period).to_string();
        limits(&[
            ("RateLimit-Name", "throttle_unauthenticated_api"),
            ("RateLimit-Limit", &per_minute),
            ("RateLimit-Observed", &observed.to_string()),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", "1700000010"),
            ("RateLimit-ResetTime", "Tue, 14 Nov 2023 22:13:30 GMT"),
            ("Retry-After", &left.to_string()),
        ])
    }

    #[test]
    fn the_headers_are_read() {
        let l = throttled(300, 10, 301, 9);
        assert_eq!(
            l,
            Limits {
                name: Some("throttle_unauthenticated_api".into()),
                per_minute: Some(1800),
                observed: Some(301),
                remaining: Some(0),
                reset: Some(1_700_000_010),
                retry_after: Some(Duration::from_secs(9)),
            }
        );
        // junk is no header; a zero limit is none
        let l = limits(&[
            ("RateLimit-Limit", "0"),
            ("RateLimit-Observed", "many"),
            ("Retry-After", "-1"),
            ("RateLimit-Name", "  "),
        ]);
        assert_eq!(l, Limits::default());
    }

    #[test]
    fn a_throttled_run_comes_back_at_its_turn_not_on_the_reset_second() {
        // (quota, period s, observed, left s, share, rand, want turn s, ahead)
        let table = [
            // the first refused of a burst at the period's start: right
            // after the reset
            (300, 10, 301, 10, 1, 0.0, 0.0, 0),
            // the 500th: 199 before it beyond the quota, at 30/s
            (300, 10, 500, 10, 1, 0.0, 199.0 / 30.0, 199),
            // each of them needs two requests: twice as far apart
            (300, 10, 500, 10, 2, 0.0, 2.0 * 199.0 / 30.0, 398),
            // rand spreads the turn over one host's slot
            (300, 10, 500, 10, 2, 1.0, 2.0 * 200.0 / 30.0, 398),
            // 5 s into the period: only 150 of the quota are certain
            // (the period is at least Retry-After long), so it waits longer
            (300, 10, 500, 5, 1, 0.0, 349.0 / 30.0, 349),
            // GitLab.com: 60 an hour, the 61st: an hour left (RateLimit-Limit
            // rounds to 1 a minute, so it guesses one more ahead)
            (60, 3600, 61, 3599, 1, 0.0, 60.0, 1),
        ];
        for (quota, period, observed, left, share, rand, turn, ahead) in table {
            let l = throttled(quota, period, observed, left);
            // a fresh run: nothing learnt before
            let t = Pace::new(share).throttled(&l, rand).unwrap();
            assert_eq!(t.reset, Duration::from_secs(left), "{l:?}");
            assert!(
                (t.turn.as_secs_f64() - turn).abs() < 0.01,
                "{observed} {left} {share} {rand}: {:?} != {turn}",
                t.turn
            );
            assert_eq!(t.ahead, ahead, "{observed} {left}");
        }
        // served once of two: the hosts ahead are taken to need one more
        // each, as this run does
        let mut p = Pace::new(2);
        p.answered(&Limits::default(), Duration::ZERO, 0, 0.0);
        let t = p.throttled(&throttled(300, 10, 500, 10), 0.0).unwrap();
        assert_eq!(t.ahead, 199);
        // refused again late in a later period (2 s left): the quota the
        // first 429 showed still holds
        let mut p = Pace::new(1);
        p.throttled(&throttled(300, 10, 500, 10), 0.0).unwrap();
        let t = p.throttled(&throttled(300, 10, 310, 2), 0.0).unwrap();
        assert_eq!(t.ahead, 9);
        // Retry-After: 0 (a broken proxy): a second at least
        let t = Pace::new(1)
            .throttled(&throttled(300, 10, 301, 0), 0.0)
            .unwrap();
        assert_eq!(t.reset, Duration::from_secs(1));
        // without the RateLimit headers (a migration's 429): plain backoff
        let l = limits(&[("Retry-After", "60")]);
        assert_eq!(Pace::new(2).throttled(&l, 0.5), None);
    }

    #[test]
    fn an_unthrottled_answer_slows_the_run_before_its_first_429() {
        let s = Duration::from_secs;
        let secs = Duration::from_secs_f64;
        let now = 1_700_000_000;
        let unthrottled = |observed: u64, remaining: u64| {
            limits(&[
                ("RateLimit-Name", "throttle_unauthenticated_api"),
                ("RateLimit-Limit", "1800"),
                ("RateLimit-Observed", &observed.to_string()),
                ("RateLimit-Remaining", &remaining.to_string()),
                ("RateLimit-Reset", "1700000004"),
            ])
        };
        // two requests a host, 300 a 10 s period: the first 150 hosts fit;
        // the period is learnt
        let mut p = Pace::new(2);
        assert_eq!(p.answered(&unthrottled(150, 150), s(0), now, 0.5), s(0));
        assert_eq!(p.period, Some((300, s(10))));
        // the 151st host waits for the reset: its first request took one
        // of the quota, so one request of the first 150 hosts goes over
        // and comes first in the next period, then its own
        let mut p = Pace::new(2);
        assert_eq!(
            p.answered(&unthrottled(151, 149), s(0), now, 0.0),
            s(4) + secs(1.0 / 30.0)
        );
        // the 250th: 199 before it, at 30/s, spread over its one request
        let mut p = Pace::new(2);
        assert_eq!(
            p.answered(&unthrottled(250, 50), s(0), now, 1.0),
            s(4) + secs(200.0 / 30.0)
        );
        // its last request served: nothing to wait for
        assert_eq!(p.answered(&unthrottled(299, 1), s(0), now, 1.0), s(0));
        // host 10 of a burst: within the quota, no wait (a node or two
        // restarting never waits for a period's end)
        let mut p = Pace::new(2);
        assert_eq!(p.answered(&unthrottled(10, 290), s(0), now, 0.0), s(0));
        // and a later 429 counts whole hosts before it with the learnt
        // quota: the 400th host after 150 admitted and 150 waiting
        let mut p = Pace::new(2);
        p.answered(&unthrottled(100, 200), s(0), now, 0.0);
        let mut fresh = Pace::new(2);
        fresh.period = p.period;
        let t = fresh.throttled(&throttled(300, 10, 400, 5), 0.0).unwrap();
        assert_eq!(t.ahead, 400 * 2 - 300 - 2);
        // no throttle headers: latency is the signal (Puma's queue)
        let none = Limits::default();
        let mut p = Pace::new(3);
        assert_eq!(
            p.answered(&none, Duration::from_millis(200), now, 1.0),
            s(0)
        );
        assert_eq!(p.answered(&none, s(4), now, 1.0), s(2));
        // the last request: no pause
        assert_eq!(p.answered(&none, s(4), now, 1.0), s(0));
    }
}
