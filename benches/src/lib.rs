//! Shared helpers of the Sprinters benchmarks.
