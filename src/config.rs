//! `SabotConfig`: the settings of a session, and Flink-style `SET` keys.
//!
//! | key (aliases)                                       | meaning                         | default     |
//! |-----------------------------------------------------|---------------------------------|-------------|
//! | `parallelism` (`parallelism.default`)               | tasks per keyed operator/source | CPU cores   |
//! | `batch-size` (`datafusion.execution.batch_size`)    | rows per batch                  | 8192        |
//! | `checkpoint.interval` (`execution.checkpointing.interval`) | barrier interval, `0` = off | 10 s     |
//! | `state.dir` (`execution.checkpointing.dir`)          | checkpoint location; unset = no checkpoints | unset |
//! | `checkpoint.retained` (`state.checkpoints.num-retained`) | complete checkpoints kept      | 3           |
//! | `checkpoint.timeout` (`execution.checkpointing.timeout`) | abort a checkpoint after     | 10 min      |
//! | `state.backend` (`state.backend.type`)               | `memory` or `rocksdb` (window state on local disk) | memory |
//! | `state.backend.rocksdb.localdir`                     | where RocksDB keeps its files   | system temp |
//! | `table.dml-sync`                                     | server: `INSERT ... SELECT` waits for its job | false |
//! | `execution.runtime-mode`                             | `automatic`: a GROUP BY without a window over a bounded input gives its final answer; `streaming`: its changelog, as over a stream | automatic |
//!
//! Any other `datafusion.*` key is DataFusion's own setting.

use std::time::Duration;

use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, plan_err};

/// Session settings (see the module docs).
#[derive(Debug, Clone)]
pub struct SabotConfig {
    /// Parallel tasks per source and keyed operator.
    pub parallelism: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Barrier (checkpoint) interval; `None` disables barriers.
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints go; `None`: barriers flow but nothing is snapshotted.
    pub state_dir: Option<String>,
    /// Complete checkpoints kept.
    pub checkpoint_retained: usize,
    /// A checkpoint not complete after this is aborted.
    pub checkpoint_timeout: Duration,
    /// Where keyed window state lives.
    pub state_backend: StateBackend,
    /// `state.backend.rocksdb.localdir`: RocksDB's working directory (`None`: the system's
    /// temporary directory).
    pub rocksdb_local_dir: Option<String>,
    /// Largest dimension (bounded) table a broadcast join loads, in rows.
    pub dimension_max_rows: usize,
    /// Largest dimension table a broadcast join loads, in bytes of Arrow memory.
    pub dimension_max_bytes: usize,
    /// Flink's `table.dml-sync`: `sabot serve` runs `INSERT ... SELECT` to completion instead of
    /// as a background job (embedded and `sabot run`, INSERT always runs to completion).
    pub dml_sync: bool,
    /// Memory every query and job of the process may reserve, in bytes (`None`: no limit, as
    /// in DataFusion). `sabot serve` and `sabot run` set it from `--memory-limit` (default: a
    /// share of the machine's memory). Fixed when the context is created.
    pub memory_limit: Option<usize>,
    /// Flink's `execution.runtime-mode`: how a GROUP BY without a window reads a bounded
    /// input.
    pub runtime_mode: RuntimeMode,
    /// Flink's `table.exec.state.ttl`: state of the regular join and the top-N not written
    /// for this long (processing time) is dropped (`None`: kept until taken back).
    pub state_ttl: Option<Duration>,
}

/// Flink's `execution.runtime-mode`, as far as it changes a query's plan: whether a GROUP BY
/// without a window over a bounded stream answers once, at the end (`automatic`, Flink's
/// choice for bounded inputs), or as a changelog while it reads (`streaming`). Over an input
/// that never ends it is always a changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeMode {
    /// Bounded inputs are aggregated as a batch.
    #[default]
    Automatic,
    /// Every connector table is read as a stream.
    Streaming,
}

