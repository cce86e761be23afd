//! Slice state of a TUMBLE / HOP aggregation in RocksDB (`state.backend` = `rocksdb`).
//!
//! The same slices as [`SliceState`](super::slices::SliceState), kept on local disk so that
//! the state can exceed memory. One entry per slice and group key: the key is the slice start
//! (8 bytes, ordered) followed by the group key in Arrow's row format; the value is the
//! aggregates' accumulator state (`GroupsAccumulator::state`) in row format, so every aggregate
//! function whose state the row format can hold is stored.
//!
//! Rows are first aggregated in memory, per slice (a write buffer of at most
//! [`BUFFER_GROUPS`] groups); a flush merges each buffered group with its stored state
//! (`merge_batch`) and writes it back. A window fires by reading its slices in key order,
//! merging the slices of each key, [`CHUNK_GROUPS`] keys at a time, so firing a window needs
//! memory for one chunk, not for the window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err};
use rocksdb::WriteBatch;

use super::slices::{FiredWindow, StateBatch, next_hop_window, parse_state_batch, split_by_widths};
use crate::physical::aggregation::{AggregateInputs, AggregateSet, Emitted, GroupedAggregation};
use crate::physical::window_spec::{WindowKind, WindowSpec};
use crate::state::redistribute::partitions_of;
use crate::state::rocks::{RowCodec, StateDb, ordered_prefix, ordered_prefix_of, scan_prefix};

/// Groups buffered in memory before they are merged into RocksDB.
pub const BUFFER_GROUPS: usize = 65_536;

/// Keys merged and emitted at a time when a window fires.
pub const CHUNK_GROUPS: usize = 65_536;

/// See the module docs.
pub(super) struct RocksSliceState {
    spec: WindowSpec,
    set: Arc<AggregateSet>,
    key_schema: Option<SchemaRef>,
    db: StateDb,
    keys: RowCodec,
    states: RowCodec,
    widths: Vec<usize>,
    /// Rows aggregated in memory and not yet merged into the database, per slice.
    buffers: BTreeMap<i64, GroupedAggregation>,
    /// Slices with entries in the database.
    slices: BTreeSet<i64>,
    /// HOP: end of the next window to fire (windows before it have fired).
    next_end: i64,
    /// [`CHUNK_GROUPS`] (smaller in tests).
    chunk_groups: usize,
}

impl RocksSliceState {
    /// An empty state in a new database under `root`.
    pub fn try_new(
        spec: WindowSpec,
        set: Arc<AggregateSet>,
        key_schema: Option<SchemaRef>,
        root: &Path,
        label: &str,
    ) -> Result<Self> {
        let db = StateDb::create(root, label)?;
        Self::with_db(spec, set, key_schema, db)
    }

    /// Replaces the (empty) database with one restored from a checkpoint (its files in
    /// `files`, moved under `root`), with the slices and next window end recorded with it.
    pub fn adopt(
        &mut self,
        root: &Path,
        label: &str,
        files: &Path,
        slices: Vec<i64>,
        next_end: i64,
    ) -> Result<()> {
        self.db = StateDb::adopt(root, label, files)?;
        self.slices = slices.into_iter().collect();
        self.next_end = next_end;
        Ok(())
    }

    fn with_db(
        spec: WindowSpec,
        set: Arc<AggregateSet>,
        key_schema: Option<SchemaRef>,
        db: StateDb,
    ) -> Result<Self> {
        let key_fields = key_schema
            .iter()
            .flat_map(|s| s.fields().iter())
            .map(|f| f.data_type().clone())
            .collect();
        let mut state_fields = Vec::new();
        for a in &set.aggregates {
            for f in a.state_fields()? {
                state_fields.push(f.data_type().clone());
            }
        }
        Ok(Self {
            spec,
            keys: RowCodec::try_new(key_fields, "group keys")?,
            states: RowCodec::try_new(state_fields, "the aggregates' state")?,
            widths: set.state_widths()?,
            set,
            key_schema,
            db,
            buffers: BTreeMap::new(),
            slices: BTreeSet::new(),
            next_end: i64::MIN,
            chunk_groups: CHUNK_GROUPS,
        })
    }

