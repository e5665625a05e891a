//! Runs scenarios against a board: opens the ground link (directly on the
//! board's serial port, or through the link emulator and a relay), executes
//! each step with the ground client, and records what happened. A failed
//! step ends its scenario; before the next one the runner powers the board
//! back on if it was left off.
//!
//! This module must never mark a scenario passed that it did not run to
//! the end: pending scenarios and those needing a capability the board
//! lacks are skipped with the reason.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use spacenode_policy::command::SignedCommand;
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::Payload;
use spacenode_wire::frame;
use spacenode_wire::msg::{HK_CORE, HkCore, HkRequest, ModeCode, ModeStatus, Stage, Verification};
use spacenode_wire::pus::{RequestId, Tc};
use spacenode_wire::services::{apid, service, subtype};

use super::admins::{Admins, AdminsError};
use super::board::{Board, BoardError};
use super::cosign::{Desk, DeskError, Setup, Spend};
use super::relay::{Relay, RelayError};
use super::report::{CaseReport, Outcome, SuiteReport};
use super::scenario::{
    BoardResetStep, BootLoopStep, Capability, CaptureStep, CompareStep, ConsoleStep, CutPlan,
    ExitStep, ExpectedMode, HousekeepingStep, LeaveSafeModeStep, LinkStep, ModeStep, PingStep,
    ReadyStep, ReplayStep, Scenario, SignRefusedStep, Step, StreamStep, hk_value,
};
use spacenode_ground::client::{GroundError, Link, RetryPolicy};
use spacenode_ground::config::{ConfigError, GroundConfig};
use spacenode_linkemu::emulator::{Emulator, EmulatorError, LinkParams};

/// Console lines that mean the daemon failed to start: a `ready` step
/// stops waiting when it sees one.
const CONSOLE_FAILURES: &[&str] = &[
    "Failed to start spacenoded.service",
    "spacenoded.service: Main process exited",
    "Kernel panic",
];

/// The READY line of the daemon on the console.
const READY_LINE: &str = "spacenoded ready";

/// Tolerance between the ground's clock and the node's when comparing a
/// node timestamp with a ground instant (the virtual board's clock is the
/// host's; a bench board's is synchronised).
const CLOCK_SLACK_MS: i64 = 10_000;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The board refused or failed.
    #[error(transparent)]
    Board(#[from] BoardError),
    /// The ground link failed.
    #[error(transparent)]
    Ground(#[from] GroundError),
    /// The ground config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The relay to the emulator could not start.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The administrators could not sign.
    #[error(transparent)]
    Admins(#[from] AdminsError),
    /// A co-signing step failed.
    #[error(transparent)]
    Cosign(#[from] DeskError),
    /// A check did not hold.
    #[error("{0}")]
    Check(String),
}

/// Errors setting up a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The link emulator could not start.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// The board could not be powered on.
    #[error(transparent)]
    Board(#[from] BoardError),
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The ground's config (keys, state file).
    pub ground_config: PathBuf,
    /// Put the link emulator between the ground and the board.
    pub emulate: Option<LinkParams>,
    /// Retry policy of ordinary requests.
    pub policy: RetryPolicy,
    /// The administrators the runner may sign as (the `admin` capability).
    pub admins: Option<Admins>,
}

impl RunOptions {
    /// A policy for a node that answers within about a second even on a
    /// loaded CI machine running the board under TCG.
    #[must_use]
    pub fn default_policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 20,
            first_timeout: Duration::from_millis(1500),
            min_timeout: Duration::from_millis(200),
            max_timeout: Duration::from_secs(4),
        }
    }
}

/// Where later console steps start reading, and since when.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Console bytes of the current power cycle before the mark.
    offset: usize,
    /// When the mark was set.
    at: Instant,
}

/// What a scenario accumulates while it runs.
#[derive(Default)]
struct Ctx {
    log: Vec<String>,
    measurements: Vec<(String, String)>,
    hk: BTreeMap<String, HkCore>,
    captured: BTreeMap<String, Vec<(RequestId, Vec<u8>)>>,
    commands: BTreeMap<String, SignedCommand>,
    downlink: Vec<(u16, u64)>,
    console_mark: Option<Mark>,
    desk: Option<Desk>,
}

impl Ctx {
    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    /// Records a measurement; a repeated name gets `_2`, `_3`...
    fn measure(&mut self, name: &str, value: String) {
        let mut key = name.to_string();
        let mut n = 1;
        while self.measurements.iter().any(|(k, _)| *k == key) {
            n += 1;
            key = format!("{name}_{n}");
        }
        self.measurements.push((key, value));
    }
}

/// The runner.
pub struct Runner<'b> {
    board: &'b mut dyn Board,
    opts: RunOptions,
    emu: Option<Emulator>,
    relay: Option<Relay>,
    link: Option<Link>,
}

impl core::fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Runner")
            .field("board", &self.board.describe())
            .field("emulated", &self.emu.is_some())
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// The ground's wall clock in UNIX ms (administrator commands carry a
/// validity window in node time).
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn mode_name(mode: u8) -> String {
    ModeCode::from_u8(mode).map_or_else(|| format!("unknown ({mode})"), |m| m.name().to_string())
}

fn ping_tc(link: &mut Link) -> Tc {
    link.new_tc(apid::CORE, service::TEST, subtype::PING, Vec::new())
}

fn hk_tc(link: &mut Link) -> Tc {
    link.new_tc(
        apid::HK,
        service::HK,
        subtype::HK_ONE_SHOT,
        HkRequest {
            structures: vec![HK_CORE],
        }
        .encode(),
    )
}

