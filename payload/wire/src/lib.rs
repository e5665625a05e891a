//! spacenode-wire (placeholder).
