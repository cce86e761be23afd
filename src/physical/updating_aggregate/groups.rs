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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, Int64Array, UInt32Array};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, RowParser, Rows, SortField};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;

use super::rocks_groups::{RocksGroups, StoredGroup};
use super::value_counts::{Guarded, Retraction, ValueCounts};
use crate::changelog::RowKind;
use crate::physical::aggregation::{AggregateInputs, AggregateSet};
use crate::state::redistribute::partitions_of;
use crate::state::rocks::StateDb;

/// One group.
struct Group {
    /// Its key, in the converter's row format.
    key: Box<[u8]>,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Input rows it holds: inserts minus retractions.
    rows: i64,
    /// The aggregates' values in the row it last emitted, if it emitted one that stands.
    emitted: Option<Vec<ScalarValue>>,
    /// Bytes of its accumulators, when last measured.
    bytes: usize,
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
            index: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            schema,
            bytes: 0,
            unknown_retractions: 0,
            global,
            store: None,
            widths: Vec::new(),
        };
        table.widths = table
            .new_accumulators()?
            .iter_mut()
            .map(|a| Ok(a.state()?.len()))
            .collect::<Result<_>>()?;
        Ok(table)
    }

    /// Keeps every group in a new RocksDB database under `root` (named after `label`), and
    /// only a cache of them in memory.
    pub fn with_rocksdb(mut self, root: &Path, label: &str) -> Result<Self> {
        let mut types = Vec::new();
        for mut accumulator in self.new_accumulators()? {
            types.extend(accumulator.state()?.iter().map(|v| v.data_type()));
        }
        self.store = Some(RocksGroups::try_new(root, label, types)?);
        Ok(self)
    }

    /// The RocksDB database, with `state.backend` = `rocksdb`.
    pub fn db(&self) -> Option<&StateDb> {
        self.store.as_ref().map(RocksGroups::db)
    }

    /// Sets how many groups the RocksDB cache holds (tests).
    #[cfg(test)]
    fn set_cache_groups(&mut self, groups: usize) {
        if let Some(store) = &mut self.store {
            store.capacity = groups;
        }
    }

    /// Replaces the (empty) database with one restored from a checkpoint.
    pub fn adopt(&mut self, root: &Path, label: &str, files: &Path) -> Result<()> {
        match &mut self.store {
            Some(store) => store.adopt(root, label, files),
            None => internal_err!("an updating aggregate in memory was given a RocksDB checkpoint"),
        }
    }

    /// Adds the groups of a database saved at another parallelism (opened read-only from
    /// `files`) that belong to `partition` of `partitions`.
    pub fn restore_rekeyed(
        &mut self,
        files: &Path,
        partition: usize,
        partitions: usize,
    ) -> Result<()> {
        let Some(mut store) = self.store.take() else {
            return internal_err!("an updating aggregate in memory was given a RocksDB checkpoint");
        };
        let result = store.restore_rekeyed(files, |keys| {
            let columns = self.key_columns(keys)?;
            Ok(partitions_of(&columns, keys.len(), partitions)?
                .into_iter()
                .map(|p| p == partition)
                .collect())
        });
        self.store = Some(store);
        result
    }

    /// With RocksDB: writes every cached group back and empties the cache, if it holds more
    /// than its capacity or `always`.
    pub fn write_back(&mut self, always: bool) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if !always && self.index.len() <= store.capacity {
            return Ok(());
        }
        let mut groups = Vec::with_capacity(self.index.len());
        for group in std::mem::take(&mut self.groups).into_iter().flatten() {
            let mut state = Vec::new();
            for mut accumulator in group.accumulators {
                state.extend(accumulator.state()?);
            }
            groups.push((
                group.key,
                StoredGroup {
                    rows: group.rows,
                    state,
                },
            ));
        }
        self.index.clear();
        self.free.clear();
        self.bytes = 0;
        match &mut self.store {
            Some(store) => store.write(groups),
            None => Ok(()),
        }
    }

    /// With RocksDB: brings the groups of `key_rows` the cache lacks into it.
    fn load(&mut self, key_rows: &Rows) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut missing: Vec<&[u8]> = Vec::new();
        let mut seen = HashSet::new();
        for row in key_rows.iter() {
            let key = row.data();
            if !self.index.contains_key(key) && seen.insert(key) {
                missing.push(key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let stored = store.load(&missing)?;
        let missing: Vec<Box<[u8]>> = missing.into_iter().map(Into::into).collect();
        for (key, group) in missing.into_iter().zip(stored) {
            if let Some(StoredGroup { rows, state }) = group {
                let group = self.stored_group(key, rows, &state)?;
                self.insert_group(group);
            }
        }
        Ok(())
    }

    /// A group rebuilt from stored state values (all aggregates' in a row): it has emitted
    /// its current value.
    fn stored_group(&self, key: Box<[u8]>, rows: i64, state: &[ScalarValue]) -> Result<Group> {
        if state.len() != self.widths.iter().sum::<usize>() {
            return internal_err!(
                "an updating aggregate's stored group has {} state values; this query's \
                 aggregates have {:?}",
                state.len(),
                self.widths
            );
        }
        let mut accumulators = Vec::with_capacity(self.widths.len());
        let mut at = 0;
        for (j, &width) in self.widths.iter().enumerate() {
            accumulators.push(self.rebuilt(j, &state[at..at + width])?);
            at += width;
        }
        let emitted = Some(
            accumulators
                .iter_mut()
                .map(|a| a.evaluate())
                .collect::<Result<Vec<_>>>()?,
        );
        let bytes = accumulators.iter().map(|a| a.size()).sum();
        Ok(Group {
            key,
            accumulators,
            rows,
            emitted,
            bytes,
        })
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
    fn new_accumulator(&self, j: usize) -> Result<Box<dyn Accumulator>> {
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

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        (0..self.set.len())
            .map(|j| self.new_accumulator(j))
            .collect()
    }

    /// An accumulator of aggregate `j` holding `state`.
    fn rebuilt(&self, j: usize, state: &[ScalarValue]) -> Result<Box<dyn Accumulator>> {
        let mut accumulator = self.new_accumulator(j)?;
        let arrays = state
            .iter()
            .map(|v| v.to_array_of_size(1))
            .collect::<Result<Vec<_>>>()?;
        accumulator.merge_batch(&arrays)?;
        Ok(accumulator)
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
        self.load(&key_rows)?;
        // Rows per touched group in input order (true: it adds), in the order groups were
        // first touched.
        let mut touched: Vec<(usize, Vec<(u32, bool)>)> = Vec::new();
        let mut position: HashMap<usize, usize> = HashMap::new();
        for i in 0..rows {
            let kind = kinds(i)?;
            let key = key_rows.row(i).data();
            let slot = match self.index.get(key) {
                Some(&slot) => slot,
                None if !kind.adds() => {
                    self.unknown_retractions += 1;
                    continue;
                }
                None => {
                    let group = Group {
                        key: key.into(),
                        accumulators: self.new_accumulators()?,
                        rows: 0,
                        emitted: None,
                        bytes: 0,
                    };
                    self.insert_group(group)
                }
            };
            let at = *position.entry(slot).or_insert_with(|| {
                touched.push((slot, Vec::new()));
                touched.len() - 1
            });
            touched[at].1.push((i as u32, kind.adds()));
        }
        if touched.is_empty() {
            return Ok(None);
        }
        // One gather of the arguments in group order; each group then reads slices.
        let order: Vec<u32> = touched
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(row, _)| *row))
            .collect();
        let gathered =
            if order.len() == rows && order.iter().enumerate().all(|(i, &r)| i == r as usize) {
                inputs.clone()
            } else {
                inputs.take(&UInt32Array::from(order))?
            };
        let mut offset = 0;
        let mut out_keys: Vec<Box<[u8]>> = Vec::new();
        let mut out_values: Vec<Vec<ScalarValue>> = Vec::new();
        let mut out_kinds: Vec<i8> = Vec::new();
        for (slot, group_rows) in touched {
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
                        let arguments = slice(
                            &gathered.values[j],
                            gathered.filters[j].as_ref(),
                            offset + at,
                            applied,
                        )?;
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
            offset += group_rows.len();
            let new_bytes: usize = group.accumulators.iter().map(|a| a.size()).sum();
            self.bytes = self.bytes + new_bytes - group.bytes.min(self.bytes);
            group.bytes = new_bytes;
            let now = if group.rows > 0 {
                Some(
                    group
                        .accumulators
                        .iter_mut()
                        .map(|a| a.evaluate())
                        .collect::<Result<Vec<_>>>()?,
                )
            } else {
                None
            };
            match (group.emitted.take(), now) {
                (None, Some(now)) => {
                    out_keys.push(group.key.clone());
                    out_values.push(now.clone());
                    out_kinds.push(RowKind::Insert as i8);
                    group.emitted = Some(now);
                }
                (Some(old), Some(now)) if old == now => group.emitted = Some(old),
                (Some(old), Some(now)) => {
                    out_keys.push(group.key.clone());
                    out_values.push(old);
                    out_kinds.push(RowKind::UpdateBefore as i8);
                    out_keys.push(group.key.clone());
                    out_values.push(now.clone());
                    out_kinds.push(RowKind::UpdateAfter as i8);
                    group.emitted = Some(now);
                }
                (Some(old), None) => {
                    out_keys.push(group.key.clone());
                    out_values.push(old);
                    out_kinds.push(RowKind::Delete as i8);
                }
                (None, None) => {}
            }
            if group.rows <= 0 {
                self.bytes -= group.bytes.min(self.bytes);
                let key = group.key.clone();
                self.index.remove(&key);
                self.groups[slot] = None;
                self.free.push(slot);
                if let Some(store) = &mut self.store {
                    store.delete(&key);
                }
            }
        }
        self.write_back(false)?;
        if out_kinds.is_empty() {
            return Ok(None);
        }
        let rows = self.output(&out_keys, out_values)?;
        Ok(Some(Changes {
            rows,
            kinds: Int8Array::from(out_kinds),
        }))
    }

    /// Output rows: the keys, then the values.
    fn output(&self, keys: &[Box<[u8]>], values: Vec<Vec<ScalarValue>>) -> Result<RecordBatch> {
        let mut columns = self
            .key_columns(keys)?
            .into_iter()
            .enumerate()
            .map(|(i, k)| in_type(k, self.schema.field(i).data_type()))
            .collect::<Result<Vec<_>>>()?;
        let key_count = columns.len();
        let aggregates = self.set.len();
        let mut by_column: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(values.len()); aggregates];
        for row in values {
            for (j, v) in row.into_iter().enumerate() {
                by_column[j].push(v);
            }
        }
        for (j, column) in by_column.into_iter().enumerate() {
            let field = self.schema.field(key_count + j);
            let array = if column.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(column)?
            };
            columns.push(in_type(array, field.data_type())?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The state as rows: the group keys (named as in the output), `__rows`, then every
    /// aggregate's state values; `None` without groups. Reading an accumulator's state hands
    /// it over, so each is rebuilt from its state.
    pub fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let mut keys = Vec::with_capacity(self.index.len());
        let mut counts = Vec::with_capacity(self.index.len());
        let mut states: Vec<Vec<ScalarValue>> = Vec::new();
        let mut fresh = Vec::new();
        for group in self.groups.iter_mut().flatten() {
            keys.push(group.key.clone());
            counts.push(group.rows);
            let mut row = Vec::new();
            for accumulator in &mut group.accumulators {
                let state = accumulator.state()?;
                fresh.push(state.clone());
                row.extend(state);
            }
            states.push(row);
        }
        // Rebuild each accumulator from the state it handed over.
        let mut fresh = fresh.into_iter();
        let mut groups = std::mem::take(&mut self.groups);
        for group in groups.iter_mut().flatten() {
            for (j, accumulator) in group.accumulators.iter_mut().enumerate() {
                let Some(state) = fresh.next() else {
                    return internal_err!("updating aggregate: a state went missing");
                };
                *accumulator = self.rebuilt(j, &state)?;
            }
        }
        self.groups = groups;
        if keys.is_empty() {
            return Ok(None);
        }
        let mut columns = self.stored_keys(&keys)?;
        let mut fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let name = if self.global {
                    "__global".to_string()
                } else {
                    self.schema.field(i).name().clone()
                };
                Field::new(name, column.data_type().clone(), true)
            })
            .collect();
        fields.push(Field::new("__rows", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(counts)));
        let width = states.first().map_or(0, Vec::len);
        for c in 0..width {
            let column: Vec<ScalarValue> = states.iter().map(|row| row[c].clone()).collect();
            let array = ScalarValue::iter_to_array(column)?;
            fields.push(Field::new(
                format!("__state_{c}"),
                array.data_type().clone(),
                true,
            ));
            columns.push(array);
        }
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// The widths of each aggregate's state (what [`Self::snapshot`] writes per aggregate).
    pub fn state_widths(&self) -> Vec<usize> {
        self.widths.clone()
    }

    /// Adds the groups of snapshot `batch` (see [`Self::snapshot`]), `widths` the state
    /// widths it was written with. A group restored twice (from partitions that both held it,
    /// which re-keying rules out) is an error.
    pub fn restore(&mut self, batch: &RecordBatch, keys: usize, widths: &[usize]) -> Result<()> {
        if widths != self.widths || batch.num_columns() != keys + 1 + widths.iter().sum::<usize>() {
            return internal_err!(
                "an updating aggregate's checkpoint has {} columns; this query's state has {} \
                 keys and aggregates of widths {widths:?}",
                batch.num_columns(),
                keys
            );
        }
        let key_rows = self.converter.convert_columns(&batch.columns()[..keys])?;
        let Some(counts) = batch.column(keys).as_any().downcast_ref::<Int64Array>() else {
            return internal_err!("an updating aggregate's checkpoint without its row counts");
        };
        for i in 0..batch.num_rows() {
            let key: Box<[u8]> = key_rows.row(i).data().into();
            if self.index.contains_key(&key) {
                return internal_err!("an updating aggregate's checkpoint holds a group twice");
            }
            let state = (keys + 1..batch.num_columns())
                .map(|c| ScalarValue::try_from_array(batch.column(c), i))
                .collect::<Result<Vec<_>>>()?;
            let group = self.stored_group(key, counts.value(i), &state)?;
            self.insert_group(group);
        }
        self.write_back(false)
    }
}