/// Waits for the completion report of `request`; `Ok(false)` at the
/// deadline.
fn await_completion(
    link: &mut Link,
    request: RequestId,
    deadline: Instant,
) -> Result<bool, StepError> {
    while let Some(tm) = link.recv(deadline)? {
        if tm.service != service::VERIFICATION {
            continue;
        }
        let Ok(v) = Verification::decode(tm.subtype, &tm.data) else {
            continue;
        };
        if v.request_id != request {
            continue;
        }
        if let Some(f) = v.failure {
            return Err(StepError::Check(format!(
                "{request} refused at {:?}: {}",
                v.stage, f.code
            )));
        }
        if v.stage == Stage::Completion {
            return Ok(true);
        }
    }
    Ok(false)
}

impl<'b> Runner<'b> {
    /// A runner for `board`; starts the emulator if asked.
    ///
    /// # Errors
    /// [`RunError`] if the emulator cannot start.
    pub fn new(board: &'b mut dyn Board, opts: RunOptions) -> Result<Self, RunError> {
        let emu = match &opts.emulate {
            Some(p) => Some(Emulator::start(p.clone())?),
            None => None,
        };
        Ok(Self {
            board,
            opts,
            emu,
            relay: None,
            link: None,
        })
    }

    /// The link as reports describe it.
    #[must_use]
    pub fn link_description(&self) -> String {
        match &self.opts.emulate {
            None => "direct".into(),
            Some(p) => format!(
                "emulated {} Bd, byte error rate {}, frame loss {}, latency {} ms",
                p.baud,
                p.byte_error_rate,
                p.frame_loss_rate,
                p.latency.as_millis()
            ),
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        let mut caps: Vec<Capability> = self.board.capabilities().into_iter().collect();
        if self.emu.is_some() {
            caps.push(Capability::Emulator);
        }
        if self.opts.admins.is_some() {
            caps.push(Capability::Admin);
        }
        caps
    }

    /// Runs `scenarios` in order after powering the board on (if it has
    /// power control and is off).
    pub fn run(&mut self, scenarios: &[Scenario]) -> SuiteReport {
        let started = SystemTime::now();
        let t0 = Instant::now();
        let mut cases = Vec::new();
        for s in scenarios {
            let case = self.run_one(s);
            eprintln!(
                "hil: {:<24} {} ({}s)",
                case.name,
                case.outcome.word(),
                secs(case.duration)
            );
            cases.push(case);
        }
        self.close_link(&mut Ctx::default());
        SuiteReport {
            board: self.board.describe(),
            link: self.link_description(),
            started,
            duration: t0.elapsed(),
            cases,
        }
    }

    fn run_one(&mut self, s: &Scenario) -> CaseReport {
        let t0 = Instant::now();
        let mut ctx = Ctx::default();
        let caps = self.capabilities();
        let outcome = if let Some(reason) = &s.pending {
            for p in &s.plan {
                ctx.note(format!("planned: {p}"));
            }
            Outcome::Skipped {
                reason: format!("pending: {reason}"),
            }
        } else if let Some(missing) = s.requires.iter().find(|c| !caps.contains(c)) {
            Outcome::Skipped {
                reason: format!(
                    "the board has no `{}` capability here ({})",
                    missing.name(),
                    self.board.describe()
                ),
            }
        } else {
            self.execute(s, &mut ctx)
        };
        self.restore_link_params();
        self.close_link(&mut ctx);
        CaseReport {
            name: s.name.clone(),
            summary: s.summary.clone(),
            outcome,
            duration: t0.elapsed(),
            log: ctx.log,
            measurements: ctx.measurements,
        }
    }

    fn execute(&mut self, s: &Scenario, ctx: &mut Ctx) -> Outcome {
        if !self.board.is_on() {
            ctx.note("board is off: powering on".into());
            if let Err(e) = self.board.power_on() {
                return Outcome::Failed {
                    step: "power on before the scenario".into(),
                    message: e.to_string(),
                };
            }
            let starts_with_ready = matches!(s.steps.first(), Some(Step::Ready(_)));
            if !starts_with_ready {
                let ready = ReadyStep {
                    within_s: 180,
                    console: READY_LINE.into(),
                };
                match self.ready(&ready, ctx) {
                    Ok(summary) => ctx.note(summary),
                    Err(e) => {
                        return Outcome::Failed {
                            step: "ready before the scenario".into(),
                            message: e.to_string(),
                        };
                    }
                }
            }
        }
        let caps = self.capabilities();
        for (i, step) in s.steps.iter().enumerate() {
            let at = format!("step {} ({})", i + 1, step.kind());
            if let Some(cap) = step.needs().iter().find(|c| !caps.contains(c)) {
                ctx.note(format!(
                    "{at} skipped: the board has no `{}` capability",
                    cap.name()
                ));
                continue;
            }
            let t = Instant::now();
            match self.step(step, ctx) {
                Ok(summary) => {
                    ctx.note(format!("{at} ok in {}s: {summary}", secs(t.elapsed())));
                }
                Err(e) => {
                    let mut message = e.to_string();
                    if self.board.capabilities().contains(&Capability::Console)
                        && let Ok(console) = self.board.console()
                    {
                        let lines: Vec<&str> = console.lines().collect();
                        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                        ctx.note(format!("console (last 25 lines):\n{tail}"));
                    }
                    if message.is_empty() {
                        message = "failed".into();
                    }
                    ctx.note(format!(
                        "{at} FAILED after {}s: {message}",
                        secs(t.elapsed())
                    ));
                    return Outcome::Failed { step: at, message };
                }
            }
        }
        Outcome::Passed
    }

    fn step(&mut self, step: &Step, ctx: &mut Ctx) -> Result<String, StepError> {
        match step {
            Step::Ready(r) => self.ready(r, ctx),
            Step::Console(c) => self.console(c, ctx.console_mark.map_or(0, |m| m.offset)),
            Step::ConsoleMark(_) => {
                let offset = self.board.console()?.len();
                ctx.console_mark = Some(Mark {
                    offset,
                    at: Instant::now(),
                });
                Ok(format!("console marked at byte {offset}"))
            }
            Step::ConsoleAbsent(a) => {
                let text = self.board.console()?;
                match text.lines().find(|l| l.contains(&a.text)) {
                    Some(line) => Err(StepError::Check(format!(
                        "the console shows `{}`: {}",
                        a.text,
                        line.trim()
                    ))),
                    None => Ok(format!(
                        "`{}` nowhere on the console of this power cycle ({} bytes)",
                        a.text,
                        text.len()
                    )),
                }
            }
            Step::BoardReset(b) => self.board_reset(b, ctx),
            Step::HangTask(h) => {
                let policy = self.opts.policy;
                let link = self.open_link()?;
                let tc = link.new_tc(
                    apid::MODE,
                    service::MODE,
                    subtype::HEALTH_TEST_HANG,
                    vec![h.task],
                );
                link.request(&tc, policy)?;
                Ok(format!("task {} hangs (test hook)", h.task))
            }
            Step::Ping(p) => self.ping(p, ctx),
            Step::Housekeeping(h) => self.housekeeping(h, ctx),
            Step::Compare(c) => Self::compare(c, ctx),
            Step::Link(l) => self.set_link(l),
            Step::CaptureUplink(c) => self.capture(c, ctx),
            Step::ReplayUplink(r) => self.replay(r, ctx),
            Step::Stream(s) => self.stream(s, ctx),
            Step::PowerCut(_) => {
                self.board.power_cut()?;
                self.close_link(ctx);
                Ok("power cut".into())
            }
            Step::PowerOn(_) => {
                self.board.power_on()?;
                ctx.console_mark = None;
                Ok(format!(
                    "powered on, link at {}",
                    self.board.link_port()?.display()
                ))
            }
            Step::InspectDisk(d) => {
                let r = self.board.inspect_disk(&d.sqlite)?;
                let dbs: Vec<String> = r
                    .databases
                    .iter()
                    .map(|(p, files, res)| format!("{p} ({}) integrity {res}", files.join(" + ")))
                    .collect();
                Ok(format!(
                    "file system clean after recovery ({}); {}",
                    r.journal,
                    dbs.join("; ")
                ))
            }
            Step::DownlinkUnique(_) => {
                let mut all = ctx.downlink.clone();
                if let Some(link) = &self.link {
                    all.extend_from_slice(link.downlink_seqs());
                }
                let mut seen = HashSet::new();
                let dup: Vec<_> = all.iter().filter(|k| !seen.insert(**k)).copied().collect();
                if !dup.is_empty() {
                    return Err(StepError::Check(format!(
                        "downlink (key, seq) received twice: {dup:?}"
                    )));
                }
                Ok(format!(
                    "{} downlink envelopes, no (key, seq) twice",
                    all.len()
                ))
            }
            Step::Mode(m) => self.mode(m),
            Step::EnterSafeMode(_) => {
                let policy = self.opts.policy;
                let link = self.open_link()?;
                let tc = link.new_tc(
                    apid::MODE,
                    service::MODE,
                    subtype::MODE_ENTER_SAFE,
                    Vec::new(),
                );
                link.request(&tc, policy)?;
                Ok("safe mode entered on ground command".into())
            }
            Step::ExitSafeMode(e) => self.exit_safe_mode(e, ctx),
            Step::ResendCommand(r) => {
                let cmd =
                    ctx.commands.get(&r.from).cloned().ok_or_else(|| {
                        StepError::Check(format!("no command saved as `{}`", r.from))
                    })?;
                let outcome = self.send_admin_command(&cmd, Some(r.refused))?;
                Ok(format!(
                    "`{}` sent again in a new telecommand: {outcome}",
                    r.from
                ))
            }
            Step::BootLoop(b) => self.boot_loop(b, ctx),
            Step::SignRefused(r) => self.sign_refused(r),
            Step::LeaveSafeMode(l) => self.leave_safe_mode(l),
            Step::CosignSetup(c) => {
                let policy = self.opts.policy;
                let admins =
                    self.opts.admins.clone().ok_or_else(|| {
                        StepError::Check("no administrators' keys (--admins)".into())
                    })?;
                let link = self.open_link()?;
                let (desk, summary) = Desk::setup(
                    link,
                    policy,
                    &admins,
                    &Setup {
                        utxos: c.utxos,
                        value_sat: c.value_sat,
                        per_tx_cap_sat: c.per_tx_cap_sat,
                        confirmations: c.confirmations,
                    },
                )?;
                ctx.desk = Some(desk);
                Ok(summary)
            }
            Step::CosignSign(c) => {
                let policy = self.opts.policy;
                let mut desk = ctx
                    .desk
                    .take()
                    .ok_or_else(|| StepError::Check("no cosign_setup before".into()))?;
                let spend = Spend {
                    id: c.id,
                    inputs: c.inputs.clone(),
                    amount_sat: c.amount_sat,
                    fee_sat: c.fee_sat,
                    change_index: c.change_index,
                };
                let r = self.open_link().and_then(|link| {
                    match c.refused {
                        None => desk.sign_approved(link, policy, &spend, c.save_as.as_deref()),
                        Some(code) => {
                            desk.sign_refused(link, policy, &spend, code, c.rule.as_deref())
                        }
                    }
                    .map_err(StepError::from)
                });
                ctx.desk = Some(desk);
                r
            }
            Step::CosignRetry(c) => {
                let policy = self.opts.policy;
                let mut desk = ctx
                    .desk
                    .take()
                    .ok_or_else(|| StepError::Check("no cosign_setup before".into()))?;
                let r = self
                    .open_link()
                    .and_then(|link| Ok(desk.retry(link, policy, &c.from)?));
                ctx.desk = Some(desk);
                r
            }
            Step::AuditVerify(a) => {
                let policy = self.opts.policy;
                let desk = ctx
                    .desk
                    .take()
                    .ok_or_else(|| StepError::Check("no cosign_setup before".into()))?;
                let r = self
                    .open_link()
                    .and_then(|link| Ok(desk.audit_verify(link, policy, a.min_approved)?));
                ctx.desk = Some(desk);
                r
            }
        }
    }

    // ------------------------------------------------------------- the link

    fn open_link(&mut self) -> Result<&mut Link, StepError> {
        if self.link.is_none() {
            let board_port = self.board.link_port()?;
            let port = match &self.emu {
                Some(emu) => {
                    if self.relay.is_none() {
                        self.relay = Some(Relay::start(
                            emu.node_path(),
                            &board_port,
                            self.board.baud(),
                        )?);
                    }
                    emu.ground_path().clone()
                }
                None => board_port,
            };
            let cfg = GroundConfig::load(&self.opts.ground_config)?;
            let mut link = Link::open(cfg, &port.to_string_lossy(), self.board.baud())?;
            link.record_downlink_seqs();
            self.link = Some(link);
        }
        self.link
            .as_mut()
            .ok_or_else(|| StepError::Check("link not open".into()))
    }

    fn close_link(&mut self, ctx: &mut Ctx) {
        if let Some(link) = self.link.take() {
            ctx.downlink.extend_from_slice(link.downlink_seqs());
        }
        if !self.board.is_on() {
            self.relay = None;
        }
    }

    fn restore_link_params(&mut self) {
        if let (Some(emu), Some(p)) = (&self.emu, &self.opts.emulate) {
            emu.set_params(p);
        }
    }

    // ------------------------------------------------------------- the steps

    /// Waits for `pattern` on the console after byte `from`; stops early
    /// on a start-up failure line or a board that went off.
    fn await_console_ready(
        &mut self,
        pattern: &str,
        from: usize,
        deadline: Instant,
        since: &str,
        within_s: u64,
    ) -> Result<(), StepError> {
        loop {
            let text = self.board.console()?;
            let fresh = text.get(from..).unwrap_or_default();
            if fresh.contains(pattern) {
                return Ok(());
            }
            if let Some(f) = CONSOLE_FAILURES.iter().find(|f| fresh.contains(*f)) {
                return Err(StepError::Check(format!("console shows `{f}`")));
            }
            if !self.board.is_on() {
                return Err(StepError::Check(
                    "the board powered off while booting".into(),
                ));
            }
            if Instant::now() > deadline {
                return Err(StepError::Check(format!(
                    "no `{pattern}` on the console within {within_s}s of {since}"
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn ready(&mut self, r: &ReadyStep, ctx: &mut Ctx) -> Result<String, StepError> {
        // After a mark (a restart or reset the runner did not cause), the
        // line must be new and the deadline counts from the mark.
        let (start, from, since) = match ctx.console_mark {
            Some(m) => (m.at, m.offset, "the mark"),
            None => (
                self.board.powered_on_at().unwrap_or_else(Instant::now),
                0,
                "power-on",
            ),
        };
        let deadline = start + Duration::from_secs(r.within_s);
        if self.board.capabilities().contains(&Capability::Console) {
            self.await_console_ready(&r.console, from, deadline, since, r.within_s)?;
            ctx.measure("boot_to_ready_s", secs(start.elapsed()));
        }
        let probe = RetryPolicy {
            attempts: 1,
            first_timeout: Duration::from_secs(2),
            min_timeout: Duration::from_secs(2),
            max_timeout: Duration::from_secs(2),
        };
        let mut tries = 0u32;
        loop {
            tries += 1;
            let answered = match self.open_link() {
                Ok(link) => {
                    let tc = ping_tc(link);
                    match link.request(&tc, probe) {
                        Ok(_) => true,
                        Err(GroundError::Silent { .. }) => false,
                        Err(e) => return Err(e.into()),
                    }
                }
                // The port may not exist yet (a USB bridge enumerating).
                Err(StepError::Ground(
                    GroundError::PortMissing { .. } | GroundError::PortOpen { .. },
                )) => {
                    std::thread::sleep(Duration::from_millis(500));
                    false
                }
                Err(e) => return Err(e),
            };
            if answered {
                break;
            }
            if Instant::now() > deadline {
                return Err(StepError::Check(format!(
                    "no answer to {tries} pings within {}s of {since}",
                    r.within_s
                )));
            }
        }
        ctx.measure("boot_to_first_pong_s", secs(start.elapsed()));
        Ok(format!(
            "ready {}s after {since} (first pong after {tries} tries)",
            secs(start.elapsed())
        ))
    }

    fn board_reset(&mut self, b: &BoardResetStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let mark = ctx
            .console_mark
            .ok_or_else(|| StepError::Check("board_reset needs a console mark".into()))?;
        let powered = self.board.powered_on_at();
        let deadline = mark.at + Duration::from_secs(b.within_s);
        loop {
            let text = self.board.console()?;
            let fresh = text.get(mark.offset..).unwrap_or_default();
            if let Some(pos) = fresh.find(&b.banner) {
                // The runner kept the power on: same power cycle, same
                // power-on instant; the board rebooted by itself.
                if !self.board.is_on() || self.board.powered_on_at() != powered {
                    return Err(StepError::Check(
                        "the board was power-cycled: not a reset by the board itself".into(),
                    ));
                }
                let line = fresh[pos..].lines().next().unwrap_or_default().trim();
                let after = mark.at.elapsed();
                ctx.measure("reset_after_s", secs(after));
                // Later steps see the new boot only.
                let offset = mark.offset + fresh[..pos].rfind('\n').map_or(0, |n| n + 1);
                ctx.console_mark = Some(Mark {
                    offset,
                    at: Instant::now(),
                });
                return Ok(format!(
                    "the board reset by itself {}s after the mark, power untouched: {line}",
                    secs(after)
                ));
            }
            if !self.board.is_on() {
                return Err(StepError::Check(
                    "the board went off instead of resetting (QEMU needs -action watchdog=reset)"
                        .into(),
                ));
            }
            if Instant::now() > deadline {
                return Err(StepError::Check(format!(
                    "no new `{}` on the console within {}s of the mark: the board did not reset",
                    b.banner, b.within_s
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The node's mode status (TC[133,1] -> TM[133,2]).
    fn mode_status(&mut self) -> Result<ModeStatus, StepError> {
        let policy = self.opts.policy;
        let link = self.open_link()?;
        let tc = link.new_tc(
            apid::MODE,
            service::MODE,
            subtype::MODE_STATUS_REQUEST,
            Vec::new(),
        );
        let x = link.request(&tc, policy)?;
        let tm = x
            .replies
            .iter()
            .rev()
            .find(|t| t.service == service::MODE && t.subtype == subtype::MODE_STATUS)
            .ok_or_else(|| StepError::Check("completion without a mode status report".into()))?;
        ModeStatus::decode(&tm.data)
            .map(|(st, _)| st)
            .map_err(|e| StepError::Check(format!("mode status does not decode: {e}")))
    }

    fn mode(&mut self, m: &ModeStep) -> Result<String, StepError> {
        let st = self.mode_status()?;
        let want = match m.expect {
            ExpectedMode::Normal => ModeCode::Normal,
            ExpectedMode::Safe => ModeCode::Safe,
        };
        let got = format!(
            "mode {}, reason {:#06x}, boot_count {}, admin_seq {}",
            mode_name(st.mode),
            st.reason,
            st.boot_count,
            st.admin_seq
        );
        if st.mode != want as u8 {
            return Err(StepError::Check(format!(
                "expected mode {}, the node reports {got}",
                want.name()
            )));
        }
        if let Some(reason) = m.reason
            && st.reason != reason
        {
            return Err(StepError::Check(format!(
                "expected reason {reason:#06x}, the node reports {got}"
            )));
        }
        if let Some(admins) = &self.opts.admins
            && st.node_id != admins.node_id()
        {
            return Err(StepError::Check(format!(
                "the node reports id {}, the administrators command {}",
                hex::encode(st.node_id),
                hex::encode(admins.node_id())
            )));
        }
        Ok(got)
    }

    /// Sends a signed administrator command (TC[133,4]); with `refused`,
    /// the node must refuse it at completion with that code.
    fn send_admin_command(
        &mut self,
        cmd: &SignedCommand,
        refused: Option<u16>,
    ) -> Result<String, StepError> {
        let policy = self.opts.policy;
        let link = self.open_link()?;
        let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_EXIT, cmd.encode());
        match (link.request(&tc, policy), refused) {
            (Ok(_), None) => Ok("completed".into()),
            (Ok(_), Some(want)) => Err(StepError::Check(format!(
                "completed, but a refusal with {} was expected",
                ReasonCode(want)
            ))),
            (
                Err(GroundError::Refused {
                    stage: Stage::Completion,
                    code,
                    detail,
                    ..
                }),
                Some(want),
            ) if code.0 == want => Ok(format!("refused at completion: {code} ({detail})")),
            (
                Err(GroundError::Refused {
                    stage,
                    code,
                    detail,
                    ..
                }),
                want,
            ) => Err(StepError::Check(format!(
                "refused at {stage:?} with {code} ({detail}); expected {}",
                want.map_or_else(
                    || "completion".to_string(),
                    |w| format!("a completion failure {}", ReasonCode(w))
                )
            ))),
            (Err(e), _) => Err(e.into()),
        }
    }

    fn exit_safe_mode(&mut self, e: &ExitStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let admins = self
            .opts
            .admins
            .as_ref()
            .ok_or_else(|| StepError::Check("no administrators' keys (--admins)".into()))?;
        let cmd = admins.exit_safe_mode(
            e.seq,
            &e.signers,
            unix_ms(),
            Duration::from_secs(e.valid_for_s),
        )?;
        let of = admins.count();
        let outcome = self.send_admin_command(&cmd, e.refused)?;
        if let Some(name) = &e.save_as {
            ctx.commands.insert(name.clone(), cmd);
        }
        Ok(format!(
            "exit-safe-mode seq {} signed by administrators {:?} of {of}: {outcome}",
            e.seq, e.signers
        ))
    }

    /// Power cut as soon as the node is READY, again and again, until it
    /// reports safe mode. Checks on the way: every start is counted (boot
    /// count + 1 although the power went right after READY); no safe mode
    /// while the node has started at most `starts` times in its life; safe
    /// mode with the boot-loop reason, entered at this start, once more than
    /// `starts` starts fell within the window.
    fn boot_loop(&mut self, b: &BootLoopStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let first = self.mode_status()?;
        if first.mode != ModeCode::Normal as u8 {
            return Err(StepError::Check(format!(
                "the node must start the boot loop in normal mode, it reports {} ({:#06x})",
                mode_name(first.mode),
                first.reason
            )));
        }
        let mut boot_count = first.boot_count;
        let mut trace = vec![format!("before: boot_count {boot_count}, mode normal")];
        let t0 = Instant::now();
        let max = b.starts.saturating_add(1);
        for n in 1..=max {
            // The start-up "crash": power gone the moment the node is up.
            self.board.power_cut()?;
            self.close_link(ctx);
            self.board.power_on()?;
            ctx.console_mark = None;
            let powered_ms = unix_ms();
            let start = self.board.powered_on_at().unwrap_or_else(Instant::now);
            self.await_console_ready(
                READY_LINE,
                0,
                start + Duration::from_secs(b.within_s),
                "power-on",
                b.within_s,
            )?;
            ctx.measure("boot_to_ready_s", secs(start.elapsed()));
            let st = self.mode_status()?;
            let line = format!(
                "start {n}: READY {}s after power-on, boot_count {}, mode {}, reason {:#06x}",
                secs(start.elapsed()),
                st.boot_count,
                mode_name(st.mode),
                st.reason
            );
            ctx.note(format!("boot loop: {line}"));
            trace.push(line);
            if st.boot_count != boot_count.saturating_add(1) {
                return Err(StepError::Check(format!(
                    "boot_count went from {boot_count} to {} across one start: every start must be counted before anything else ({})",
                    st.boot_count,
                    trace.join("; ")
                )));
            }
            boot_count = st.boot_count;
            if st.mode == ModeCode::Normal as u8 {
                continue;
            }
            if st.mode != ModeCode::Safe as u8 || st.reason != 0x0802 {
                return Err(StepError::Check(format!(
                    "expected safe mode 0x0802 (boot loop), got {} {:#06x} ({})",
                    mode_name(st.mode),
                    st.reason,
                    trace.join("; ")
                )));
            }
            if st.boot_count <= b.starts {
                return Err(StepError::Check(format!(
                    "boot loop declared after only {} starts in the node's life; the rule allows {} ({})",
                    st.boot_count,
                    b.starts,
                    trace.join("; ")
                )));
            }
            if st.since_ms < powered_ms.saturating_sub(CLOCK_SLACK_MS) {
                return Err(StepError::Check(format!(
                    "safe mode since {} ms, before this start at {powered_ms} ms: it was not this start that tripped the rule",
                    st.since_ms
                )));
            }
            ctx.measure("boot_loop_power_cycles", n.to_string());
            return Ok(format!(
                "safe mode 0x0802 at start {n} of the loop (boot_count {}, more than {} starts within {}s), loop {}s: {}",
                st.boot_count,
                b.starts,
                b.window_s,
                secs(t0.elapsed()),
                trace.join("; ")
            ));
        }
        let took = t0.elapsed();
        Err(StepError::Check(
            if took <= Duration::from_secs(b.window_s) {
                format!(
                    "{max} starts within {}s and still normal mode: no boot loop declared ({})",
                    secs(took),
                    trace.join("; ")
                )
            } else {
                format!(
                    "{max} starts took {}s, longer than the {}s window: inconclusive on this machine ({})",
                    secs(took),
                    b.window_s,
                    trace.join("; ")
                )
            },
        ))
    }

    /// Leaves safe mode with a quorum-signed exit if the node is in it for
    /// one of `l.reasons`; nothing in normal mode.
    fn leave_safe_mode(&mut self, l: &LeaveSafeModeStep) -> Result<String, StepError> {
        let st = self.mode_status()?;
        if st.mode == ModeCode::Normal as u8 {
            return Ok(format!(
                "normal mode (boot_count {}): nothing to leave",
                st.boot_count
            ));
        }
        if st.mode != ModeCode::Safe as u8 || !l.reasons.contains(&st.reason) {
            return Err(StepError::Check(format!(
                "the node is in {} with reason {:#06x}, not one of {:04x?}",
                mode_name(st.mode),
                st.reason,
                l.reasons
            )));
        }
        let admins = self
            .opts
            .admins
            .as_ref()
            .ok_or_else(|| StepError::Check("no administrators' keys (--admins)".into()))?;
        let seq = st.admin_seq.saturating_add(1);
        let cmd = admins.exit_safe_mode(seq, &l.signers, unix_ms(), Duration::from_secs(600))?;
        let outcome = self.send_admin_command(&cmd, None)?;
        let after = self.mode_status()?;
        if after.mode != ModeCode::Normal as u8 {
            return Err(StepError::Check(format!(
                "after the exit the node reports {} {:#06x}",
                mode_name(after.mode),
                after.reason
            )));
        }
        Ok(format!(
            "safe mode {:#06x} (boot_count {}) left with exit seq {seq} signed by administrators {:?}: {outcome}; normal mode",
            st.reason, st.boot_count, l.signers
        ))
    }

    /// A sign request the node must refuse with `r.code` (any stage).
    fn sign_refused(&mut self, r: &SignRefusedStep) -> Result<String, StepError> {
        let policy = self.opts.policy;
        let link = self.open_link()?;
        let tc = link.new_tc(
            apid::SIGN,
            service::SIGN,
            subtype::SIGN_REQUEST,
            Payload::Inline(b"hil: a sign request that must not be evaluated".to_vec()).encode(),
        );
        match link.request(&tc, policy) {
            Err(GroundError::Refused {
                stage,
                code,
                detail,
                ..
            }) => {
                if code.0 != r.code {
                    return Err(StepError::Check(format!(
                        "sign request refused at {stage:?} with {code} ({detail}), expected {}",
                        ReasonCode(r.code)
                    )));
                }
                if let Some(want) = &r.detail
                    && !detail.contains(want.as_str())
                {
                    return Err(StepError::Check(format!(
                        "sign request refused with {code}, but the detail `{detail}` does not say `{want}`"
                    )));
                }
                Ok(format!(
                    "sign request refused at {stage:?}: {code} ({detail})"
                ))
            }
            Ok(_) => Err(StepError::Check(format!(
                "the sign request completed; a refusal with {} was expected",
                ReasonCode(r.code)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    fn console(&mut self, c: &ConsoleStep, mark: usize) -> Result<String, StepError> {
        let deadline = Instant::now() + Duration::from_secs(c.within_s);
        loop {
            let text = self.board.console()?;
            let fresh = text.get(mark..).unwrap_or_default();
            if let Some(line) = fresh.lines().find(|l| l.contains(&c.expect)) {
                return Ok(format!("console: {}", line.trim()));
            }
            if Instant::now() > deadline {
                return Err(StepError::Check(format!(
                    "`{}` not on the console within {}s{}",
                    c.expect,
                    c.within_s,
                    if mark > 0 { " after the mark" } else { "" }
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn ping(&mut self, p: &PingStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let policy = RetryPolicy {
            attempts: p.attempts,
            ..self.opts.policy
        };
        let link = self.open_link()?;
        let retries_before = link.stats.retries;
        let mut rtts = Vec::new();
        for i in 0..p.count {
            let tc = ping_tc(link);
            match link.request(&tc, policy) {
                Ok(x) => rtts.push(x.last_rtt),
                Err(e) => {
                    return Err(StepError::Check(format!(
                        "ping {} of {}: {e}",
                        i + 1,
                        p.count
                    )));
                }
            }
        }
        rtts.sort();
        let p50 = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
        let max = rtts.last().copied().unwrap_or_default();
        let retries = link.stats.retries - retries_before;
        ctx.measure("ping_rtt_p50_ms", format!("{:.1}", p50.as_secs_f64() * 1e3));
        Ok(format!(
            "{}/{} pings answered, {retries} retries, round trip p50 {:.1} ms, max {:.1} ms",
            rtts.len(),
            p.count,
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        ))
    }

    fn request_hk(&mut self) -> Result<HkCore, StepError> {
        let policy = self.opts.policy;
        let link = self.open_link()?;
        let tc = hk_tc(link);
        let x = link.request(&tc, policy)?;
        let tm = x
            .replies
            .iter()
            .rev()
            .find(|t| t.service == service::HK && t.subtype == subtype::HK_REPORT)
            .ok_or_else(|| StepError::Check("completion without a housekeeping report".into()))?;
        HkCore::decode(&tm.data)
            .map_err(|e| StepError::Check(format!("housekeeping report does not decode: {e}")))
    }

    fn housekeeping(&mut self, h: &HousekeepingStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let hk = self.request_hk()?;
        for (field, want) in &h.expect {
            let got = hk_value(&hk, field);
            if got != Some(*want) {
                return Err(StepError::Check(format!(
                    "housekeeping {field} = {got:?}, expected {want}"
                )));
            }
        }
        let summary = format!(
            "housekeeping: boot_count {} mode {} uptime {}s frames_ok {} replays {} auth_failures {} tx_next_seq {}",
            hk.boot_count,
            hk.mode,
            hk.uptime_s,
            hk.frames_ok,
            hk.replays,
            hk.auth_failures,
            hk.tx_next_seq
        );
        if let Some(name) = &h.save_as {
            ctx.hk.insert(name.clone(), hk);
        }
        Ok(summary)
    }

    fn compare(c: &CompareStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let value = |name: &str| {
            ctx.hk
                .get(name)
                .and_then(|hk| hk_value(hk, &c.field))
                .ok_or_else(|| StepError::Check(format!("no saved housekeeping `{name}`")))
        };
        let (from, to) = (value(&c.from)?, value(&c.to)?);
        let delta = to - from;
        if let Some(want) = c.delta
            && delta != want
        {
            return Err(StepError::Check(format!(
                "{}: {} -> {} (delta {delta}), expected delta {want}",
                c.field, from, to
            )));
        }
        if let Some(min) = c.min_delta
            && delta < min
        {
            return Err(StepError::Check(format!(
                "{}: {} -> {} (delta {delta}), expected at least {min}",
                c.field, from, to
            )));
        }
        Ok(format!("{}: {} -> {} (delta {delta})", c.field, from, to))
    }

    fn set_link(&mut self, l: &LinkStep) -> Result<String, StepError> {
        let (Some(emu), Some(base)) = (&self.emu, &self.opts.emulate) else {
            return Err(StepError::Check("no link emulator in the path".into()));
        };
        let p = LinkParams {
            byte_error_rate: l.byte_error_rate.unwrap_or(base.byte_error_rate),
            frame_loss_rate: l.frame_loss_rate.unwrap_or(base.frame_loss_rate),
            latency: l.latency_ms.map_or(base.latency, Duration::from_millis),
            ..base.clone()
        };
        emu.set_params(&p);
        Ok(format!(
            "link now: byte error rate {}, frame loss {}, latency {} ms",
            p.byte_error_rate,
            p.frame_loss_rate,
            p.latency.as_millis()
        ))
    }

    fn capture(&mut self, c: &CaptureStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let policy = self.opts.policy;
        let link = self.open_link()?;
        let mut frames = Vec::new();
        for i in 0..c.count {
            let tc = ping_tc(link);
            let request = tc.request_id();
            let mut done = false;
            for _ in 0..policy.attempts {
                let (_, envelope) = link.seal_only(&tc)?;
                let framed = frame::encode(&envelope)
                    .map_err(|e| StepError::Check(format!("framing: {e}")))?;
                link.write_raw(&framed)?;
                let deadline = Instant::now() + policy.max_timeout;
                if await_completion(link, request, deadline)? {
                    frames.push((request, framed));
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(StepError::Check(format!(
                    "captured ping {} of {} never completed",
                    i + 1,
                    c.count
                )));
            }
        }
        let summary = format!(
            "{} pings executed and kept as `{}` for a replay",
            frames.len(),
            c.save_as
        );
        ctx.captured.insert(c.save_as.clone(), frames);
        Ok(summary)
    }

    fn replay(&mut self, r: &ReplayStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let frames = ctx
            .captured
            .get(&r.from)
            .cloned()
            .ok_or_else(|| StepError::Check(format!("nothing captured as `{}`", r.from)))?;
        let before = self.request_hk()?;
        let link = self.open_link()?;
        for (_, f) in &frames {
            link.write_raw(f)?;
        }
        let deadline = Instant::now() + Duration::from_secs(r.quiet_s);
        let ids: HashSet<RequestId> = frames.iter().map(|(id, _)| *id).collect();
        while let Some(tm) = link.recv(deadline)? {
            if tm.service == service::VERIFICATION
                && let Ok(v) = Verification::decode(tm.subtype, &tm.data)
                && ids.contains(&v.request_id)
            {
                return Err(StepError::Check(format!(
                    "a replayed packet was answered: {} {:?}",
                    v.request_id, v.stage
                )));
            }
        }
        let after = self.request_hk()?;
        let counted = i64::from(after.replays) - i64::from(before.replays);
        let sent = i64::try_from(frames.len()).unwrap_or(i64::MAX);
        if counted != sent {
            return Err(StepError::Check(format!(
                "{sent} old packets replayed, the node counted {counted} replays"
            )));
        }
        Ok(format!(
            "{sent} old packets replayed: none answered, all {counted} counted as replays"
        ))
    }

    fn stream(&mut self, s: &StreamStep, ctx: &mut Ctx) -> Result<String, StepError> {
        let policy = self.opts.policy;
        let mut rng = rand::rng();
        let cut_at: Option<(u32, &CutPlan, u64)> = s.power_cut.as_ref().map(|c| {
            (
                rng.random_range(c.after_min..=c.after_max),
                c,
                rng.random_range(0..=c.jitter_ms),
            )
        });
        let t0 = Instant::now();
        let link = self.open_link()?;
        for i in 0..s.requests {
            if let Some((at, cut, jitter)) = cut_at
                && i == at
            {
                for k in 0..cut.burst {
                    let tc = if k % 2 == 0 {
                        ping_tc(link)
                    } else {
                        hk_tc(link)
                    };
                    link.send(&tc)?;
                }
                std::thread::sleep(Duration::from_millis(jitter));
                self.board.power_cut()?;
                self.close_link(ctx);
                return Ok(format!(
                    "power cut after {at} completed requests, {} more in flight, {jitter} ms after the burst ({}s into the stream)",
                    cut.burst,
                    secs(t0.elapsed())
                ));
            }
            let tc = if i % 2 == 0 {
                ping_tc(link)
            } else {
                hk_tc(link)
            };
            link.request(&tc, policy)
                .map_err(|e| StepError::Check(format!("request {} of the stream: {e}", i + 1)))?;
        }
        Ok(format!(
            "{} requests completed in {}s",
            s.requests,
            secs(t0.elapsed())
        ))
    }
}

/// Parses `--emulate` settings: comma-separated `key=value` with keys
/// `baud`, `ber` (byte error rate), `loss` (frame loss rate), `latency_ms`,
/// `seed` and `corrupt` (`body` or `any`); unset keys are a clean link at
/// 115200 Bd.
///
/// # Errors
/// A message naming the bad key or value.
pub fn parse_link_spec(spec: &str) -> Result<LinkParams, String> {
    let mut p = LinkParams::clean(115_200);
    for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected key=value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("`{key}={value}`: {e}");
        match key.trim() {
            "baud" => p.baud = value.parse().map_err(|e| bad(&e))?,
            "ber" => p.byte_error_rate = value.parse().map_err(|e| bad(&e))?,
            "loss" => p.frame_loss_rate = value.parse().map_err(|e| bad(&e))?,
            "latency_ms" => {
                p.latency = Duration::from_millis(value.parse().map_err(|e| bad(&e))?);
            }
            "seed" => p.seed = value.parse().map_err(|e| bad(&e))?,
            "corrupt" => {
                p.corruption = match value {
                    "body" => spacenode_linkemu::emulator::Corruption::Body,
                    "any" => spacenode_linkemu::emulator::Corruption::Any,
                    _ => return Err(bad(&"expected body or any")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown key `{key}` (known: baud, ber, loss, latency_ms, seed, corrupt)"
                ));
            }
        }
    }
    for (name, rate) in [("ber", p.byte_error_rate), ("loss", p.frame_loss_rate)] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("`{name}` must be between 0 and 1, got {rate}"));
        }
    }
    if p.baud == 0 {
        return Err("`baud` must be positive".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs_parse_and_mistakes_are_named() {
        let p = parse_link_spec("baud=921600, ber=0.001,latency_ms=5,corrupt=any").unwrap();
        assert_eq!(p.baud, 921_600);
        assert!((p.byte_error_rate - 0.001).abs() < 1e-12);
        assert_eq!(p.latency, Duration::from_millis(5));
        assert_eq!(p.corruption, spacenode_linkemu::emulator::Corruption::Any);
        assert_eq!(parse_link_spec("").unwrap().baud, 115_200);
        for (spec, needle) in [
            ("ber=2", "between 0 and 1"),
            ("baud=fast", "`baud=fast`"),
            ("speed=1", "unknown key `speed`"),
            ("ber", "expected key=value"),
        ] {
            let e = parse_link_spec(spec).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }
}
