//! CCSDS Space Packets with PUS-C telecommand and telemetry secondary
//! headers (ECSS-E-ST-70-41C), built and parsed with the `spacepackets`
//! crate and converted into owned values the rest of the code can keep.
//!
//! TM carries a CCSDS Day Segmented (CDS) short timestamp: 7 bytes, 16-bit
//! day count since 1958-01-01, milliseconds of day, no sub-milliseconds
//! (CCSDS 301.0-B-4 §3.3). Every packet carries the PUS CRC-16; the link
//! envelope authenticates it as well, the CRC keeps packets valid PUS for
//! tools that see them decrypted.
//!
//! This module must never interpret application data; that is [`crate::msg`].

use arbitrary_int::{u11, u14};
use spacepackets::ecss::tc::GenericPusTcSecondaryHeader;
use spacepackets::ecss::tc::{AckFlags, PusTcCreator, PusTcReader, PusTcSecondaryHeader};
use spacepackets::ecss::tm::GenericPusTmSecondaryHeader;
use spacepackets::ecss::tm::{PusTmCreator, PusTmReader, PusTmSecondaryHeader};
use spacepackets::ecss::{CreatorConfig, MessageTypeId, PusPacket};
use spacepackets::time::cds::CdsTime;
use spacepackets::time::{CcsdsTimeProvider, UnixTime};
use spacepackets::{CcsdsPacket, SpHeader};

/// Length of the TM timestamp field (CDS short with P-field).
pub const TIMESTAMP_LEN: usize = 7;

/// Bytes a TC adds around its application data: primary header 6, PUS-C
/// TC secondary header 5 (version and ack flags, service, subtype, source
/// id u16), CRC-16 2.
pub const TC_OVERHEAD: usize = 6 + 5 + 2;

/// Largest TC application data that still fits one frame once sealed:
/// [`crate::frame::MAX_PAYLOAD`] minus the security envelope
/// ([`crate::security::OVERHEAD`]) and [`TC_OVERHEAD`] (2008 bytes).
/// Services that carry bulk data (header batches) size their requests to it.
pub const MAX_TC_APP_DATA: usize =
    crate::frame::MAX_PAYLOAD - crate::security::OVERHEAD - TC_OVERHEAD;

/// Bytes a TM adds around its source data: primary header 6, PUS-C TM
/// secondary header 7 (version and time reference, service, subtype, message
/// counter u16, destination id u16), the CDS timestamp
/// ([`TIMESTAMP_LEN`]), CRC-16 2.
pub const TM_OVERHEAD: usize = 6 + 7 + TIMESTAMP_LEN + 2;

/// Largest TM source data that still fits one frame once sealed (1999
/// bytes). Replies larger than this travel in fragments
/// (`crate::cosign::Fragment`).
pub const MAX_TM_DATA: usize = crate::frame::MAX_PAYLOAD - crate::security::OVERHEAD - TM_OVERHEAD;

/// Errors decoding or building a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The bytes are not a valid PUS-C packet (length, version, CRC-16).
    #[error("invalid pus packet: {0}")]
    Invalid(String),
    /// A TC was expected and a TM came, or the reverse.
    #[error("wrong packet type")]
    WrongType,
    /// The packet has bytes after its declared length.
    #[error("{extra} trailing bytes after the packet")]
    Trailing {
        /// Count of extra bytes.
        extra: usize,
    },
    /// The timestamp cannot be represented (before 1958 or past 2137).
    #[error("time {unix_ms} ms cannot be encoded as cds")]
    Time {
        /// The offending UNIX time in milliseconds.
        unix_ms: i64,
    },
}

/// PUS-C TC secondary header length.
const TC_SEC_HEADER_LEN: usize = 5;
/// PUS-C TM secondary header length without the timestamp.
const TM_SEC_HEADER_LEN: usize = 7;
/// CRC-16 trailer.
const PUS_CRC_LEN: usize = 2;

