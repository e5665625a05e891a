//! The README reason-code table matches the `code()` arms in the source:
//! same set, unique, inside 0x0300..=0x03FF.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;

fn hex_after(s: &str, marker: &str) -> Option<u16> {
    let i = s.find(marker)? + marker.len();
    u16::from_str_radix(s.get(i..i + 4)?, 16).ok()
}

#[test]
fn readme_table_matches_source_codes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut source = Vec::new();
    for entry in std::fs::read_dir(dir.join("src")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        source.extend(text.lines().filter_map(|l| hex_after(l, "=> 0x")));
    }
    let unique: BTreeSet<u16> = source.iter().copied().collect();
    assert_eq!(
        unique.len(),
        source.len(),
        "duplicate reason codes in the source"
    );
    assert!(unique.iter().all(|c| (0x0300..=0x03FF).contains(c)));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let table: BTreeSet<u16> = readme
        .lines()
        .filter(|l| l.starts_with("| `0x"))
        .filter_map(|l| hex_after(l, "| `0x"))
        .collect();
    assert_eq!(table, unique, "README table and source codes differ");
    assert!(unique.len() >= 60);
}
