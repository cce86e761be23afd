//! `SabotConfig`: the settings of a session, and Flink-style `SET` keys.
//!
//! | key (aliases)                                       | meaning                         | default     |
//! |-----------------------------------------------------|---------------------------------|-------------|
//! | `parallelism` (`parallelism.default`)               | tasks per keyed operator/source | CPU cores   |
//! | `batch-size` (`datafusion.execution.batch_size`)    | rows per batch                  | 8192        |
//! | `checkpoint.interval` (`execution.checkpointing.interval`) | barrier interval, `0` = off | 10 s     |
//!
//! Any other `datafusion.*` key is DataFusion's own setting.

use std::time::Duration;

use datafusion::common::{Result, plan_err};

use crate::connectors::options::parse_duration;

/// Session settings (see the module docs).
#[derive(Debug, Clone)]
pub struct SabotConfig {
    /// Parallel tasks per source and keyed operator.
    pub parallelism: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Barrier (checkpoint) interval; `None` disables barriers.
    pub checkpoint_interval: Option<Duration>,
}

impl Default for SabotConfig {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_size: 8192,
            checkpoint_interval: Some(Duration::from_secs(10)),
        }
    }
}

/// A Sabot setting named by a `SET` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `parallelism`
    Parallelism,
    /// `batch-size`
    BatchSize,
    /// `checkpoint.interval`
    CheckpointInterval,
}

impl Setting {
    /// The setting a key names, if it is one of Sabot's.
    pub fn from_key(key: &str) -> Option<Self> {
        match key.to_ascii_lowercase().as_str() {
            "parallelism" | "parallelism.default" => Some(Setting::Parallelism),
            "batch-size" | "batch_size" => Some(Setting::BatchSize),
            "checkpoint.interval" | "execution.checkpointing.interval" => {
                Some(Setting::CheckpointInterval)
            }
            _ => None,
        }
    }

    /// Applies `value` to `config`.
    pub fn apply(&self, config: &mut SabotConfig, value: &str) -> Result<()> {
        match self {
            Setting::Parallelism => match value.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => config.parallelism = n,
                _ => {
                    return plan_err!(
                        "parallelism must be an integer from 1 to 1024, got '{value}'"
                    );
                }
            },
            Setting::BatchSize => match value.trim().parse::<usize>() {
                Ok(n) if (1..=1 << 20).contains(&n) => config.batch_size = n,
                _ => {
                    return plan_err!(
                        "batch-size must be an integer from 1 to 1048576, got '{value}'"
                    );
                }
            },
            Setting::CheckpointInterval => match parse_duration(value) {
                Some(d) if d.is_zero() => config.checkpoint_interval = None,
                Some(d) => config.checkpoint_interval = Some(d),
                None => {
                    return plan_err!(
                        "checkpoint.interval must be a duration such as '500ms' or '10 s' ('0' \
                         disables checkpoints), got '{value}'"
                    );
                }
            },
        }
        Ok(())
    }

    /// Canonical key.
    pub fn key(&self) -> &'static str {
        match self {
            Setting::Parallelism => "parallelism",
            Setting::BatchSize => "batch-size",
            Setting::CheckpointInterval => "checkpoint.interval",
        }
    }

    /// Current value, as text.
    pub fn show(&self, config: &SabotConfig) -> String {
        match self {
            Setting::Parallelism => config.parallelism.to_string(),
            Setting::BatchSize => config.batch_size.to_string(),
            Setting::CheckpointInterval => match config.checkpoint_interval {
                Some(d) => format!("{}ms", d.as_millis()),
                None => "0".to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keys_and_values() {
        let mut c = SabotConfig::default();
        Setting::from_key("parallelism.default")
            .unwrap()
            .apply(&mut c, "3")
            .unwrap();
        assert_eq!(c.parallelism, 3);
        Setting::from_key("checkpoint.interval")
            .unwrap()
            .apply(&mut c, "500ms")
            .unwrap();
        assert_eq!(c.checkpoint_interval, Some(Duration::from_millis(500)));
        Setting::CheckpointInterval.apply(&mut c, "0").unwrap();
        assert_eq!(c.checkpoint_interval, None);
        assert!(Setting::Parallelism.apply(&mut c, "zero").is_err());
        assert!(Setting::from_key("no.such.key").is_none());
    }
}
