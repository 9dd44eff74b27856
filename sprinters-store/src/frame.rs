//! The on-disk frame: everything but its framing is ciphertext.
//!
//! ```text
//! u32 body length | u32 header check | u32 CRC-32C of the body | body
//! body = u8 kind | u32 data key id | [16] opaque record id | u64 version | [12] nonce | ciphertext
//! ```
//!
//! The header check lets a reader tell a torn tail (the process died
//! mid-write: cut it off) from corruption (a flipped bit anywhere: refuse,
//! naming the segment and offset). The first 29 bytes of the body are the
//! associated data of the ciphertext, so a record moved to another account,
//! another id or another version fails to open.

use sprinters_core::{Error, Result};

use crate::crypto::NONCE_LEN;

pub(crate) const HEADER_LEN: usize = 12;
const MAGIC: u32 = 0x5350_524e; // "SPRN"
const MAX_BODY: u32 = 16 << 20;
/// kind + key id + record id + version: the associated data.
pub(crate) const AAD_LEN: usize = 1 + 4 + 16 + 8;
const BODY_PREFIX: usize = AAD_LEN + NONCE_LEN;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Job = 1,
    JobTombstone = 2,
    Delivery = 3,
    DeliveryPurge = 4,
    Lease = 5,
    Vault = 6,
    VaultTombstone = 7,
    Tenant = 8,
    TenantTombstone = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Job,
            2 => Kind::JobTombstone,
            3 => Kind::Delivery,
            4 => Kind::DeliveryPurge,
            5 => Kind::Lease,
            6 => Kind::Vault,
            7 => Kind::VaultTombstone,
            8 => Kind::Tenant,
            9 => Kind::TenantTombstone,
            _ => return None,
        })
    }
}

/// The associated data of a frame.
pub(crate) fn aad(kind: Kind, key_id: u32, record_id: &[u8; 16], version: u64) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[0] = kind as u8;
    aad[1..5].copy_from_slice(&key_id.to_le_bytes());
    aad[5..21].copy_from_slice(record_id);
    aad[21..29].copy_from_slice(&version.to_le_bytes());
    aad
}

/// Where the nonce goes in a frame started by [`start`].
pub(crate) const NONCE_AT: usize = HEADER_LEN + AAD_LEN;

/// A frame's first bytes (header to fill, associated data, nonce slot),
/// with room for `plaintext_len` bytes and the tag after them.
pub(crate) fn start(aad: &[u8; AAD_LEN], plaintext_len: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(NONCE_AT + NONCE_LEN + plaintext_len + 16);
    frame.extend_from_slice(&[0; HEADER_LEN]);
    frame.extend_from_slice(aad);
    frame.extend_from_slice(&[0; NONCE_LEN]);
    frame
}

/// Fills in the header of a frame built with [`start`] and sealed.
pub(crate) fn finish(frame: &mut [u8]) {
    let len = (frame.len() - HEADER_LEN) as u32;
    frame[0..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&(crc32c::crc32c(&len.to_le_bytes()) ^ MAGIC).to_le_bytes());
    let crc = crc32c::crc32c(&frame[HEADER_LEN..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// A frame of an already sealed record (for tests of the framing alone).
#[cfg(test)]
pub(crate) fn encode(aad: &[u8; AAD_LEN], nonce: &[u8; NONCE_LEN], ciphertext: &[u8]) -> Vec<u8> {
    let mut frame = start(aad, ciphertext.len());
    frame[NONCE_AT..NONCE_AT + NONCE_LEN].copy_from_slice(nonce);
    frame.extend_from_slice(ciphertext);
    finish(&mut frame);
    frame
}

/// One frame read back, borrowing the segment's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) kind: Kind,
    pub(crate) key_id: u32,
    pub(crate) record_id: [u8; 16],
    pub(crate) version: u64,
    pub(crate) aad: &'a [u8; AAD_LEN],
    pub(crate) nonce: &'a [u8; NONCE_LEN],
    pub(crate) ciphertext: &'a [u8],
}

/// How a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// After its last complete frame.
    Clean,
    /// With a partial frame at this offset (the process died mid-write).
    Torn(u64),
}

fn corrupt(segment: &str, offset: usize, what: &str) -> Error {
    Error::integrity(format!("segment {segment} offset {offset}: {what}"))
}

/// `body` behind a header whose length and checksums match it.
#[cfg(feature = "fuzzing")]
pub(crate) fn framed_for_fuzzing(body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(crc32c::crc32c(&len.to_le_bytes()) ^ MAGIC).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes one frame from `bytes` at `offset` (a read of a known frame).
pub(crate) fn decode_one<'a>(bytes: &'a [u8], segment: &str, offset: u64) -> Result<Frame<'a>> {
    match scan_from(bytes, segment, 0, false)?.0.into_iter().next() {
        Some(mut f) => {
            f.offset = offset;
            Ok(f)
        }
        None => Err(corrupt(segment, offset as usize, "no frame")),
    }
}

