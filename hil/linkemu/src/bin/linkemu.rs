//! `linkemu`: the radio link emulator between the ground and the node. It
//! creates two ptys, prints (and optionally symlinks) their paths, and
//! pumps bytes between them as a serial radio link would, until killed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use spacenode_linkemu::emulator::{Corruption, Emulator, LinkParams, PassSchedule};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CorruptMode {
    /// Flip one bit inside frame bodies; delimiters are kept.
    Body,
    /// Corrupt any byte, delimiters included.
    Any,
}

/// Emulates a serial radio link between two ptys: UART pacing, latency,
/// byte corruption, frame loss and pass windows.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// UART rate in baud (8N1).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability that a byte is corrupted (0.01 = 1 %).
    #[arg(long, default_value_t = 0.0)]
    byte_error_rate: f64,
    /// Probability that a whole frame is lost.
    #[arg(long, default_value_t = 0.0)]
    frame_loss_rate: f64,
    /// How bytes are corrupted.
    #[arg(long, value_enum, default_value_t = CorruptMode::Body)]
    corrupt: CorruptMode,
    /// Pass windows as AOS_SECONDS:LOS_SECONDS, repeating (e.g. 60:30).
    #[arg(long, value_parser = parse_pass)]
    pass: Option<PassSchedule>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Symlink the ground side's pty here.
    #[arg(long)]
    ground_link: Option<PathBuf>,
    /// Symlink the node side's pty here.
    #[arg(long)]
    node_link: Option<PathBuf>,
    /// Write counters as JSON to this file every --stats-interval-ms.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Interval of the stats file.
    #[arg(long, default_value_t = 250)]
    stats_interval_ms: u64,
}

fn parse_pass(s: &str) -> Result<PassSchedule, String> {
    let (aos, los) = s
        .split_once(':')
        .ok_or("expected AOS_SECONDS:LOS_SECONDS")?;
    let secs = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("{v}: {e}"));
    let (aos, los) = (secs(aos)?, secs(los)?);
    if !(aos > 0.0 && los >= 0.0) {
        return Err("AOS must be positive and LOS not negative".into());
    }
    Ok(PassSchedule {
        aos: Duration::from_secs_f64(aos),
        los: Duration::from_secs_f64(los),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for (name, rate) in [
        ("--byte-error-rate", args.byte_error_rate),
        ("--frame-loss-rate", args.frame_loss_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1, got {rate}"
        );
    }
    let params = LinkParams {
        baud: args.baud,
        latency: Duration::from_millis(args.latency_ms),
        byte_error_rate: args.byte_error_rate,
        frame_loss_rate: args.frame_loss_rate,
        corruption: match args.corrupt {
            CorruptMode::Body => Corruption::Body,
            CorruptMode::Any => Corruption::Any,
        },
        passes: args.pass,
        seed: args.seed,
    };
    let emu = Emulator::start(params).context("starting the link emulator")?;
    emu.link_paths(args.ground_link.as_deref(), args.node_link.as_deref())?;
    println!("ground side: {}", emu.ground_path().display());
    println!("node side:   {}", emu.node_path().display());
    loop {
        std::thread::sleep(Duration::from_millis(args.stats_interval_ms.max(10)));
        if let Some(path) = &args.stats {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&emu.stats())?)
                .and_then(|()| std::fs::rename(&tmp, path))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
}