    /// The database (checkpoints: after [`flush_all`](Self::flush_all)).
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Memory the write buffers hold, in bytes (the rest is in RocksDB).
    pub fn memory_size(&self) -> usize {
        self.buffers.values().map(GroupedAggregation::size).sum()
    }

    /// Groups in the write buffers (the rest is in RocksDB).
    pub fn open_groups(&self) -> usize {
        self.buffers.values().map(GroupedAggregation::groups).sum()
    }

    /// HOP: end of the next window to fire.
    pub fn next_end(&self) -> i64 {
        self.next_end
    }

    /// Slices with stored state (after [`flush_all`](Self::flush_all): all of them).
    pub fn slices(&self) -> Vec<i64> {
        self.slices.iter().copied().collect()
    }

    fn table(&self) -> Result<GroupedAggregation> {
        GroupedAggregation::try_new(Arc::clone(&self.set), self.key_schema.as_ref())
    }

    /// Adds rows (all of slice `slice_start`).
    pub fn update(
        &mut self,
        slice_start: i64,
        keys: &[ArrayRef],
        inputs: &AggregateInputs,
        rows: usize,
    ) -> Result<()> {
        if !self.buffers.contains_key(&slice_start) {
            let table = self.table()?;
            self.buffers.insert(slice_start, table);
        }
        if let Some(table) = self.buffers.get_mut(&slice_start) {
            table.update(keys, inputs, rows)?;
        }
        let buffered: usize = self.buffers.values().map(|t| t.groups()).sum();
        if buffered > BUFFER_GROUPS {
            self.flush_all()?;
        }
        Ok(())
    }

    /// Merges every buffered slice into the database.
    pub fn flush_all(&mut self) -> Result<()> {
        for (slice, mut table) in std::mem::take(&mut self.buffers) {
            let state = table.take_state()?;
            self.merge_into_db(slice, state)?;
        }
        Ok(())
    }

    fn flush_slice(&mut self, slice: i64) -> Result<()> {
        if let Some(mut table) = self.buffers.remove(&slice) {
            let state = table.take_state()?;
            self.merge_into_db(slice, state)?;
        }
        Ok(())
    }

    /// Merges partial state (distinct keys) of `slice` with what the database holds.
    fn merge_into_db(&mut self, slice: i64, state: Emitted) -> Result<()> {
        if state.groups == 0 {
            return Ok(());
        }
        let prefix = ordered_prefix(slice);
        let db_keys: Vec<Vec<u8>> = self
            .keys
            .encode(&state.keys, state.groups)?
            .into_iter()
            .map(|k| {
                let mut key = Vec::with_capacity(8 + k.len());
                key.extend_from_slice(&prefix);
                key.extend_from_slice(&k);
                key
            })
            .collect();
        let mut found = Vec::new();
        let mut found_values = Vec::new();
        for (i, value) in self.db.db().multi_get(&db_keys).into_iter().enumerate() {
            let value = value.map_err(|e| exec_datafusion_err!("RocksDB state: read: {e}"))?;
            if let Some(v) = value {
                found.push(i as u32);
                found_values.push(v);
            }
        }
        let states = if found.is_empty() {
            state.states
        } else {
            // Keys intern in order of first appearance: group i stays row i of `state`.
            let mut merged = self.table()?;
            merged.merge(&state.keys, &state.states, state.groups)?;
            let found = UInt32Array::from(found);
            let old_keys = state
                .keys
                .iter()
                .map(|k| Ok(take(k, &found, None)?))
                .collect::<Result<Vec<_>>>()?;
            let old_states = split_by_widths(self.states.decode(&found_values)?, &self.widths);
            merged.merge(&old_keys, &old_states, found.len())?;
            let out = merged.take_state()?;
            if out.groups != state.groups {
                return Err(exec_datafusion_err!(
                    "RocksDB state: merging {} groups gave {}",
                    state.groups,
                    out.groups
                ));
            }
            out.states
        };
        let flat: Vec<ArrayRef> = states.into_iter().flatten().collect();
        let values = self.states.encode(&flat, state.groups)?;
        let mut batch = WriteBatch::default();
        for (k, v) in db_keys.iter().zip(&values) {
            batch.put(k, v);
        }
        self.db.write(batch)?;
        self.slices.insert(slice);
        Ok(())
    }

