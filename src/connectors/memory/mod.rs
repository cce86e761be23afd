//! The `memory` connector: a table without `connector`, kept in this process.
//!
//! Rows inserted with `INSERT INTO` are appended in order; a scan reads them in that order as
//! one partition, so a streaming query over a memory table is fully deterministic (which the SQL
//! tests rely on). The input is bounded: a scan sees the rows present when it starts. A table
//! filled by a job that failed (a materialized view) answers scans with the job's error.
//!
//! A memory table also takes the changelog of an updating query (a materialized view over a
//! GROUP BY without a window), so that it holds the query's current result:
//!
//! - **Keyed** by its upsert key (a materialized view's GROUP BY keys, or a table's
//!   `PRIMARY KEY (...) NOT ENFORCED`), it holds at most one row per key: `+I` and `+U` rows
//!   replace the row of their key (an INSERT too), `-U` and `-D` rows delete it, whatever its
//!   other values. Its live readers get the changes as they took effect: a row replaced is
//!   taken back (`-U`) before the new one comes (`+U`), a delete of a key not held is nothing.
//! - **Without a key**, `+I` and `+U` rows are added and `-U` and `-D` rows take one equal row
//!   back (as Flink applies a retract stream).
//!
//! Taken-back rows are masked, and the table is compacted once they are the majority.
//!
//! `UPDATE` and `DELETE` change it the same way ([`dml`]). Every change reaches the table's
//! live readers ([`live`]): a materialized view's job reads its memory tables live, and so
//! follows their changes; any other query reads the rows present when it starts.

mod dml;
mod live;

pub use live::{caught_up, last_change};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, Int8Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};

use super::{SinkConnector, SinkWriter, SourceBatch, SourceConnector, SourceReader};
use crate::catalog::options::{OptionSpec, SOURCE_COMMON_OPTIONS};
use crate::catalog::table_definition::TableDefinition;
use crate::changelog::{ChangelogMode, RowKind, kind_at};
use crate::error::{SqlStateError, with_sqlstate};

/// Options of an in-memory table (only the common source options).
pub const MEMORY_OPTIONS: &[OptionSpec] = &[];

/// The rows of one memory table.
#[derive(Debug)]
pub struct MemoryStore {
    schema: SchemaRef,
    rows: RwLock<Rows>,
    /// Why the job filling the table (a materialized view's) failed: readers get this error
    /// instead of rows that stopped changing.
    failure: RwLock<Option<SqlStateError>>,
    /// The rows' memory, reserved in the pool of the first session that wrote (it lives as
    /// long as the table).
    reservation: std::sync::Mutex<Option<MemoryReservation>>,
    /// Its live readers (locked after `rows`).
    publisher: Mutex<live::Publisher>,
    /// The checkpoint barrier each open writer passed last, by writer.
    writers: Mutex<HashMap<u64, u64>>,
}

/// Writers of memory tables, numbered.
static NEXT_WRITER: AtomicU64 = AtomicU64::new(0);

/// The stored batches, and what changelogs took back from them.
#[derive(Debug, Default)]
struct Rows {
    /// The upsert key's columns: at most one live row per key (see the module docs).
    key: Option<Vec<usize>>,
    batches: Vec<RecordBatch>,
    /// Per batch, the rows taken back (empty: none).
    removed: Vec<Vec<bool>>,
    /// Rows taken back, over all batches.
    removed_count: usize,
    /// Rows over all batches.
    total: usize,
    /// Built by the first changelog write (or UPDATE, DELETE): where each live row is.
    index: Option<RowIndex>,
}

/// The live rows a changelog may take back, by their bytes in the row format (of the key's
/// columns, when keyed).
struct RowIndex {
    converter: RowConverter,
    /// The upsert key's columns (then every row has its own key).
    key: Option<Vec<usize>>,
    /// Each live copy of a row (of a key: one): (batch, row).
    positions: HashMap<Box<[u8]>, Vec<(usize, usize)>>,
}

impl std::fmt::Debug for RowIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowIndex")
            .field("rows", &self.positions.len())
            .finish()
    }
}

impl RowIndex {
    /// The index of rows of `schema`, keyed by the columns `key` or by whole rows.
    fn new(schema: &SchemaRef, key: Option<&[usize]>) -> Result<Self> {
        let fields = match key {
            Some(key) => key
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
            None => schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        };
        Ok(Self {
            converter: RowConverter::new(fields)?,
            key: key.map(<[usize]>::to_vec),
            positions: HashMap::new(),
        })
    }

