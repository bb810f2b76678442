// SPDX-License-Identifier: MIT
//! SIGTERM and SIGINT: systemd sends SIGTERM on `TimeoutStartSec=` or
//! `systemctl stop`. Dying at once could lose a token GitLab has just issued,
//! so the signal only raises a flag: the request in flight finishes, its
//! token is persisted, and the next request (or retry wait, or lock wait)
//! stops the run with exit 143 (130 for SIGINT).

use crate::error::{Error, Kind, Result};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catch SIGTERM and SIGINT from now on.
pub fn install() {
    let flag = CAUGHT.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal of the same kind while stopping is not fatal
        // either: the run is already stopping at the next safe point.
        let _ = signal_hook::flag::register_usize(sig, flag.clone(), sig as usize);
    }
}

/// The signal caught, if any.
pub fn caught() -> Option<i32> {
    let n = CAUGHT.get()?.load(Ordering::SeqCst);
    (n != 0).then_some(n as i32)
}

/// `Err` when a stop was asked for: the run ends at this safe point.
pub fn check(what: &str) -> Result<()> {
    match caught() {
        None => Ok(()),
        Some(sig) => Err(stopped(sig, what)),
    }
}

fn stopped(sig: i32, what: &str) -> Error {
    let (kind, name) = if sig == signal_hook::consts::SIGINT {
        (Kind::Interrupted, "SIGINT")
    } else {
        (Kind::Terminated, "SIGTERM")
    };
    Error::new(
        kind,
        format!("stopped by {name} before {what}; every token GitLab issued so far is saved"),
    )
}

/// Sleep for `d`, waking early (with `Err`) when a stop is asked for.
pub fn sleep(d: Duration, what: &str) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check(what)?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
