//! Slice state of a TUMBLE / HOP aggregation and the assembly of windows from slices.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err};

use crate::physical::aggregation::{AggregateInputs, AggregateSet, Emitted, GroupedAggregation};
use crate::physical::window_spec::{WindowKind, WindowSpec};

/// A window that fired, with its final values.
#[derive(Debug)]
pub(super) struct FiredWindow {
    pub start: i64,
    pub end: i64,
    pub result: Emitted,
}

/// Open slices (accepting rows) and, for HOP, frozen slices (partial state awaiting the
/// windows that contain them).
#[derive(Debug)]
pub(super) struct SliceState {
    spec: WindowSpec,
    set: Arc<AggregateSet>,
    key_schema: Option<SchemaRef>,
    open: BTreeMap<i64, GroupedAggregation>,
    frozen: BTreeMap<i64, Emitted>,
    /// HOP: end of the next window to fire (windows before it have fired).
    next_end: i64,
}

impl SliceState {
    pub fn new(spec: WindowSpec, set: Arc<AggregateSet>, key_schema: Option<SchemaRef>) -> Self {
        Self {
            spec,
            set,
            key_schema,
            open: BTreeMap::new(),
            frozen: BTreeMap::new(),
            next_end: i64::MIN,
        }
    }

    /// Adds rows (all of slice `slice_start`).
    pub fn update(
        &mut self,
        slice_start: i64,
        keys: &[ArrayRef],
        inputs: &AggregateInputs,
        rows: usize,
    ) -> Result<()> {
        let table = match self.open.entry(slice_start) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(GroupedAggregation::try_new(
                Arc::clone(&self.set),
                self.key_schema.as_ref(),
            )?),
        };
        table.update(keys, inputs, rows)
    }

    /// The state as batches, one per slice: `__slice`, `__frozen`, the key columns, then the
    /// accumulator state columns of every aggregate (see [`state_columns`](Self::state_columns)).
    /// The state stays in place: open tables are drained through `state()` and merged back.
    pub fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(self.open.len() + self.frozen.len());
        let open = std::mem::take(&mut self.open);
        for (slice, mut table) in open {
            let state = table.take_state()?;
            if state.groups == 0 {
                continue;
            }
            let mut fresh =
                GroupedAggregation::try_new(Arc::clone(&self.set), self.key_schema.as_ref())?;
            fresh.merge(&state.keys, &state.states, state.groups)?;
            self.open.insert(slice, fresh);
            out.push(state_batch(slice, false, &state)?);
        }
        for (slice, state) in &self.frozen {
            out.push(state_batch(*slice, true, state)?);
        }
        Ok(out)
    }

    /// Memory the slices hold, in bytes.
    pub fn memory_size(&self) -> usize {
        self.open
            .values()
            .map(GroupedAggregation::size)
            .sum::<usize>()
            + self
                .frozen
                .values()
                .map(Emitted::memory_size)
                .sum::<usize>()
    }

    /// Groups of the open slices (a key counts once per slice it has rows in).
    pub fn open_groups(&self) -> usize {
        self.open.values().map(GroupedAggregation::groups).sum()
    }

    /// HOP: end of the next window to fire.
    pub fn next_end(&self) -> i64 {
        self.next_end
    }

    /// Adds restored state rows (batches of [`snapshot`](Self::snapshot), possibly filtered
    /// to this partition's keys) and the restored next window end.
    pub fn restore(&mut self, batches: &[RecordBatch], keys: usize, next_end: i64) -> Result<()> {
        self.next_end = self.next_end.max(next_end);
        let widths = self.state_columns()?;
        for batch in batches {
            let Some(StateBatch {
                slice,
                frozen,
                keys: key_columns,
                states,
                rows,
            }) = parse_state_batch(batch, keys, &widths)?
            else {
                continue;
            };
            if frozen {
                let restored = Emitted {
                    keys: key_columns,
                    values: vec![],
                    states,
                    groups: rows,
                };
                let merged = match self.frozen.remove(&slice) {
                    // State of the same slice from another old partition: other keys.
                    Some(prior) => concat_emitted(prior, restored)?,
                    None => restored,
                };
                self.frozen.insert(slice, merged);
            } else {
                let table = match self.open.entry(slice) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(GroupedAggregation::try_new(
                            Arc::clone(&self.set),
                            self.key_schema.as_ref(),
                        )?)
                    }
                };
                table.merge(&key_columns, &states, rows)?;
            }
        }
        Ok(())
    }

    /// Number of state columns of each aggregate.
    pub fn state_columns(&self) -> Result<Vec<usize>> {
        self.set.state_widths()
    }

    /// Number of slices held.
    #[cfg(test)]
    pub fn slices(&self) -> usize {
        self.open.len() + self.frozen.len()
    }

    /// Fires every window whose end - 1 is at or below `watermark`, in order of end.
    pub fn fire(&mut self, watermark: i64, fired: &mut Vec<FiredWindow>) -> Result<()> {
        match self.spec.kind {
            WindowKind::Tumble { size } => {
                while let Some((&start, _)) = self.open.first_key_value() {
                    let end = start.saturating_add(size);
                    if WindowSpec::fire_time(end) > watermark {
                        break;
                    }
                    if let Some(mut table) = self.open.remove(&start) {
                        let result = table.finish()?;
                        if result.groups > 0 {
                            fired.push(FiredWindow { start, end, result });
                        }
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
        // Freeze slices whose earliest window fires: from now on they are merged into windows.
        // A slice frozen before may be open again, holding out-of-order rows for its later
        // windows (see the stream): those rows join its frozen state. Keys may then appear
        // twice in it, which merging into a window sums up.
        while let Some((&start, _)) = self.open.first_key_value() {
            if WindowSpec::fire_time(self.spec.first_window_end_of_slice(start)) > watermark {
                break;
            }
            if let Some(mut table) = self.open.remove(&start) {
                let state = table.take_state()?;
                if state.groups > 0 {
                    let state = match self.frozen.remove(&start) {
                        Some(prior) => concat_emitted(prior, state)?,
                        None => state,
                    };
                    self.frozen.insert(start, state);
                }
            }
        }
        // Fire windows over frozen slices, earliest end first, skipping empty stretches.
        while let Some((&earliest, _)) = self.frozen.first_key_value() {
            let Some((start, end)) =
                next_hop_window(&self.spec, self.next_end, earliest, watermark, size)
            else {
                break;
            };
            let mut table =
                GroupedAggregation::try_new(Arc::clone(&self.set), self.key_schema.as_ref())?;
            for (_, state) in self.frozen.range(start..end) {
                table.merge(&state.keys, &state.states, state.groups)?;
            }
            let result = table.finish()?;
            if result.groups > 0 {
                fired.push(FiredWindow { start, end, result });
            }
            self.next_end = end.saturating_add(slide);
            // Slices before the next window's start belong to no window that can still fire.
            let keep_from = self.next_end - size;
            self.frozen = self.frozen.split_off(&keep_from);
        }
        Ok(())
    }
}

/// HOP: the next window `[start, end)` to fire at `watermark`, given the end of the next
/// window not fired yet and the earliest slice holding state (windows without any are
/// skipped); `None` if it does not fire yet.
pub(super) fn next_hop_window(
    spec: &WindowSpec,
    next_end: i64,
    earliest: i64,
    watermark: i64,
    size: i64,
) -> Option<(i64, i64)> {
    let end = next_end.max(spec.first_window_end_of_slice(earliest));
    (WindowSpec::fire_time(end) <= watermark).then(|| (end - size, end))
}

/// One batch of a snapshot (see [`SliceState::snapshot`]), taken apart.
pub(super) struct StateBatch {
    pub slice: i64,
    pub frozen: bool,
    pub keys: Vec<ArrayRef>,
    /// The state arrays of each aggregate.
    pub states: Vec<Vec<ArrayRef>>,
    pub rows: usize,
}

/// Takes a snapshot batch apart: `__slice`, `__frozen`, `keys` key columns, then the state
/// columns of each aggregate (`widths` of them). `None` for an empty batch.
pub(super) fn parse_state_batch(
    batch: &RecordBatch,
    keys: usize,
    widths: &[usize],
) -> Result<Option<StateBatch>> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(None);
    }
    let slice = batch
        .column(0)
        .as_primitive_opt::<Int64Type>()
        .filter(|a| !a.is_null(0))
        .map(|a| a.value(0));
    let frozen = batch
        .column(1)
        .as_boolean_opt()
        .filter(|a| !a.is_null(0))
        .map(|a| a.value(0));
    let (Some(slice), Some(frozen)) = (slice, frozen) else {
        return exec_err!("window state batch lacks its slice columns");
    };
    if batch.num_columns() != 2 + keys + widths.iter().sum::<usize>() {
        return exec_err!("window state batch has {} columns", batch.num_columns());
    }
    Ok(Some(StateBatch {
        slice,
        frozen,
        keys: batch.columns()[2..2 + keys].to_vec(),
        states: split_by_widths(batch.columns()[2 + keys..].iter().cloned(), widths),
        rows,
    }))
}

/// The state arrays of each aggregate, from all of them in a row (`widths` per aggregate).
pub(super) fn split_by_widths(
    flat: impl IntoIterator<Item = ArrayRef>,
    widths: &[usize],
) -> Vec<Vec<ArrayRef>> {
    let mut rest = flat.into_iter();
    widths
        .iter()
        .map(|w| rest.by_ref().take(*w).collect())
        .collect()
}

/// One slice's state as a batch (see [`SliceState::snapshot`]).
fn state_batch(slice: i64, frozen: bool, state: &Emitted) -> Result<RecordBatch> {
    let rows = state.groups;
    let mut fields = vec![
        Field::new("__slice", DataType::Int64, true),
        Field::new("__frozen", DataType::Boolean, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![slice; rows])),
        Arc::new(BooleanArray::from(vec![frozen; rows])),
    ];
    for (i, k) in state.keys.iter().enumerate() {
        fields.push(Field::new(format!("k{i}"), k.data_type().clone(), true));
        columns.push(Arc::clone(k));
    }
    for (a, arrays) in state.states.iter().enumerate() {
        for (j, s) in arrays.iter().enumerate() {
            fields.push(Field::new(format!("s{a}_{j}"), s.data_type().clone(), true));
            columns.push(Arc::clone(s));
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Two partial states of one slice, as one (keys may repeat: merging them into a window, or
/// into a table on restore, combines their states).
fn concat_emitted(a: Emitted, b: Emitted) -> Result<Emitted> {
    let join = |x: &[ArrayRef], y: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
        x.iter()
            .zip(y)
            .map(|(x, y)| Ok(concat(&[x.as_ref(), y.as_ref()])?))
            .collect()
    };
    let states = a
        .states
        .iter()
        .zip(&b.states)
        .map(|(x, y)| join(x, y))
        .collect::<Result<Vec<_>>>()?;
    Ok(Emitted {
        keys: join(&a.keys, &b.keys)?,
        values: vec![],
        states,
        groups: a.groups + b.groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    fn set() -> Arc<AggregateSet> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("v", &schema).unwrap()])
            .schema(Arc::clone(&schema))
            .alias("sum")
            .build()
            .unwrap();
        let count = AggregateExprBuilder::new(count_udaf(), vec![col("v", &schema).unwrap()])
            .schema(schema)
            .alias("count")
            .build()
            .unwrap();
        Arc::new(
            AggregateSet::try_new(vec![Arc::new(sum), Arc::new(count)], vec![None, None]).unwrap(),
        )
    }

    fn add(state: &mut SliceState, set: &AggregateSet, slice: i64, values: Vec<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(values.clone()))],
        )
        .unwrap();
        let inputs = set.evaluate(&batch).unwrap();
        state.update(slice, &[], &inputs, values.len()).unwrap();
    }

    fn sums(fired: &[FiredWindow]) -> Vec<(i64, i64, i64)> {
        fired
            .iter()
            .map(|w| {
                (
                    w.start,
                    w.end,
                    w.result.values[0].as_primitive::<Int64Type>().value(0),
                )
            })
            .collect()
    }

    #[test]
    fn tumble_fires_at_end_minus_one() {
        let set = set();
        let mut state = SliceState::new(WindowSpec::tumble(10, 0).unwrap(), Arc::clone(&set), None);
        add(&mut state, &set, 0, vec![1, 2]);
        add(&mut state, &set, 10, vec![5]);
        let mut fired = vec![];
        state.fire(8, &mut fired).unwrap();
        assert!(fired.is_empty(), "window [0,10) fires at 9, not 8");
        state.fire(9, &mut fired).unwrap();
        assert_eq!(sums(&fired), vec![(0, 10, 3)]);
        state.fire(i64::MAX, &mut fired).unwrap();
        assert_eq!(sums(&fired), vec![(0, 10, 3), (10, 20, 5)]);
        assert_eq!(state.slices(), 0, "fired state is freed");
    }

    #[test]
    fn hop_merges_slices_into_every_window() {
        // size 4, slide 2: slices of 2. Values at slice 0 -> 1, slice 2 -> 10, slice 4 -> 100.
        let set = set();
        let mut state = SliceState::new(WindowSpec::hop(2, 4, 0).unwrap(), Arc::clone(&set), None);
        add(&mut state, &set, 0, vec![1]);
        add(&mut state, &set, 2, vec![10]);
        add(&mut state, &set, 4, vec![100]);
        let mut fired = vec![];
        state.fire(i64::MAX, &mut fired).unwrap();
        assert_eq!(
            sums(&fired),
            vec![(-2, 2, 1), (0, 4, 11), (2, 6, 110), (4, 8, 100)]
        );
        assert_eq!(state.slices(), 0);
    }

    #[test]
    fn hop_fires_incrementally_and_frees_slices() {
        let set = set();
        let mut state = SliceState::new(WindowSpec::hop(2, 4, 0).unwrap(), Arc::clone(&set), None);
        add(&mut state, &set, 0, vec![1]);
        add(&mut state, &set, 2, vec![10]);
        let mut fired = vec![];
        state.fire(3, &mut fired).unwrap();
        assert_eq!(sums(&fired), vec![(-2, 2, 1), (0, 4, 11)]);
        // slice 0 is in no future window any more
        assert_eq!(state.slices(), 1);
        add(&mut state, &set, 4, vec![100]);
        fired.clear();
        state.fire(i64::MAX, &mut fired).unwrap();
        assert_eq!(sums(&fired), vec![(2, 6, 110), (4, 8, 100)]);
    }
}