    /// Deletes the stored entries of `slice`.
    fn delete_slice(&mut self, slice: i64) -> Result<()> {
        if self.slices.remove(&slice) {
            let mut batch = WriteBatch::default();
            match slice.checked_add(1) {
                Some(next) => batch.delete_range(ordered_prefix(slice), ordered_prefix(next)),
                None => batch.delete_range(ordered_prefix(slice).to_vec(), vec![0xff; 9]),
            }
            self.db.write(batch)?;
        }
        Ok(())
    }

    /// The window `[start, end)` over the stored `slices`, merged by key, `CHUNK_GROUPS` keys
    /// at a time.
    fn fire_window(
        &self,
        slices: &[i64],
        start: i64,
        end: i64,
        fired: &mut Vec<FiredWindow>,
    ) -> Result<()> {
        let prefixes: Vec<[u8; 8]> = slices.iter().map(|s| ordered_prefix(*s)).collect();
        let mut scans: Vec<_> = prefixes
            .iter()
            .map(|p| scan_prefix(self.db.db(), p))
            .collect();
        // The next entry of each scan.
        let mut heads = Vec::with_capacity(scans.len());
        for scan in &mut scans {
            heads.push(scan.next().transpose()?);
        }
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        let mut values: Vec<Box<[u8]>> = Vec::new();
        loop {
            // The scan whose next group key (after the slice prefix) is smallest.
            let mut best: Option<usize> = None;
            for (i, head) in heads.iter().enumerate() {
                if let Some((k, _)) = head {
                    let smaller = match best.and_then(|b| heads[b].as_ref()) {
                        Some((bk, _)) => k[8..] < bk[8..],
                        None => true,
                    };
                    if smaller {
                        best = Some(i);
                    }
                }
            }
            let Some(best) = best else { break };
            let Some((k, v)) = heads[best].take() else {
                break;
            };
            // A chunk ends between keys, never between the slices of one key.
            if keys.len() >= self.chunk_groups && keys.last().map(|l| &l[8..]) != Some(&k[8..]) {
                self.emit_chunk(&mut keys, &mut values, start, end, fired)?;
            }
            keys.push(k);
            values.push(v);
            heads[best] = scans[best].next().transpose()?;
        }
        self.emit_chunk(&mut keys, &mut values, start, end, fired)
    }

    fn emit_chunk(
        &self,
        keys: &mut Vec<Box<[u8]>>,
        values: &mut Vec<Box<[u8]>>,
        start: i64,
        end: i64,
        fired: &mut Vec<FiredWindow>,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let group_keys: Vec<&[u8]> = keys.iter().map(|k| &k[8..]).collect();
        let key_columns = self.keys.decode(&group_keys)?;
        let states = split_by_widths(self.states.decode(values)?, &self.widths);
        let mut table = self.table()?;
        table.merge(&key_columns, &states, keys.len())?;
        let result = table.finish()?;
        keys.clear();
        values.clear();
        if result.groups > 0 {
            fired.push(FiredWindow { start, end, result });
        }
        Ok(())
    }

