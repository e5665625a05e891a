//! `spacenoded`: parses arguments, loads the config, starts the runtime and
//! maps failures to exit codes the systemd unit understands
//! (`RestartPreventExitStatus=78` for configuration errors).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spacenode_node::config::Config;

/// sysexits(3) EX_CONFIG: restarting cannot help.
const EXIT_CONFIG: u8 = 78;
/// sysexits(3) EX_IOERR: storage or device failure.
const EXIT_IO: u8 = 74;
/// sysexits(3) EX_SOFTWARE: the runtime could not start.
const EXIT_SOFTWARE: u8 = 70;

/// The spacenode flight daemon: a co-signer on the spacecraft bus.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Configuration file.
    #[arg(
        short,
        long,
        default_value = "/etc/spacenode/spacenoded.toml",
        env = "SPACENODE_CONFIG"
    )]
    config: PathBuf,
    /// Validate FILE and exit: 0 if valid, 78 with the offending key if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Print what the TPM measurement of this binary with --config binds
    /// (binary and config digests, the expected software PCR value) as JSON
    /// and exit; the ground checks attestations against it.
    #[arg(long)]
    print_measurement: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.print_measurement {
        let binary = spacenode_node::custody::binary_sha256();
        let pcr = spacenode_keys::pcr::predict_software_pcr(&binary, &cfg.source_sha256);
        println!(
            "{{\"binary_sha256\":\"{}\",\"config_sha256\":\"{}\",\"software_pcr\":\"{}\"}}",
            hex::encode(binary),
            hex::encode(cfg.source_sha256),
            hex::encode(pcr)
        );
        return ExitCode::SUCCESS;
    }
    spacenode_node::logging::init(cfg.log_level.as_deref());
    // Before any secret exists: no core dumps, no ptrace by other users.
    if let Err(e) = spacenode_keys::secret_mem::set_process_undumpable() {
        tracing::error!(error = %e, "cannot make the process undumpable");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(EXIT_SOFTWARE);
        }
    };
    match runtime.block_on(spacenode_node::daemon::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "spacenoded stopped");
            ExitCode::from(EXIT_IO)
        }
    }
}