/// `array` as `data_type`: an accumulator may answer, and the row format decode, in a type
/// other than the planned one (a dictionary's values); the output keeps the planned type.
fn in_type(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        Ok(array)
    } else {
        Ok(datafusion::arrow::compute::cast(&array, data_type)?)
    }
}

/// Rows `offset..offset + len` of an aggregate's arguments, without those its FILTER drops.
fn slice(
    values: &[ArrayRef],
    mask: Option<&BooleanArray>,
    offset: usize,
    len: usize,
) -> Result<Vec<ArrayRef>> {
    let sliced: Vec<ArrayRef> = values.iter().map(|v| v.slice(offset, len)).collect();
    match mask {
        None => Ok(sliced),
        Some(mask) => {
            let mask = mask.slice(offset, len);
            sliced.iter().map(|v| Ok(filter(v, &mask)?)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    const I: RowKind = RowKind::Insert;
    const UB: RowKind = RowKind::UpdateBefore;
    const UA: RowKind = RowKind::UpdateAfter;
    const D: RowKind = RowKind::Delete;

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    /// COUNT(v), SUM(v) GROUP BY k.
    fn table(retracting: bool) -> GroupTable {
        let schema = input_schema();
        let count = AggregateExprBuilder::new(count_udaf(), vec![col("v", &schema).unwrap()])
            .schema(Arc::clone(&schema))
            .alias("n")
            .build()
            .unwrap();
        let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("v", &schema).unwrap()])
            .schema(Arc::clone(&schema))
            .alias("s")
            .build()
            .unwrap();
        let set =
            AggregateSet::try_new(vec![Arc::new(count), Arc::new(sum)], vec![None, None]).unwrap();
        let output = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Int64, true),
        ]));
        let arguments = vec![vec![DataType::Int64]; 2];
        GroupTable::try_new(
            Arc::new(set),
            retracting,
            vec![DataType::Utf8],
            arguments,
            output,
        )
        .unwrap()
    }

    /// Applies rows `(kind, key, value)`; returns the changes as `(op, key, n, s)`.
    fn apply(
        table: &mut GroupTable,
        rows: &[(RowKind, &str, i64)],
    ) -> Vec<(&'static str, String, i64, Option<i64>)> {
        let keys: ArrayRef = Arc::new(StringArray::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ));
        let values: ArrayRef = Arc::new(Int64Array::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(input_schema(), vec![Arc::clone(&keys), values]).unwrap();
        let inputs = table.set.evaluate(&batch).unwrap();
        let Some(changes) = table
            .apply(&[keys], &inputs, |i| Ok(rows[i].0), rows.len())
            .unwrap()
        else {
            return Vec::new();
        };
        let out = &changes.rows;
        (0..out.num_rows())
            .map(|i| {
                let s = out.column(2).as_primitive::<Int64Type>();
                (
                    RowKind::of(changes.kinds.value(i)).unwrap().short(),
                    out.column(0).as_string::<i32>().value(i).to_string(),
                    out.column(1).as_primitive::<Int64Type>().value(i),
                    (!s.is_null(i)).then(|| s.value(i)),
                )
            })
            .collect()
    }

    fn change(
        op: &'static str,
        k: &str,
        n: i64,
        s: i64,
    ) -> (&'static str, String, i64, Option<i64>) {
        (op, k.to_string(), n, Some(s))
    }

    #[test]
    fn a_batch_emits_each_changed_group_once() {
        let mut t = table(false);
        // Two rows of a in one batch: one insert with both, not two updates.
        assert_eq!(
            apply(&mut t, &[(I, "a", 1), (I, "b", 2), (I, "a", 3)]),
            vec![change("+I", "a", 2, 4), change("+I", "b", 1, 2)]
        );
        assert_eq!(
            apply(&mut t, &[(I, "b", 5)]),
            vec![change("-U", "b", 1, 2), change("+U", "b", 2, 7)]
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn retractions_update_and_delete_groups() {
        let mut t = table(true);
        apply(&mut t, &[(I, "a", 1), (I, "a", 3), (I, "b", 2)]);
        // a's 3 replaced by 4 (an update of the input), b taken back entirely.
        assert_eq!(
            apply(&mut t, &[(UB, "a", 3), (UA, "a", 4), (D, "b", 2)]),
            vec![
                change("-U", "a", 2, 4),
                change("+U", "a", 2, 5),
                change("-D", "b", 1, 2)
            ]
        );
        assert_eq!(t.len(), 1);
        // A row taken back and added again in one batch changes nothing.
        assert_eq!(apply(&mut t, &[(UB, "a", 4), (UA, "a", 4)]), vec![]);
        // Taking back what the state never held is ignored and counted.
        assert_eq!(apply(&mut t, &[(D, "zz", 1)]), vec![]);
        assert_eq!(t.unknown_retractions(), 1);
        // b comes back as a new group.
        assert_eq!(apply(&mut t, &[(I, "b", 9)]), vec![change("+I", "b", 1, 9)]);
        // Rows apply in input order: an update of a row never seen takes nothing back (its
        // -U is unknown) and inserts its new value, also within one batch.
        assert_eq!(
            apply(&mut t, &[(UB, "new", 1), (UA, "new", 2)]),
            vec![change("+I", "new", 1, 2)]
        );
        assert_eq!(t.unknown_retractions(), 2);
        // A retraction after the group's last row in the same batch is unknown too.
        assert_eq!(
            apply(&mut t, &[(D, "new", 2), (D, "new", 2), (I, "new", 3)]),
            vec![change("-U", "new", 1, 2), change("+U", "new", 1, 3)]
        );
        assert_eq!(t.unknown_retractions(), 3);
    }

    #[test]
    fn a_snapshot_restores_the_same_groups() {
        for retracting in [false, true] {
            let mut t = table(retracting);
            apply(&mut t, &[(I, "a", 1), (I, "a", 3), (I, "b", 2)]);
            let snapshot = t.snapshot().unwrap().unwrap();
            let widths = t.state_widths();
            let mut restored = table(retracting);
            restored
                .restore(&snapshot, restored.snapshot_keys(), &widths)
                .unwrap();
            assert_eq!(restored.len(), 2);
            // Both tables go on alike: the restored one knows what it emitted.
            let rows = [(I, "a", 10), (I, "c", 1)];
            let expected = vec![
                change("-U", "a", 2, 4),
                change("+U", "a", 3, 14),
                change("+I", "c", 1, 1),
            ];
            assert_eq!(apply(&mut t, &rows), expected);
            assert_eq!(apply(&mut restored, &rows), expected);
            if retracting {
                assert_eq!(
                    apply(&mut restored, &[(D, "b", 2)]),
                    vec![change("-D", "b", 1, 2)]
                );
            }
        }
        // A snapshot of another shape is refused, not misread.
        let mut t = table(false);
        apply(&mut t, &[(I, "a", 1)]);
        let snapshot = t.snapshot().unwrap().unwrap();
        assert!(table(false).restore(&snapshot, 1, &[1]).is_err());
        assert!(table(false).snapshot().unwrap().is_none());
    }

    #[test]
    fn groups_in_rocksdb_change_as_groups_in_memory_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = table(true);
        let mut rocks = table(true)
            .with_rocksdb(dir.path(), "updating-test")
            .unwrap();
        // A cache of one group: nearly every batch goes through the database.
        rocks.set_cache_groups(1);
        let batches: Vec<Vec<(RowKind, &str, i64)>> = vec![
            vec![(I, "a", 1), (I, "b", 2), (I, "a", 3)],
            vec![(I, "b", 5), (I, "c", 1)],
            vec![(UB, "a", 3), (UA, "a", 4), (D, "b", 2)],
            // b's last row: deleted while only cached as gone.
            vec![(D, "b", 5)],
            // b comes back new (not from the database), c goes.
            vec![(I, "b", 7), (D, "c", 1)],
            vec![(D, "zz", 1)],
        ];
        for batch in &batches {
            assert_eq!(apply(&mut rocks, batch), apply(&mut memory, batch));
        }
        assert_eq!(rocks.unknown_retractions(), memory.unknown_retractions());

        // A checkpoint of the database restores the same groups, at the same parallelism
        // (adopted) and at two partitions (re-keyed): each key is in exactly one of them.
        rocks.write_back(true).unwrap();
        let saved = dir.path().join("saved");
        rocks.db().unwrap().checkpoint(&saved).unwrap();
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        for entry in std::fs::read_dir(&saved).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let mut adopted = table(true)
            .with_rocksdb(dir.path(), "updating-test")
            .unwrap();
        adopted.adopt(dir.path(), "updating-test", &copy).unwrap();
        let next = [(I, "a", 10), (I, "b", 1), (I, "d", 2)];
        assert_eq!(apply(&mut adopted, &next), apply(&mut memory, &next));

        let mut parts: Vec<GroupTable> = (0..2)
            .map(|p| {
                let mut t = table(true)
                    .with_rocksdb(dir.path(), "updating-test")
                    .unwrap();
                t.restore_rekeyed(&saved, p, 2).unwrap();
                t
            })
            .collect();
        for key in ["a", "b"] {
            let holders: Vec<usize> = (0..2)
                .filter(|&p| {
                    let changes = apply(&mut parts[p], &[(I, key, 0)]);
                    changes.first().is_some_and(|c| c.0 == "-U")
                })
                .collect();
            assert_eq!(holders.len(), 1, "{key} held by partitions {holders:?}");
        }
    }
}