/// Checks the CCSDS packet length against the buffer and the minimum data
/// field before `spacepackets` slices into it: its TM reader (0.19) slices
/// the timestamp without checking that the declared length holds it, and a
/// fuzzed 19-byte packet made it panic.
fn check_packet_len(bytes: &[u8], min_data_field: usize) -> Result<(), PacketError> {
    let data_len = bytes
        .get(4..6)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_be_bytes)
        .ok_or_else(|| {
            PacketError::Invalid(format!("{} bytes cannot hold a packet header", bytes.len()))
        })?;
    let packet_len = usize::from(data_len) + 7;
    if packet_len > bytes.len() {
        return Err(PacketError::Invalid(format!(
            "declared {packet_len} bytes, got {}",
            bytes.len()
        )));
    }
    if packet_len < 6 + min_data_field {
        return Err(PacketError::Invalid(format!(
            "declared {packet_len} bytes, shorter than the headers"
        )));
    }
    Ok(())
}

/// ECSS request id of a TC: packet id and sequence control, 4 bytes, the
/// field every verification report refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u32);

impl RequestId {
    /// The APID the TC was sent to.
    #[must_use]
    pub fn apid(self) -> u16 {
        ((self.0 >> 16) & 0x07FF) as u16
    }

    /// The TC's 14-bit sequence count.
    #[must_use]
    pub fn seq_count(self) -> u16 {
        (self.0 & 0x3FFF) as u16
    }
}

impl core::fmt::Display for RequestId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "apid 0x{:03x} seq {}", self.apid(), self.seq_count())
    }
}

/// An owned PUS-C telecommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc {
    /// Destination application process.
    pub apid: u16,
    /// 14-bit source sequence count.
    pub seq_count: u16,
    /// Service type.
    pub service: u8,
    /// Message subtype.
    pub subtype: u8,
    /// Source (ground station) id.
    pub source_id: u16,
    /// Acknowledgement flags (acceptance, start, progress, completion).
    pub ack: u8,
    /// Application data.
    pub app_data: Vec<u8>,
}

impl Tc {
    /// A TC requesting acceptance and completion reports.
    #[must_use]
    pub fn new(apid: u16, seq_count: u16, service: u8, subtype: u8, app_data: Vec<u8>) -> Self {
        Self {
            apid,
            seq_count,
            service,
            subtype,
            source_id: 0,
            ack: 0b1001,
            app_data,
        }
    }

    /// Serialises the packet with its CRC-16.
    ///
    /// # Errors
    /// [`PacketError::Invalid`] if the application data does not fit a packet.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let sp = SpHeader::new_for_unseg_tc(
            u11::new(self.apid & 0x07FF),
            u14::new(self.seq_count & 0x3FFF),
            0,
        );
        let sec = PusTcSecondaryHeader::new(
            MessageTypeId::new(self.service, self.subtype),
            AckFlags::new_with_raw_value(arbitrary_int::u4::new(self.ack & 0x0F)),
            self.source_id,
        );
        PusTcCreator::new(sp, sec, &self.app_data, CreatorConfig::default())
            .to_vec()
            .map_err(|e| PacketError::Invalid(e.to_string()))
    }

    /// Parses and CRC-checks a TC occupying all of `bytes`.
    ///
    /// # Errors
    /// [`PacketError`] for anything that is not exactly one valid TC.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        check_packet_len(bytes, TC_SEC_HEADER_LEN + PUS_CRC_LEN)?;
        let reader = PusTcReader::new(bytes).map_err(|e| PacketError::Invalid(e.to_string()))?;
        if reader.packet_id().packet_type != spacepackets::PacketType::Tc {
            return Err(PacketError::WrongType);
        }
        let len = reader.packet_len();
        if len < bytes.len() {
            return Err(PacketError::Trailing {
                extra: bytes.len() - len,
            });
        }
        Ok(Self {
            apid: reader.apid().value(),
            seq_count: reader.seq_count().value(),
            service: PusPacket::service_type_id(&reader),
            subtype: PusPacket::message_subtype_id(&reader),
            source_id: reader.source_id(),
            ack: reader.ack_flags().raw_value().value(),
            app_data: reader.app_data().to_vec(),
        })
    }

    /// The ECSS request id verification reports refer to.
    #[must_use]
    pub fn request_id(&self) -> RequestId {
        // Packet version 0, type TC (1), secondary header present (1),
        // sequence flags "unsegmented" (0b11).
        let packet_id = 0x1800u32 | u32::from(self.apid & 0x07FF);
        let psc = 0xC000u32 | u32::from(self.seq_count & 0x3FFF);
        RequestId((packet_id << 16) | psc)
    }
}

