//! Entry points for the fuzzers (feature `fuzzing`): what the store does
//! with bytes read from disk, reachable without a data directory.

use sprinters_core::Result;

use crate::frame;

/// Decodes `bytes` as a segment (the last one, which may end torn, when
/// `last`): how many frames it holds, or the error naming the damage.
pub fn scan_segment(bytes: &[u8], last: bool) -> Result<usize> {
    frame::scan(bytes, "fuzz", last).map(|(frames, _)| frames.len())
}

/// `body` behind a frame header with its length and checksums right, so
/// that a fuzzer explores past them.
pub fn framed(body: &[u8]) -> Vec<u8> {
    frame::framed_for_fuzzing(body)
}
