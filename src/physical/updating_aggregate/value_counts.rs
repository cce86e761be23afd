//! `ValueCounts`: an accumulator that takes back any of its rows, in any order, for aggregates
//! whose own accumulator cannot (MIN, MAX, every DISTINCT aggregate, MEDIAN, STRING_AGG, ...).
//! It keeps how often each argument value came, as Flink's `MinWithRetractAggFunction` keeps a
//! map of value to count, and answers from that multiset:
//!
//! - MIN and MAX read its smallest or largest value (the multiset is ordered by the arrow row
//!   format, which sorts as the values do);
//! - COUNT(DISTINCT x) is its number of values;
//! - any other aggregate is computed afresh by the function's own accumulator over the values,
//!   each once for a DISTINCT aggregate and as often as it came otherwise.
//!
//! Its state is the multiset: one list per argument and a list of counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt64Type};
use datafusion::arrow::row::{RowConverter, RowParser, SortField};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

/// How an aggregate over a changelog takes rows back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retraction {
    /// Its own accumulator retracts exactly, in any order (COUNT, SUM, AVG).
    Native,
    /// Through [`ValueCounts`].
    Counted,
    /// It depends on the order of its rows (an ORDER BY inside, FIRST_VALUE, LAST_VALUE,
    /// NTH_VALUE), which a changelog does not keep.
    Impossible,
}

impl Retraction {
    /// How aggregate function `name` (with or without DISTINCT, with or without an ORDER BY
    /// inside) retracts.
    pub fn of(name: &str, distinct: bool, ordered: bool) -> Self {
        let name = name.to_ascii_lowercase();
        if ordered || matches!(name.as_str(), "first_value" | "last_value" | "nth_value") {
            Self::Impossible
        } else if !distinct && matches!(name.as_str(), "count" | "sum" | "avg" | "mean") {
            Self::Native
        } else {
            Self::Counted
        }
    }
}

/// How [`ValueCounts`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Min,
    Max,
    CountDistinct,
    /// The function's accumulator over the values, each `once` or as often as it came.
    Recompute {
        once: bool,
    },
}

/// See the module docs.
pub struct ValueCounts {
    aggregate: Arc<AggregateFunctionExpr>,
    answer: Answer,
    /// Rows with a null argument are left out (the answer ignores them).
    skip_nulls: bool,
    converter: RowConverter,
    parser: RowParser,
    /// Number of arguments.
    arguments: usize,
    /// How often each argument tuple came, by its row-format bytes.
    counts: BTreeMap<Box<[u8]>, i64>,
    /// Bytes of the keys held.
    bytes: usize,
}

/// Bookkeeping bytes per value held, besides its key.
const ENTRY_BYTES: usize = 48;

impl ValueCounts {
    /// An empty multiset for `aggregate`, whose arguments have `argument_types`.
    pub fn try_new(
        aggregate: Arc<AggregateFunctionExpr>,
        argument_types: &[DataType],
    ) -> Result<Self> {
        let name = aggregate.fun().name().to_ascii_lowercase();
        let single = argument_types.len() == 1;
        let answer = match name.as_str() {
            "min" if single => Answer::Min,
            "max" if single => Answer::Max,
            "count" if single && aggregate.is_distinct() => Answer::CountDistinct,
            // Feeding a value again changes none of these.
            "min" | "max" | "bool_and" | "bool_or" | "bit_and" | "bit_or" => {
                Answer::Recompute { once: true }
            }
            _ => Answer::Recompute {
                once: aggregate.is_distinct(),
            },
        };
        let converter =
            RowConverter::new(argument_types.iter().cloned().map(SortField::new).collect())?;
        Ok(Self {
            aggregate,
            skip_nulls: !matches!(answer, Answer::Recompute { .. }),
            answer,
            parser: converter.parser(),
            converter,
            arguments: argument_types.len(),
            counts: BTreeMap::new(),
            bytes: 0,
        })
    }

