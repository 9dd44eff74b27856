//! The embedding programs run as a newcomer would run them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn the_custom_layer_logs_every_call_the_engine_makes() {
    let output = Command::new(env!("CARGO_BIN_EXE_custom-layer"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for call in [
        "store put_job",
        "registry create_jit_runner",
        "credentials credentials",
        "launcher launch",
    ] {
        assert!(stdout.contains(call), "{call} is logged: {stdout}");
    }
    assert!(stdout.contains(" calls, 1 launch"), "{stdout}");
}

#[test]
fn the_embedded_engine_names_what_it_is_missing() {
    let output = Command::new(env!("CARGO_BIN_EXE_embed-engine"))
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GITHUB_APP_ID is not set"), "{stderr}");
}
