// SPDX-License-Identifier: MIT
//! `doctor`: check the whole installation, read-only, and say for each
//! problem the command or edit that fixes it.

use crate::error::{Error, Result};
use crate::reconcile::Outcome;
use crate::settings::Settings;

/// Run `doctor`.
pub fn run(_s: &Settings) -> Result<Outcome> {
    Err(Error::internal("doctor is not built yet"))
}
