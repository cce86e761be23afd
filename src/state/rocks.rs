//! A RocksDB instance holding one operator partition's keyed state on local disk.
//!
//! The database lives in its own directory under `state.backend.rocksdb.localdir` and is
//! deleted when dropped: it is a working copy, durable only through checkpoints. Writes skip
//! RocksDB's write-ahead log for the same reason; [`StateDb::checkpoint`] flushes the memtable
//! and hard-links the live files (RocksDB's checkpoint API), which the checkpoint coordinator
//! then uploads, sharing the immutable SST files between checkpoints.
//!
//! With `table.exec.state.ttl`, an operator's database drops expired entries when RocksDB
//! compacts its files ([`Expiry`], a compaction filter, as Flink's RocksDB state backend
//! cleans up expired state): an entry no operator reads again does not stay on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, plan_err};
use rocksdb::compaction_filter::Decision;
use rocksdb::{DB, DBCompressionType, IteratorMode, Options, WriteBatch, WriteOptions};

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

fn db_err(what: &str, e: rocksdb::Error) -> DataFusionError {
    exec_datafusion_err!("RocksDB state: {what}: {e}")
}

/// See the module docs.
pub struct StateDb {
    // Fields drop in order: the database closes before its directory is removed.
    db: DB,
    dir: RemoveOnDrop,
    instance: String,
}

/// A directory removed when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("dir", &self.dir.0).finish()
    }
}

/// Block cache shared by every database of the process.
const BLOCK_CACHE_BYTES: usize = 256 << 20;

/// When an entry (its stored key and value) was last written (processing time, ms), as the
/// operator encodes it; `None` if it never expires (or cannot tell).
pub type WrittenOf = fn(&[u8], &[u8]) -> Option<i64>;

/// How a database's entries expire (`table.exec.state.ttl`): at compaction, an entry written
/// before `ttl_ms` ago is dropped.
#[derive(Clone)]
pub struct Expiry {
    ttl_ms: i64,
    written_of: WrittenOf,
    /// Entries count as written no earlier than this: a restored database's restore time, so
    /// that restored state lives a whole time to live again.
    restored_at: Arc<AtomicI64>,
}

impl Expiry {
    pub fn new(ttl: std::time::Duration, written_of: WrittenOf) -> Self {
        Self {
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            written_of,
            restored_at: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Records that the database was restored now.
    pub fn restored(&self) {
        self.restored_at
            .store(crate::state::ttl::now_ms(), Ordering::Relaxed);
    }

    /// The time an entry last written at `written` counts its time to live from: an entry
    /// restored from a checkpoint lives a whole time to live from the restore, as state
    /// restored into memory does.
    pub fn written(&self, written: i64) -> i64 {
        written.max(self.restored_at.load(Ordering::Relaxed))
    }

    /// Whether `key`'s entry `value` has expired by `now`. (Runs on RocksDB's threads: it must
    /// not panic.)
    fn expired(&self, key: &[u8], value: &[u8], now: i64) -> bool {
        let Some(written) = (self.written_of)(key, value) else {
            return false;
        };
        self.written(written) < now.saturating_sub(self.ttl_ms)
    }
}

/// The 8 little-endian bytes `value` starts with, as an `i64` (most operators' write time).
pub fn leading_i64(value: &[u8]) -> Option<i64> {
    value.first_chunk::<8>().map(|b| i64::from_le_bytes(*b))
}

fn options(expiry: Option<&Expiry>) -> Options {
    static CACHE: std::sync::OnceLock<rocksdb::Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES));
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Most reads are point lookups of keys that may not exist yet: a Bloom filter answers
    // "absent" without reading a block.
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_block_based_table_factory(&table);
    // The build links no compression library.
    options.set_compression_type(DBCompressionType::None);
    options.set_write_buffer_size(64 << 20);
    options.set_max_background_jobs(2);
    if let Some(expiry) = expiry.cloned() {
        // Every file is compacted at least once per time to live (but not more often than
        // hourly, and at least monthly), so that expired entries in files no write reaches go
        // too. RocksDB may call the filter from several compactions at once: it keeps no
        // state of its own.
        let seconds = (expiry.ttl_ms / 1000).clamp(3600, 30 * 24 * 3600);
        options.set_periodic_compaction_seconds(seconds as u64);
        options.set_compaction_filter("sabot-state-ttl", move |_level, key, value| {
            if expiry.expired(key, value, crate::state::ttl::now_ms()) {
                Decision::Remove
            } else {
                Decision::Keep
            }
        });
    }
    options
}

