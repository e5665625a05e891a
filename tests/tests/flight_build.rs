//! The flight build carries nothing of the ground, the tests or the demo:
//! `spacenoded`'s normal dependency tree has no testkit, ground, link
//! emulator or rig crate and no policy authoring (TOML compilation, diff),
//! and the built daemon holds no demo or testkit symbol.
//!
//! `cargo tree` runs offline against Cargo.lock (no build, no network); the
//! source check reads the `lib.rs` of every workspace crate in that tree
//! (the linker drops unused code, so the symbol check alone would not see
//! a demo module compiled into a flight crate); the symbol check reads the
//! binary the system tests run.

// Test code: a failed step must stop the test with its reason.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use spacenode_system_tests::{bin, repo_root};

/// Crates that must never be in the daemon's normal dependency tree.
const NOT_FLIGHT: [&str; 5] = [
    "spacenode-testkit",
    "spacenode-ground",
    "spacenode-linkemu",
    "spacenode-rig",
    "spacenode-system-tests",
];

fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args(["tree", "--offline", "--locked", "--prefix", "none"])
        .args(args)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn spacenoded_depends_on_no_test_demo_or_ground_crate() {
    let tree = cargo_tree(&["-p", "spacenode-node", "-e", "normal"]);
    assert!(
        tree.contains("spacenode-policy"),
        "unexpected tree:\n{tree}"
    );
    for name in NOT_FLIGHT {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{name} "))),
            "spacenoded depends on {name}:\n{tree}"
        );
    }
}

#[test]
fn spacenoded_builds_policy_without_authoring() {
    let features = |package: &str| {
        cargo_tree(&[
            "-p",
            package,
            "-e",
            "normal,features",
            "-i",
            "spacenode-policy",
        ])
    };
    // The ground enables it, so the check below can see the feature at all.
    assert!(features("spacenode-ground").contains("spacenode-policy feature \"authoring\""));
    let node = features("spacenode-node");
    assert!(
        !node.contains("feature \"authoring\""),
        "spacenoded enables policy authoring:\n{node}"
    );
}

#[test]
fn spacenoded_links_no_demo_or_testkit_symbol() {
    let daemon = bin("spacenoded");
    let out = Command::new("nm")
        .args(["-C", "--defined-only"])
        .arg(&daemon)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm {}", daemon.display());
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(
        symbols.contains("spacenode_node::"),
        "no symbols in {}",
        daemon.display()
    );
    let found: Vec<&str> = symbols
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("demo") || l.contains("testkit") || l.contains("spacenode_policy::authoring")
        })
        .take(20)
        .collect();
    assert!(
        found.is_empty(),
        "{} links demo or test code:\n{}",
        daemon.display(),
        found.join("\n")
    );
}

#[test]
fn no_flight_crate_compiles_a_demo_module_outside_its_unit_tests() {
    let tree = cargo_tree(&["-p", "spacenode-node", "-e", "normal", "--format", "{p}"]);
    let root = repo_root();
    let mut checked = 0;
    for line in tree.lines() {
        // Workspace crates: `name vX (/path/to/crate)`.
        let Some(dir) = line
            .split_once(" (")
            .and_then(|(_, d)| d.strip_suffix(')'))
            .map(std::path::PathBuf::from)
            .filter(|d| d.starts_with(&root))
        else {
            continue;
        };
        let lib = dir.join("src/lib.rs");
        let Ok(text) = std::fs::read_to_string(&lib) else {
            continue;
        };
        checked += 1;
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start().trim_start_matches("pub ");
            if !(t.starts_with("mod demo") || t.starts_with("mod testkit")) {
                continue;
            }
            let attrs = lines[..i]
                .iter()
                .rev()
                .take_while(|a| a.trim_start().starts_with("#["));
            assert!(
                attrs.into_iter().any(|a| a.trim() == "#[cfg(test)]"),
                "{}:{}: `{}` is compiled into the flight build",
                lib.display(),
                i + 1,
                l.trim()
            );
        }
    }
    assert!(
        checked >= 6,
        "only {checked} workspace crates in the tree:\n{tree}"
    );
}
