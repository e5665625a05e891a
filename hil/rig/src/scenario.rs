//! HIL scenarios as data: one TOML file per scenario (`hil/scenarios/`),
//! parsed into typed steps and validated once at load, before any board is
//! touched. A scenario names the board capabilities it needs (console,
//! power control, offline disk access, the link emulator, test hooks, a
//! daemon-owned hardware watchdog, the administrators' keys); a scenario whose
//! work has not landed yet is `pending` with the reason and a plan in words,
//! and is reported as skipped, never as passed.
//!
//! ```toml
//! name = "ping-housekeeping"
//! summary = "Pings are answered and housekeeping reports a normal node."
//!
//! [[step]]
//! ping = { count = 50 }
//!
//! [[step]]
//! housekeeping = { save_as = "hk", expect = { mode = 1 } }
//! ```
//!
//! This module must never perform I/O beyond reading scenario files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use spacenode_wire::msg::HkCore;

/// Why scenarios could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type.
    #[error("scenario {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// Well-formed but inconsistent.
    #[error("scenario {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a board can do besides its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Its console output can be read.
    Console,
    /// It can be powered off and on by the runner.
    Power,
    /// Its disk can be read while it is off (virtual board).
    Disk,
    /// The link runs through the link emulator (`--emulate`).
    Emulator,
    /// The node's config enables the health test hooks
    /// (`health.test_hooks`, development profile only).
    TestHooks,
    /// The daemon holds the hardware watchdog itself (`health.watchdog =
    /// "device"`) and systemd does not (`RuntimeWatchdogSec=0`).
    DeviceWatchdog,
    /// The runner holds the administrators' keys (`--admins`) of the node's
    /// `[admin]` set.
    Admin,
}

impl Capability {
    /// The name used in scenario files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::Power => "power",
            Self::Disk => "disk",
            Self::Emulator => "emulator",
            Self::TestHooks => "test-hooks",
            Self::DeviceWatchdog => "device-watchdog",
            Self::Admin => "admin",
        }
    }
}

/// One scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique name (the JUnit test case name).
    pub name: String,
    /// What it proves, one sentence.
    pub summary: String,
    /// Capabilities the board must have; without them it is skipped.
    #[serde(default)]
    pub requires: Vec<Capability>,
    /// Capabilities used if the board has them: steps needing one the
    /// board lacks are skipped (and logged), the rest runs.
    #[serde(default)]
    pub optional: Vec<Capability>,
    /// Why it cannot run yet; the scenario is reported as skipped.
    #[serde(default)]
    pub pending: Option<String>,
    /// The planned steps in words (pending scenarios).
    #[serde(default)]
    pub plan: Vec<String>,
    /// The steps, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// The file it came from.
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_ready_within() -> u64 {
    180
}
fn default_ready_pattern() -> String {
    "spacenoded ready".to_string()
}
fn default_console_within() -> u64 {
    60
}
fn default_attempts() -> u32 {
    20
}
fn default_quiet() -> u64 {
    3
}
fn default_burst() -> u32 {
    8
}
fn default_jitter() -> u64 {
    40
}
fn default_reset_within() -> u64 {
    60
}
fn default_banner() -> String {
    // The kernel's banner (KERN_NOTICE: the board's cmdline has loglevel=6).
    "Linux version".to_string()
}
fn default_valid_for() -> u64 {
    600
}
fn default_window() -> u64 {
    600
}