    /// Fires every window whose end - 1 is at or below `watermark`, in order of end.
    pub fn fire(&mut self, watermark: i64, fired: &mut Vec<FiredWindow>) -> Result<()> {
        match self.spec.kind {
            WindowKind::Tumble { size } => {
                let mut candidates: Vec<i64> =
                    self.buffers.keys().chain(&self.slices).copied().collect();
                candidates.sort_unstable();
                candidates.dedup();
                for start in candidates {
                    let end = start.saturating_add(size);
                    if WindowSpec::fire_time(end) > watermark {
                        break;
                    }
                    self.flush_slice(start)?;
                    if self.slices.contains(&start) {
                        self.fire_window(&[start], start, end, fired)?;
                        self.delete_slice(start)?;
                    }
                }
                Ok(())
            }
            WindowKind::Hop { slide, size } => self.fire_hop(watermark, slide, size, fired),
            WindowKind::Session { .. } => Ok(()),
        }
    }

    fn fire_hop(
        &mut self,
        watermark: i64,
        slide: i64,
        size: i64,
        fired: &mut Vec<FiredWindow>,
    ) -> Result<()> {
        // Slices that can take no more rows (their earliest window fires) go to the database.
        let frozen: Vec<i64> = self
            .buffers
            .keys()
            .copied()
            .filter(|s| WindowSpec::fire_time(self.spec.first_window_end_of_slice(*s)) <= watermark)
            .collect();
        for slice in frozen {
            self.flush_slice(slice)?;
        }
        loop {
            let earliest = match (self.slices.first(), self.buffers.keys().next()) {
                (Some(a), Some(b)) => *a.min(b),
                (Some(a), None) => *a,
                (None, Some(b)) => *b,
                (None, None) => break,
            };
            let Some((start, end)) =
                next_hop_window(&self.spec, self.next_end, earliest, watermark, size)
            else {
                break;
            };
            let slices: Vec<i64> = self.slices.range(start..end).copied().collect();
            self.fire_window(&slices, start, end, fired)?;
            self.next_end = end.saturating_add(slide);
            // Slices before the next window's start belong to no window that can still fire.
            let keep_from = self.next_end - size;
            let old: Vec<i64> = self.slices.range(..keep_from).copied().collect();
            for slice in old {
                self.delete_slice(slice)?;
            }
        }
        Ok(())
    }

    /// Adds restored state rows in the in-memory backend's snapshot layout (see
    /// [`SliceState::snapshot`](super::slices::SliceState::snapshot)): `__slice`,
    /// `__frozen`, `keys` key columns, then the state columns.
    pub fn restore_batches(
        &mut self,
        batches: &[datafusion::arrow::record_batch::RecordBatch],
        keys: usize,
        next_end: i64,
    ) -> Result<()> {
        self.next_end = self.next_end.max(next_end);
        for batch in batches {
            // Open and frozen slices alike: both are stored state here.
            let Some(StateBatch {
                slice,
                keys: key_columns,
                states,
                rows,
                ..
            }) = parse_state_batch(batch, keys, &self.widths)?
            else {
                continue;
            };
            let mut table = self.table()?;
            table.merge(&key_columns, &states, rows)?;
            let state = table.take_state()?;
            self.merge_into_db(slice, state)?;
        }
        Ok(())
    }

    /// Adds the entries of a restored database (opened read-only from `files`) whose keys
    /// hash to `partition` of `partitions`: restoring at a different parallelism.
    pub fn restore_rekeyed(
        &mut self,
        files: &Path,
        partition: usize,
        partitions: usize,
    ) -> Result<()> {
        let old = StateDb::open_read_only(files)?;
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        let mut values: Vec<Box<[u8]>> = Vec::new();
        for entry in scan_prefix(&old, &[]) {
            let (k, v) = entry?;
            keys.push(k);
            values.push(v);
            if keys.len() >= self.chunk_groups {
                self.write_owned(&mut keys, &mut values, partition, partitions)?;
            }
        }
        self.write_owned(&mut keys, &mut values, partition, partitions)
    }