    /// What the rows of `batch` are indexed by: their bytes in the row format (of the key's
    /// columns, when keyed; an empty key is the same for every row).
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
        let columns = match &self.key {
            Some(key) if key.is_empty() => return Ok(vec![Box::from([]); batch.num_rows()]),
            Some(key) => key.iter().map(|&i| Arc::clone(batch.column(i))).collect(),
            None => batch.columns().to_vec(),
        };
        let encoded = self.converter.convert_columns(&columns)?;
        Ok((0..batch.num_rows())
            .map(|i| encoded.row(i).data().into())
            .collect())
    }

    /// Indexes the rows of `batch`, stored as batch `at`, that `removed` does not mask.
    fn add(&mut self, batch: &RecordBatch, at: usize, removed: &[bool]) -> Result<()> {
        for (i, key) in self.encode(batch)?.into_iter().enumerate() {
            if !removed.get(i).copied().unwrap_or(false) {
                self.positions.entry(key).or_default().push((at, i));
            }
        }
        Ok(())
    }
}

impl Rows {
    /// Appends inserted rows (indexed, once an index exists); keyed, each replaces the row
    /// of its key. Returns the changes as they took effect.
    fn append(
        &mut self,
        schema: &SchemaRef,
        batch: RecordBatch,
    ) -> Result<Option<(RecordBatch, Option<Int8Array>)>> {
        if self.key.is_some() {
            let inserts = Int8Array::from(vec![RowKind::Insert as i8; batch.num_rows()]);
            return Ok(self
                .apply_changes(schema, batch, &inserts)?
                .map(|(batch, kinds)| (batch, Some(kinds))));
        }
        if let Some(index) = self.index.as_mut() {
            index.add(&batch, self.batches.len(), &[])?;
        }
        self.push(batch.clone(), Vec::new());
        Ok(Some((batch, None)))
    }

    /// Masks live row `r` of stored batch `b`.
    fn mask(&mut self, b: usize, r: usize) {
        if let Some(mask) = self.removed.get_mut(b) {
            if mask.is_empty() {
                *mask = vec![false; self.batches[b].num_rows()];
            }
            if !mask[r] {
                mask[r] = true;
                self.removed_count += 1;
            }
        }
    }

    fn push(&mut self, batch: RecordBatch, removed: Vec<bool>) {
        self.total += batch.num_rows();
        self.removed_count += removed.iter().filter(|r| **r).count();
        self.batches.push(batch);
        self.removed.push(removed);
    }

    /// The live rows.
    fn live(&self) -> Result<Vec<RecordBatch>> {
        self.batches
            .iter()
            .zip(&self.removed)
            .map(|(batch, removed)| {
                if removed.iter().any(|r| *r) {
                    let keep = BooleanArray::from(removed.iter().map(|r| !r).collect::<Vec<_>>());
                    Ok(filter_record_batch(batch, &keep)?)
                } else {
                    Ok(batch.clone())
                }
            })
            .filter(|b| !matches!(b, Ok(b) if b.num_rows() == 0))
            .collect()
    }

    /// Applies changelog rows in order (see the module docs): keyed, by their key; without a
    /// key, adding `batch`'s rows of kind `+I`, `+U` and taking one equal live row back for
    /// each of kind `-U`, `-D` (one that is not there is ignored). Returns the changes as they
    /// took effect, for the live readers.
    fn apply_changes(
        &mut self,
        schema: &SchemaRef,
        batch: RecordBatch,
        kinds: &Int8Array,
    ) -> Result<Option<(RecordBatch, Int8Array)>> {
        if self.index.is_none() {
            let mut index = RowIndex::new(schema, self.key.as_deref())?;
            // The rows appended before (INSERT) can be taken back too.
            for (b, (batch, removed)) in self.batches.iter().zip(&self.removed).enumerate() {
                index.add(batch, b, removed)?;
            }
            self.index = Some(index);
        }
        if self.key.is_some() {
            return self.apply_keyed(schema, batch, kinds);
        }
        let Some(index) = self.index.as_mut() else {
            return Ok(None);
        };
        let encoded = index.encode(&batch)?;
        let at = self.batches.len();
        // The batch's own retraction rows are never live.
        let mut removed = vec![false; batch.num_rows()];
        for (i, key) in encoded.iter().enumerate() {
            let kind = kind_at(Some(kinds), i)?;
            let key = key.as_ref();
            if kind.adds() {
                index.positions.entry(key.into()).or_default().push((at, i));
                continue;
            }
            removed[i] = true;
            let Some(copies) = index.positions.get_mut(key) else {
                continue;
            };
            match copies.pop() {
                // A row added earlier in this very batch.
                Some((b, r)) if b == at => removed[r] = true,
                Some((b, r)) => {
                    if let Some(mask) = self.removed.get_mut(b) {
                        if mask.is_empty() {
                            *mask = vec![false; self.batches[b].num_rows()];
                        }
                        mask[r] = true;
                        self.removed_count += 1;
                    }
                }
                None => {}
            }
            if copies.is_empty() {
                index.positions.remove(key);
            }
        }
        self.push(batch.clone(), removed);
        self.compact_if_mostly_removed(schema)?;
        Ok(Some((batch, kinds.clone())))
    }