/// A step of a scenario. In TOML, each `[[step]]` table has exactly one key,
/// the step's kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Wait until the node is up: its READY line on the console (when the
    /// board has one) and its first answered ping.
    Ready(ReadyStep),
    /// Wait for a line on the console (after the mark, if one was set).
    Console(ConsoleStep),
    /// Later console steps only look at output from here on (until the
    /// next power-on or board reset).
    ConsoleMark(Empty),
    /// Text that must not be on the console of the current power cycle
    /// (all of it, mark or not).
    ConsoleAbsent(ConsoleAbsentStep),
    /// The board resets by itself (a hardware watchdog): a new kernel
    /// banner after the mark while the runner keeps the power on. Moves the
    /// mark to the new boot.
    BoardReset(BoardResetStep),
    /// Hang one of the daemon's tasks with the health test hook
    /// (TC[133,5]).
    HangTask(HangStep),
    /// Pings, all of which must be answered.
    Ping(PingStep),
    /// A one-shot housekeeping report, checked and optionally saved.
    Housekeeping(HousekeepingStep),
    /// Compares a field between two saved housekeeping reports.
    Compare(CompareStep),
    /// Change the emulated link's conditions for the rest of the scenario.
    Link(LinkStep),
    /// Pings sealed and sent by hand, completed, and their frames kept for
    /// a replay later.
    CaptureUplink(CaptureStep),
    /// Re-sends captured frames: none may execute, each must be counted as
    /// a replay.
    ReplayUplink(ReplayStep),
    /// A stream of pings and housekeeping requests, optionally cut by a
    /// power loss at a random request.
    Stream(StreamStep),
    /// Power off at once (SIGKILL of the virtual board, a relay on a bench).
    PowerCut(Empty),
    /// Power on.
    PowerOn(Empty),
    /// With the board off: the file system must be clean after its journal
    /// is replayed, and the SQLite databases must pass `integrity_check`.
    InspectDisk(InspectStep),
    /// No downlink (key id, sequence number) was received twice during the
    /// scenario, across power cuts.
    DownlinkUnique(Empty),
    /// The node's mode status (TC[133,1] -> TM[133,2]), checked.
    Mode(ModeStep),
    /// Ground command: enter safe mode (TC[133,3], reason 0x0801).
    EnterSafeMode(Empty),
    /// An `exit-safe-mode` administrator command signed by some of the
    /// administrators (TC[133,4]): completed, or refused with a code.
    ExitSafeMode(ExitStep),
    /// Sends an earlier signed command again in a new telecommand: it must
    /// be refused with the code.
    ResendCommand(ResendStep),
    /// A start-up that keeps failing: the power is cut as soon as the node
    /// is READY, again and again, until the node reports safe mode.
    BootLoop(BootLoopStep),
    /// A sign request (TC[132,1]) that the node must refuse with a code
    /// before looking at its content (e.g. `0x0006` MODE_FORBIDS in safe
    /// mode): nothing is signed.
    SignRefused(SignRefusedStep),
    /// Co-signing set up as the ground does it: a 2-of-3 wallet (two
    /// ground keys, the node's), a regtest chain funding it synced to the
    /// node, the policy signed by the administrators' quorum, the wallet
    /// registered by a quorum-signed command.
    CosignSetup(CosignSetupStep),
    /// An approved sign request for a PSBT paying the allowlisted
    /// destination: signed (the node's signatures must complete and verify
    /// the transaction on the ground) or refused with a code and rule tag;
    /// the audit receipt must verify either way.
    CosignSign(CosignSignStep),
    /// The request saved by a `cosign_sign` sent again: the same
    /// signatures, answered from the stored result.
    CosignRetry(CosignRetryStep),
    /// The whole audit log downloaded and verified (hash chain, receipts,
    /// the node's head).
    AuditVerify(AuditVerifyStep),
    /// Whatever the node's history: if it is in safe mode for one of the
    /// listed reasons (a power cycle that completed a boot loop), the
    /// administrators' quorum lets it out (sequence number = the node's
    /// `admin_seq` + 1); in normal mode nothing is sent. Safe mode for any
    /// other reason fails the step.
    LeaveSafeMode(LeaveSafeModeStep),
}

/// A step without parameters (`power_cut = {}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Parameters of [`Step::Ready`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyStep {
    /// Deadline from power-on (or from the step's start if the runner did
    /// not power the board on).
    #[serde(default = "default_ready_within")]
    pub within_s: u64,
    /// The console line that says the daemon is ready.
    #[serde(default = "default_ready_pattern")]
    pub console: String,
}

/// Parameters of [`Step::Console`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleStep {
    /// Text that must appear on the console of the current boot.
    pub expect: String,
    /// How long to wait for it.
    #[serde(default = "default_console_within")]
    pub within_s: u64,
}

/// Parameters of [`Step::ConsoleAbsent`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleAbsentStep {
    /// Text that must not appear.
    pub text: String,
}

/// Parameters of [`Step::BoardReset`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardResetStep {
    /// How long after the mark the new boot may take to show.
    #[serde(default = "default_reset_within")]
    pub within_s: u64,
    /// The line that starts a boot.
    #[serde(default = "default_banner")]
    pub banner: String,
}

/// Parameters of [`Step::HangTask`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HangStep {
    /// The task: 0 the node task, 1 the link task.
    pub task: u8,
}