/// Implements DataFusion's config extension traits for `$ty`, a value the planner reads from
/// DataFusion's `ConfigOptions`: it lists no entries (`SHOW ALL` does not show it) and cannot
/// be set through DataFusion; `$how` tells how it is set.
macro_rules! planned_extension {
    ($ty:ty, $prefix:literal, $how:literal) => {
        impl datafusion::common::config::ConfigExtension for $ty {
            const PREFIX: &'static str = $prefix;
        }

        impl datafusion::common::config::ExtensionOptions for $ty {
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }

            fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
                self
            }

            fn cloned(&self) -> Box<dyn datafusion::common::config::ExtensionOptions> {
                Box::new(self.clone())
            }

            fn set(&mut self, key: &str, _value: &str) -> datafusion::common::Result<()> {
                datafusion::common::plan_err!("unknown setting '{key}'{}", $how)
            }

            fn entries(&self) -> Vec<datafusion::common::config::ConfigEntry> {
                Vec::new()
            }
        }
    };
}
pub(crate) use planned_extension;

/// True while planning a query that a continuous job runs (a materialized view's): memory
/// tables are then read live, their rows and then every change made to them
/// (`crate::connectors::memory`), instead of as the rows present when the query starts. In
/// DataFusion's config options, where the scans and the logical rules see it; it lists no
/// entries and cannot be set.
#[derive(Debug, Clone, Default)]
pub struct LiveTables(pub bool);

planned_extension!(LiveTables, "sabot_live_tables", "");

impl LiveTables {
    /// True if `options` plan memory tables live.
    pub fn of(options: &ConfigOptions) -> bool {
        options.extensions.get::<Self>().is_some_and(|l| l.0)
    }
}

/// The session's [`RuntimeMode`] in DataFusion's config options, where the logical optimizer
/// rules see it. Like the state backend's (`crate::state::backend::PlannedBackend`), it lists
/// no entries and is set only by `SET 'execution.runtime-mode'`.
#[derive(Debug, Clone, Default)]
pub struct PlannedRuntimeMode(pub RuntimeMode);

planned_extension!(
    PlannedRuntimeMode,
    "sabot_runtime_mode",
    "; the runtime mode is set with SET 'execution.runtime-mode'"
);

/// The session's `table.exec.state.ttl` in DataFusion's config options, where the streaming
/// planner hands it to the operators it bounds; it lists no entries and cannot be set through
/// DataFusion.
#[derive(Debug, Clone, Default)]
pub struct PlannedStateTtl(pub Option<Duration>);

planned_extension!(
    PlannedStateTtl,
    "sabot_state_ttl",
    "; the state's time to live is set with SET 'table.exec.state.ttl'"
);

impl PlannedStateTtl {
    /// The time to live planned for `options` (none if the session never set one).
    pub fn of(options: &ConfigOptions) -> Option<Duration> {
        options.extensions.get::<Self>().and_then(|p| p.0)
    }
}

impl PlannedRuntimeMode {
    /// The mode planned for `options` (automatic if the session never set one).
    pub fn of(options: &ConfigOptions) -> RuntimeMode {
        options
            .extensions
            .get::<Self>()
            .map(|p| p.0)
            .unwrap_or_default()
    }
}

/// The share of the machine's memory `--memory-limit` defaults to.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.5;

/// Parses a memory size: bytes (`1073741824`), with a unit (`512MB`, `4GiB`, `2g`), or a share
/// of the machine's memory (`50%`). Units are powers of 1024.
pub fn parse_memory_size(text: &str) -> Option<usize> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        let share = percent.trim().parse::<f64>().ok()?;
        if !(share > 0.0 && share <= 100.0) {
            return None;
        }
        return Some((machine_memory()? as f64 * share / 100.0) as usize);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number.parse::<f64>().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes >= 1.0 && bytes < usize::MAX as f64).then_some(bytes as usize)
}

/// The memory this process may use: the machine's (`MemTotal`), or its cgroup's limit when
/// that is smaller; `None` where neither can be read.
pub fn machine_memory() -> Option<usize> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
                .map(|kb| kb * 1024)
        })?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