    /// Adds `by` to the count of each row of `values` (arguments as columns).
    fn add(&mut self, values: &[ArrayRef], by: impl Fn(usize) -> i64) -> Result<()> {
        let Some(first) = values.first() else {
            return Ok(());
        };
        let rows = self.converter.convert_columns(values)?;
        for i in 0..first.len() {
            if self.skip_nulls && values.iter().any(|v| v.is_null(i)) {
                continue;
            }
            let key = rows.row(i);
            let key = key.data();
            let change = by(i);
            let count = match self.counts.get_mut(key) {
                Some(count) => {
                    *count += change;
                    *count
                }
                // Taking back a value never added: the group table counts such rows.
                None if change <= 0 => continue,
                None => {
                    self.counts.insert(key.into(), change);
                    self.bytes += key.len() + ENTRY_BYTES;
                    change
                }
            };
            if count <= 0 {
                self.counts.remove(key);
                self.bytes -= (key.len() + ENTRY_BYTES).min(self.bytes);
            }
        }
        Ok(())
    }

    /// The arguments of the values held, each `once` or as often as it came.
    fn values(&self, once: bool) -> Result<Vec<ArrayRef>> {
        let distinct = self
            .converter
            .convert_rows(self.counts.keys().map(|k| self.parser.parse(k)))?;
        if once || self.counts.values().all(|&c| c == 1) {
            return Ok(distinct);
        }
        let repeated: Vec<u32> = self
            .counts
            .values()
            .enumerate()
            .flat_map(|(i, &c)| std::iter::repeat_n(i as u32, usize::try_from(c).unwrap_or(0)))
            .collect();
        let indices = UInt32Array::from(repeated);
        Ok(distinct
            .iter()
            .map(|a| take(a, &indices, None))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The value of one key, as the aggregate's output.
    fn decode(&self, key: &[u8]) -> Result<ScalarValue> {
        let columns = self.converter.convert_rows([self.parser.parse(key)])?;
        ScalarValue::try_from_array(&columns[0], 0)
    }

    /// The answer over no value: NULL of the output type.
    fn null(&self) -> Result<ScalarValue> {
        ScalarValue::try_from(self.aggregate.field().data_type())
    }
}

impl std::fmt::Debug for ValueCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueCounts")
            .field("aggregate", &self.aggregate.name())
            .field("answer", &self.answer)
            .field("values", &self.counts.len())
            .finish()
    }
}

impl Accumulator for ValueCounts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, |_| 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, |_| -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.answer {
            Answer::Min => match self.counts.keys().next() {
                Some(key) => self.decode(key),
                None => self.null(),
            },
            Answer::Max => match self.counts.keys().next_back() {
                Some(key) => self.decode(key),
                None => self.null(),
            },
            Answer::CountDistinct => Ok(ScalarValue::Int64(Some(self.counts.len() as i64))),
            Answer::Recompute { once } => {
                let mut accumulator = self.aggregate.create_accumulator()?;
                if !self.counts.is_empty() {
                    accumulator.update_batch(&self.values(once)?)?;
                }
                accumulator.evaluate()
            }
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.bytes + self.converter.size()
    }

    /// One list per argument (the distinct values) and the list of their counts.
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state: Vec<ScalarValue> = self
            .values(true)?
            .into_iter()
            .map(|values| SingleRowListArrayBuilder::new(values).build_list_scalar())
            .collect();
        let counts: ArrayRef =
            Arc::new(Int64Array::from_iter_values(self.counts.values().copied()));
        state.push(SingleRowListArrayBuilder::new(counts).build_list_scalar());
        Ok(state)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some((counts, lists)) = states.split_last() else {
            return internal_err!("a value-count state without its counts");
        };
        if lists.len() != self.arguments {
            return internal_err!(
                "a value-count state of {} arguments for an aggregate of {}",
                lists.len(),
                self.arguments
            );
        }
        let counts = counts.as_list_opt::<i32>();
        let lists: Option<Vec<_>> = lists.iter().map(|l| l.as_list_opt::<i32>()).collect();
        let (Some(counts), Some(lists)) = (counts, lists) else {
            return internal_err!("a value-count state that is not lists");
        };
        for row in 0..counts.len() {
            let row_counts = counts.value(row);
            let Some(row_counts) = row_counts.as_primitive_opt::<Int64Type>() else {
                return internal_err!("a value-count state whose counts are not integers");
            };
            let values: Vec<ArrayRef> = lists.iter().map(|l| l.value(row)).collect();
            if values.iter().any(|v| v.len() != row_counts.len()) {
                return internal_err!("a value-count state whose lists differ in length");
            }
            self.add(&values, |i| row_counts.value(i))?;
        }
        Ok(())
    }
}

