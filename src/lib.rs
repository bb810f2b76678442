// SPDX-License-Identifier: MIT
//! gitlab-runner-auth as a library: the modules the binary (`main.rs`) and
//! the tests use. Only `gitlab` touches the network; only `fsutil` writes
//! files.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod diff;

pub mod error;
pub mod fsutil;
pub mod gitlab;
pub mod host;

pub mod logging;
pub mod metrics;
pub mod reconcile;
pub mod secret;
pub mod settings;

pub mod signals;
pub mod state;

pub mod template;
pub mod trust;
pub mod untrusted;
