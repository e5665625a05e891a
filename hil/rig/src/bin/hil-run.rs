//! `hil-run`: runs the HIL scenarios (`hil/scenarios/*.toml`) against the
//! virtual flight board or a real board on a serial port, optionally
//! through the link emulator; prints a summary table and writes JUnit XML.
//! Exit status: 0 if nothing failed (skips allowed), 1 if a scenario
//! failed, 2 if the run could not start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use spacenode_linkemu::emulator::LinkParams;
use spacenode_rig::admins::Admins;
use spacenode_rig::board::{Board, SerialBoard};
use spacenode_rig::report::Outcome;
use spacenode_rig::runner::{RunOptions, Runner, parse_link_spec};
use spacenode_rig::scenario;
use spacenode_rig::vm::{VirtualBoard, VmOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BoardKind {
    /// The QEMU image made by tests/vm/build-image.sh.
    Virtual,
    /// A real board on --port (e.g. a CM4 behind /dev/ttyUSB0).
    Serial,
}

/// Runs the HIL scenarios (hil/scenarios/*.toml) against the virtual flight
/// board or a real board on a serial port; prints a summary table and
/// writes JUnit XML. docs/hil.md says how.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Which board.
    #[arg(long, value_enum, default_value_t = BoardKind::Virtual)]
    board: BoardKind,
    /// Image directory of the virtual board (tests/vm/build-image.sh --out).
    #[arg(long, default_value = "target/vm")]
    vm_dir: PathBuf,
    /// QEMU accelerator of the virtual board: tcg, or kvm where usable.
    #[arg(long, default_value = "tcg")]
    accel: String,
    /// Virtual board CPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Virtual board memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mib: u32,
    /// Serial port of a real board.
    #[arg(long, required_if_eq("board", "serial"))]
    port: Option<PathBuf>,
    /// Baud rate of the link.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// A file another program fills with a real board's console (gives the
    /// `console` capability).
    #[arg(long)]
    console_log: Option<PathBuf>,
    /// Shell command that cuts a real board's power (with --power-on-cmd:
    /// the `power` capability).
    #[arg(long)]
    power_cut_cmd: Option<String>,
    /// Shell command that powers a real board on.
    #[arg(long)]
    power_on_cmd: Option<String>,
    /// The real board's config enables the health test hooks
    /// (`health.test_hooks = true`, development profile).
    #[arg(long)]
    test_hooks: bool,
    /// The real board's daemon holds the hardware watchdog itself
    /// (`health.watchdog = "device"`, systemd's `RuntimeWatchdogSec=0`).
    #[arg(long)]
    device_watchdog: bool,
    /// The administrators' keys and node id (admin.toml, see docs/hil.md;
    /// gives the `admin` capability; default: VM_DIR/admin.toml for the
    /// virtual board if it exists).
    #[arg(long)]
    admins: Option<PathBuf>,
    /// Ground config with the link keys (default: VM_DIR/ground.toml for the
    /// virtual board).
    #[arg(long)]
    ground_config: Option<PathBuf>,
    /// Directory of scenario files.
    #[arg(long, default_value = "hil/scenarios")]
    scenarios: PathBuf,
    /// Run only this scenario (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Put the link emulator between ground and board, e.g.
    /// `baud=115200,ber=0.001,loss=0,latency_ms=5,seed=1,corrupt=body`.
    #[arg(long, value_parser = parse_link_spec)]
    emulate: Option<LinkParams>,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Boot the virtual board, print its link pty and console log, and keep
    /// it running until interrupted (for `ground --port PTY ...` by hand).
    #[arg(long)]
    boot_only: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let mut scenarios = scenario::load_dir(&args.scenarios)?;
    if args.list {
        for s in &scenarios {
            let state = s
                .pending
                .as_deref()
                .map_or_else(String::new, |p| format!(" [pending: {p}]"));
            println!("{:<24} {}{state}", s.name, s.summary);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.only.is_empty() {
        if let Some(unknown) = args
            .only
            .iter()
            .find(|n| !scenarios.iter().any(|s| &s.name == *n))
        {
            anyhow::bail!(
                "no scenario named `{unknown}` in {}",
                args.scenarios.display()
            );
        }
        scenarios.retain(|s| args.only.contains(&s.name));
    }

    let mut board: Box<dyn Board> = match args.board {
        BoardKind::Virtual => Box::new(VirtualBoard::new(VmOptions {
            accel: args.accel.clone(),
            cpus: args.cpus,
            memory_mib: args.memory_mib,
            baud: args.baud,
            ..VmOptions::new(&args.vm_dir)
        })?),
        BoardKind::Serial => Box::new(
            SerialBoard::new(
                args.port
                    .clone()
                    .context("--port is required for a serial board")?,
                args.baud,
                args.console_log.clone(),
                args.power_cut_cmd.clone(),
                args.power_on_cmd.clone(),
            )
            .with_test_hooks(args.test_hooks)
            .with_device_watchdog(args.device_watchdog),
        ),
    };
    let admins_file = match (&args.admins, args.board) {
        (Some(p), _) => Some(p.clone()),
        (None, BoardKind::Virtual) => Some(args.vm_dir.join("admin.toml")).filter(|p| p.exists()),
        (None, BoardKind::Serial) => None,
    };
    let admins = admins_file
        .map(|p| Admins::load(&p).with_context(|| format!("administrators from {}", p.display())))
        .transpose()?;
    let ground_config = match (&args.ground_config, args.board) {
        (Some(p), _) => p.clone(),
        (None, BoardKind::Virtual) => args.vm_dir.join("ground.toml"),
        (None, BoardKind::Serial) => {
            anyhow::bail!("--ground-config is required for a serial board")
        }
    };

    if args.boot_only {
        anyhow::ensure!(
            args.board == BoardKind::Virtual,
            "--boot-only is for the virtual board"
        );
        let t0 = Instant::now();
        board.power_on()?;
        println!("link pty:      {}", board.link_port()?.display());
        println!("ground config: {}", ground_config.display());
        println!("logs:          {}", args.vm_dir.join("run").display());
        let mut announced = false;
        while board.is_on() {
            if !announced && board.console()?.contains("spacenoded ready") {
                println!(
                    "spacenoded ready {:.1}s after power-on; Ctrl-C stops the board",
                    t0.elapsed().as_secs_f64()
                );
                announced = true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        anyhow::bail!("the virtual board stopped by itself; see its logs");
    }

    let opts = RunOptions {
        ground_config,
        emulate: args.emulate.clone(),
        policy: RunOptions::default_policy(),
        admins,
    };
    let described = board.describe();
    let mut runner = Runner::new(board.as_mut(), opts)?;
    eprintln!(
        "hil: {} scenarios on {described} (link: {})",
        scenarios.len(),
        runner.link_description()
    );
    let report = runner.run(&scenarios);
    drop(runner);
    let artifacts = board.artifacts();
    drop(board);
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit_xml())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for case in &report.cases {
        if matches!(case.outcome, Outcome::Failed { .. }) {
            println!("--- {} failed:", case.name);
            for line in &case.log {
                println!("{line}");
            }
        }
    }
    print!("{}", report.table());
    if report.counts().failed > 0 && !artifacts.is_empty() {
        println!("board logs:");
        for a in artifacts.iter().filter(|a| a.exists()) {
            println!("  {}", a.display());
        }
    }
    Ok(if report.counts().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
