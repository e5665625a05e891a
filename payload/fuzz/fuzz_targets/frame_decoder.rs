//! Any byte stream into the frame decoder: never panics, never holds more
//! than the bound, every frame it yields re-encodes to a frame that decodes
//! to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacenode_wire::frame::{self, Decoded, FrameDecoder, MAX_ENCODED_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut dec = FrameDecoder::new();
    for &b in data {
        if let Some(Decoded::Frame(payload)) = dec.push_byte(b) {
            let again = frame::encode(&payload).expect("decoded frames fit");
            let mut check = FrameDecoder::new();
            let mut out = Vec::new();
            check.push(&again, |d| out.push(d));
            assert_eq!(out, vec![Decoded::Frame(payload)]);
        }
        assert!(dec.pending() <= MAX_ENCODED_FRAME);
    }
});