/// One of DataFusion's retracting accumulators (COUNT, SUM, AVG), guarded against taking back
/// values it never got (a changelog source's inconsistent before-image): it counts the non-null
/// values it holds and ignores a retraction of more, which DataFusion's accumulators would
/// underflow on (or panic, as AVG with no sum does).
#[derive(Debug)]
pub struct Guarded {
    inner: Box<dyn Accumulator>,
    /// Non-null values held.
    held: u64,
}

impl Guarded {
    /// Guards `inner`.
    pub fn new(inner: Box<dyn Accumulator>) -> Self {
        Self { inner, held: 0 }
    }
}

/// Rows of `values` (arguments as columns) with no NULL argument.
fn non_null(values: &[ArrayRef]) -> u64 {
    let Some(first) = values.first() else {
        return 0;
    };
    if values.iter().all(|v| v.null_count() == 0) {
        return first.len() as u64;
    }
    (0..first.len())
        .filter(|&i| values.iter().all(|v| !v.is_null(i)))
        .count() as u64
}

impl Accumulator for Guarded {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.held += non_null(values);
        self.inner.update_batch(values)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let taken = non_null(values);
        if taken > self.held {
            return Ok(());
        }
        self.held -= taken;
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        self.inner.size() + size_of::<u64>()
    }

    /// The inner state, then the number of non-null values held.
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state = self.inner.state()?;
        state.push(ScalarValue::UInt64(Some(self.held)));
        Ok(state)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some((held, inner)) = states.split_last() else {
            return internal_err!("a guarded accumulator's state without its count");
        };
        let Some(held) = held.as_primitive_opt::<UInt64Type>() else {
            return internal_err!("a guarded accumulator's count is not an integer");
        };
        self.held += held.iter().flatten().sum::<u64>();
        self.inner.merge_batch(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    fn counts(function: Arc<AggregateUDF>, distinct: bool, data_type: DataType) -> ValueCounts {
        let schema = Arc::new(Schema::new(vec![Field::new("v", data_type.clone(), true)]));
        let aggregate = AggregateExprBuilder::new(function, vec![col("v", &schema).unwrap()])
            .schema(schema)
            .alias("a")
            .with_distinct(distinct)
            .build()
            .unwrap();
        ValueCounts::try_new(Arc::new(aggregate), &[data_type]).unwrap()
    }

    fn ints(values: &[Option<i64>]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    #[test]
    fn min_and_max_take_back_any_value() {
        let mut min = counts(min_udaf(), false, DataType::Int64);
        let mut max = counts(max_udaf(), false, DataType::Int64);
        for a in [&mut min, &mut max] {
            a.update_batch(&ints(&[Some(5), Some(-3), None, Some(9), Some(-3)]))
                .unwrap();
        }
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(Some(-3)));
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(9)));
        // One -3 of two taken back: still the minimum. The maximum taken back first.
        min.retract_batch(&ints(&[Some(-3)])).unwrap();
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(Some(-3)));
        max.retract_batch(&ints(&[Some(9)])).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        min.retract_batch(&ints(&[Some(-3), Some(5)])).unwrap();
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(Some(9)));
        min.retract_batch(&ints(&[Some(9)])).unwrap();
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(None));
    }

    #[test]
    fn distinct_aggregates_count_each_value_while_any_copy_stands() {
        let mut count = counts(count_udaf(), true, DataType::Utf8);
        let strings =
            |v: &[&str]| -> Vec<ArrayRef> { vec![Arc::new(StringArray::from(v.to_vec()))] };
        count.update_batch(&strings(&["a", "b", "a"])).unwrap();
        assert_eq!(count.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        count.retract_batch(&strings(&["a"])).unwrap();
        assert_eq!(count.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        count.retract_batch(&strings(&["a"])).unwrap();
        assert_eq!(count.evaluate().unwrap(), ScalarValue::Int64(Some(1)));

        let mut sum = counts(sum_udaf(), true, DataType::Int64);
        sum.update_batch(&ints(&[Some(2), Some(2), Some(3)]))
            .unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        sum.retract_batch(&ints(&[Some(3)])).unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        sum.retract_batch(&ints(&[Some(2), Some(2)])).unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(None));
    }

    #[test]
    fn the_state_restores_the_multiset() {
        let mut max = counts(max_udaf(), false, DataType::Int64);
        max.update_batch(&ints(&[Some(1), Some(7), Some(7)]))
            .unwrap();
        let state = max.state().unwrap();
        let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().unwrap()).collect();
        let mut restored = counts(max_udaf(), false, DataType::Int64);
        restored.merge_batch(&arrays).unwrap();
        // Both copies of 7 came back: one retraction leaves 7 the maximum.
        restored.retract_batch(&ints(&[Some(7)])).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::Int64(Some(7)));
        restored.retract_batch(&ints(&[Some(7)])).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::Int64(Some(1)));
        // A state of another shape is refused.
        assert!(restored.merge_batch(&arrays[..1]).is_err());
    }

    #[test]
    fn a_guarded_average_ignores_values_it_never_got() {
        use datafusion::arrow::array::Float64Array;
        use datafusion::functions_aggregate::average::avg_udaf;
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)]));
        let avg = AggregateExprBuilder::new(avg_udaf(), vec![col("v", &schema).unwrap()])
            .schema(schema)
            .alias("a")
            .build()
            .unwrap();
        let mut guarded = Guarded::new(avg.create_sliding_accumulator().unwrap());
        // Only a NULL held: taking back 5 would underflow DataFusion's count and unwrap its
        // missing sum.
        let floats =
            |v: &[Option<f64>]| -> Vec<ArrayRef> { vec![Arc::new(Float64Array::from(v.to_vec()))] };
        guarded.update_batch(&floats(&[None])).unwrap();
        guarded.retract_batch(&floats(&[Some(5.0)])).unwrap();
        assert_eq!(guarded.evaluate().unwrap(), ScalarValue::Float64(None));
        guarded
            .update_batch(&floats(&[Some(4.0), Some(8.0)]))
            .unwrap();
        guarded.retract_batch(&floats(&[Some(4.0)])).unwrap();
        assert_eq!(guarded.evaluate().unwrap(), ScalarValue::Float64(Some(8.0)));
        // Its state restores the count too.
        let state = guarded.state().unwrap();
        let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().unwrap()).collect();
        let mut restored = Guarded::new(avg.create_sliding_accumulator().unwrap());
        restored.merge_batch(&arrays).unwrap();
        restored
            .retract_batch(&floats(&[Some(8.0), Some(9.0)]))
            .unwrap();
        assert_eq!(
            restored.evaluate().unwrap(),
            ScalarValue::Float64(Some(8.0))
        );
    }

    #[test]
    fn order_dependent_aggregates_cannot_retract() {
        assert_eq!(Retraction::of("count", false, false), Retraction::Native);
        assert_eq!(Retraction::of("SUM", false, false), Retraction::Native);
        assert_eq!(Retraction::of("count", true, false), Retraction::Counted);
        assert_eq!(Retraction::of("max", false, false), Retraction::Counted);
        assert_eq!(Retraction::of("median", false, false), Retraction::Counted);
        assert_eq!(
            Retraction::of("array_agg", false, true),
            Retraction::Impossible
        );
        assert_eq!(
            Retraction::of("first_value", false, false),
            Retraction::Impossible
        );
    }
}
