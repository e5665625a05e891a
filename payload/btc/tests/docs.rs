//! docs/policy.md lists every rule tag and every Bitcoin reason code.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use spacenode_policy::Rule;

#[test]
fn every_tag_and_code_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md"))
        .unwrap();
    for r in Rule::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", r.tag())),
            "tag {} missing from docs/policy.md",
            r.tag()
        );
    }
    for code in (0x0601..=0x061Au16).chain(0x06A0..=0x06A7) {
        assert!(
            doc.contains(&format!("| {code:#06X} |").replace("0X", "0x")),
            "code {code:#06x} missing"
        );
    }
}
