// SPDX-License-Identifier: MIT
//! `import`: adopt a hand-registered host. Reads its `config.toml`, learns
//! each runner's id by verify, and writes `config.template` and
//! `runner-data.json` from it, re-registering nothing.

use crate::error::{Error, Result};
use crate::reconcile::Outcome;
use crate::settings::Settings;

/// Run `import`.
pub fn run(_s: &Settings) -> Result<Outcome> {
    Err(Error::internal("import is not built yet"))
}
