//! Anti-rollback against swtpm: the NV counter versus a simulated database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

mod common;

use common::*;
use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{EpochStatus, KeyError};

/// The daemon's database, reduced to what matters here.
#[derive(Clone, Debug, PartialEq)]
struct Db {
    epoch: u64,
    policy_version: u32,
}

#[test]
fn counter_provisioning_is_idempotent_and_monotonic() {
    let mut sw = Swtpm::start().unwrap();
    let mut tpm = connect(&sw);
    let err = tpm.read_counter().unwrap_err();
    assert!(matches!(err, KeyError::NvCounter { .. }), "{err:?}");
    assert_eq!(err.code(), 0x0410);
    let v0 = tpm.provision_counter().unwrap();
    assert_eq!(
        tpm.provision_counter().unwrap(),
        v0,
        "provisioning twice bumps"
    );
    assert_eq!(tpm.increment_counter().unwrap(), v0 + 1);
    drop(tpm);
    // Survives a TPM restart.
    sw.restart().unwrap();
    let mut tpm = connect(&sw);
    assert_eq!(tpm.read_counter().unwrap(), v0 + 1);
}

#[test]
fn restored_database_is_detected() {
    let mut sw = Swtpm::start().unwrap();
    let mut tpm = connect(&sw);
    let first = tpm.provision_counter().unwrap();
    let mut db = Db {
        epoch: first,
        policy_version: 1,
    };
    assert_eq!(
        tpm.check_epoch(db.epoch).unwrap(),
        EpochStatus::InSync { epoch: first }
    );

    // The attacker keeps a copy of the database (policy v1).
    let copy = db.clone();

    // A policy change: DB first (epoch = nv + 1), then the counter.
    let next = tpm.next_epoch().unwrap();
    db = Db {
        epoch: next,
        policy_version: 2,
    };
    assert_eq!(tpm.complete_epoch_bump(next).unwrap(), next);
    assert_eq!(
        tpm.check_epoch(db.epoch).unwrap(),
        EpochStatus::InSync { epoch: next }
    );

    // Reboot with the old copy restored.
    drop(tpm);
    sw.restart().unwrap();
    let mut tpm = connect(&sw);
    let err = tpm.check_epoch(copy.epoch).unwrap_err();
    assert_eq!(
        err,
        KeyError::RollbackDetected {
            nv: next,
            db: first
        }
    );
    assert_eq!(err.code(), 0x0404);
    // The current database is fine.
    assert!(tpm.check_epoch(db.epoch).is_ok());
}

#[test]
fn crash_between_db_commit_and_counter_is_recovered() {
    let mut sw = Swtpm::start().unwrap();
    let mut tpm = connect(&sw);
    let first = tpm.provision_counter().unwrap();
    // Step 1 committed, then power loss before step 2.
    let db_epoch = tpm.next_epoch().unwrap();
    drop(tpm);
    sw.power_cut();
    sw.restart().unwrap();
    let mut tpm = connect(&sw);
    assert_eq!(tpm.read_counter().unwrap(), first);
    let status = tpm.check_epoch(db_epoch).unwrap();
    assert_eq!(status, EpochStatus::InterruptedBump { target: db_epoch });
    // Recovery completes step 2 (idempotent).
    assert_eq!(tpm.complete_epoch_bump(db_epoch).unwrap(), db_epoch);
    assert_eq!(tpm.complete_epoch_bump(db_epoch).unwrap(), db_epoch);
    assert_eq!(
        tpm.check_epoch(db_epoch).unwrap(),
        EpochStatus::InSync { epoch: db_epoch }
    );
    // A database two ahead is not explained by a crash.
    let err = tpm.check_epoch(db_epoch + 2).unwrap_err();
    assert!(matches!(err, KeyError::EpochAhead { .. }), "{err:?}");
    // Completing a bump to a target behind the counter is refused.
    let err = tpm.complete_epoch_bump(first).unwrap_err();
    assert!(matches!(err, KeyError::RollbackDetected { .. }), "{err:?}");
}

/// The policy anchor index (issue 13 item 5): absent until first written,
/// defined on first write, survives restarts and power cuts, overwritten
/// whole, and refuses empty or oversized records; an index of another
/// shape at its handle is refused, never reinterpreted.
#[test]
fn policy_anchor_round_trips_and_persists() {
    let mut sw = Swtpm::start().unwrap();
    let mut tpm = connect(&sw);
    assert_eq!(tpm.read_anchor().unwrap(), None, "never anchored");
    tpm.write_anchor(&[7u8; 73]).unwrap();
    assert_eq!(tpm.read_anchor().unwrap(), Some(vec![7u8; 73]));
    tpm.write_anchor(&[9u8; 10]).unwrap();
    assert_eq!(tpm.read_anchor().unwrap(), Some(vec![9u8; 10]));
    for bad in [
        Vec::new(),
        vec![1u8; spacenode_keys::tpm::NV_ANCHOR_MAX + 1],
    ] {
        let e = tpm.write_anchor(&bad).unwrap_err();
        assert_eq!(e.code(), 0x04A0, "{e}");
    }
    drop(tpm);
    sw.power_cut();
    sw.restart().unwrap();
    let mut tpm = connect(&sw);
    assert_eq!(tpm.read_anchor().unwrap(), Some(vec![9u8; 10]));
    drop(tpm);
    // The counter's index configured as the anchor: not an ordinary index
    // of the anchor's size.
    let mut cfg = config(&sw);
    cfg.nv_anchor_index = 0x0100_5350;
    cfg.nv_counter_index = 0x0100_5351;
    let mut tpm =
        spacenode_keys::Tpm::connect(cfg.clone(), spacenode_keys::Profile::Development).unwrap();
    tpm.provision_counter().unwrap();
    drop(tpm);
    cfg.nv_anchor_index = 0x0100_5351;
    cfg.nv_counter_index = 0x0100_5350;
    let mut tpm = spacenode_keys::Tpm::connect(cfg, spacenode_keys::Profile::Development).unwrap();
    let e = tpm.read_anchor().unwrap_err();
    assert_eq!(e.code(), 0x04A0, "{e}");
}
