//! The state of one partition of an updating aggregate: per group, its key, one DataFusion
//! `Accumulator` per aggregate, the number of rows it holds, and the row it last emitted.
//!
//! Row accumulators (not `GroupsAccumulator`s) because an updating aggregate reads a group's
//! value after every batch that touched it, and `evaluate` of a row accumulator leaves the
//! state as it was, while a groups accumulator's `evaluate` hands its groups over. Over an input
//! that retracts, COUNT, SUM and AVG use DataFusion's retracting accumulators
//! (`create_sliding_accumulator`) and the others (MIN, MAX, DISTINCT, ...) keep their values'
//! counts ([`ValueCounts`]); the planner refuses aggregates that depend on the order of rows
//! ([`Retraction::Impossible`]).
//!
//! - this file: the groups and how a batch changes them ([`GroupTable::apply`]);
//! - [`fast`]: accumulators of the common aggregates over an append-only input, which read
//!   a batch's rows where they are;
//! - [`output`]: a batch's changes, built column by column;
//! - [`snapshot`]: checkpoints as rows, and groups rebuilt from stored state;
//! - [`rocksdb`]: the table as a write-back cache of RocksDB's groups.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, UInt32Array};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, RowParser, Rows, SortField};
use datafusion::common::{HashMap, Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;

use super::rocks_groups::RocksGroups;
use super::value_counts::{Guarded, Retraction, ValueCounts};
use crate::changelog::RowKind;
use crate::physical::aggregation::{AggregateInputs, AggregateSet};

/// One aggregate's accumulator in a group: DataFusion's, or a [`Fast`] one.
enum Acc {
    Row(Box<dyn Accumulator>),
    Fast(Fast),
}

impl Deref for Acc {
    type Target = dyn Accumulator;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Row(a) => a.as_ref(),
            Self::Fast(a) => a,
        }
    }
}

impl DerefMut for Acc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::Row(a) => a.as_mut(),
            Self::Fast(a) => a,
        }
    }
}

/// One group.
struct Group {
    /// Its key, in the converter's row format.
    key: Box<[u8]>,
    accumulators: Vec<Acc>,
    /// Input rows it holds: inserts minus retractions.
    rows: i64,
    /// The aggregates' values in the row it last emitted, if it emitted one that stands.
    emitted: Option<Vec<ScalarValue>>,
    /// Bytes of its accumulators, when last measured.
    bytes: usize,
    /// When rows last came for it (processing time, ms): `table.exec.state.ttl` counts from
    /// here.
    written: i64,
}

/// The changes of one batch: rows of the output schema and their kinds.
pub struct Changes {
    pub rows: RecordBatch,
    pub kinds: Int8Array,
}

/// The groups of one partition (see the module docs).
pub struct GroupTable {
    set: Arc<AggregateSet>,
    /// Accumulators that retract (the input is a changelog).
    retracting: bool,
    /// Each aggregate's argument types.
    argument_types: Vec<Vec<DataType>>,
    converter: RowConverter,
    parser: RowParser,
    /// Key columns in the converter's rows.
    key_fields: usize,
    /// Group slot by key.
    index: HashMap<Box<[u8]>, usize>,
    /// Slots; `None` is free.
    groups: Vec<Option<Group>>,
    free: Vec<usize>,
    /// The output: the group keys, then the aggregates.
    schema: SchemaRef,
    /// Bytes of all accumulators.
    bytes: usize,
    /// Retractions of rows the state does not hold (ignored, as Flink does).
    unknown_retractions: u64,
    /// No GROUP BY keys: every row is in the one group, keyed by a constant.
    global: bool,
    /// With `state.backend` = `rocksdb`, where every group is; the table is then a cache
    /// ([`super::rocks_groups`]).
    store: Option<RocksGroups>,
    /// Each aggregate's number of state values.
    widths: Vec<usize>,
    /// Each aggregate's [`Fast`] accumulator kind, if it has one (never over a changelog).
    fast: Vec<Option<FastKind>>,
    /// `table.exec.state.ttl` in ms: groups no rows came for this long are dropped (those in
    /// memory by [`Self::expire`], those in RocksDB when next read or compacted).
    ttl_ms: Option<i64>,
}

