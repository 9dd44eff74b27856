//! Runs the `sprinters` binary as a user would.

use std::process::{Command, Output};

#[allow(dead_code)]
pub(crate) mod database;

/// `sprinters ARGS...`, its output collected.
pub(crate) fn sprinters(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sprinters"))
        .args(args)
        .output()
        .expect("the sprinters binary runs")
}

/// `sprinters ARGS...` with `input` on standard input.
#[allow(dead_code)]
pub(crate) fn sprinters_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sprinters"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the sprinters binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A command that refuses its arguments exits before reading: a broken
    // pipe here is its answer, not the test's failure.
    match stdin.write_all(input.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
        _ => {}
    }
    drop(stdin);
    child.wait_with_output().expect("the sprinters binary ends")
}
