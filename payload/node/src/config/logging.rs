//! `[logging]`: the log filter. Must never install a subscriber.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    #[serde(default)]
    pub(super) level: Option<String>,
}

/// Validates `logging.level` (tracing `EnvFilter` syntax).
pub(super) fn validate(raw: RawLogging) -> Result<Option<String>, ConfigError> {
    if let Some(level) = &raw.level {
        tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| ConfigError::invalid("logging.level", e.to_string()))?;
    }
    Ok(raw.level)
}
