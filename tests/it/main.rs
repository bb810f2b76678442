// SPDX-License-Identifier: MIT
//! The integration tests: one crate (`cargo test --test it`), the real
//! binary against the fake GitLab in `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod crash;
mod faults;
mod load;
mod ownership;
mod review;
mod trust;