impl GroupTable {
    /// An empty table; `key_types` are the group keys' types, `argument_types` each
    /// aggregate's, `schema` the output.
    pub fn try_new(
        set: Arc<AggregateSet>,
        retracting: bool,
        key_types: Vec<DataType>,
        argument_types: Vec<Vec<DataType>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        if argument_types.len() != set.len() {
            return internal_err!(
                "updating aggregate: argument types of {} aggregates for {}",
                argument_types.len(),
                set.len()
            );
        }
        let fast = set
            .aggregates
            .iter()
            .zip(&argument_types)
            .map(|(aggregate, types)| FastKind::of(aggregate, types).filter(|_| !retracting))
            .collect();
        let global = key_types.is_empty();
        let key_types = if global {
            vec![DataType::Boolean]
        } else {
            key_types
        };
        let key_fields = key_types.len();
        let converter = RowConverter::new(key_types.into_iter().map(SortField::new).collect())?;
        let mut table = Self {
            set,
            retracting,
            argument_types,
            parser: converter.parser(),
            converter,
            key_fields,
            index: HashMap::default(),
            groups: Vec::new(),
            free: Vec::new(),
            schema,
            bytes: 0,
            unknown_retractions: 0,
            global,
            store: None,
            widths: Vec::new(),
            fast,
            ttl_ms: None,
        };
        table.widths = table
            .new_accumulators()?
            .iter_mut()
            .map(|a| Ok(a.state()?.len()))
            .collect::<Result<_>>()?;
        Ok(table)
    }

    /// This table with its groups dropped when no rows came for `ttl`
    /// (`table.exec.state.ttl`).
    pub fn with_ttl(mut self, ttl: Option<std::time::Duration>) -> Self {
        self.ttl_ms = ttl.map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self
    }

