//! What a sealed body is bound to: the associated data of its AES-256-GCM
//! ciphertext names the kind of record, the data key, the opaque record id
//! and the version sealed, so that a body copied to another row, another
//! version, another kind of record or another key fails to open.
//!
//! ```text
//! aad = u8 kind | u32 data key id (LE) | [16] opaque record id | u64 version (LE)
//! ```

/// kind + key id + record id + version.
pub(crate) const AAD_LEN: usize = 1 + 4 + 16 + 8;

/// What a sealed body holds. The values are in every stored body's
/// associated data: never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Job = 1,
    Vault = 6,
    Tenant = 8,
}

/// The associated data of a body.
pub(crate) fn aad(kind: Kind, key_id: u32, record_id: &[u8; 16], version: u64) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[0] = kind as u8;
    aad[1..5].copy_from_slice(&key_id.to_le_bytes());
    aad[5..21].copy_from_slice(record_id);
    aad[21..29].copy_from_slice(&version.to_le_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every body stored so far was sealed with these bytes: a change to a
    /// kind's number or to the layout would make all of them fail to open.
    #[test]
    fn the_associated_data_keeps_its_bytes() {
        assert_eq!(
            (Kind::Job as u8, Kind::Vault as u8, Kind::Tenant as u8),
            (1, 6, 8)
        );
        let mut expected = vec![6u8, 0x04, 0x03, 0x02, 0x01];
        expected.extend([7u8; 16]);
        expected.extend([0x0a, 0, 0, 0, 0, 0, 0, 0x01]);
        assert_eq!(
            aad(Kind::Vault, 0x0102_0304, &[7; 16], 0x0100_0000_0000_000a).to_vec(),
            expected
        );
    }
}
