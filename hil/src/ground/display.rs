//! Human-readable rendering of telemetry for operators: housekeeping
//! tables, event lines, reason codes. Pure string building; printing is the
//! binary's job.
//!
//! It must never hide a value it does not understand: unknown fields and
//! event data are shown raw.

use std::time::{Duration, UNIX_EPOCH};

use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{Event, EventId, HkCore, ModeCode, NO_TEMPERATURE, Reader, Severity};

/// UTC time with milliseconds, RFC 3339.
#[must_use]
pub fn utc(unix_ms: i64) -> String {
    match u64::try_from(unix_ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => format!("{unix_ms} ms"),
    }
}

/// Bytes with a binary unit.
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).unwrap_or(&"?"))
    }
}

/// Seconds as `1 d 02:03:04`.
#[must_use]
pub fn duration(secs: u64) -> String {
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if d > 0 {
        format!("{d} d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// A reason code with its name and meaning where known.
#[must_use]
pub fn reason(code: ReasonCode) -> String {
    match code.describe() {
        Some((name, text)) => format!("0x{:04x} {name} ({text})", code.0),
        None if code.0 == 0 => "none".to_string(),
        None => format!("0x{:04x}", code.0),
    }
}

/// The housekeeping table.
#[must_use]
pub fn hk_table(hk: &HkCore, tm_time_ms: i64) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("report time", utc(tm_time_ms)),
        ("uptime", duration(u64::from(hk.uptime_s))),
        ("boot count", hk.boot_count.to_string()),
        (
            "mode",
            ModeCode::from_u8(hk.mode).map_or_else(
                || format!("unknown ({})", hk.mode),
                |m| m.name().to_string(),
            ),
        ),
        ("mode reason", reason(ReasonCode(hk.mode_reason))),
        ("frames ok", hk.frames_ok.to_string()),
        ("crc errors", hk.crc_errors.to_string()),
        ("malformed frames", hk.malformed_frames.to_string()),
        ("oversize frames", hk.oversize_frames.to_string()),
        ("resyncs", hk.resyncs.to_string()),
        ("replays refused", hk.replays.to_string()),
        ("auth failures", hk.auth_failures.to_string()),
        ("unknown key/malformed", hk.unknown_keys.to_string()),
        ("tc accepted", hk.tc_accepted.to_string()),
        ("tc rejected", hk.tc_rejected.to_string()),
        ("tm sent", hk.tm_sent.to_string()),
        ("tm suppressed", hk.tm_suppressed.to_string()),
        ("downlink key id", hk.tx_key_id.to_string()),
        ("downlink next seq", hk.tx_next_seq.to_string()),
        ("uplink highest seq", hk.rx_highest_seq.to_string()),
        ("storage used", bytes(hk.storage_used_bytes)),
        ("storage free", bytes(hk.storage_free_bytes)),
        (
            "cpu temperature",
            if hk.cpu_temp_milli_c == NO_TEMPERATURE {
                "n/a (no sensor)".to_string()
            } else {
                format!("{:.1} °C", f64::from(hk.cpu_temp_milli_c) / 1000.0)
            },
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::from("spacenode housekeeping\n");
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

fn event_details(ev: &Event) -> String {
    let mut r = Reader::new(&ev.aux);
    let text = match ev.id {
        EventId::BOOT => r.u32("boot").map(|b| format!("boot_count={b}")).ok(),
        EventId::AUTH_FAILURES | EventId::UNKNOWN_KEY => match (r.u32("count"), r.u16("key")) {
            (Ok(c), Ok(k)) => Some(format!("count={c} last_key={k}")),
            _ => None,
        },
        EventId::REPLAY => match (r.u16("key"), r.u64("seq"), r.u64("highest")) {
            (Ok(k), Ok(s), Ok(h)) => Some(format!("key={k} seq={s} window_top={h}")),
            _ => None,
        },
        EventId::REKEYED => r.u16("key").map(|k| format!("key={k}")).ok(),
        EventId::STORAGE_LOW => r.u64("free").map(|f| format!("free={}", bytes(f))).ok(),
        _ => None,
    };
    match text {
        Some(t) => t,
        None if ev.aux.is_empty() => String::new(),
        None => format!("aux={}", hex::encode(&ev.aux)),
    }
}

/// One line per event.
#[must_use]
pub fn event_line(ev: &Event, severity: Option<Severity>) -> String {
    let sev = severity.map_or("?", Severity::name);
    let name = ev.id.name().unwrap_or("UNKNOWN");
    let meaning = EventId::ALL
        .iter()
        .find(|e| e.0 == ev.id)
        .map_or("", |e| e.3);
    format!(
        "{}  #{:<6} {:<6} {:<14} {} {}",
        utc(ev.time_unix_ms),
        ev.seq,
        sev,
        name,
        meaning,
        event_details(ev)
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_readable() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(duration(3723), "01:02:03");
        assert_eq!(duration(90_000), "1 d 01:00:00");
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert!(reason(ReasonCode::SEC_REPLAY).contains("SEC_REPLAY"));
    }

    #[test]
    fn event_lines_decode_known_data() {
        let ev = Event {
            id: EventId::BOOT,
            seq: 3,
            time_unix_ms: 1000,
            aux: 7u32.to_be_bytes().to_vec(),
        };
        let line = event_line(&ev, Some(Severity::Info));
        assert!(
            line.contains("BOOT") && line.contains("boot_count=7"),
            "{line}"
        );
        let odd = Event {
            id: EventId(0x7777),
            seq: 1,
            time_unix_ms: 0,
            aux: vec![0xAB],
        };
        assert!(event_line(&odd, None).contains("aux=ab"));
    }

    #[test]
    fn hk_table_shows_absent_sensor() {
        let hk = HkCore {
            cpu_temp_milli_c: NO_TEMPERATURE,
            mode: 1,
            ..Default::default()
        };
        let t = hk_table(&hk, 0);
        assert!(t.contains("n/a (no sensor)") && t.contains("normal"));
    }
}