/// Where keyed window state lives (`state.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// In memory; checkpoints write it as Arrow IPC.
    Memory,
    /// Window state (TUMBLE, HOP, SESSION, window joins) in RocksDB on local disk (it can exceed
    /// memory); checkpoints are RocksDB checkpoints, uploaded incrementally.
    RocksDb,
}

impl SabotConfig {
    /// RocksDB's working directory.
    pub fn rocksdb_dir(&self) -> std::path::PathBuf {
        match &self.rocksdb_local_dir {
            Some(dir) => std::path::PathBuf::from(dir),
            None => std::env::temp_dir().join("sabot-rocksdb"),
        }
    }
}

/// Default `dimension.max-rows`.
pub const DEFAULT_DIMENSION_MAX_ROWS: usize = 10_000_000;
/// Default `dimension.max-bytes` (1 GiB).
pub const DEFAULT_DIMENSION_MAX_BYTES: usize = 1 << 30;

impl Default for SabotConfig {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_size: 8192,
            checkpoint_interval: Some(Duration::from_secs(10)),
            state_dir: None,
            checkpoint_retained: 3,
            checkpoint_timeout: Duration::from_secs(600),
            state_backend: StateBackend::Memory,
            rocksdb_local_dir: None,
            dimension_max_rows: DEFAULT_DIMENSION_MAX_ROWS,
            dimension_max_bytes: DEFAULT_DIMENSION_MAX_BYTES,
            dml_sync: false,
            memory_limit: None,
            runtime_mode: RuntimeMode::Automatic,
            state_ttl: None,
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
    /// `state.dir`
    StateDir,
    /// `checkpoint.retained`
    CheckpointRetained,
    /// `checkpoint.timeout`
    CheckpointTimeout,
    /// `state.backend`
    StateBackend,
    /// `state.backend.rocksdb.localdir`
    RocksDbLocalDir,
    /// `dimension.max-rows`
    DimensionMaxRows,
    /// `dimension.max-bytes`
    DimensionMaxBytes,
    /// `table.dml-sync`
    DmlSync,
    /// `execution.runtime-mode`
    RuntimeMode,
    /// `table.exec.state.ttl`
    StateTtl,
}

/// Parses a byte size: `1048576`, `512kb`, `64 MB`, `1gb` (powers of 1024).
fn parse_bytes(text: &str) -> Option<usize> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number.parse().ok()?;
    let scale: usize = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

impl Setting {
    /// Every setting.
    pub const ALL: [Setting; 13] = [
        Setting::Parallelism,
        Setting::BatchSize,
        Setting::CheckpointInterval,
        Setting::StateDir,
        Setting::CheckpointRetained,
        Setting::CheckpointTimeout,
        Setting::StateBackend,
        Setting::RocksDbLocalDir,
        Setting::DimensionMaxRows,
        Setting::DimensionMaxBytes,
        Setting::DmlSync,
        Setting::RuntimeMode,
        Setting::StateTtl,
    ];

    /// The settings of `config` that differ from `base`, as `(key, value)` pairs that
    /// [`apply`](Self::apply) takes back (what a job was started with, for its restart).
    pub fn changed(base: &SabotConfig, config: &SabotConfig) -> Vec<(String, String)> {
        Self::ALL
            .iter()
            .filter(|s| s.show(config) != s.show(base))
            .map(|s| (s.key().to_string(), s.show(config)))
            .collect()
    }

