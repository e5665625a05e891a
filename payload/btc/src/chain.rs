//! The chain seam: what the PSBT checks need from the node's header chain.
//!
//! Owns: [`ChainView`], implemented here for `spacenode_chain::ChainState`
//! (the node's validated, pruned chain) so the daemon passes its state
//! directly. Must never: accept a proof against anything but the node's own
//! validated headers.

use spacenode_chain::ChainState;
use spacenode_chain::spv::{self, MerkleBranch, SpvConfirmation, SpvError};
use spacenode_policy::request::{ProofKind, SpvProof};

/// Read access to the node's header chain.
pub trait ChainView {
    /// Height of the validated tip.
    fn tip_height(&self) -> u32;
    /// Median time past of the tip, seconds.
    fn median_time_past(&self) -> u32;
    /// First height of the branch of a refused deep reorg while its flag is
    /// set (Bitcoin signing stops: `btc-deep-reorg`), `None` otherwise.
    fn deep_reorg_refused(&self) -> Option<u32>;
    /// Checks a proof with the full funding transaction against our chain.
    ///
    /// # Errors
    /// [`SpvError`] (its own codes, 0x038x).
    fn verify(&self, kind: ProofKind, proof: &[u8], tx: &[u8])
    -> Result<SpvConfirmation, SpvError>;
}

impl ChainView for ChainState {
    fn tip_height(&self) -> u32 {
        ChainState::tip_height(self)
    }

    fn median_time_past(&self) -> u32 {
        ChainState::median_time_past(self)
    }

    fn deep_reorg_refused(&self) -> Option<u32> {
        self.status().deep_reorg_refused.map(|d| d.branch_start)
    }

    fn verify(
        &self,
        kind: ProofKind,
        proof: &[u8],
        tx: &[u8],
    ) -> Result<SpvConfirmation, SpvError> {
        match kind {
            ProofKind::Branch => spv::verify_branch(self, &MerkleBranch::decode(proof)?, tx),
            ProofKind::TxOutProof => spv::verify_txoutproof(self, proof, tx),
        }
    }
}

/// Finds the proof for `txid` among a request's proofs.
#[must_use]
pub fn proof_for<'a>(proofs: &'a [SpvProof], txid: &[u8; 32]) -> Option<&'a SpvProof> {
    proofs.iter().find(|p| &p.txid == txid)
}
