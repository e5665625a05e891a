//! spacenoded library.
