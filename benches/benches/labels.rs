//! Label parsing: target under 2 µs for a full label.

// Benchmarks stop loudly, print their percentiles, and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sprinters_core::labels::LabelParser;

const FULL: &str = "sprinters:aws/123456789012:eu-central-1/eu-central-1b/subnet-0123456789abcdef0:ubuntu-24.04-arm:c7g.xlarge:spot=rerun:sg-0123456789abcdef0:root=gp3/6000/500:temp=gp3/100/8000/400:events=false";
const SMALLEST: &str = "sprinters:aws:ubuntu-latest";

fn labels(c: &mut Criterion) {
    let parser = LabelParser::default();
    let mut group = c.benchmark_group("labels");
    group.bench_function("parse_full_label", |b| {
        b.iter(|| parser.parse_label(black_box(FULL)))
    });
    group.bench_function("parse_smallest_label", |b| {
        b.iter(|| parser.parse_label(black_box(SMALLEST)))
    });
    let job = [
        FULL.to_owned(),
        "1234567-1-build".to_owned(),
        "self-hosted".to_owned(),
    ];
    group.bench_function("parse_job_with_pinning_labels", |b| {
        b.iter(|| parser.parse_job(black_box(&job)))
    });
    group.finish();
}

criterion_group!(benches, labels);
criterion_main!(benches);