    /// The setting a key names, if it is one of Sabot's.
    pub fn from_key(key: &str) -> Option<Self> {
        match key.to_ascii_lowercase().as_str() {
            "parallelism" | "parallelism.default" => Some(Setting::Parallelism),
            "batch-size" | "batch_size" => Some(Setting::BatchSize),
            "checkpoint.interval" | "execution.checkpointing.interval" => {
                Some(Setting::CheckpointInterval)
            }
            "state.dir" | "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                Some(Setting::StateDir)
            }
            "checkpoint.retained" | "state.checkpoints.num-retained" => {
                Some(Setting::CheckpointRetained)
            }
            "checkpoint.timeout" | "execution.checkpointing.timeout" => {
                Some(Setting::CheckpointTimeout)
            }
            "state.backend" | "state.backend.type" => Some(Setting::StateBackend),
            "state.backend.rocksdb.localdir" => Some(Setting::RocksDbLocalDir),
            "dimension.max-rows" => Some(Setting::DimensionMaxRows),
            "dimension.max-bytes" => Some(Setting::DimensionMaxBytes),
            "table.dml-sync" => Some(Setting::DmlSync),
            "execution.runtime-mode" => Some(Setting::RuntimeMode),
            "table.exec.state.ttl" => Some(Setting::StateTtl),
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
            Setting::StateDir => {
                let v = value.trim();
                config.state_dir = (!v.is_empty()).then(|| v.to_string());
            }
            Setting::CheckpointRetained => match value.trim().parse::<usize>() {
                Ok(n) if n >= 1 => config.checkpoint_retained = n,
                _ => {
                    return plan_err!(
                        "checkpoint.retained must be a positive integer, got '{value}'"
                    );
                }
            },
            Setting::StateTtl => match parse_duration(value) {
                Some(d) => config.state_ttl = (!d.is_zero()).then_some(d),
                None => {
                    return plan_err!(
                        "table.exec.state.ttl must be a duration such as '1 h' or '10 min' ('0' \
                         keeps state until it is taken back), got '{value}'"
                    );
                }
            },
            Setting::CheckpointTimeout => match parse_duration(value) {
                Some(d) if !d.is_zero() => config.checkpoint_timeout = d,
                _ => {
                    return plan_err!(
                        "checkpoint.timeout must be a positive duration such as '10 min', got \
                         '{value}'"
                    );
                }
            },
            Setting::StateBackend => match value.trim().to_ascii_lowercase().as_str() {
                "memory" | "hashmap" => config.state_backend = StateBackend::Memory,
                "rocksdb" => config.state_backend = StateBackend::RocksDb,
                _ => {
                    return plan_err!("state.backend must be 'memory' or 'rocksdb', got '{value}'");
                }
            },
            Setting::RocksDbLocalDir => {
                let v = value.trim();
                config.rocksdb_local_dir = (!v.is_empty()).then(|| v.to_string());
            }
            Setting::DimensionMaxRows => match value.trim().parse::<usize>() {
                Ok(n) if n >= 1 => config.dimension_max_rows = n,
                _ => {
                    return plan_err!(
                        "dimension.max-rows must be a positive integer, got '{value}'"
                    );
                }
            },
            Setting::DimensionMaxBytes => match parse_bytes(value) {
                Some(n) if n >= 1 => config.dimension_max_bytes = n,
                _ => {
                    return plan_err!(
                        "dimension.max-bytes must be a size such as '512mb' or '2gb', got \
                         '{value}'"
                    );
                }
            },
            Setting::DmlSync => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "on" => config.dml_sync = true,
                "false" | "off" => config.dml_sync = false,
                _ => return plan_err!("table.dml-sync must be 'true' or 'false', got '{value}'"),
            },
            Setting::RuntimeMode => match value.trim().to_ascii_lowercase().as_str() {
                "automatic" => config.runtime_mode = RuntimeMode::Automatic,
                "streaming" => config.runtime_mode = RuntimeMode::Streaming,
                "batch" => {
                    return plan_err!(
                        "execution.runtime-mode 'batch' is not supported: 'automatic' (the \
                         default) already answers a GROUP BY over a bounded input once, at its \
                         end; 'streaming' gives its changelog"
                    );
                }
                _ => {
                    return plan_err!(
                        "execution.runtime-mode must be 'automatic' or 'streaming', got '{value}'"
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
            Setting::StateDir => "state.dir",
            Setting::CheckpointRetained => "checkpoint.retained",
            Setting::CheckpointTimeout => "checkpoint.timeout",
            Setting::StateBackend => "state.backend",
            Setting::RocksDbLocalDir => "state.backend.rocksdb.localdir",
            Setting::DimensionMaxRows => "dimension.max-rows",
            Setting::DimensionMaxBytes => "dimension.max-bytes",
            Setting::DmlSync => "table.dml-sync",
            Setting::RuntimeMode => "execution.runtime-mode",
            Setting::StateTtl => "table.exec.state.ttl",
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
            Setting::StateDir => config.state_dir.clone().unwrap_or_default(),
            Setting::CheckpointRetained => config.checkpoint_retained.to_string(),
            Setting::CheckpointTimeout => format!("{}ms", config.checkpoint_timeout.as_millis()),
            Setting::StateBackend => match config.state_backend {
                StateBackend::Memory => "memory".to_string(),
                StateBackend::RocksDb => "rocksdb".to_string(),
            },
            Setting::RocksDbLocalDir => config.rocksdb_dir().display().to_string(),
            Setting::DimensionMaxRows => config.dimension_max_rows.to_string(),
            Setting::DimensionMaxBytes => config.dimension_max_bytes.to_string(),
            Setting::DmlSync => config.dml_sync.to_string(),
            Setting::RuntimeMode => match config.runtime_mode {
                RuntimeMode::Automatic => "automatic".to_string(),
                RuntimeMode::Streaming => "streaming".to_string(),
            },
            Setting::StateTtl => match config.state_ttl {
                Some(d) => format!("{}ms", d.as_millis()),
                None => "0".to_string(),
            },
        }
    }
}

/// Parses a duration: `500ms`, `10s`, `10 s`, `5 min`, `2h`, `1 d`, or a plain number of ms.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => n,
        "s" | "sec" | "secs" | "second" | "seconds" => n.checked_mul(1_000)?,
        "m" | "min" | "mins" | "minute" | "minutes" => n.checked_mul(60_000)?,
        "h" | "hour" | "hours" => n.checked_mul(3_600_000)?,
        "d" | "day" | "days" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a session changed is recorded as text that gives the same settings back.
    #[test]
    fn changed_settings_apply_back() {
        let base = SabotConfig::default();
        let mut config = base.clone();
        for (key, value) in [
            ("parallelism", "3"),
            ("table.exec.state.ttl", "2 h"),
            ("execution.runtime-mode", "streaming"),
            ("checkpoint.interval", "5 s"),
            ("state.backend", "rocksdb"),
        ] {
            Setting::from_key(key)
                .unwrap()
                .apply(&mut config, value)
                .unwrap();
        }
        let changed = Setting::changed(&base, &config);
        assert_eq!(changed.len(), 5, "{changed:?}");
        let mut again = base.clone();
        for (key, value) in &changed {
            Setting::from_key(key)
                .unwrap()
                .apply(&mut again, value)
                .unwrap();
        }
        for s in Setting::ALL {
            assert_eq!(s.show(&again), s.show(&config), "{}", s.key());
        }
        assert!(Setting::changed(&base, &base).is_empty());
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_memory_size("1024"), Some(1024));
        assert_eq!(parse_memory_size("512MB"), Some(512 << 20));
        assert_eq!(parse_memory_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_memory_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_memory_size("12 kb"), Some(12 << 10));
        assert_eq!(parse_memory_size("lots"), None);
        assert_eq!(parse_memory_size("4XB"), None);
        assert_eq!(parse_memory_size("0"), None);
        assert_eq!(parse_memory_size("150%"), None);
        if let Some(machine) = machine_memory() {
            assert_eq!(parse_memory_size("50%"), Some(machine / 2));
        }
    }

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
        let mode = Setting::from_key("execution.runtime-mode").unwrap();
        mode.apply(&mut c, "STREAMING").unwrap();
        assert_eq!(c.runtime_mode, RuntimeMode::Streaming);
        assert_eq!(mode.show(&c), "streaming");
        assert!(mode.apply(&mut c, "batch").is_err());
        assert!(mode.apply(&mut c, "fast").is_err());
        assert_eq!(c.runtime_mode, RuntimeMode::Streaming);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5 min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
    }
}