/// Parameters of [`Step::Ping`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingStep {
    /// Number of pings.
    pub count: u32,
    /// Attempts per ping before it counts as lost.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

/// Parameters of [`Step::Housekeeping`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HousekeepingStep {
    /// Name under which the report is kept for [`Step::Compare`].
    #[serde(default)]
    pub save_as: Option<String>,
    /// Exact values of fields (names as in docs/wire.md).
    #[serde(default)]
    pub expect: BTreeMap<String, i64>,
}

/// Parameters of [`Step::Compare`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareStep {
    /// Housekeeping field.
    pub field: String,
    /// The earlier report.
    pub from: String,
    /// The later report.
    pub to: String,
    /// `to - from` must equal this.
    #[serde(default)]
    pub delta: Option<i64>,
    /// `to - from` must be at least this.
    #[serde(default)]
    pub min_delta: Option<i64>,
}

/// Parameters of [`Step::Link`] (unset values keep the run's baseline).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkStep {
    /// Probability that a byte is corrupted.
    #[serde(default)]
    pub byte_error_rate: Option<f64>,
    /// Probability that a frame is lost.
    #[serde(default)]
    pub frame_loss_rate: Option<f64>,
    /// One-way latency.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

/// Parameters of [`Step::CaptureUplink`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStep {
    /// Name of the captured set.
    pub save_as: String,
    /// Number of pings.
    pub count: u32,
}

/// Parameters of [`Step::ReplayUplink`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayStep {
    /// The captured set.
    pub from: String,
    /// How long to listen for a (forbidden) completion.
    #[serde(default = "default_quiet")]
    pub quiet_s: u64,
}

/// Parameters of [`Step::Stream`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamStep {
    /// Requests, alternately ping and housekeeping.
    pub requests: u32,
    /// Cut the power during the stream.
    #[serde(default)]
    pub power_cut: Option<CutPlan>,
}

/// When and how a stream is cut.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutPlan {
    /// The cut comes after at least this many completed requests...
    pub after_min: u32,
    /// ...and at most this many (chosen at random, logged).
    pub after_max: u32,
    /// Requests sent back to back without waiting, just before the cut,
    /// so that the node is busy when it loses power.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Random delay between the burst and the cut, up to this.
    #[serde(default = "default_jitter")]
    pub jitter_ms: u64,
}

/// A node mode a scenario can expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedMode {
    /// Normal operations.
    Normal,
    /// Safe mode.
    Safe,
}

/// Parameters of [`Step::Mode`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeStep {
    /// The mode.
    pub expect: ExpectedMode,
    /// The safe-mode reason code (docs/health.md), e.g. `0x0802`.
    #[serde(default)]
    pub reason: Option<u16>,
}

/// Parameters of [`Step::ExitSafeMode`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitStep {
    /// The command's sequence number (above every one the node executed).
    pub seq: u64,
    /// Indices of the administrators who sign (their order in `[admin]`).
    pub signers: Vec<u8>,
    /// Expected refusal code at completion (e.g. `0x0501` quorum not met);
    /// unset: the command must complete.
    #[serde(default)]
    pub refused: Option<u16>,
    /// Keep the signed command for [`Step::ResendCommand`].
    #[serde(default)]
    pub save_as: Option<String>,
    /// Validity window from now (it starts a minute back).
    #[serde(default = "default_valid_for")]
    pub valid_for_s: u64,
}

/// Parameters of [`Step::ResendCommand`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendStep {
    /// The saved command.
    pub from: String,
    /// The refusal code it must get (e.g. `0x0522` replayed).
    pub refused: u16,
}

/// Parameters of [`Step::BootLoop`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootLoopStep {
    /// The node's `health.boot_loop_starts`: more starts than this within
    /// the window is a boot loop.
    pub starts: u32,
    /// The node's `health.boot_loop_window_s`.
    #[serde(default = "default_window")]
    pub window_s: u64,
    /// Deadline of each boot to READY.
    #[serde(default = "default_ready_within")]
    pub within_s: u64,
}

/// Parameters of [`Step::SignRefused`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRefusedStep {
    /// The reason code the refusal must carry.
    pub code: u16,
    /// Text the refusal's detail must contain (e.g. `safe mode`).
    #[serde(default)]
    pub detail: Option<String>,
}

