//! Runs the `sprinters` binary as a user would.

use std::process::{Command, Output};

/// `sprinters ARGS...`, its output collected.
pub(crate) fn sprinters(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sprinters"))
        .args(args)
        .output()
        .expect("the sprinters binary runs")
}
