//! Operating modes as data: one enum, one pure transition function, and a
//! test for every edge.
//!
//! ```text
//!            EnterSafe(reason)                QuorumExit
//!  Normal ----------------------> Safe(reason) ----------> Normal
//!    |  QuorumExit: stays Normal     | EnterSafe(other): stays Safe(first reason)
//! ```
//!
//! In safe mode the node signs nothing; it keeps the link, chain sync and
//! housekeeping alive and leaves on a quorum-signed command. The first
//! reason is kept (it is the cause; later triggers are its consequences and
//! are reported as events), with one exception: a reason that unauthenticated
//! traffic alone can cause ([`SafeReason::lapses`], the forged-packet burst)
//! lapses after a quiet period ([`Input::Lapse`]) and is replaced by any
//! other reason that fires while it holds, so a lapse can never end a safe
//! mode that something else asked for. This module must never read storage
//! or clocks.

use spacenode_wire::ReasonCode;

/// Why the node is in safe mode. The code is reported in housekeeping
/// (`mode_reason`) and events; range 0x0800..=0x08FF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeReason {
    /// A ground operator asked for it.
    GroundCommand,
    /// Too many starts in a short time.
    BootLoop,
    /// The sealed key material could not be unsealed.
    TpmUnseal,
    /// The measured software differs from what the key was sealed to.
    PcrMismatch,
    /// The database could not be opened or failed its integrity check.
    StorageCorrupt,
    /// An older database or policy was restored (anti-rollback).
    RollbackDetected,
    /// Repeated authentication failures on the link (probing).
    AuthFailureBurst,
    /// Repeated policy refusals in a window (probing).
    PolicyRefusalBurst,
    /// Free storage below the safe-mode threshold.
    LowDisk,
    /// No authenticated ground command for the configured time.
    LossOfContact,
}

impl SafeReason {
    /// All reasons, for tables and tests.
    pub const ALL: [SafeReason; 10] = [
        Self::GroundCommand,
        Self::BootLoop,
        Self::TpmUnseal,
        Self::PcrMismatch,
        Self::StorageCorrupt,
        Self::RollbackDetected,
        Self::AuthFailureBurst,
        Self::PolicyRefusalBurst,
        Self::LowDisk,
        Self::LossOfContact,
    ];

    /// Stable code.
    #[must_use]
    pub fn code(self) -> ReasonCode {
        ReasonCode(match self {
            Self::GroundCommand => 0x0801,
            Self::BootLoop => 0x0802,
            Self::TpmUnseal => 0x0803,
            Self::PcrMismatch => 0x0804,
            Self::StorageCorrupt => 0x0805,
            Self::RollbackDetected => 0x0806,
            Self::AuthFailureBurst => 0x0807,
            Self::PolicyRefusalBurst => 0x0808,
            Self::LowDisk => 0x0809,
            Self::LossOfContact => 0x080A,
        })
    }

    /// From a stored code.
    #[must_use]
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code().0 == code)
    }

    /// Whether this reason lapses on its own after a quiet period instead
    /// of needing the quorum: only the forged-packet burst, which anyone
    /// with a radio can cause without any key (issue 13 item 8). Every
    /// other reason needs an authentic fault or command and stays until the
    /// quorum acts.
    #[must_use]
    pub fn lapses(self) -> bool {
        self == Self::AuthFailureBurst
    }

    /// Lower-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::GroundCommand => "ground command",
            Self::BootLoop => "boot loop",
            Self::TpmUnseal => "tpm unseal failure",
            Self::PcrMismatch => "pcr mismatch",
            Self::StorageCorrupt => "storage corrupt",
            Self::RollbackDetected => "rollback detected",
            Self::AuthFailureBurst => "authentication failure burst",
            Self::PolicyRefusalBurst => "policy refusal burst",
            Self::LowDisk => "low disk",
            Self::LossOfContact => "loss of contact",
        }
    }
}

/// The operating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Signing allowed by policy.
    Normal,
    /// Signs nothing.
    Safe(SafeReason),
}

impl Mode {
    /// Whether signing requests may be considered at all.
    #[must_use]
    pub fn may_sign(self) -> bool {
        self == Self::Normal
    }

    /// The housekeeping mode code and reason code.
    #[must_use]
    pub fn codes(self) -> (spacenode_wire::msg::ModeCode, u16) {
        match self {
            Self::Normal => (spacenode_wire::msg::ModeCode::Normal, 0),
            Self::Safe(r) => (spacenode_wire::msg::ModeCode::Safe, r.code().0),
        }
    }
}

/// What can change the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A trigger fired.
    EnterSafe(SafeReason),
    /// A quorum-signed exit command was authorised.
    QuorumExit,
    /// The quiet period of a lapsing reason ran out (no new trigger).
    Lapse,
}

/// The next mode and whether it changed.
#[must_use]
pub fn transition(mode: Mode, input: Input) -> (Mode, bool) {
    let next = match (mode, input) {
        (Mode::Normal, Input::EnterSafe(r)) => Mode::Safe(r),
        // A sticky reason supersedes a lapsing one, so the lapse cannot
        // end it.
        (Mode::Safe(first), Input::EnterSafe(r)) if first.lapses() && !r.lapses() => Mode::Safe(r),
        (Mode::Safe(first), Input::EnterSafe(_)) => Mode::Safe(first),
        (Mode::Safe(_) | Mode::Normal, Input::QuorumExit) => Mode::Normal,
        (Mode::Safe(r), Input::Lapse) if r.lapses() => Mode::Normal,
        (m, Input::Lapse) => m,
    };
    (next, next != mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge() {
        for r in SafeReason::ALL {
            assert_eq!(
                transition(Mode::Normal, Input::EnterSafe(r)),
                (Mode::Safe(r), true)
            );
            assert_eq!(
                transition(Mode::Safe(r), Input::QuorumExit),
                (Mode::Normal, true)
            );
            for other in SafeReason::ALL {
                let kept = if r.lapses() && !other.lapses() {
                    (Mode::Safe(other), true)
                } else {
                    (Mode::Safe(r), false)
                };
                assert_eq!(transition(Mode::Safe(r), Input::EnterSafe(other)), kept);
            }
            let lapsed = if r.lapses() {
                (Mode::Normal, true)
            } else {
                (Mode::Safe(r), false)
            };
            assert_eq!(transition(Mode::Safe(r), Input::Lapse), lapsed);
        }
        assert_eq!(
            transition(Mode::Normal, Input::QuorumExit),
            (Mode::Normal, false)
        );
        assert_eq!(
            transition(Mode::Normal, Input::Lapse),
            (Mode::Normal, false)
        );
        // Only what unauthenticated traffic can cause lapses.
        let lapsing: Vec<SafeReason> = SafeReason::ALL.into_iter().filter(|r| r.lapses()).collect();
        assert_eq!(lapsing, vec![SafeReason::AuthFailureBurst]);
    }

    #[test]
    fn only_normal_may_sign_and_codes_round_trip() {
        assert!(Mode::Normal.may_sign());
        for r in SafeReason::ALL {
            assert!(!Mode::Safe(r).may_sign());
            assert_eq!(SafeReason::from_code(r.code().0), Some(r));
            assert!((0x0800..=0x08FF).contains(&r.code().0));
        }
    }
}