fn default_utxos() -> u32 {
    4
}
fn default_utxo_value() -> u64 {
    100_000_000
}
fn default_cap() -> u64 {
    150_000_000
}
fn default_confirmations() -> u32 {
    3
}
fn default_fee() -> u64 {
    2_000
}

/// Parameters of [`Step::CosignSetup`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignSetupStep {
    /// Funded outputs of the wallet.
    #[serde(default = "default_utxos")]
    pub utxos: u32,
    /// Value of each, sat.
    #[serde(default = "default_utxo_value")]
    pub value_sat: u64,
    /// The policy's per-transaction cap, sat.
    #[serde(default = "default_cap")]
    pub per_tx_cap_sat: u64,
    /// Confirmations of the funding (the policy requires as many).
    #[serde(default = "default_confirmations")]
    pub confirmations: u32,
}

/// Parameters of [`Step::CosignSign`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignSignStep {
    /// Request id (32 times this byte).
    pub id: u8,
    /// Funded outputs spent (indices).
    pub inputs: Vec<usize>,
    /// Paid to the allowlisted destination, sat.
    pub amount_sat: u64,
    /// Fee, sat.
    #[serde(default = "default_fee")]
    pub fee_sat: u64,
    /// Change address index.
    #[serde(default)]
    pub change_index: u32,
    /// Keep an approved request for [`Step::CosignRetry`].
    #[serde(default)]
    pub save_as: Option<String>,
    /// Expected refusal code; unset: it must be signed.
    #[serde(default)]
    pub refused: Option<u16>,
    /// Expected rule tag of the refusal (e.g. `btc-per-tx-cap`).
    #[serde(default)]
    pub rule: Option<String>,
}

/// Parameters of [`Step::CosignRetry`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignRetryStep {
    /// The saved request.
    pub from: String,
}

/// Parameters of [`Step::AuditVerify`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditVerifyStep {
    /// At least this many approvals in the log.
    #[serde(default)]
    pub min_approved: u32,
}

/// Parameters of [`Step::LeaveSafeMode`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveSafeModeStep {
    /// The administrators who sign the exit.
    pub signers: Vec<u8>,
    /// The safe-mode reasons that may be left here (e.g. `0x0802`).
    pub reasons: Vec<u16>,
}

/// Parameters of [`Step::InspectDisk`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectStep {
    /// Absolute paths of SQLite databases on the board's root file system.
    pub sqlite: Vec<String>,
}

impl Step {
    /// The step's kind as written in the file.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ready(_) => "ready",
            Self::Console(_) => "console",
            Self::ConsoleMark(_) => "console_mark",
            Self::ConsoleAbsent(_) => "console_absent",
            Self::BoardReset(_) => "board_reset",
            Self::HangTask(_) => "hang_task",
            Self::Ping(_) => "ping",
            Self::Housekeeping(_) => "housekeeping",
            Self::Compare(_) => "compare",
            Self::Link(_) => "link",
            Self::CaptureUplink(_) => "capture_uplink",
            Self::ReplayUplink(_) => "replay_uplink",
            Self::Stream(_) => "stream",
            Self::PowerCut(_) => "power_cut",
            Self::PowerOn(_) => "power_on",
            Self::InspectDisk(_) => "inspect_disk",
            Self::DownlinkUnique(_) => "downlink_unique",
            Self::Mode(_) => "mode",
            Self::EnterSafeMode(_) => "enter_safe_mode",
            Self::ExitSafeMode(_) => "exit_safe_mode",
            Self::ResendCommand(_) => "resend_command",
            Self::BootLoop(_) => "boot_loop",
            Self::SignRefused(_) => "sign_refused",
            Self::CosignSetup(_) => "cosign_setup",
            Self::CosignSign(_) => "cosign_sign",
            Self::CosignRetry(_) => "cosign_retry",
            Self::AuditVerify(_) => "audit_verify",
            Self::LeaveSafeMode(_) => "leave_safe_mode",
        }
    }

    /// The capabilities the step needs.
    #[must_use]
    pub fn needs(&self) -> &'static [Capability] {
        match self {
            Self::Console(_)
            | Self::ConsoleMark(_)
            | Self::ConsoleAbsent(_)
            | Self::BoardReset(_) => &[Capability::Console],
            Self::HangTask(_) => &[Capability::TestHooks],
            Self::PowerCut(_) | Self::PowerOn(_) => &[Capability::Power],
            Self::Stream(s) if s.power_cut.is_some() => &[Capability::Power],
            Self::InspectDisk(_) => &[Capability::Disk],
            Self::Link(_) => &[Capability::Emulator],
            Self::ExitSafeMode(_)
            | Self::ResendCommand(_)
            | Self::CosignSetup(_)
            | Self::LeaveSafeMode(_) => &[Capability::Admin],
            Self::BootLoop(_) => &[Capability::Power, Capability::Console],
            _ => &[],
        }
    }
}

