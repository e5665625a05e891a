//! Interop: telecommands built by the Python `spacepackets` package, sealed
//! and framed by independent Python implementations of AES-GCM, COBS and
//! CRC-32C from our documented layout, are accepted by the real daemon; the
//! daemon's telemetry parses with `spacepackets` (PusTm, Service1Tm,
//! CdsShortTimestamp).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_system_tests::{Fixture, Node, python, repo_root};

#[test]
fn python_spacepackets_talks_to_the_node() {
    let baud = 115_200;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let _node = Node::start(&fx);
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/interop.py"))
        .arg("--port")
        .arg(emu.ground_path())
        .arg("--key")
        .arg(hex::encode(fx.key))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "interop.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    // Acceptance then completion, each parsed by spacepackets' Service1Tm
    // with the request id of the Python-built TC.
    assert_eq!(v["ping"]["subtypes"], serde_json::json!([1, 7]), "{v}");
    assert_eq!(v["ping"]["pong"], 1);
    assert_eq!(
        v["ping"]["pong_dest_id"], 5,
        "reply addressed to the TC's source id"
    );
    assert_eq!(v["ping"]["pong_apid"], 0x010);
    assert!(
        v["ping"]["pong_time_skew_s"].as_f64().unwrap() < 5.0,
        "CDS timestamp decodes to now: {v}"
    );
    assert_eq!(v["hk"]["subtypes"], serde_json::json!([1, 7]));
    assert_eq!(v["hk"]["structure_id"], 1);
    assert_eq!(v["hk"]["boot_count"], 1);
    assert_eq!(v["hk"]["mode"], 1);
    assert_eq!(v["refused"]["subtypes"], serde_json::json!([2]));
    assert_eq!(v["refused"]["code"], 0x0002, "BAD_APP_DATA");
    assert_eq!(v["unknown_service"]["code"], 0x0001, "UNKNOWN_SERVICE");
}
