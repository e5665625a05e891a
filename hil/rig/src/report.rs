//! Results of a HIL run: one case per scenario, rendered as JUnit XML (for
//! CI) and as a summary table (for the operator). Pending scenarios and
//! scenarios the board cannot run are `skipped` with their reason, never
//! `passed`.
//!
//! This module must never decide outcomes; it only records and renders
//! them.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step passed.
    Passed,
    /// A step failed.
    Failed {
        /// `step N (kind)`.
        step: String,
        /// Why.
        message: String,
    },
    /// Not run.
    Skipped {
        /// Why (pending work, a missing capability).
        reason: String,
    },
}

impl Outcome {
    /// A short word for tables.
    #[must_use]
    pub fn word(&self) -> &'static str {
        match self {
            Self::Passed => "pass",
            Self::Failed { .. } => "FAIL",
            Self::Skipped { .. } => "skip",
        }
    }
}

/// The record of one scenario.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Scenario name.
    pub name: String,
    /// What it proves.
    pub summary: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time.
    pub duration: Duration,
    /// What happened, step by step.
    pub log: Vec<String>,
    /// Named measurements (e.g. `boot_to_ready_s`).
    pub measurements: Vec<(String, String)>,
}

/// The record of a run.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    /// The board's description.
    pub board: String,
    /// The emulated link, if any.
    pub link: String,
    /// When the run started.
    pub started: SystemTime,
    /// Wall time.
    pub duration: Duration,
    /// One per scenario, in order.
    pub cases: Vec<CaseReport>,
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters (console logs carry
            // ANSI escapes).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

impl SuiteReport {
    /// Outcome counts.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for case in &self.cases {
            match case.outcome {
                Outcome::Passed => c.passed += 1,
                Outcome::Failed { .. } => c.failed += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
            }
        }
        c
    }

    /// JUnit XML (the Jenkins/GitLab flavour: one `testsuite`, a
    /// `testcase` per scenario with `failure` or `skipped`).
    #[must_use]
    pub fn junit_xml(&self) -> String {
        let c = self.counts();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"spacenode-hil\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            self.cases.len(),
            c.failed,
            c.skipped,
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            x,
            "  <testsuite name=\"hil\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
            self.cases.len(),
            c.failed,
            c.skipped,
            self.duration.as_secs_f64(),
            humantime::format_rfc3339_seconds(self.started)
        );
        x.push_str("    <properties>\n");
        for (k, v) in [("board", &self.board), ("link", &self.link)] {
            let _ = writeln!(
                x,
                "      <property name=\"{k}\" value=\"{}\"/>",
                xml_escape(v)
            );
        }
        x.push_str("    </properties>\n");
        for case in &self.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"hil\" name=\"{}\" time=\"{:.3}\">",
                xml_escape(&case.name),
                case.duration.as_secs_f64()
            );
            match &case.outcome {
                Outcome::Passed => {}
                Outcome::Failed { step, message } => {
                    let _ = write!(
                        x,
                        "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                        xml_escape(message),
                        xml_escape(step),
                        xml_escape(message)
                    );
                }
                Outcome::Skipped { reason } => {
                    let _ = write!(x, "\n      <skipped message=\"{}\"/>", xml_escape(reason));
                }
            }
            let mut out = format!("{}\n", case.summary);
            for (k, v) in &case.measurements {
                let _ = writeln!(out, "measurement {k} = {v}");
            }
            for line in &case.log {
                let _ = writeln!(out, "{line}");
            }
            let _ = write!(
                x,
                "\n      <system-out>{}</system-out>\n    </testcase>\n",
                xml_escape(&out)
            );
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }

    /// The summary table.
    #[must_use]
    pub fn table(&self) -> String {
        let width = self
            .cases
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let mut t = format!(
            "{:<width$}  {:<6}  {:>8}  notes\n",
            "scenario", "result", "time"
        );
        for case in &self.cases {
            let note = match &case.outcome {
                Outcome::Passed => case
                    .measurements
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                Outcome::Failed { step, message } => format!("{step}: {message}"),
                Outcome::Skipped { reason } => reason.clone(),
            };
            let note: String = note
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(110)
                .collect();
            let _ = writeln!(
                t,
                "{:<width$}  {:<6}  {:>7.1}s  {note}",
                case.name,
                case.outcome.word(),
                case.duration.as_secs_f64()
            );
        }
        let c = self.counts();
        let _ = writeln!(
            t,
            "{} passed, {} failed, {} skipped in {:.1}s ({}; link: {})",
            c.passed,
            c.failed,
            c.skipped,
            self.duration.as_secs_f64(),
            self.board,
            self.link
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite() -> SuiteReport {
        let case = |name: &str, outcome| CaseReport {
            name: name.into(),
            summary: "s".into(),
            outcome,
            duration: Duration::from_millis(1500),
            log: vec!["step 1 ping: 5/5 <ok>".into()],
            measurements: vec![("boot_to_ready_s".into(), "61.2".into())],
        };
        SuiteReport {
            board: "virtual".into(),
            link: "direct".into(),
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(3),
            cases: vec![
                case("boot", Outcome::Passed),
                case(
                    "cut",
                    Outcome::Failed {
                        step: "step 2 (stream)".into(),
                        message: "a \"bad\" <thing>\u{1b}[0m".into(),
                    },
                ),
                case(
                    "watchdog",
                    Outcome::Skipped {
                        reason: "pending: needs the health work".into(),
                    },
                ),
            ],
        }
    }

    #[test]
    fn junit_marks_pending_as_skipped_and_escapes() {
        let x = suite().junit_xml();
        assert!(x.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""));
        assert!(x.contains("<skipped message=\"pending: needs the health work\"/>"));
        assert!(x.contains("a &quot;bad&quot; &lt;thing&gt;[0m"), "{x}");
        assert!(!x.contains('\u{1b}'));
        assert!(x.contains("step 1 ping: 5/5 &lt;ok&gt;"));
        assert!(x.contains("timestamp=\"1970-01-01T00:00:00Z\""));
    }

    #[test]
    fn table_has_a_closing_count_line() {
        let t = suite().table();
        assert!(t.contains("boot_to_ready_s=61.2"), "{t}");
        assert!(
            t.lines()
                .last()
                .unwrap()
                .starts_with("1 passed, 1 failed, 1 skipped")
        );
    }
}
