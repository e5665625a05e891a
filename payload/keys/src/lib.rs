//! spacenode-keys (placeholder).
