//! Logging: journald when systemd started us (it sets `JOURNAL_STREAM`),
//! human-readable stderr otherwise. The filter comes from `SPACENODE_LOG`,
//! else the config, else `info`.
//!
//! This module must never log secrets; secret types redact their `Debug`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber.
pub fn init(config_level: Option<&str>) {
    let filter = std::env::var("SPACENODE_LOG")
        .ok()
        .or_else(|| config_level.map(str::to_owned))
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = registry
            .with(journald.with_syslog_identifier("spacenoded".into()))
            .try_init();
        return;
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
}
