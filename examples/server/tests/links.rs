//! The production `sprinters` binary links no stand-in: no GitHub or EC2
//! stand-in, no HTTP mock server, no test App key (all of them live behind
//! the adapters' `testing` features and in dev-dependencies). The demo,
//! which needs them, is a binary of its own (`examples/demo`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// Crates that exist only to stand in for a service in tests.
const TEST_ONLY_CRATES: &[&str] = &["wiremock", "mockall", "aws-smithy-mocks", "proptest"];

/// Features that compile stand-ins or test keys in.
const TEST_ONLY_FEATURES: &[&str] = &["testing", "test-util"];

#[test]
fn the_sprinters_binary_links_no_stand_in_mock_or_test_key() {
    // `cargo tree` resolves features as `cargo build -p sprinters-server`
    // does when dev-dependencies are left out: what the binary links.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "sprinters-server",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        tree.lines().any(|l| l.starts_with("sprinters-github ")),
        "the tree is the binary's: {tree}"
    );
    for line in tree.lines() {
        let name = line.split(' ').next().unwrap_or_default();
        assert!(
            !TEST_ONLY_CRATES.contains(&name),
            "the sprinters binary links {name}: {line}"
        );
        let features = line
            .rsplit_once('[')
            .and_then(|(_, f)| f.split_once(']'))
            .map_or("", |(f, _)| f);
        for feature in features.split(',') {
            assert!(
                !(name.starts_with("sprinters-") && TEST_ONLY_FEATURES.contains(&feature)),
                "the sprinters binary builds {name} with its `{feature}` feature: {line}"
            );
        }
    }
}