/// Every frame of a segment. Only the `last` segment may end torn.
pub(crate) fn scan<'a>(
    bytes: &'a [u8],
    segment: &str,
    last: bool,
) -> Result<(Vec<Frame<'a>>, End)> {
    scan_from(bytes, segment, 0, last)
}

fn scan_from<'a>(
    bytes: &'a [u8],
    segment: &str,
    start: usize,
    last: bool,
) -> Result<(Vec<Frame<'a>>, End)> {
    let mut frames = Vec::new();
    let mut pos = start;
    loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            return Ok((frames, End::Clean));
        }
        // A crash can leave a prefix of the last write, or zeros the file
        // system allocated for it; nothing else is a torn tail.
        let torn = last && (rest.len() < HEADER_LEN || rest.iter().all(|b| *b == 0));
        if torn {
            return Ok((frames, End::Torn(pos as u64)));
        }
        if rest.len() < HEADER_LEN {
            return Err(corrupt(segment, pos, "truncated frame header"));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let check = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if check != crc32c::crc32c(&len.to_le_bytes()) ^ MAGIC
            || len > MAX_BODY
            || (len as usize) < BODY_PREFIX
        {
            return Err(corrupt(segment, pos, "corrupt frame header"));
        }
        let end = HEADER_LEN + len as usize;
        if rest.len() < end {
            if last {
                return Ok((frames, End::Torn(pos as u64)));
            }
            return Err(corrupt(segment, pos, "truncated frame"));
        }
        let crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let body = &rest[HEADER_LEN..end];
        if crc != crc32c::crc32c(body) {
            return Err(corrupt(segment, pos, "checksum mismatch"));
        }
        let kind =
            Kind::from_u8(body[0]).ok_or_else(|| corrupt(segment, pos, "unknown frame kind"))?;
        let aad: &[u8; AAD_LEN] = body[..AAD_LEN]
            .try_into()
            .map_err(|_| corrupt(segment, pos, "short frame"))?;
        let nonce: &[u8; NONCE_LEN] = body[AAD_LEN..BODY_PREFIX]
            .try_into()
            .map_err(|_| corrupt(segment, pos, "short frame"))?;
        let mut record_id = [0u8; 16];
        record_id.copy_from_slice(&body[5..21]);
        frames.push(Frame {
            offset: pos as u64,
            len: end as u32,
            kind,
            key_id: u32::from_le_bytes([body[1], body[2], body[3], body[4]]),
            record_id,
            version: u64::from_le_bytes(body[21..29].try_into().unwrap_or_default()),
            aad,
            nonce,
            ciphertext: &body[BODY_PREFIX..],
        });
        pos += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_frames() -> Vec<u8> {
        let mut bytes = encode(
            &aad(Kind::Job, 1, &[1; 16], 1),
            &[2; 12],
            b"first ciphertext",
        );
        bytes.extend(encode(
            &aad(Kind::Delivery, 2, &[3; 16], 9),
            &[4; 12],
            b"second",
        ));
        bytes
    }

    #[test]
    fn frames_round_trip() {
        let bytes = two_frames();
        let (frames, end) = scan(&bytes, "s", true).unwrap();
        assert_eq!(end, End::Clean);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[1].kind, frames[1].key_id, frames[1].version),
            (Kind::Delivery, 2, 9)
        );
        assert_eq!(frames[0].ciphertext, b"first ciphertext");
        assert_eq!(frames[1].offset, frames[0].len as u64);
    }

    #[test]
    fn every_flipped_byte_is_reported_with_segment_and_offset() {
        let clean = two_frames();
        let second = scan(&clean, "s", true).unwrap().0[1].offset as usize;
        for i in 0..clean.len() {
            let mut bytes = clean.clone();
            bytes[i] ^= 0x40;
            let err = scan(&bytes, "00000001", true).unwrap_err();
            let at = if i < second { 0 } else { second };
            assert_eq!(
                *err.kind(),
                sprinters_core::ErrorKind::Integrity,
                "byte {i}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("segment 00000001 offset {at}:")),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn a_truncated_last_frame_is_a_torn_tail_only_in_the_last_segment() {
        let clean = two_frames();
        let second = scan(&clean, "s", true).unwrap().0[1].offset as usize;
        for cut in second..clean.len() {
            let (frames, end) = scan(&clean[..cut], "s", true).unwrap();
            assert_eq!(frames.len(), 1, "cut at {cut}");
            assert_eq!(
                end,
                if cut == second {
                    End::Clean
                } else {
                    End::Torn(second as u64)
                }
            );
            if cut > second {
                assert!(
                    scan(&clean[..cut], "s", false).is_err(),
                    "an older segment is never torn"
                );
            }
        }
        let mut zeroed = clean.clone();
        zeroed.extend([0u8; 100]);
        assert_eq!(
            scan(&zeroed, "s", true).unwrap().1,
            End::Torn(clean.len() as u64)
        );
    }
}
