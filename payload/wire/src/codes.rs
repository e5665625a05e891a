//! Reason codes: the stable 16-bit numbers that reach the ground in PUS
//! verification failure reports (TM[1,2], TM[1,8]) and in events.
//!
//! Ranges are owned by modules so that codes never collide:
//!
//! | range           | owner                                   |
//! |-----------------|-----------------------------------------|
//! | 0x0001..=0x00FF | dispatch and packet handling (here)     |
//! | 0x0100..=0x01FF | link security (here)                    |
//! | 0x0200..=0x02FF | storage and configuration (node)        |
//! | 0x0300..=0x03FF | header chain and SPV (`spacenode-chain`)|
//! | 0x0400..=0x04FF | key custody (`spacenode-keys`)          |
//! | 0x0500..=0x05FF | policy and audit                        |
//! | 0x0600..=0x06FF | Bitcoin signing                         |
//! | 0x0700..=0x07FF | Ethereum and Safe signing               |
//! | 0x0800..=0x08FF | health and modes                        |
//! | 0x0900..=0x09FF | file transfer and updates               |
//!
//! [`RANGES`] says the same for the test that collects every code of every
//! crate; the generated table of all codes is `docs/reason-codes.md`.
//!
//! This module must never renumber an existing code: ground software and
//! archived telemetry depend on them.

/// A range of reason codes and who may define codes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRange {
    /// First code of the range.
    pub first: u16,
    /// Last code of the range (inclusive).
    pub last: u16,
    /// Packages whose code may define codes in it.
    pub crates: &'static [&'static str],
    /// What the range is for.
    pub owner: &'static str,
}

/// The owners of the ranges in the module docs, for the test that checks
/// every code of every crate (`tests/tests/reason_codes.rs`, which also
/// generates `docs/reason-codes.md`).
pub const RANGES: &[CodeRange] = &[
    range(
        0x0001,
        0x00FF,
        &["spacenode-wire"],
        "dispatch and packet handling",
    ),
    range(0x0100, 0x01FF, &["spacenode-wire"], "link security"),
    range(
        0x0200,
        0x02FF,
        &["spacenode-wire", "spacenode-node"],
        "storage and configuration",
    ),
    range(0x0300, 0x03FF, &["spacenode-chain"], "header chain and SPV"),
    range(0x0400, 0x04FF, &["spacenode-keys"], "key custody"),
    range(0x0500, 0x05FF, &["spacenode-policy"], "policy and audit"),
    range(0x0600, 0x06FF, &["spacenode-btc"], "Bitcoin signing"),
    range(
        0x0700,
        0x07FF,
        &["spacenode-eth"],
        "Ethereum and Safe signing",
    ),
    range(0x0800, 0x08FF, &["spacenode-node"], "health and modes"),
    range(
        0x0900,
        0x09FF,
        &["spacenode-node"],
        "file transfer and updates",
    ),
];

const fn range(
    first: u16,
    last: u16,
    crates: &'static [&'static str],
    owner: &'static str,
) -> CodeRange {
    CodeRange {
        first,
        last,
        crates,
        owner,
    }
}

/// A stable reason code as sent to the ground.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(pub u16);

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:expr, $text:expr; )*) => {
        impl ReasonCode {
            $( $(#[$doc])* pub const $name: ReasonCode = ReasonCode($value); )*

            /// Every code this crate defines, with its name and meaning, for
            /// the ground tool and the documentation table.
            pub const ALL: &'static [(ReasonCode, &'static str, &'static str)] = &[
                $( (ReasonCode($value), stringify!($name), $text), )*
            ];
        }
    };
}

