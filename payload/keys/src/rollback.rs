//! Anti-rollback rule binding the database epoch to the TPM NV counter.
//!
//! Owns: the pure decision [`check_epoch`] and the documented two-step
//! commit order. The TPM side (reading and incrementing the counter) is in
//! `tpm.rs`; the database side is the daemon's.
//!
//! Must never: accept a database whose epoch is behind the counter, or
//! "repair" anything except the one state a crash can leave behind.
//!
//! # The rule
//!
//! The NV counter is monotonic: nothing, not even the owner, can move it
//! backwards. The database stores `epoch`. Every change that must not be
//! rolled back (a new policy version, any epoch bump) is committed in this
//! order:
//!
//! 1. **DB first**: in one SQLite transaction, write the change together with
//!    `epoch = nv + 1` (`Tpm::next_epoch`).
//! 2. **NV second**: `Tpm::complete_epoch_bump(nv + 1)` increments the
//!    counter. Only now is the change acknowledged to the ground and used.
//!
//! At start, `check_epoch(nv, db)`:
//!
//! | state        | meaning                                             | result |
//! |--------------|-----------------------------------------------------|--------|
//! | `db == nv`   | consistent                                          | [`EpochStatus::InSync`] |
//! | `db == nv+1` | crash (or power loss) between step 1 and step 2     | [`EpochStatus::InterruptedBump`]: finish step 2, then go on |
//! | `db < nv`    | the database (or a policy in it) was restored from an older copy | [`KeyError::RollbackDetected`] |
//! | `db > nv+1`  | no crash explains it (database from another node, or the counter was redefined) | [`KeyError::EpochAhead`] |
//!
//! Why DB first and not NV first: with NV first, a crash between the steps
//! leaves `db == nv-1`, which is exactly what restoring a copy taken one
//! change earlier looks like — the node could not tell a crash from the
//! rollback of the latest policy change. With DB first, a crash leaves the
//! database *ahead*, which an attacker holding only old copies cannot
//! produce. Finishing an interrupted bump is safe: the database content at
//! `nv+1` was written by this node, it just had not been anchored yet.
//!
//! One consequence the daemon must respect: a change written in step 1 is
//! not in force until step 2 has completed (a restore of the pre-change copy
//! before step 2 simply undoes an unacknowledged change).

use crate::error::KeyError;

/// Outcome of a successful epoch check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochStatus {
    /// Database epoch equals the NV counter.
    InSync {
        /// The common value.
        epoch: u64,
    },
    /// The database is one ahead: a bump was interrupted after the database
    /// commit. Complete it with `Tpm::complete_epoch_bump(target)`.
    InterruptedBump {
        /// The epoch the database already holds and the counter must reach.
        target: u64,
    },
}

/// Decides whether a database epoch is consistent with the NV counter (see
/// the module docs for the rule).
///
/// # Errors
/// [`KeyError::RollbackDetected`] if `db < nv`; [`KeyError::EpochAhead`] if
/// `db > nv + 1`.
pub fn check_epoch(nv: u64, db: u64) -> Result<EpochStatus, KeyError> {
    if db == nv {
        return Ok(EpochStatus::InSync { epoch: db });
    }
    if db < nv {
        return Err(KeyError::RollbackDetected { nv, db });
    }
    match nv.checked_add(1) {
        Some(next) if db == next => Ok(EpochStatus::InterruptedBump { target: db }),
        _ => Err(KeyError::EpochAhead { nv, db }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        assert_eq!(check_epoch(5, 5).unwrap(), EpochStatus::InSync { epoch: 5 });
        assert_eq!(
            check_epoch(5, 6).unwrap(),
            EpochStatus::InterruptedBump { target: 6 }
        );
        assert_eq!(
            check_epoch(5, 4).unwrap_err(),
            KeyError::RollbackDetected { nv: 5, db: 4 }
        );
        assert_eq!(
            check_epoch(5, 7).unwrap_err(),
            KeyError::EpochAhead { nv: 5, db: 7 }
        );
        assert!(matches!(
            check_epoch(u64::MAX, 0),
            Err(KeyError::RollbackDetected { .. })
        ));
        assert_eq!(
            check_epoch(u64::MAX, u64::MAX).unwrap(),
            EpochStatus::InSync { epoch: u64::MAX }
        );
    }

    proptest! {
        #[test]
        fn behind_is_always_rollback(nv in any::<u64>(), d in 1u64..1000) {
            let db = nv.saturating_sub(d);
            prop_assume!(db < nv);
            let rolled_back = matches!(check_epoch(nv, db), Err(KeyError::RollbackDetected { .. }));
            prop_assert!(rolled_back);
        }
    }
}