impl StateDb {
    /// A unique name for a new instance (process, counter, time).
    pub fn new_instance_name(label: &str) -> String {
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        format!("{label}-{}-{n}-{now:x}", std::process::id())
    }

    /// Creates an empty database in a new directory `root/<instance>`.
    pub fn create(root: &Path, label: &str) -> Result<Self> {
        Self::create_expiring(root, label, None)
    }

    /// [`Self::create`], its entries dropped by `expiry` at compaction.
    pub fn create_expiring(root: &Path, label: &str, expiry: Option<&Expiry>) -> Result<Self> {
        remove_stale(root);
        let instance = Self::new_instance_name(label);
        let dir = root.join(&instance);
        std::fs::create_dir_all(root).map_err(|e| {
            exec_datafusion_err!(
                "cannot create the RocksDB directory '{}' (state.backend.rocksdb.localdir): {e}",
                root.display()
            )
        })?;
        Self::open_dir(dir, instance, expiry)
    }

    /// Takes over the database files in `files` (a restored checkpoint): moves them into a new
    /// directory `root/<instance>` and opens them.
    pub fn adopt(root: &Path, label: &str, files: &Path) -> Result<Self> {
        Self::adopt_expiring(root, label, files, None)
    }

    /// [`Self::adopt`], the entries dropped by `expiry` at compaction (which counts them as
    /// written now, at the restore).
    pub fn adopt_expiring(
        root: &Path,
        label: &str,
        files: &Path,
        expiry: Option<&Expiry>,
    ) -> Result<Self> {
        if let Some(expiry) = expiry {
            expiry.restored();
        }
        let instance = Self::new_instance_name(label);
        let dir = root.join(&instance);
        std::fs::create_dir_all(root)
            .map_err(|e| exec_datafusion_err!("cannot create '{}': {e}", root.display()))?;
        if std::fs::rename(files, &dir).is_err() {
            // Another file system: copy.
            std::fs::create_dir_all(&dir)
                .map_err(|e| exec_datafusion_err!("cannot create '{}': {e}", dir.display()))?;
            for entry in std::fs::read_dir(files)
                .map_err(|e| exec_datafusion_err!("cannot list '{}': {e}", files.display()))?
            {
                let entry = entry.map_err(|e| exec_datafusion_err!("{e}"))?;
                std::fs::copy(entry.path(), dir.join(entry.file_name()))
                    .map_err(|e| exec_datafusion_err!("cannot copy restored state: {e}"))?;
            }
        }
        Self::open_dir(dir, instance, expiry)
    }

    fn open_dir(dir: PathBuf, instance: String, expiry: Option<&Expiry>) -> Result<Self> {
        let db = DB::open(&options(expiry), &dir)
            .map_err(|e| db_err(&format!("cannot open '{}'", dir.display()), e))?;
        Ok(Self {
            db,
            dir: RemoveOnDrop(dir),
            instance,
        })
    }

    /// Opens the files of a restored checkpoint read-only (to re-key them).
    pub fn open_read_only(files: &Path) -> Result<DB> {
        DB::open_for_read_only(&options(None), files, false)
            .map_err(|e| db_err(&format!("cannot open '{}'", files.display()), e))
    }