    /// Puts `group` into a free slot; returns the slot.
    fn insert_group(&mut self, group: Group) -> usize {
        self.bytes += group.bytes;
        let key = group.key.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.groups[slot] = Some(group);
                slot
            }
            None => {
                self.groups.push(Some(group));
                self.groups.len() - 1
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// Takes the group in `slot` out (and, with RocksDB, out of the database at the next
    /// write-back).
    fn remove_group(&mut self, slot: usize) -> Option<Group> {
        let group = self.groups.get_mut(slot)?.take()?;
        self.bytes -= group.bytes.min(self.bytes);
        self.index.remove(&group.key);
        self.free.push(slot);
        if let Some(store) = &mut self.store {
            store.delete(&group.key);
        }
        Some(group)
    }

    /// The key of each of `rows` rows, as rows of the converter.
    fn key_rows(&self, keys: &[ArrayRef], rows: usize) -> Result<Rows> {
        if self.global {
            let constant: ArrayRef = Arc::new(BooleanArray::from(vec![true; rows]));
            return Ok(self.converter.convert_columns(&[constant])?);
        }
        Ok(self.converter.convert_columns(keys)?)
    }

    /// The key columns of `keys` (none for the global group).
    fn key_columns(&self, keys: &[Box<[u8]>]) -> Result<Vec<ArrayRef>> {
        if self.global {
            return Ok(Vec::new());
        }
        self.stored_keys(keys)
    }

    /// The key columns of `keys` as stored (with the constant of the global group).
    fn stored_keys(&self, keys: &[Box<[u8]>]) -> Result<Vec<ArrayRef>> {
        Ok(self
            .converter
            .convert_rows(keys.iter().map(|k| self.parser.parse(k)))?)
    }

    /// Number of key columns a snapshot starts with: the group keys, or one constant for the
    /// global group.
    pub fn snapshot_keys(&self) -> usize {
        self.key_fields
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Approximate bytes held.
    pub fn memory_size(&self) -> usize {
        self.bytes + self.converter.size() + self.index.len() * 64
    }

    /// Retractions of rows the state did not hold.
    pub fn unknown_retractions(&self) -> u64 {
        self.unknown_retractions
    }

    /// A fresh accumulator of aggregate `j`.
    fn new_accumulator(&self, j: usize) -> Result<Acc> {
        if let Some(kind) = self.fast[j] {
            return Ok(Acc::Fast(kind.accumulator(&self.argument_types[j][0])));
        }
        self.new_row_accumulator(j).map(Acc::Row)
    }

    /// A fresh DataFusion accumulator of aggregate `j`.
    fn new_row_accumulator(&self, j: usize) -> Result<Box<dyn Accumulator>> {
        let aggregate = &self.set.aggregates[j];
        if !self.retracting {
            return aggregate.create_accumulator();
        }
        let ordered = !aggregate.order_bys().is_empty();
        match Retraction::of(aggregate.fun().name(), aggregate.is_distinct(), ordered) {
            Retraction::Native => Ok(Box::new(Guarded::new(
                aggregate.create_sliding_accumulator()?,
            ))),
            Retraction::Counted => Ok(Box::new(ValueCounts::try_new(
                Arc::clone(aggregate),
                &self.argument_types[j],
            )?)),
            Retraction::Impossible => internal_err!(
                "{} cannot take rows back; the planner should have refused it",
                aggregate.name()
            ),
        }
    }

    fn new_accumulators(&self) -> Result<Vec<Acc>> {
        (0..self.set.len())
            .map(|j| self.new_accumulator(j))
            .collect()
    }

    /// An accumulator of aggregate `j` holding `state`.
    fn rebuilt(&self, j: usize, state: &[ScalarValue]) -> Result<Acc> {
        let mut accumulator = self.new_accumulator(j)?;
        let arrays = state
            .iter()
            .map(|v| v.to_array_of_size(1))
            .collect::<Result<Vec<_>>>()?;
        accumulator.merge_batch(&arrays)?;
        Ok(accumulator)
    }

    /// Drops the groups no rows came for since `oldest` (`table.exec.state.ttl`), emitting
    /// nothing: a later row of such a key starts it again (`+I`), as Flink's group aggregate
    /// does. Sweeps the groups in memory (with RocksDB, the cache: a stored group expires
    /// when it is next read); returns how many went.
    pub fn expire(&mut self, oldest: i64) -> usize {
        let mut gone = 0;
        for slot in 0..self.groups.len() {
            let expired = self.groups[slot]
                .as_ref()
                .is_some_and(|g| g.written < oldest);
            if expired && self.remove_group(slot).is_some() {
                gone += 1;
            }
        }
        gone
    }

    /// Adds (`+I`, `+U`) and takes back (`-U`, `-D`) the rows of one batch: `keys` are their
    /// group keys, `inputs` the aggregates' arguments, `kinds` what each row does. Returns the
    /// changes of the result: for each group whose row changed, `+I` (new group), `-U` and `+U`
    /// (new value) or `-D` (its last row was taken back).
    pub fn apply(
        &mut self,
        keys: &[ArrayRef],
        inputs: &AggregateInputs,
        kinds: impl Fn(usize) -> Result<RowKind>,
        rows: usize,
    ) -> Result<Option<Changes>> {
        let key_rows = self.key_rows(keys, rows)?;
        let now_ms = crate::state::ttl::now_ms();
        self.load(&key_rows, now_ms)?;
        let batch = self.touched(&key_rows, &kinds, rows)?;
        if batch.slots.is_empty() {
            return Ok(None);
        }
        // One gather of the arguments in group order; each group's DataFusion accumulators
        // then read slices (fast ones read the rows where they are).
        let gathered = if self.fast.iter().all(Option::is_some)
            || batch
                .rows
                .iter()
                .enumerate()
                .all(|(i, &(r, _))| i == r as usize)
        {
            inputs.clone()
        } else {
            inputs.take(&UInt32Array::from_iter_values(
                batch.rows.iter().map(|&(row, _)| row),
            ))?
        };
        // Per fast aggregate, the rows it counts.
        let kept: Vec<Option<BooleanBuffer>> = (0..self.set.len())
            .map(|j| {
                self.fast[j]
                    .and_then(|_| fast::kept_rows(&inputs.values[j][0], inputs.filters[j].as_ref()))
            })
            .collect();
        let mut output = Output::new(&self.schema, keys.len(), batch.slots.len());
        // The values of the group at hand; after a change, the ones it replaced.
        let mut values: Vec<ScalarValue> = vec![ScalarValue::Null; self.set.len()];
        for (at_group, &slot) in batch.slots.iter().enumerate() {
            let offset = batch.starts[at_group];
            let group_rows = &batch.rows[offset..batch.starts[at_group + 1]];
            let Some(group) = self.groups[slot].as_mut() else {
                return internal_err!("updating aggregate: group slot {slot} is free");
            };
            // Runs of adding and of retracting rows, in input order. A retraction counts only
            // while the group holds a row to take back; one beyond is of a row it never saw
            // (ignored and counted, as Flink does).
            let mut at = 0;
            while at < group_rows.len() {
                let adds = group_rows[at].1;
                let run = group_rows[at..]
                    .iter()
                    .take_while(|(_, a)| *a == adds)
                    .count();
                let applied = if adds {
                    run
                } else {
                    let held = run.min(usize::try_from(group.rows).unwrap_or(0));
                    self.unknown_retractions += (run - held) as u64;
                    if held > 0 && !self.retracting {
                        return internal_err!(
                            "an updating aggregate planned for an append-only input got a \
                             retraction"
                        );
                    }
                    held
                };
                if applied > 0 {
                    for (j, accumulator) in group.accumulators.iter_mut().enumerate() {
                        let accumulator = match accumulator {
                            Acc::Fast(fast) => {
                                fast.update_rows(
                                    &inputs.values[j][0],
                                    kept[j].as_ref(),
                                    &group_rows[at..at + applied],
                                )?;
                                continue;
                            }
                            Acc::Row(accumulator) => accumulator,
                        };
                        let Some(arguments) = slice(
                            &gathered.values[j],
                            gathered.filters[j].as_ref(),
                            offset + at,
                            applied,
                        )?
                        else {
                            continue;
                        };
                        if adds {
                            accumulator.update_batch(&arguments)?;
                        } else {
                            accumulator.retract_batch(&arguments)?;
                        }
                    }
                }
                group.rows += if adds {
                    applied as i64
                } else {
                    -(applied as i64)
                };
                at += run;
            }
            group.written = now_ms;
            let new_bytes: usize = group.accumulators.iter().map(|a| a.size()).sum();
            self.bytes = self.bytes + new_bytes - group.bytes.min(self.bytes);
            group.bytes = new_bytes;
            // The group's keys are those of any of its rows.
            let key_row = group_rows[0].0;
            if group.rows > 0 {
                for (value, accumulator) in values.iter_mut().zip(&mut group.accumulators) {
                    match accumulator {
                        Acc::Fast(fast) => fast.evaluate_into(value),
                        Acc::Row(accumulator) => *value = accumulator.evaluate()?,
                    }
                }
                match &mut group.emitted {
                    None => {
                        output.push(key_row, RowKind::Insert, &values)?;
                        group.emitted = Some(values.clone());
                    }
                    Some(old) if *old == values => {}
                    Some(old) => {
                        output.push(key_row, RowKind::UpdateBefore, old)?;
                        output.push(key_row, RowKind::UpdateAfter, &values)?;
                        std::mem::swap(old, &mut values);
                    }
                }
                continue;
            }
            if let Some(old) = group.emitted.take() {
                output.push(key_row, RowKind::Delete, &old)?;
            }
            self.remove_group(slot);
        }
        self.write_back(false)?;
        output.finish(keys)
    }

    /// The groups `rows` rows of `key_rows` touch (new ones inserted), each with its rows in
    /// input order, in the order groups were first touched.
    fn touched(
        &mut self,
        key_rows: &Rows,
        kinds: &impl Fn(usize) -> Result<RowKind>,
        rows: usize,
    ) -> Result<Touched> {
        // Per row, its group's place among the touched ones (`u32::MAX`: ignored).
        let mut place: Vec<u32> = Vec::with_capacity(rows);
        let mut adds: Vec<bool> = Vec::with_capacity(rows);
        let mut slots: Vec<usize> = Vec::new();
        let mut place_of_slot: HashMap<usize, u32> = HashMap::default();
        for i in 0..rows {
            let kind = kinds(i)?;
            let key = key_rows.row(i).data();
            let slot = match self.index.get(key) {
                Some(&slot) => slot,
                None if !kind.adds() => {
                    self.unknown_retractions += 1;
                    place.push(u32::MAX);
                    adds.push(false);
                    continue;
                }
                None => {
                    let group = Group {
                        key: key.into(),
                        accumulators: self.new_accumulators()?,
                        rows: 0,
                        emitted: None,
                        bytes: 0,
                        written: 0,
                    };
                    self.insert_group(group)
                }
            };
            let at = *place_of_slot.entry(slot).or_insert_with(|| {
                slots.push(slot);
                (slots.len() - 1) as u32
            });
            place.push(at);
            adds.push(kind.adds());
        }
        // Rows grouped by their group (a counting sort, stable).
        let mut starts = vec![0usize; slots.len() + 1];
        for &at in place.iter().filter(|&&at| at != u32::MAX) {
            starts[at as usize + 1] += 1;
        }
        for g in 0..slots.len() {
            starts[g + 1] += starts[g];
        }
        let mut next = starts.clone();
        let mut grouped = vec![(0u32, false); starts[slots.len()]];
        for (i, (&at, &adds)) in place.iter().zip(&adds).enumerate() {
            if at != u32::MAX {
                grouped[next[at as usize]] = (i as u32, adds);
                next[at as usize] += 1;
            }
        }
        Ok(Touched {
            slots,
            starts,
            rows: grouped,
        })
    }
}

/// The groups one batch touches: group `g` is in slot `slots[g]` and has the rows
/// `rows[starts[g]..starts[g + 1]]` (input row, and whether it adds).
struct Touched {
    slots: Vec<usize>,
    starts: Vec<usize>,
    rows: Vec<(u32, bool)>,
}

/// Rows `offset..offset + len` of an aggregate's arguments, without those its FILTER drops;
/// `None` if it drops them all (the accumulator has nothing to do).
fn slice(
    values: &[ArrayRef],
    mask: Option<&BooleanArray>,
    offset: usize,
    len: usize,
) -> Result<Option<Vec<ArrayRef>>> {
    let sliced = || values.iter().map(|v| v.slice(offset, len)).collect();
    let Some(mask) = mask else {
        return Ok(Some(sliced()));
    };
    let mask = mask.slice(offset, len);
    // (A NULL in the mask drops its row, as FALSE does.)
    let kept = match mask.nulls() {
        None => mask.values().count_set_bits(),
        Some(valid) => (mask.values() & valid.inner()).count_set_bits(),
    };
    if kept == 0 {
        return Ok(None);
    }
    if kept == len {
        return Ok(Some(sliced()));
    }
    let filtered: Vec<ArrayRef> = sliced()
        .iter()
        .map(|v: &ArrayRef| Ok(filter(v, &mask)?))
        .collect::<Result<_>>()?;
    Ok(Some(filtered))
}

mod fast;
mod output;
mod rocksdb;
mod snapshot;

use fast::{Fast, FastKind};
use output::Output;
#[cfg(test)]
mod tests;