/// Names of the core housekeeping fields, in wire order.
#[must_use]
pub fn hk_fields() -> Vec<&'static str> {
    HkCore::default()
        .rows()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect()
}

/// The value of a core housekeeping field by name.
#[must_use]
pub fn hk_value(hk: &HkCore, field: &str) -> Option<i64> {
    hk.rows()
        .into_iter()
        .find(|(name, _, _)| *name == field)
        .and_then(|(_, value, _)| value.parse::<i64>().ok())
}

impl Scenario {
    /// Parses and validates one scenario.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the file and the problem.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ScenarioError> {
        let mut s: Self = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
        s.file = file.to_path_buf();
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: self.file.clone(),
            message,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "`name`: {:?} must be non-empty ASCII letters, digits, - or _",
                self.name
            )));
        }
        match (&self.pending, self.steps.is_empty()) {
            (Some(reason), _) if reason.trim().is_empty() => {
                return Err(invalid("`pending`: give the reason".into()));
            }
            (Some(_), _) if self.plan.is_empty() => {
                return Err(invalid(
                    "a pending scenario needs a `plan` (its steps in words)".into(),
                ));
            }
            (None, true) => return Err(invalid("no `[[step]]` and not `pending`".into())),
            _ => {}
        }
        let fields = hk_fields();
        let mut saved_hk = BTreeSet::new();
        let mut captured = BTreeSet::new();
        let mut commands = BTreeSet::new();
        let mut marked = false;
        let mut cosign_ready = false;
        let mut approved = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("step {} ({})", i + 1, step.kind());
            if let Some(cap) = step
                .needs()
                .iter()
                .find(|c| !self.requires.contains(c) && !self.optional.contains(c))
            {
                return Err(invalid(format!(
                    "{at} needs the `{}` capability: add it to `requires` or `optional`",
                    cap.name()
                )));
            }
            match step {
                Step::Housekeeping(h) => {
                    for f in h.expect.keys() {
                        if !fields.contains(&f.as_str()) {
                            return Err(invalid(format!(
                                "{at}: unknown housekeeping field `{f}` (known: {})",
                                fields.join(", ")
                            )));
                        }
                    }
                    if let Some(name) = &h.save_as {
                        saved_hk.insert(name.clone());
                    }
                }
                Step::Compare(c) => {
                    if !fields.contains(&c.field.as_str()) {
                        return Err(invalid(format!(
                            "{at}: unknown housekeeping field `{}`",
                            c.field
                        )));
                    }
                    for r in [&c.from, &c.to] {
                        if !saved_hk.contains(r) {
                            return Err(invalid(format!(
                                "{at}: no earlier housekeeping step saved as `{r}`"
                            )));
                        }
                    }
                    if c.delta.is_none() && c.min_delta.is_none() {
                        return Err(invalid(format!("{at}: give `delta` or `min_delta`")));
                    }
                }
                Step::CaptureUplink(c) => {
                    if c.count == 0 {
                        return Err(invalid(format!("{at}: `count` must be at least 1")));
                    }
                    captured.insert(c.save_as.clone());
                }
                Step::ReplayUplink(r) if !captured.contains(&r.from) => {
                    return Err(invalid(format!(
                        "{at}: no earlier capture_uplink saved as `{}`",
                        r.from
                    )));
                }
                Step::Stream(s) => {
                    if let Some(cut) = &s.power_cut
                        && (cut.after_min > cut.after_max || cut.after_max >= s.requests)
                    {
                        return Err(invalid(format!(
                            "{at}: need after_min <= after_max < requests"
                        )));
                    }
                }
                Step::Link(l) => {
                    for (key, rate) in [
                        ("byte_error_rate", l.byte_error_rate),
                        ("frame_loss_rate", l.frame_loss_rate),
                    ] {
                        if let Some(r) = rate
                            && !(0.0..=1.0).contains(&r)
                        {
                            return Err(invalid(format!("{at}: `{key}` must be in 0..=1")));
                        }
                    }
                }
                Step::InspectDisk(d) => {
                    if let Some(p) = d.sqlite.iter().find(|p| !p.starts_with('/')) {
                        return Err(invalid(format!("{at}: `{p}` is not an absolute path")));
                    }
                }
                Step::ConsoleMark(_) => marked = true,
                Step::PowerOn(_) => marked = false,
                Step::BoardReset(_) if !marked => {
                    return Err(invalid(format!(
                        "{at}: needs an earlier `console_mark` (set it before the trigger)"
                    )));
                }
                Step::Mode(m) if m.expect == ExpectedMode::Normal && m.reason.is_some() => {
                    return Err(invalid(format!("{at}: `reason` is for safe mode only")));
                }
                Step::ExitSafeMode(e) => {
                    let mut seen = BTreeSet::new();
                    if e.signers.is_empty() || !e.signers.iter().all(|s| seen.insert(*s)) {
                        return Err(invalid(format!(
                            "{at}: `signers` must name at least one administrator, each once"
                        )));
                    }
                    if let Some(name) = &e.save_as {
                        commands.insert(name.clone());
                    }
                }
                Step::ResendCommand(r) if !commands.contains(&r.from) => {
                    return Err(invalid(format!(
                        "{at}: no earlier exit_safe_mode saved as `{}`",
                        r.from
                    )));
                }
                Step::CosignSetup(_) => cosign_ready = true,
                Step::LeaveSafeMode(l) => {
                    let mut seen = BTreeSet::new();
                    if l.signers.is_empty() || !l.signers.iter().all(|s| seen.insert(*s)) {
                        return Err(invalid(format!(
                            "{at}: `signers` must name at least one administrator, each once"
                        )));
                    }
                    if l.reasons.is_empty() {
                        return Err(invalid(format!(
                            "{at}: `reasons` must list the safe-mode reasons to leave"
                        )));
                    }
                }
                Step::CosignSign(_) | Step::CosignRetry(_) | Step::AuditVerify(_)
                    if !cosign_ready =>
                {
                    return Err(invalid(format!("{at}: needs an earlier `cosign_setup`")));
                }
                Step::CosignSign(c) => {
                    if c.inputs.is_empty() {
                        return Err(invalid(format!("{at}: `inputs` must name an output")));
                    }
                    if c.rule.is_some() && c.refused.is_none() {
                        return Err(invalid(format!("{at}: `rule` needs `refused`")));
                    }
                    match (&c.save_as, c.refused) {
                        (Some(_), Some(_)) => {
                            return Err(invalid(format!(
                                "{at}: only an approved request can be saved"
                            )));
                        }
                        (Some(name), None) => {
                            approved.insert(name.clone());
                        }
                        _ => {}
                    }
                }
                Step::CosignRetry(r) if !approved.contains(&r.from) => {
                    return Err(invalid(format!(
                        "{at}: no earlier approved cosign_sign saved as `{}`",
                        r.from
                    )));
                }
                Step::BootLoop(b) => {
                    if b.starts == 0 || b.window_s == 0 {
                        return Err(invalid(format!(
                            "{at}: `starts` and `window_s` must be positive"
                        )));
                    }
                    marked = false;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Loads every `*.toml` in `dir`, sorted by file name (number them to fix
/// the order), and checks that names are unique.
///
/// # Errors
/// [`ScenarioError`] for the first bad file.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let read_err = |source| ScenarioError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out: Vec<Scenario> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| ScenarioError::Read {
            path: f.clone(),
            source,
        })?;
        let s = Scenario::parse(&text, &f)?;
        if let Some(other) = out.iter().find(|o| o.name == s.name) {
            return Err(ScenarioError::Invalid {
                path: f.clone(),
                message: format!("name `{}` is also used by {}", s.name, other.file.display()),
            });
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn steps_parse_from_one_key_tables() {
        let s = parse(
            "name = \"x\"\nsummary = \"s\"\nrequires = [\"power\"]\noptional = [\"disk\"]\n\
             [[step]]\nready = {}\n\
             [[step]]\nhousekeeping = { save_as = \"a\", expect = { mode = 1 } }\n\
             [[step]]\ncapture_uplink = { save_as = \"old\", count = 3 }\n\
             [[step]]\nstream = { requests = 10, power_cut = { after_min = 2, after_max = 5 } }\n\
             [[step]]\ninspect_disk = { sqlite = [\"/var/lib/spacenode/spacenode.db\"] }\n\
             [[step]]\npower_on = {}\n\
             [[step]]\nhousekeeping = { save_as = \"b\" }\n\
             [[step]]\ncompare = { field = \"boot_count\", from = \"a\", to = \"b\", delta = 1 }\n\
             [[step]]\nreplay_uplink = { from = \"old\" }\n\
             [[step]]\ndownlink_unique = {}\n",
        )
        .unwrap();
        assert_eq!(s.steps.len(), 10);
        let Step::Ready(r) = &s.steps[0] else {
            panic!("ready")
        };
        assert_eq!((r.within_s, r.console.as_str()), (180, "spacenoded ready"));
        let Step::Stream(st) = &s.steps[3] else {
            panic!("stream")
        };
        let cut = st.power_cut.as_ref().unwrap();
        assert_eq!((cut.burst, cut.jitter_ms), (8, 40));
    }

    #[test]
    fn mistakes_are_named() {
        let base = "name = \"x\"\nsummary = \"s\"\n";
        let cases = [
            (
                "[[step]]\nping = { count = 1, cuont = 2 }\n",
                "unknown field `cuont`",
            ),
            ("[[step]]\nfly = {}\n", "unknown variant `fly`"),
            ("[[step]]\npower_cut = {}\n", "needs the `power` capability"),
            (
                "[[step]]\nconsole = { expect = \"x\" }\n",
                "needs the `console`",
            ),
            (
                "[[step]]\nhousekeeping = { expect = { boots = 1 } }\n",
                "unknown housekeeping field `boots`",
            ),
            (
                "[[step]]\ncompare = { field = \"boot_count\", from = \"a\", to = \"b\", delta = 1 }\n",
                "no earlier housekeeping step saved as `a`",
            ),
            (
                "[[step]]\nreplay_uplink = { from = \"z\" }\n",
                "no earlier capture_uplink",
            ),
            (
                "[[step]]\ncosign_sign = { id = 1, inputs = [0], amount_sat = 1 }\n",
                "needs an earlier `cosign_setup`",
            ),
            (
                "requires = [\"admin\"]\n[[step]]\ncosign_setup = {}\n\
                 [[step]]\ncosign_sign = { id = 1, inputs = [0], amount_sat = 1, refused = 1554, save_as = \"a\" }\n",
                "only an approved request can be saved",
            ),
            (
                "requires = [\"admin\"]\n[[step]]\ncosign_setup = {}\n[[step]]\ncosign_retry = { from = \"a\" }\n",
                "no earlier approved cosign_sign saved as `a`",
            ),
            (
                "[[step]]\ncosign_setup = {}\n",
                "needs the `admin` capability",
            ),
            (
                "requires = [\"admin\"]\n[[step]]\nleave_safe_mode = { signers = [0], reasons = [] }\n",
                "`reasons` must list",
            ),
            ("", "no `[[step]]` and not `pending`"),
            ("pending = \"later\"\n", "needs a `plan`"),
        ];
        for (extra, needle) in cases {
            let e = parse(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(e.contains(needle), "{extra:?}: {e}");
        }
    }

    #[test]
    fn pending_scenarios_need_a_reason_and_a_plan() {
        let s = parse(
            "name = \"wd\"\nsummary = \"s\"\npending = \"needs the health work\"\nplan = [\"hang a task\"]\n",
        )
        .unwrap();
        assert_eq!(s.pending.as_deref(), Some("needs the health work"));
        assert!(s.steps.is_empty());
    }

    #[test]
    fn housekeeping_fields_are_the_wire_ones() {
        let hk = HkCore {
            boot_count: 7,
            cpu_temp_milli_c: -5,
            ..HkCore::default()
        };
        assert_eq!(hk_value(&hk, "boot_count"), Some(7));
        assert_eq!(hk_value(&hk, "cpu_temp_milli_c"), Some(-5));
        assert_eq!(hk_value(&hk, "nope"), None);
        assert!(hk_fields().contains(&"replays"));
    }

    #[test]
    fn the_shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let all = load_dir(&dir).unwrap();
        assert!(all.len() >= 6, "{}", all.len());
        for s in &all {
            if let Some(p) = &s.pending {
                assert!(
                    !s.plan.is_empty(),
                    "{}: pending ({p}) without a plan",
                    s.name
                );
            }
        }
    }
}