    /// [`apply_changes`](Self::apply_changes) of a keyed table.
    fn apply_keyed(
        &mut self,
        schema: &SchemaRef,
        batch: RecordBatch,
        kinds: &Int8Array,
    ) -> Result<Option<(RecordBatch, Int8Array)>> {
        let Some(index) = self.index.as_mut() else {
            return Ok(None);
        };
        let encoded = index.encode(&batch)?;
        let at = self.batches.len();
        let mut removed = vec![false; batch.num_rows()];
        // The changes as they take effect: (batch, row) of each row, and its kind.
        let mut effect: Vec<((usize, usize), RowKind)> = Vec::new();
        let mut masked = Vec::new();
        for (i, key) in encoded.into_iter().enumerate() {
            let kind = kind_at(Some(kinds), i)?;
            let old = index.positions.remove(&key).and_then(|mut p| p.pop());
            if let Some((b, r)) = old {
                if b == at {
                    removed[r] = true;
                } else {
                    masked.push((b, r));
                }
            }
            if kind.adds() {
                index.positions.insert(key, vec![(at, i)]);
                match old {
                    Some(old) => {
                        effect.push((old, RowKind::UpdateBefore));
                        effect.push(((at, i), RowKind::UpdateAfter));
                    }
                    None => effect.push(((at, i), kind)),
                }
            } else {
                removed[i] = true;
                if let Some(old) = old {
                    effect.push((old, kind));
                }
            }
        }
        for (b, r) in masked {
            self.mask(b, r);
        }
        self.push(batch, removed);
        // Gathered before compacting, which renumbers the batches.
        let changes = if effect.is_empty() {
            None
        } else {
            let mut used: Vec<usize> = effect.iter().map(|((b, _), _)| *b).collect();
            used.sort_unstable();
            used.dedup();
            let sources: Vec<&RecordBatch> = used.iter().map(|&b| &self.batches[b]).collect();
            let indices: Vec<(usize, usize)> = effect
                .iter()
                .map(|((b, r), _)| (used.binary_search(b).unwrap_or_default(), *r))
                .collect();
            let rows = interleave_record_batch(&sources, &indices)?;
            let kinds = Int8Array::from(effect.iter().map(|(_, k)| *k as i8).collect::<Vec<_>>());
            Some((rows, kinds))
        };
        self.compact_if_mostly_removed(schema)?;
        Ok(changes)
    }

    fn compact_if_mostly_removed(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.removed_count > 4096 && self.removed_count * 2 > self.total {
            self.compact(schema)?;
        }
        Ok(())
    }

    /// Keeps only the live rows, in one batch, and indexes them again.
    fn compact(&mut self, schema: &SchemaRef) -> Result<()> {
        let live = self.live()?;
        let batch = concat_batches(schema, &live)?;
        self.batches.clear();
        self.removed.clear();
        self.total = 0;
        self.removed_count = 0;
        if let Some(index) = self.index.as_mut() {
            index.positions.clear();
            index.add(&batch, 0, &[])?;
        }
        let rows = batch.num_rows();
        self.push(batch, Vec::new());
        debug_assert_eq!(self.total, rows);
        Ok(())
    }

    fn memory_size(&self) -> usize {
        self.batches
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>()
            + self.index.as_ref().map_or(0, |i| {
                i.positions.keys().map(|k| k.len() + 48).sum::<usize>()
            })
    }
}