/// An owned PUS-C telemetry packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tm {
    /// Source application process.
    pub apid: u16,
    /// 14-bit per-APID sequence count.
    pub seq_count: u16,
    /// Service type.
    pub service: u8,
    /// Message subtype.
    pub subtype: u8,
    /// Message type counter (per service, wraps).
    pub msg_counter: u16,
    /// Destination (ground station) id.
    pub dest_id: u16,
    /// Generation time, UNIX milliseconds.
    pub time_unix_ms: i64,
    /// Source data.
    pub data: Vec<u8>,
}

impl Tm {
    /// Serialises the packet with its CDS timestamp and CRC-16.
    ///
    /// # Errors
    /// [`PacketError::Time`] for an unrepresentable time,
    /// [`PacketError::Invalid`] if the data does not fit a packet.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let unix = UnixTime::new(
            self.time_unix_ms.div_euclid(1000),
            (self.time_unix_ms.rem_euclid(1000) as u32) * 1_000_000,
        );
        let time_err = PacketError::Time {
            unix_ms: self.time_unix_ms,
        };
        let cds = CdsTime::from_unix_time_with_u16_days(
            &unix,
            spacepackets::time::cds::SubmillisPrecision::Absent,
        )
        .map_err(|_| time_err.clone())?;
        let mut stamp = [0u8; TIMESTAMP_LEN];
        cds.write_to_slice(&mut stamp).map_err(|_| time_err)?;
        let sp = SpHeader::new_for_unseg_tm(
            u11::new(self.apid & 0x07FF),
            u14::new(self.seq_count & 0x3FFF),
            0,
        );
        let sec = PusTmSecondaryHeader::new(
            MessageTypeId::new(self.service, self.subtype),
            self.msg_counter,
            self.dest_id,
            &stamp,
        );
        PusTmCreator::new(sp, sec, &self.data, CreatorConfig::default())
            .to_vec()
            .map_err(|e| PacketError::Invalid(e.to_string()))
    }

    /// Parses and CRC-checks a TM occupying all of `bytes`.
    ///
    /// # Errors
    /// [`PacketError`] for anything that is not exactly one valid TM.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        check_packet_len(bytes, TM_SEC_HEADER_LEN + TIMESTAMP_LEN + PUS_CRC_LEN)?;
        let reader = PusTmReader::new(bytes, TIMESTAMP_LEN)
            .map_err(|e| PacketError::Invalid(e.to_string()))?;
        if reader.packet_id().packet_type != spacepackets::PacketType::Tm {
            return Err(PacketError::WrongType);
        }
        let len = reader.packet_len();
        if len < bytes.len() {
            return Err(PacketError::Trailing {
                extra: bytes.len() - len,
            });
        }
        let cds = CdsTime::from_bytes_with_u16_days(reader.timestamp())
            .map_err(|e| PacketError::Invalid(e.to_string()))?;
        let time_unix_ms = cds
            .unix_secs()
            .saturating_mul(1000)
            .saturating_add(i64::from(cds.subsec_nanos() / 1_000_000));
        Ok(Self {
            apid: reader.apid().value(),
            seq_count: reader.seq_count().value(),
            service: reader.service_type_id(),
            subtype: reader.message_subtype_id(),
            msg_counter: reader.msg_type_counter(),
            dest_id: reader.dest_id(),
            time_unix_ms,
            data: reader.source_data().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tc_round_trip_and_request_id() {
        let tc = Tc {
            source_id: 0x0102,
            ..Tc::new(0x010, 77, 17, 1, vec![])
        };
        let bytes = tc.encode().unwrap();
        assert_eq!(bytes.len(), 6 + 5 + 2);
        let back = Tc::decode(&bytes).unwrap();
        assert_eq!(back, tc);
        let rid = back.request_id();
        assert_eq!(rid.apid(), 0x010);
        assert_eq!(rid.seq_count(), 77);
        // The request id is the first four bytes of the TC.
        assert_eq!(rid.0.to_be_bytes(), bytes[..4]);
    }

    #[test]
    fn largest_tc_fills_exactly_one_frame() {
        assert_eq!(MAX_TC_APP_DATA, 2008);
        assert_eq!(MAX_TM_DATA, 1999);
        let tc = Tc::new(0x030, 1, 129, 1, vec![0xA5; MAX_TC_APP_DATA]);
        let bytes = tc.encode().unwrap();
        assert_eq!(bytes.len(), MAX_TC_APP_DATA + TC_OVERHEAD);
        assert_eq!(
            bytes.len() + crate::security::OVERHEAD,
            crate::frame::MAX_PAYLOAD
        );
        let tm = Tm {
            apid: 0x060,
            seq_count: 1,
            service: 132,
            subtype: 2,
            msg_counter: 0,
            dest_id: 1,
            time_unix_ms: 1_700_000_000_000,
            data: vec![0x5A; MAX_TM_DATA],
        };
        assert_eq!(
            tm.encode().unwrap().len() + crate::security::OVERHEAD,
            crate::frame::MAX_PAYLOAD
        );
    }

    #[test]
    fn tm_round_trip_keeps_millisecond_time() {
        let tm = Tm {
            apid: 0x011,
            seq_count: 16383,
            service: 3,
            subtype: 25,
            msg_counter: 9,
            dest_id: 4,
            time_unix_ms: 1_795_000_000_123,
            data: vec![1, 2, 3],
        };
        let bytes = tm.encode().unwrap();
        assert_eq!(Tm::decode(&bytes).unwrap(), tm);
    }

    #[test]
    fn tc_with_bad_crc_or_trailing_bytes_is_refused() {
        let mut bytes = Tc::new(0x010, 1, 17, 1, vec![9, 9]).encode().unwrap();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Tc::decode(&trailing),
            Err(PacketError::Trailing { extra: 1 })
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        assert!(matches!(Tc::decode(&bytes), Err(PacketError::Invalid(_))));
    }

    #[test]
    fn tm_is_not_a_tc() {
        let tm = Tm {
            apid: 1,
            seq_count: 0,
            service: 17,
            subtype: 2,
            msg_counter: 0,
            dest_id: 0,
            time_unix_ms: 0,
            data: vec![],
        };
        assert!(Tc::decode(&tm.encode().unwrap()).is_err());
    }

    #[test]
    fn tm_declaring_no_room_for_its_timestamp_is_refused_not_a_panic() {
        // Found by the uplink_packet fuzz target.
        let mut bytes = vec![0x08, 0x01, 0xC0, 0x00, 0x00, 0x0C];
        bytes.extend([0x20, 17, 2, 0, 0, 0, 0]);
        bytes.extend([0; 6]);
        assert!(matches!(Tm::decode(&bytes), Err(PacketError::Invalid(_))));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tc::decode(&bytes);
            let _ = Tm::decode(&bytes);
        }

        #[test]
        fn tc_round_trips(apid in 0u16..0x7FF, seq in 0u16..0x3FFF, svc: u8, sub: u8, src: u16, data in proptest::collection::vec(any::<u8>(), 0..500)) {
            let tc = Tc { source_id: src, ..Tc::new(apid, seq, svc, sub, data) };
            prop_assert_eq!(Tc::decode(&tc.encode().unwrap()).unwrap(), tc);
        }
    }
}
