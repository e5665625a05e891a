//! ground side.