impl MemoryStore {
    /// The stored columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        if let Some(failure) = self.failure.read().ok().and_then(|f| f.clone()) {
            return Err(with_sqlstate(failure.code, failure.message));
        }
        self.rows.read().map_err(|_| poisoned())?.live()
    }

    fn reserve_in(&self, pool: &Arc<dyn MemoryPool>) {
        if let Ok(mut reservation) = self.reservation.lock()
            && reservation.is_none()
        {
            *reservation = Some(MemoryConsumer::new("memory table").register(pool));
        }
    }

    /// Applies `change`, which adds `bytes` of rows, once they are reserved (nothing is stored
    /// when the pool refuses); then publishes what it returns to the live readers (with the
    /// rows still locked, so that each reader sees each change once, in order), and reserves
    /// what the rows hold.
    fn changed(
        &self,
        bytes: usize,
        change: impl FnOnce(&mut Rows) -> Result<Option<(RecordBatch, Option<Int8Array>)>>,
    ) -> Result<()> {
        let mut reservation = self.reservation.lock().map_err(|_| poisoned())?;
        if let Some(reservation) = reservation.as_mut() {
            reservation.try_grow(bytes)?;
        }
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        if let Some((batch, kinds)) = change(&mut rows)? {
            self.publisher
                .lock()
                .map_err(|_| poisoned())?
                .publish(&batch, kinds.as_ref());
        }
        if let Some(reservation) = reservation.as_mut() {
            reservation.resize(rows.memory_size());
        }
        Ok(())
    }

    fn append(&self, batch: RecordBatch) -> Result<()> {
        let schema = Arc::clone(&self.schema);
        self.changed(batch.get_array_memory_size(), |rows| {
            rows.append(&schema, batch)
        })
    }

    fn apply_changes(&self, batch: RecordBatch, kinds: &Int8Array) -> Result<()> {
        let schema = Arc::clone(&self.schema);
        self.changed(batch.get_array_memory_size(), |rows| {
            Ok(rows
                .apply_changes(&schema, batch, kinds)?
                .map(|(batch, kinds)| (batch, Some(kinds))))
        })
    }

    /// The rows now, and a new live reader's end of every change after them.
    #[allow(clippy::type_complexity)]
    fn subscribe(
        &self,
    ) -> Result<(
        Vec<RecordBatch>,
        (
            tokio::sync::mpsc::UnboundedReceiver<live::Change>,
            Arc<live::Progress>,
            u64,
        ),
    )> {
        if let Some(failure) = self.failure.read().ok().and_then(|f| f.clone()) {
            return Err(with_sqlstate(failure.code, failure.message));
        }
        let rows = self.rows.read().map_err(|_| poisoned())?;
        let live = rows.live()?;
        let count = live.iter().map(RecordBatch::num_rows).sum();
        let subscription = self
            .publisher
            .lock()
            .map_err(|_| poisoned())?
            .subscribe(count);
        Ok((live, subscription))
    }

    /// True once every open writer of the table passed checkpoint barrier `epoch`: the table
    /// holds everything its job wrote before it.
    pub fn barrier_passed(&self, epoch: u64) -> bool {
        self.writers
            .lock()
            .map(|w| w.values().all(|&e| e >= epoch))
            .unwrap_or(true)
    }

    /// True while a job writes into the table.
    pub fn is_written(&self) -> bool {
        self.writers.lock().map(|w| !w.is_empty()).unwrap_or(false)
    }

    /// Records that `writer` passed barrier `epoch` (`None`: it finished).
    fn writer_at(&self, writer: u64, epoch: Option<u64>) {
        if let Ok(mut writers) = self.writers.lock() {
            match epoch {
                Some(epoch) => {
                    writers.insert(writer, epoch);
                }
                None => {
                    writers.remove(&writer);
                }
            }
        }
    }
}

/// `batches` projected to `projection`, in chunks of at most `batch_size` rows.
fn chunks(
    batches: Vec<RecordBatch>,
    projection: &[usize],
    batch_size: usize,
) -> Result<Vec<RecordBatch>> {
    let mut chunks = Vec::new();
    for batch in batches {
        let batch = batch.project(projection)?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = batch_size.max(1).min(batch.num_rows() - offset);
            chunks.push(batch.slice(offset, len));
            offset += len;
        }
    }
    Ok(chunks)
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("memory table lock poisoned".into())
}

/// Source and sink over one [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    store: Arc<MemoryStore>,
    /// As a source: read live, the rows and then every change ([`live`]), instead of the rows
    /// present when a query starts.
    live: bool,
}

