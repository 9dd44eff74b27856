//! The fuzz targets' bodies (`fuzz/targets.rs`) on the seeds `scripts/fuzz`
//! starts from and on every input a fuzzer ever found a problem with
//! (`fuzz/regressions/<target>/`): each must return, whatever the input.
//! `scripts/test` runs this; `scripts/fuzz` runs the fuzzers themselves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    out.sort();
    out
}

#[test]
fn every_saved_finding_returns() {
    let mut ran = 0;
    for (name, run) in targets::TARGETS {
        for file in files(&root().join("fuzz/regressions").join(name)) {
            run(&std::fs::read(&file).unwrap());
            ran += 1;
        }
    }
    println!("{ran} saved inputs");
}

#[test]
fn the_seeds_reach_every_target() {
    let fixtures = root().join("sprinters-github/tests/fixtures/webhooks");
    let webhooks = files(&fixtures);
    assert!(webhooks.len() >= 10, "{fixtures:?}");
    for file in webhooks {
        let mut input = vec![0u8]; // workflow_job
        input.extend(std::fs::read(&file).unwrap());
        targets::webhook(&input);
    }
    for label in [
        "sprinters:aws:ubuntu-latest",
        "sprinters:aws/123456789012:eu-central-1b:ubuntu-24.04-arm:c7g.xlarge:spot=auto:root=gp3/max/max:temp=zram",
        "sprinters:aws:ubuntu-latest\n5555001-2-build",
    ] {
        targets::labels(label.as_bytes());
    }
    let example = std::fs::read(root().join("examples/server/sprinters.example.toml")).unwrap();
    targets::config(&example);
    targets::webhook(&[]);
}
