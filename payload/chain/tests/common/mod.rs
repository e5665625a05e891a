//! Shared helpers for the integration tests: locating the real Bitcoin data
//! (never copied into the repository) and feeding header batches.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use bitcoin::block::Header;
use bitcoin::{Network, Work};
use spacenode_chain::checkpoint::header_from_bytes;
use spacenode_chain::{BatchOutcome, Chain, ChainError, ChainStore, HeaderBatch};

/// `shared/data/bitcoin`, next to the repository checkout, or under
/// `$SPACENODE_SHARED_DATA` (the `shared/data` directory) for checkouts
/// elsewhere (git worktrees). Missing data is a test FAILURE, never a skip.
pub fn data_dir() -> PathBuf {
    let p = std::env::var_os("SPACENODE_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bitcoin"),
        |d| PathBuf::from(d).join("bitcoin"),
    );
    assert!(
        p.join("SOURCES.md").is_file(),
        "real Bitcoin test data not found at {} (expected the repository at X/main and the data at \
         X/shared/data/bitcoin, see SOURCES.md there); these tests must not be skipped",
        p.display()
    );
    p
}

/// Bytes of a data file (relative to `data_dir()`).
pub fn read(rel: &str) -> Vec<u8> {
    let path = data_dir().join(rel);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read real data file {}: {e}", path.display()))
}

/// Parses concatenated 80-byte headers.
pub fn parse_headers(bytes: &[u8]) -> Vec<Header> {
    assert_eq!(
        bytes.len() % 80,
        0,
        "header file length is not a multiple of 80"
    );
    bytes
        .chunks_exact(80)
        .map(|c| header_from_bytes(c.try_into().unwrap()))
        .collect()
}

/// Headers of a `*_headers_A_B.bin` file.
pub fn headers(rel: &str) -> Vec<Header> {
    parse_headers(&read(rel))
}

/// Mainnet 0..=39999, index = height.
pub fn mainnet_0_39999() -> Vec<Header> {
    let h = headers("headers/mainnet_headers_0_39999.bin");
    assert_eq!(h.len(), 40_000);
    h
}

/// First height of `mainnet_headers_822528_830592.bin`.
pub const LATE_START: u32 = 822_528;

/// Mainnet 822528..=830592, index = height - 822528.
pub fn mainnet_late() -> Vec<Header> {
    let h = headers("headers/mainnet_headers_822528_830592.bin");
    assert_eq!(h.len(), 8065);
    h
}

/// Retarget boundary records: height -> (header, cumulative chain work).
pub fn boundaries() -> BTreeMap<u32, (Header, Work)> {
    let b = read("headers/mainnet_retarget_boundaries.bin");
    assert_eq!(b.len() % 116, 0);
    b.chunks_exact(116)
        .map(|r| {
            let height = u32::from_le_bytes(r[0..4].try_into().unwrap());
            let header = header_from_bytes(r[4..84].try_into().unwrap());
            let work = Work::from_be_bytes(r[84..116].try_into().unwrap());
            (height, (header, work))
        })
        .collect()
}

/// Feeds `headers` (the first at `start_height`) in compact batches of
/// `batch` headers; returns the last outcome or the first error.
pub fn sync<S: ChainStore>(
    chain: &mut Chain<S>,
    network: Network,
    start_height: u32,
    headers: &[Header],
    batch: usize,
    now: u64,
) -> Result<BatchOutcome, ChainError> {
    let mut last = None;
    for (i, chunk) in headers.chunks(batch).enumerate() {
        let start = start_height + u32::try_from(i * batch).unwrap();
        let b = HeaderBatch::new(network, start, chunk.to_vec()).unwrap();
        let bytes = match b.encode() {
            Ok(bytes) => bytes,
            Err(_) => b.encode_raw(),
        };
        last = Some(chain.apply_batch_bytes(&bytes, now)?);
    }
    Ok(last.expect("at least one batch"))
}

/// Like [`sync`] but always with the raw layout (full headers, so mutated
/// prev hashes survive).
pub fn sync_raw<S: ChainStore>(
    chain: &mut Chain<S>,
    network: Network,
    start_height: u32,
    headers: &[Header],
    batch: usize,
    now: u64,
) -> Result<BatchOutcome, ChainError> {
    let mut last = None;
    for (i, chunk) in headers.chunks(batch).enumerate() {
        let start = start_height + u32::try_from(i * batch).unwrap();
        let b = HeaderBatch::new(network, start, chunk.to_vec()).unwrap();
        last = Some(chain.apply_batch_bytes(&b.encode_raw(), now)?);
    }
    Ok(last.expect("at least one batch"))
}