/// Builds the connector of an in-memory table.
pub fn build(def: &TableDefinition) -> Result<MemoryConnector> {
    def.options
        .validate("memory", &[MEMORY_OPTIONS, SOURCE_COMMON_OPTIONS])?;
    if let Some(c) = def.metadata_columns().first() {
        return plan_err!(
            "column {} of in-memory table {} is a METADATA column; only the kafka connector has \
             record metadata",
            c.name,
            def.name
        );
    }
    let schema = def.source_schema();
    let key = if def.primary_key.is_empty() {
        None
    } else {
        let mut key = Vec::with_capacity(def.primary_key.len());
        for name in &def.primary_key {
            match schema.fields().iter().position(|f| f.name() == name) {
                Some(i) => key.push(i),
                None => {
                    return plan_err!(
                        "the PRIMARY KEY of table {} names '{name}', which is not one of its \
                         columns",
                        def.name
                    );
                }
            }
        }
        Some(key)
    };
    Ok(MemoryConnector {
        store: Arc::new(MemoryStore {
            schema,
            rows: RwLock::new(Rows {
                key,
                ..Rows::default()
            }),
            failure: RwLock::new(None),
            reservation: std::sync::Mutex::new(None),
            publisher: Mutex::new(live::Publisher::default()),
            writers: Mutex::new(HashMap::new()),
        }),
        live: false,
    })
}

impl SourceConnector for MemoryConnector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.store.schema)
    }

    /// Live, it never ends: the table may change any time.
    fn is_bounded(&self) -> bool {
        !self.live
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::of_changes(self.live)
    }

    fn num_partitions(&self, _parallelism: usize) -> Result<usize> {
        Ok(1)
    }

    fn open(
        &self,
        _partition: usize,
        _num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        if self.live {
            return live::reader(&self.store, projection, batch_size);
        }
        let mut chunks = chunks(self.store.snapshot()?, projection, batch_size)?;
        chunks.reverse();
        Ok(Box::new(MemoryReader { chunks }))
    }

    fn live(&self) -> Option<Arc<dyn SourceConnector>> {
        Some(Arc::new(Self {
            store: Arc::clone(&self.store),
            live: true,
        }))
    }

    fn memory_store(&self) -> Option<Arc<MemoryStore>> {
        Some(Arc::clone(&self.store))
    }

    fn explain(&self) -> String {
        if self.live {
            return "live (its rows, then every change)".to_string();
        }
        let rows: usize = self
            .store
            .snapshot()
            .map(|b| b.iter().map(|b| b.num_rows()).sum())
            .unwrap_or(0);
        format!("rows={rows}")
    }
}

struct MemoryReader {
    /// Remaining chunks, last first.
    chunks: Vec<RecordBatch>,
}

#[async_trait]
impl SourceReader for MemoryReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        Ok(self.chunks.pop().map(SourceBatch::new))
    }
}

impl SinkConnector for MemoryConnector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open_writer(
        &self,
        _schema: SchemaRef,
        _partition: usize,
        _num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        let id = NEXT_WRITER.fetch_add(1, Ordering::Relaxed);
        self.store.writer_at(id, Some(0));
        Ok(Box::new(MemoryWriter {
            store: Arc::clone(&self.store),
            id,
        }))
    }

    fn passed_barrier(&self, epoch: u64) -> bool {
        self.store.barrier_passed(epoch)
    }

    fn job_failed(&self, error: &SqlStateError) {
        if let Ok(mut failure) = self.store.failure.write() {
            *failure = Some(error.clone());
        }
    }

    fn accepts_changes(&self) -> bool {
        true
    }

    fn explain(&self) -> String {
        "append, or apply a changelog".to_string()
    }
}

struct MemoryWriter {
    store: Arc<MemoryStore>,
    /// Its number among the table's writers.
    id: u64,
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        self.store.writer_at(self.id, None);
    }
}

#[async_trait]
impl SinkWriter for MemoryWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // Rows take the table's column names and nullability.
        let batch = RecordBatch::try_new(Arc::clone(&self.store.schema), batch.columns().to_vec())?;
        self.store.append(batch)
    }

    async fn write_changes(&mut self, batch: &RecordBatch, kinds: &Int8Array) -> Result<()> {
        let batch = RecordBatch::try_new(Arc::clone(&self.store.schema), batch.columns().to_vec())?;
        self.store.apply_changes(batch, kinds)
    }

    async fn on_barrier(&mut self, epoch: u64) -> Result<serde_json::Value> {
        self.store.writer_at(self.id, Some(epoch));
        Ok(serde_json::Value::Null)
    }

    async fn finish(&mut self) -> Result<serde_json::Value> {
        self.store.writer_at(self.id, None);
        Ok(serde_json::Value::Null)
    }

    fn reserve_in(&mut self, pool: &Arc<dyn MemoryPool>) {
        self.store.reserve_in(pool);
    }
}