    fn write_owned(
        &mut self,
        keys: &mut Vec<Box<[u8]>>,
        values: &mut Vec<Box<[u8]>>,
        partition: usize,
        partitions: usize,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let group_keys: Vec<&[u8]> = keys.iter().map(|k| k.get(8..).unwrap_or(&[])).collect();
        let columns = self.keys.decode(&group_keys)?;
        let owners = partitions_of(&columns, keys.len(), partitions)?;
        let mut batch = WriteBatch::default();
        for ((k, v), owner) in keys.iter().zip(values.iter()).zip(owners) {
            if owner != partition {
                continue;
            }
            let Some(slice) = ordered_prefix_of(k) else {
                return Err(exec_datafusion_err!(
                    "RocksDB state: a key without its slice"
                ));
            };
            // Several old partitions never hold the same key: plain writes suffice.
            batch.put(k, v);
            self.slices.insert(slice);
        }
        self.db.write(batch)?;
        keys.clear();
        values.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physical::window_aggregate::slices::SliceState;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn set() -> Arc<AggregateSet> {
        let schema = input_schema();
        let build = |f, name: &str, distinct: bool| {
            Arc::new(
                AggregateExprBuilder::new(f, vec![col("v", &schema).unwrap()])
                    .schema(Arc::clone(&schema))
                    .alias(name)
                    .with_distinct(distinct)
                    .build()
                    .unwrap(),
            )
        };
        Arc::new(
            AggregateSet::try_new(
                vec![
                    build(sum_udaf(), "sum", false),
                    build(count_udaf(), "count_distinct", true),
                    build(max_udaf(), "max", false),
                ],
                vec![None, None, None],
            )
            .unwrap(),
        )
    }

    fn key_schema() -> Option<SchemaRef> {
        Some(Arc::new(Schema::new(vec![Field::new(
            "k",
            DataType::Utf8,
            true,
        )])))
    }

    /// Rows `(slice, key, value)` in batches.
    fn feed(
        set: &AggregateSet,
        rows: &[(i64, Option<&str>, i64)],
        mut add: impl FnMut(i64, &[ArrayRef], &AggregateInputs, usize),
    ) {
        for &(slice, k, v) in rows {
            let keys: ArrayRef = Arc::new(StringArray::from(vec![k]));
            let batch = RecordBatch::try_new(
                input_schema(),
                vec![Arc::clone(&keys), Arc::new(Int64Array::from(vec![v]))],
            )
            .unwrap();
            let inputs = set.evaluate(&batch).unwrap();
            add(slice, &[keys], &inputs, 1);
        }
    }

    /// Fired windows as sorted `(start, end, key, sum, count distinct, max)`.
    fn rows_of(fired: &[FiredWindow]) -> Vec<(i64, i64, Option<String>, i64, i64, i64)> {
        let mut out = Vec::new();
        for w in fired {
            let keys = w.result.keys[0].as_string::<i32>();
            let sums = w.result.values[0].as_primitive::<Int64Type>();
            let counts = w.result.values[1].as_primitive::<Int64Type>();
            let maxes = w.result.values[2].as_primitive::<Int64Type>();
            for i in 0..w.result.groups {
                out.push((
                    w.start,
                    w.end,
                    keys.is_valid(i).then(|| keys.value(i).to_string()),
                    sums.value(i),
                    counts.value(i),
                    maxes.value(i),
                ));
            }
        }
        out.sort();
        out
    }

    use datafusion::arrow::array::Array;

    /// Some rows: keys a..e and a NULL key, values with repeats (for COUNT DISTINCT).
    fn input() -> Vec<(i64, Option<&'static str>, i64)> {
        let keys = [Some("a"), Some("b"), None, Some("c"), Some("dd"), Some("e")];
        (0..400)
            .map(|i: i64| (i % 7 * 2, keys[(i % 6) as usize], i % 13))
            .collect()
    }

    fn run_memory(spec: WindowSpec, input: &[(i64, Option<&str>, i64)]) -> Vec<FiredWindow> {
        let set = set();
        let mut state = SliceState::new(spec, Arc::clone(&set), key_schema());
        feed(&set, input, |s, k, i, n| state.update(s, k, i, n).unwrap());
        let mut fired = vec![];
        state.fire(5, &mut fired).unwrap();
        state.fire(i64::MAX, &mut fired).unwrap();
        fired
    }

    fn run_rocks(
        spec: WindowSpec,
        input: &[(i64, Option<&str>, i64)],
        dir: &Path,
        flush_every: usize,
        chunk_groups: usize,
    ) -> Vec<FiredWindow> {
        let set = set();
        let mut state =
            RocksSliceState::try_new(spec, Arc::clone(&set), key_schema(), dir, "t").unwrap();
        state.chunk_groups = chunk_groups;
        let mut n = 0;
        feed(&set, input, |s, k, i, rows| {
            state.update(s, k, i, rows).unwrap();
            n += 1;
            if n % flush_every == 0 {
                state.flush_all().unwrap();
            }
        });
        let mut fired = vec![];
        state.fire(5, &mut fired).unwrap();
        state.fire(i64::MAX, &mut fired).unwrap();
        assert!(state.slices().is_empty(), "fired slices are deleted");
        fired
    }

    /// TUMBLE and HOP give the in-memory backend's windows, whether rows reach the database
    /// in one flush or merged over many (every 1, 7 or 1000 rows), and whether a window is
    /// emitted in one chunk or in chunks of 2 keys (a key's slices are never split).
    #[test]
    fn same_windows_as_memory() {
        let dir = tempfile::tempdir().unwrap();
        for spec in [
            WindowSpec::tumble(2, 0).unwrap(),
            WindowSpec::hop(2, 6, 0).unwrap(),
        ] {
            let expected = rows_of(&run_memory(spec, &input()));
            assert!(expected.len() > 20);
            for flush_every in [1, 7, 1000] {
                for chunk in [2, CHUNK_GROUPS] {
                    let fired = run_rocks(spec, &input(), dir.path(), flush_every, chunk);
                    if chunk == 2 {
                        assert!(fired.iter().all(|w| w.result.groups <= 2));
                    }
                    let got = rows_of(&fired);
                    assert_eq!(got, expected, "{spec:?} flushing every {flush_every} rows");
                }
            }
        }
    }

    /// A HOP row whose earliest window fired (before a checkpoint) counts in the later
    /// windows of its slice after the checkpoint is restored, in both backends; it used to be
    /// dropped as late.
    #[test]
    fn a_row_after_its_first_window_fired_counts_in_the_later_ones_after_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        // Size 4, slide 2: slice [2, 4) is in [0, 4) and [2, 6).
        let spec = WindowSpec::hop(2, 4, 0).unwrap();
        let set = set();
        let early = [(0, Some("a"), 1), (2, Some("a"), 10)];
        let late = [(2, Some("a"), 100), (4, Some("a"), 1000)];
        // Windows [0, 4) fire at 3: (0, 4) = 1 + 10 before the checkpoint.
        let expected_after = vec![
            (2, 6, Some("a".to_string()), 1110, 3, 1000),
            (4, 8, Some("a".to_string()), 1000, 1, 1000),
        ];

        // Memory: snapshot batches restored into a new state.
        let mut memory = SliceState::new(spec, Arc::clone(&set), key_schema());
        feed(&set, &early, |s, k, i, n| {
            memory.update(s, k, i, n).unwrap()
        });
        let mut fired = vec![];
        memory.fire(3, &mut fired).unwrap();
        assert_eq!(rows_of(&fired)[1].3, 11, "[0, 4) before the checkpoint");
        let batches = memory.snapshot().unwrap();
        let mut restored = SliceState::new(spec, Arc::clone(&set), key_schema());
        restored.restore(&batches, 1, memory.next_end()).unwrap();
        feed(&set, &late, |s, k, i, n| {
            restored.update(s, k, i, n).unwrap()
        });
        let mut fired = vec![];
        restored.fire(i64::MAX, &mut fired).unwrap();
        assert_eq!(rows_of(&fired), expected_after, "memory");

        // RocksDB: the checkpoint's files adopted.
        let mut rocks =
            RocksSliceState::try_new(spec, Arc::clone(&set), key_schema(), dir.path(), "t")
                .unwrap();
        feed(&set, &early, |s, k, i, n| rocks.update(s, k, i, n).unwrap());
        let mut fired = vec![];
        rocks.fire(3, &mut fired).unwrap();
        let staged = rocks.db().staging_dir(1);
        rocks.flush_all().unwrap();
        let files = rocks.db().checkpoint(&staged).unwrap();
        let (slices, next_end) = (rocks.slices(), rocks.next_end());
        drop(rocks);
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        for f in &files {
            std::fs::copy(f, copy.join(f.file_name().unwrap())).unwrap();
        }
        let mut adopted =
            RocksSliceState::try_new(spec, Arc::clone(&set), key_schema(), dir.path(), "t")
                .unwrap();
        adopted
            .adopt(dir.path(), "t", &copy, slices, next_end)
            .unwrap();
        feed(&set, &late, |s, k, i, n| {
            adopted.update(s, k, i, n).unwrap()
        });
        let mut fired = vec![];
        adopted.fire(i64::MAX, &mut fired).unwrap();
        assert_eq!(rows_of(&fired), expected_after, "rocksdb");
    }

