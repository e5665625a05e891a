//! Uplinked header batches: the compact batch decoder and, applied to a
//! fresh regtest chain state, every header rule (linkage, proof of work,
//! difficulty, time, checkpoints, reorg limits). Never panics; a batch
//! that decodes re-encodes to bytes that decode to the same batch.
#![no_main]

use bitcoin::Network;
use libfuzzer_sys::fuzz_target;
use spacenode_chain::{Chain, ChainConfig, Checkpoint, HeaderBatch, MemoryStore};

/// Regtest time of the demo chain's block 0 plus a day: headers of the
/// seeds are not "too far in the future".
const NOW: u64 = 1_700_000_000 + 86_400;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = HeaderBatch::decode(data)
        && let Ok(again) = batch.encode()
    {
        assert_eq!(HeaderBatch::decode(&again).ok(), Some(batch));
    }
    let Ok(mut chain) = Chain::open(
        ChainConfig::new(Network::Regtest),
        MemoryStore::new(),
        Checkpoint::genesis(Network::Regtest),
    ) else {
        return;
    };
    let _ = chain.apply_batch_bytes(data, NOW);
});
