//! What the server must remember across restarts, as an append-only log in the state directory
//! (`catalog.jsonl`, one JSON object per line): the DDL that succeeded, the jobs started and
//! canceled, and the materialized views. A restarted server replays it: tables and views come
//! back, jobs resume from their checkpoints, and materialized views are filled again from the
//! start (their rows live in memory).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use datafusion::common::{Result, exec_datafusion_err};

/// One remembered event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A CREATE / DROP of a table or view.
    Ddl { sql: String },
    /// A job started by `INSERT INTO ... SELECT`.
    Job {
        id: u64,
        sql: String,
        /// The session's settings that differed from the server's (`SET`), which planned the
        /// job (older logs have none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        settings: Vec<(String, String)>,
    },
    /// `CANCEL JOB id`.
    Cancel { id: u64 },
    /// `CREATE MATERIALIZED VIEW name AS query`.
    View {
        name: String,
        query: String,
        /// The column list it was created with (older logs have none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        columns: Vec<String>,
        /// The session's settings that differed from the server's (older logs have none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        settings: Vec<(String, String)>,
    },
    /// `DROP MATERIALIZED VIEW name`.
    DropView { name: String },
}

/// The log (nothing is remembered without a state directory).
pub struct CatalogLog {
    path: Option<PathBuf>,
    lock: Mutex<()>,
}

impl CatalogLog {
    pub fn open(state_dir: Option<&str>) -> Self {
        Self {
            path: state_dir.map(|d| PathBuf::from(d).join("catalog.jsonl")),
            lock: Mutex::new(()),
        }
    }

    /// Appends `entry` and flushes it to disk.
    pub fn append(&self, entry: &Entry) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _guard = self
            .lock
            .lock()
            .map_err(|_| exec_datafusion_err!("catalog log lock poisoned"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| exec_datafusion_err!("cannot create {}: {e}", dir.display()))?;
        }
        let mut line = serde_json::to_string(entry)
            .map_err(|e| exec_datafusion_err!("cannot encode a catalog entry: {e}"))?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| exec_datafusion_err!("cannot open {}: {e}", path.display()))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| exec_datafusion_err!("cannot write {}: {e}", path.display()))
    }

    /// Every entry, oldest first. A line that does not parse (a write cut short by a crash) is
    /// reported and skipped.
    pub fn read(&self) -> Result<Vec<Entry>> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(exec_datafusion_err!("cannot read {}: {e}", path.display())),
        };
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(e) => entries.push(e),
                Err(e) => eprintln!(
                    "warning: {} line {}: skipping an unreadable entry ({e})",
                    path.display(),
                    n + 1
                ),
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = CatalogLog::open(dir.path().to_str());
        let entries = vec![
            Entry::Ddl {
                sql: "CREATE TABLE t (a INT)".into(),
            },
            Entry::Job {
                id: 3,
                sql: "INSERT INTO s SELECT * FROM t".into(),
                settings: vec![("table.exec.state.ttl".into(), "60000ms".into())],
            },
            Entry::Cancel { id: 3 },
            Entry::View {
                name: "v".into(),
                query: "SELECT 1".into(),
                columns: vec![],
                settings: vec![],
            },
            Entry::View {
                name: "w".into(),
                query: "SELECT 1".into(),
                columns: vec!["a".into()],
                settings: vec![("parallelism".into(), "2".into())],
            },
            Entry::DropView { name: "v".into() },
        ];
        for e in &entries {
            log.append(e).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("catalog.jsonl"))
            .unwrap()
            .write_all(b"{\"kind\":\"job\",\"id\":4,\"sql\":\"X\"}\n{\"kind\":\"ddl\",\"sq")
            .unwrap();
        let mut expected = entries.clone();
        // A line an older server wrote, without settings, still reads.
        expected.push(Entry::Job {
            id: 4,
            sql: "X".into(),
            settings: vec![],
        });
        assert_eq!(log.read().unwrap(), expected);
        assert!(CatalogLog::open(None).read().unwrap().is_empty());
    }
}