    /// A checkpoint's files reopen as the same state; at another parallelism each partition
    /// takes exactly the keys the exchange routes to it.
    #[test]
    fn checkpoint_restores_and_rekeys() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WindowSpec::hop(2, 6, 0).unwrap();
        let set = set();
        let expected = rows_of(&run_memory(spec, &input()));
        let mut state =
            RocksSliceState::try_new(spec, Arc::clone(&set), key_schema(), dir.path(), "t")
                .unwrap();
        feed(&set, &input(), |s, k, i, n| {
            state.update(s, k, i, n).unwrap()
        });
        let staged = state.db().staging_dir(1);
        state.flush_all().unwrap();
        let files = state.db().checkpoint(&staged).unwrap();
        assert!(
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "sst"))
        );
        let slices = state.slices();
        drop(state);

        // Same parallelism: the files are adopted.
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        for f in &files {
            std::fs::copy(f, copy.join(f.file_name().unwrap())).unwrap();
        }
        let mut restored =
            RocksSliceState::try_new(spec, Arc::clone(&set), key_schema(), dir.path(), "t")
                .unwrap();
        restored
            .adopt(dir.path(), "t", &copy, slices, i64::MIN)
            .unwrap();
        let mut fired = vec![];
        restored.fire(5, &mut fired).unwrap();
        restored.fire(i64::MAX, &mut fired).unwrap();
        assert_eq!(rows_of(&fired), expected);

        // Three partitions: every key in exactly one, together the same windows.
        let mut all = Vec::new();
        for p in 0..3 {
            let mut part =
                RocksSliceState::try_new(spec, Arc::clone(&set), key_schema(), dir.path(), "p")
                    .unwrap();
            part.restore_rekeyed(&staged, p, 3).unwrap();
            let mut fired = vec![];
            part.fire(5, &mut fired).unwrap();
            part.fire(i64::MAX, &mut fired).unwrap();
            let rows = rows_of(&fired);
            assert!(
                rows.len() < expected.len(),
                "partition {p} holds only some keys"
            );
            all.extend(rows);
        }
        all.sort();
        assert_eq!(all, expected);
    }
}
