//! The group table's checkpoints in memory: its groups as rows (keys, row count, each
//! accumulator's state), and groups rebuilt from stored state (those rows, or RocksDB's).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue, internal_err};

use super::{Group, GroupTable};

impl GroupTable {
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

    /// A group rebuilt from stored state values (all aggregates' in a row): it has emitted
    /// its current value.
    pub(super) fn stored_group(
        &self,
        key: Box<[u8]>,
        rows: i64,
        state: &[ScalarValue],
    ) -> Result<Group> {
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
            // A restored group lives a whole time to live again.
            written: crate::state::ttl::now_ms(),
        })
    }
}
