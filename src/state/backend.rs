//! Where a stateful operator keeps its state: the one seam every stateful operator goes through.
//!
//! The backend is chosen when the physical plan is built, not when it runs. The session's
//! `state.backend` setting reaches DataFusion's physical optimizer as a config extension
//! ([`PlannedBackend`]); the streaming rule hands it to every stateful node
//! (`StreamingExec::with_state_backend`), which keeps it and shows it in EXPLAIN
//! (`state=memory` or `state=rocksdb`). At execution an operator asks its [`StateBackend`]
//! where its partition's database lives ([`StateBackend::rocksdb`]); `None` means memory.
//! A node that can only keep its state in memory (the interval join) keeps `memory` and says so.

use std::fmt;
use std::path::PathBuf;

use datafusion::common::config::ConfigOptions;

use crate::config::{SabotConfig, StateBackend as Setting};

/// Where an operator's state lives (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// In memory, as DataFusion structures; checkpoints write it as Arrow IPC.
    #[default]
    Memory,
    /// In a RocksDB database per operator partition under `dir`, checkpointed with RocksDB's
    /// checkpoint API.
    RocksDb {
        /// `state.backend.rocksdb.localdir`, or the system's temporary directory.
        dir: PathBuf,
    },
}

impl StateBackend {
    /// The backend a session's settings choose.
    pub fn of(config: &SabotConfig) -> Self {
        match config.state_backend {
            Setting::Memory => Self::Memory,
            Setting::RocksDb => Self::RocksDb {
                dir: config.rocksdb_dir(),
            },
        }
    }

    /// For RocksDB: the directory and the instance name of partition `partition` of an operator
    /// whose databases are named `operator` (`window`, `session`, `join`).
    pub fn rocksdb(&self, operator: &str, partition: usize) -> Option<(PathBuf, String)> {
        match self {
            Self::Memory => None,
            Self::RocksDb { dir } => Some((dir.clone(), format!("{operator}-p{partition}"))),
        }
    }

    /// The setting's value: `memory` or `rocksdb`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::RocksDb { .. } => "rocksdb",
        }
    }
}

impl fmt::Display for StateBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The session's backend, carried in DataFusion's `ConfigOptions` so that physical optimizer
/// rules see it. It lists no entries (`SHOW ALL` and `information_schema.df_settings` do not
/// show it) and cannot be set through DataFusion: `SET 'state.backend' = ...` sets it.
#[derive(Debug, Clone, Default)]
pub struct PlannedBackend(pub StateBackend);

crate::config::planned_extension!(
    PlannedBackend,
    "sabot_state_backend",
    "; the state backend is set with SET 'state.backend'"
);

impl PlannedBackend {
    /// The backend planned for `options` (memory if the session never set one).
    pub fn of(options: &ConfigOptions) -> StateBackend {
        options
            .extensions
            .get::<Self>()
            .map(|p| p.0.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_chooses_the_backend_and_its_location() {
        let mut config = SabotConfig::default();
        assert_eq!(StateBackend::of(&config), StateBackend::Memory);
        assert_eq!(StateBackend::of(&config).rocksdb("window", 3), None);
        config.state_backend = Setting::RocksDb;
        config.rocksdb_local_dir = Some("/data/rocks".to_string());
        let backend = StateBackend::of(&config);
        assert_eq!(backend.to_string(), "rocksdb");
        assert_eq!(
            backend.rocksdb("window", 3),
            Some((PathBuf::from("/data/rocks"), "window-p3".to_string()))
        );
    }

    #[test]
    fn the_planned_backend_travels_in_config_options() {
        let mut options = ConfigOptions::new();
        assert_eq!(PlannedBackend::of(&options), StateBackend::Memory);
        let rocks = StateBackend::RocksDb {
            dir: PathBuf::from("/tmp/x"),
        };
        options.extensions.insert(PlannedBackend(rocks.clone()));
        assert_eq!(PlannedBackend::of(&options), rocks);
        assert!(options.entries().iter().all(|e| !e.key.contains("sabot")));
    }
}