    /// The instance name (unique per process start and database).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The database.
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Applies `batch` (no write-ahead log: checkpoints are the durability).
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.db()
            .write_opt(batch, &options)
            .map_err(|e| db_err("write failed", e))
    }

    /// Writes a RocksDB checkpoint of the current contents into the new directory `into`
    /// and returns its files.
    pub fn checkpoint(&self, into: &Path) -> Result<Vec<PathBuf>> {
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(self.db())
            .map_err(|e| db_err("cannot start a checkpoint", e))?;
        checkpoint
            .create_checkpoint(into)
            .map_err(|e| db_err(&format!("cannot checkpoint into '{}'", into.display()), e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(into)
            .map_err(|e| exec_datafusion_err!("cannot list '{}': {e}", into.display()))?
        {
            let entry = entry.map_err(|e| exec_datafusion_err!("{e}"))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// The directory where checkpoints of this database are staged before upload.
    pub fn staging_dir(&self, epoch: u64) -> PathBuf {
        let mut name = self.dir.0.as_os_str().to_owned();
        name.push(format!(".chk-{epoch}"));
        PathBuf::from(name)
    }
}

/// Removes what processes that no longer run left under `root` (a crash, `kill -9`): their
/// databases, staged checkpoints and downloaded restores, named `<label>-<pid>-<n>-<time>`
/// (staged ones with a `.chk-<epoch>` suffix). Only where `/proc` tells which processes run.
fn remove_stale(root: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let base = name.split(".chk-").next().unwrap_or(&name);
        let mut parts = base.rsplitn(4, '-');
        let (Some(_time), Some(_n), Some(pid), Some(_label)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Encodes columns as rows of bytes (Arrow's row format); without columns every row encodes as
/// nothing.
pub struct RowCodec {
    converter: Option<RowConverter>,
    types: Vec<DataType>,
}

/// `schema` with every column nullable: the schema of rows read back from state, which the
/// row format gives back without the input's nullability.
pub fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

impl RowCodec {
    /// A codec of whole rows of `schema` (refused, naming `what`, as [`Self::try_new`]).
    pub fn of_schema(schema: &Schema, what: &str) -> Result<Self> {
        let types = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Self::try_new(types, what)
    }

    /// Encoded rows back as a batch of `schema` (the codec's types, every column nullable).
    pub fn decode_batch<'a>(
        &self,
        schema: &SchemaRef,
        rows: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<RecordBatch> {
        let rows: Vec<&[u8]> = rows.into_iter().collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            self.decode(&rows)?,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?)
    }

    /// A codec of columns of `types`; refused (naming `what`) if the row format cannot hold
    /// one of them.
    pub fn try_new(types: Vec<DataType>, what: &str) -> Result<Self> {
        if types.is_empty() {
            return Ok(Self {
                converter: None,
                types,
            });
        }
        let fields: Vec<SortField> = types.iter().cloned().map(SortField::new).collect();
        if !RowConverter::supports_fields(&fields) {
            return plan_err!(
                "state.backend 'rocksdb' cannot store {what} of types {types:?}; use \
                 'state.backend' = 'memory' for this query"
            );
        }
        Ok(Self {
            converter: Some(RowConverter::new(fields)?),
            types,
        })
    }

    /// The rows of `columns` (`None` without columns: every row is empty).
    pub fn convert(&self, columns: &[ArrayRef]) -> Result<Option<Rows>> {
        match &self.converter {
            None => Ok(None),
            Some(c) => Ok(Some(c.convert_columns(columns)?)),
        }
    }

    /// Each of `rows` rows of `columns` as bytes.
    pub fn encode(&self, columns: &[ArrayRef], rows: usize) -> Result<Vec<Vec<u8>>> {
        match self.convert(columns)? {
            None => Ok(vec![Vec::new(); rows]),
            Some(encoded) => Ok(encoded.iter().map(|r| r.as_ref().to_vec()).collect()),
        }
    }

    /// Snapshot batches of `schema`, `chunk` rows each: the rows `row` gives of `held`, decoded,
    /// then the columns `extra` makes of the same rows.
    pub fn batches<T>(
        &self,
        schema: &SchemaRef,
        held: &[T],
        chunk: usize,
        row: impl Fn(&T) -> &[u8],
        extra: impl Fn(&[T]) -> Vec<ArrayRef>,
    ) -> Result<Vec<RecordBatch>> {
        held.chunks(chunk.max(1))
            .map(|part| {
                let rows: Vec<&[u8]> = part.iter().map(&row).collect();
                let mut columns = self.decode(&rows)?;
                columns.extend(extra(part));
                Ok(RecordBatch::try_new_with_options(
                    Arc::clone(schema),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(part.len())),
                )?)
            })
            .collect()
    }

    /// Columns back from encoded rows, of the codec's types (the row format gives dictionary
    /// columns back as plain values: they are cast back).
    pub fn decode<B: AsRef<[u8]>>(&self, rows: &[B]) -> Result<Vec<ArrayRef>> {
        let Some(c) = &self.converter else {
            return Ok(vec![]);
        };
        let parser = c.parser();
        let columns = c.convert_rows(rows.iter().map(|r| parser.parse(r.as_ref())))?;
        columns
            .into_iter()
            .zip(&self.types)
            .map(|(column, t)| {
                if column.data_type() == t {
                    Ok(column)
                } else {
                    Ok(cast(&column, t)?)
                }
            })
            .collect()
    }
}

/// `value` as 8 bytes whose byte order is numeric order (big-endian, sign bit flipped): the
/// prefix of keys ordered by a time.
pub fn ordered_prefix(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

/// The value of a key's [`ordered_prefix`].
pub fn ordered_prefix_of(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// A key and its value.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// Every entry of `db` whose key starts with `prefix`, in key order.
pub fn scan_prefix<'a, P: AsRef<[u8]> + 'a>(
    db: &'a DB,
    prefix: P,
) -> impl Iterator<Item = Result<Entry>> + 'a {
    db.iterator(IteratorMode::From(
        prefix.as_ref(),
        rocksdb::Direction::Forward,
    ))
    .map(|r| r.map_err(|e| db_err("read failed", e)))
    .take_while(move |r| match r {
        Ok((k, _)) => k.starts_with(prefix.as_ref()),
        Err(_) => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_prefixes_order_numerically() {
        let values = [i64::MIN, -10, -1, 0, 1, 10, i64::MAX];
        for w in values.windows(2) {
            assert!(ordered_prefix(w[0]) < ordered_prefix(w[1]));
        }
        for v in values {
            assert_eq!(ordered_prefix_of(&ordered_prefix(v)), Some(v));
        }
    }

    /// Dictionary columns come back as dictionaries (the row format decodes them as values).
    #[test]
    fn row_codec_gives_back_the_declared_types() {
        use datafusion::arrow::array::{Array, DictionaryArray, Int64Array};
        use datafusion::arrow::datatypes::Int32Type;
        let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let columns: Vec<ArrayRef> = vec![
            std::sync::Arc::new(dict),
            std::sync::Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
        ];
        let types: Vec<DataType> = columns.iter().map(|c| c.data_type().clone()).collect();
        let codec = RowCodec::try_new(types, "test columns").unwrap();
        let rows = codec.encode(&columns, 3).unwrap();
        let back = codec.decode(&rows).unwrap();
        assert_eq!(back.len(), 2);
        for (b, c) in back.iter().zip(&columns) {
            assert_eq!(b.data_type(), c.data_type());
            assert_eq!(b.to_data(), c.to_data());
        }
    }

    /// Directories of dead processes go; this process's and unrelated ones stay.
    #[test]
    fn stale_directories_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let own = std::process::id();
        // Above any Linux pid_max: never a running process.
        let dead = 999_999_999u32;
        let names = [
            format!("window-p0-{dead}-1-abc"),
            format!("window-p0-{dead}-2-abc.chk-7"),
            format!("restore-3-{dead}-3-abc"),
            format!("window-p1-{own}-4-abc"),
            "notes".to_string(),
        ];
        for n in &names {
            std::fs::create_dir(root.path().join(n)).unwrap();
        }
        remove_stale(root.path());
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["notes".to_string(), format!("window-p1-{own}-4-abc")]
        );
    }
}
