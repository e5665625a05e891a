//! Pure PCR arithmetic shared by the node (sealing) and the ground
//! (verifying quotes): what a PCR holds after our measurements, and the
//! digest over a PCR selection that `TPM2_PolicyPCR` and `TPM2_Quote` use.
//!
//! Owns: the measurement recipe of [`predict_software_pcr`] — the node's
//! `Tpm::measure_software` performs exactly these extends.
//!
//! Must never: talk to a TPM. Everything here is a function of its inputs.

use sha2::{Digest, Sha256};

/// One PCR of the SHA-256 bank and its value.
pub type PcrValue = (u8, [u8; 32]);

/// Value of the software PCR after `Tpm::measure_software(binary, config)`:
/// the PCR is reset to zeros, then extended with the binary hash, then with
/// the configuration hash:
/// `SHA-256(SHA-256(0^32 || binary_hash) || config_hash)`.
#[must_use]
pub fn predict_software_pcr(binary_hash: &[u8; 32], config_hash: &[u8; 32]) -> [u8; 32] {
    let after_binary = extend(&[0u8; 32], binary_hash);
    extend(&after_binary, config_hash)
}

/// `TPM2_PCR_Extend` on the SHA-256 bank: `SHA-256(old || digest)`.
#[must_use]
pub fn extend(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

/// Digest of PCR values as `TPM2_PolicyPCR` and `TPM2_Quote` compute it for a
/// single SHA-256 bank selection: SHA-256 over the values concatenated in
/// ascending PCR index order. `values` must already be in that order (see
/// [`sorted_unique`]).
#[must_use]
pub fn selection_digest(values: &[PcrValue]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (_, v) in values {
        h.update(v);
    }
    h.finalize().into()
}

/// Returns the values sorted by index, or `None` if an index repeats or is
/// not below 24.
#[must_use]
pub fn sorted_unique(values: &[PcrValue]) -> Option<Vec<PcrValue>> {
    let mut v = values.to_vec();
    v.sort_by_key(|(i, _)| *i);
    let ok = v.windows(2).all(|w| w[0].0 < w[1].0) && v.iter().all(|(i, _)| *i < 24);
    ok.then_some(v)
}

/// SHA-256 of a byte string: a convenience for callers hashing their binary
/// and configuration before [`predict_software_pcr`].
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_matches_manual() {
        // tpm2_pcrextend 23:sha256=00..01 from a reset PCR gives this value
        // (SHA-256 of 32 zero bytes followed by 31 zero bytes and 0x01).
        let mut d = [0u8; 32];
        d[31] = 1;
        let mut buf = [0u8; 64];
        buf[63] = 1;
        assert_eq!(extend(&[0; 32], &d), sha256(&buf));
    }

    #[test]
    fn sorted_unique_rejects_duplicates_and_range() {
        assert!(sorted_unique(&[(23, [0; 32]), (7, [0; 32])]).is_some());
        assert!(sorted_unique(&[(7, [0; 32]), (7, [1; 32])]).is_none());
        assert!(sorted_unique(&[(24, [0; 32])]).is_none());
        let s = sorted_unique(&[(23, [1; 32]), (7, [2; 32])]).unwrap();
        assert_eq!(s[0].0, 7);
    }
}
