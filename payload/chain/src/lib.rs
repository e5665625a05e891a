//! spacenode-chain (placeholder).
