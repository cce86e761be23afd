//! SESSION state in checkpoints: the buffered rows of open sessions.
//!
//! A snapshot is one Arrow batch with a row per buffered row: the session's bounds
//! (`__start`, `__end`), the partition key values (`p0..`), the group keys (`k0..`), the
//! aggregate arguments (`a{i}_{j}`) and FILTER masks (`f{i}`). Restoring interns the partition
//! keys again and rebuilds each session from the rows with the same key and bounds, all in one
//! buffer. At another parallelism each task keeps the rows whose partition keys hash to it, as
//! the exchange routes their future rows (`OperatorCheckpoint::batches`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::common::Result;

use super::{Buffered, Session, SessionAggregateStream};
use crate::physical::aggregation::AggregateInputs;
use crate::physical::message::NO_WATERMARK;

impl SessionAggregateStream {
    pub(super) fn meta(&self) -> serde_json::Value {
        serde_json::json!({
            "watermark": self.watermark,
            "partition_keys": self.partition_exprs.len(),
            "keys": self.keys.len(),
        })
    }

    /// The buffered rows of every open session as one batch (`None` without open sessions).
    pub(super) fn snapshot_rows(&self) -> Result<Option<RecordBatch>> {
        let (mut starts, mut ends, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for session in self.sessions.iter().flatten() {
            rows.extend_from_slice(&session.rows);
            starts.extend(std::iter::repeat_n(session.start, session.rows.len()));
            ends.extend(std::iter::repeat_n(session.end, session.rows.len()));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let gathered = self.gather(&rows, true)?;
        let mut fields = vec![
            Field::new("__start", DataType::Int64, false),
            Field::new("__end", DataType::Int64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
        ];
        let mut push = |name: String, column: ArrayRef| {
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        };
        for (p, column) in gathered.partition.into_iter().enumerate() {
            push(format!("p{p}"), column);
        }
        for (k, column) in gathered.keys.into_iter().enumerate() {
            push(format!("k{k}"), column);
        }
        let AggregateInputs { values, filters } = gathered.inputs;
        for (a, (args, filter)) in values.into_iter().zip(filters).enumerate() {
            for (v, column) in args.into_iter().enumerate() {
                push(format!("a{a}_{v}"), column);
            }
            if let Some(mask) = filter {
                push(format!("f{a}"), Arc::new(mask));
            }
        }
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// Restores the sessions of the checkpoint the job resumes from, if any.
    pub(super) fn restore(&mut self) -> Result<()> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        let Some(restored) = checkpoint.restored() else {
            return Ok(());
        };
        self.watermark = restored.min_meta("watermark", NO_WATERMARK);
        // Rows: `__start`, `__end`, then the partition keys the exchange hashes.
        let batches = checkpoint.batches(&restored, 2..2 + self.partition_exprs.len())?;
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let rows = concat_batches(&first.schema(), &batches)?;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.restore_rows(&rows)
    }

    fn restore_rows(&mut self, rows: &RecordBatch) -> Result<()> {
        let n = rows.num_rows();
        let columns = rows.columns();
        let schema = rows.schema();
        let widths: usize = (0..self.aggregates.len())
            .map(|a| {
                let prefix = format!("a{a}_");
                let values = schema
                    .fields()
                    .iter()
                    .filter(|f| f.name().starts_with(&prefix));
                values.count() + usize::from(schema.index_of(&format!("f{a}")).is_ok())
            })
            .sum();
        let expected = 2 + self.partition_exprs.len() + self.keys.len() + widths;
        let bounds =
            |i: usize| columns[i].data_type() == &datafusion::arrow::datatypes::DataType::Int64;
        if columns.len() != expected || !bounds(0) || !bounds(1) {
            return datafusion::common::exec_err!(
                "the checkpointed SESSION state has {} columns where this query needs {expected}; \
                 it was written by another version of the query",
                columns.len()
            );
        }
        let starts = columns[0].as_primitive::<Int64Type>();
        let ends = columns[1].as_primitive::<Int64Type>();
        let mut at = 2;
        let mut take = |count: usize| {
            let taken = columns[at..at + count].to_vec();
            at += count;
            taken
        };
        let partition = take(self.partition_exprs.len());
        let keys = take(self.keys.len());
        let mut values = Vec::with_capacity(self.aggregates.len());
        let mut filters = Vec::with_capacity(self.aggregates.len());
        for a in 0..self.aggregates.len() {
            let width = schema
                .fields()
                .iter()
                .filter(|f| f.name().starts_with(&format!("a{a}_")))
                .count();
            values.push(take(width));
            let filter = schema.index_of(&format!("f{a}")).ok().map(|i| {
                let mask: BooleanArray = columns[i].as_boolean().clone();
                mask
            });
            if filter.is_some() {
                take(1);
            }
            filters.push(filter);
        }
        match self.partition_ids.as_mut() {
            Some(ids) => ids.intern(&partition, &mut self.scratch)?,
            None => {
                self.scratch.clear();
                self.scratch.resize(n, 0);
            }
        }
        let buffer_id = self.next_buffer;
        self.next_buffer += 1;
        let mut index: HashMap<(usize, i64, i64), usize> = HashMap::new();
        for i in 0..n {
            let (pk, start, end) = (self.scratch[i], starts.value(i), ends.value(i));
            if pk >= self.sessions.len() {
                self.sessions.resize_with(pk + 1, Vec::new);
            }
            let list = &mut self.sessions[pk];
            let j = *index.entry((pk, start, end)).or_insert_with(|| {
                list.push(Session {
                    start,
                    end,
                    rows: Vec::new(),
                });
                list.len() - 1
            });
            list[j].rows.push((buffer_id, i));
            self.min_end = self.min_end.min(end);
        }
        for list in &mut self.sessions {
            list.sort_by_key(|s| s.start);
        }
        self.buffers.insert(
            buffer_id,
            Buffered {
                partition,
                keys,
                inputs: AggregateInputs { values, filters },
                live: n,
            },
        );
        Ok(())
    }
}