reason_codes! {
    /// The TC's service/subtype is not served on this APID.
    UNKNOWN_SERVICE = 0x0001, "service or subtype not served on this APID";
    /// The TC's application data does not decode for its service.
    BAD_APP_DATA = 0x0002, "application data malformed for this service";
    /// The PUS packet is malformed (bad CRC-16, lengths, version).
    BAD_PACKET = 0x0003, "PUS packet malformed";
    /// The node is busy and could not queue the request.
    BUSY = 0x0004, "node busy, request not queued";
    /// An internal error prevented completion; details are in the node log.
    INTERNAL = 0x0005, "internal error, see node log";
    /// The command is not allowed in the current mode.
    MODE_FORBIDS = 0x0006, "command not allowed in the current mode";
    /// A storage operation needed by the command failed.
    STORAGE = 0x0007, "storage operation failed";
    /// The TC's APID is not one the node serves.
    UNKNOWN_APID = 0x0008, "APID not served by the node";
    /// Signing (or a wallet registration) needs a quorum-signed policy and
    /// none is active yet.
    NO_POLICY = 0x0009, "no active policy: upload a quorum-signed policy first";

    /// The security header is malformed or truncated.
    SEC_MALFORMED = 0x0101, "security header malformed";
    /// The key id is not in the node's keyring.
    SEC_UNKNOWN_KEY = 0x0102, "unknown link key id";
    /// The AES-GCM tag did not verify (forged, corrupted or wrong key).
    SEC_AUTH_FAILED = 0x0103, "authentication tag did not verify";
    /// The sequence number was already seen or is below the window.
    SEC_REPLAY = 0x0104, "sequence number replayed or below the window";
    /// The envelope is for the other direction (reflection attempt).
    SEC_WRONG_DIRECTION = 0x0105, "envelope direction does not match";
    /// A rekey was refused (key id in use, malformed key).
    SEC_REKEY_REFUSED = 0x0106, "rekey refused";
    /// The transmit sequence space of the key is exhausted; rekey.
    SEC_SEQ_EXHAUSTED = 0x0107, "sequence numbers of this key exhausted";
    /// The rekey TC names another key id than its quorum command commits to.
    SEC_REKEY_ID_MISMATCH = 0x0120, "rekey key id differs from the signed command's";
    /// The rekey TC arrived under another key than the one its command
    /// replaces (a station may only replace its own key).
    SEC_REKEY_WRONG_KEY = 0x0121, "rekey must arrive under the key it replaces";
    /// The new key's SHA-256 differs from the one the command commits to.
    SEC_REKEY_HASH_MISMATCH = 0x0122, "rekey key does not match the signed hash";
    /// The same key bytes are (or were) in use under another key id; the
    /// AES-GCM nonces would repeat across ids.
    SEC_KEY_BYTES_REUSED = 0x0123, "the same key bytes are in use under another key id";
    /// A rekey in the refused version 1 format (no quorum command).
    SEC_REKEY_OLD_FORMAT = 0x0124, "rekey format version 1 refused: use version 2 with a quorum command";

    /// The database failed (I/O, corruption, full disk, busy).
    STORE_SQLITE = 0x0201, "database error (i/o, corruption, full disk)";
    /// The database was written by a newer daemon.
    STORE_TOO_NEW = 0x0202, "database written by a newer daemon";
    /// A stored value is out of range (corruption or tampering).
    STORE_OUT_OF_RANGE = 0x0203, "stored value out of range";
}

impl ReasonCode {
    /// The name and meaning of a code defined in this crate, if it is one.
    #[must_use]
    pub fn describe(self) -> Option<(&'static str, &'static str)> {
        Self::ALL
            .iter()
            .find(|(code, _, _)| *code == self)
            .map(|(_, name, text)| (*name, *text))
    }
}

impl core::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.describe() {
            Some((name, _)) => write!(f, "0x{:04x} {name}", self.0),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_in_their_ranges() {
        let mut seen = HashSet::new();
        for (code, name, _) in ReasonCode::ALL {
            assert!(seen.insert(code.0), "duplicate code {name}");
            let in_range = (0x0001..=0x02FF).contains(&code.0);
            assert!(in_range, "{name} outside the wire crate's ranges");
        }
    }

    #[test]
    fn display_names_known_codes() {
        assert_eq!(ReasonCode::SEC_REPLAY.to_string(), "0x0104 SEC_REPLAY");
        assert_eq!(ReasonCode(0x0999).to_string(), "0x0999");
    }
}
