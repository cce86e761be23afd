//! Accumulators of the common aggregates over an append-only input, updated row by row from
//! the batch's own arrays: `COUNT(x)` (and `COUNT(*)`), `COUNT(DISTINCT x)` of a `BIGINT`,
//! `MIN`/`MAX` of a `BIGINT` or a `VARCHAR`, each with or without `FILTER`.
//!
//! An updating aggregate touches many groups per batch with a row or two each (Nexmark q16:
//! 10,000 channels, eight `COUNT(DISTINCT ...) FILTER`s). DataFusion's row accumulators take
//! each group's rows as sliced arrays, so every group and aggregate cost a gather, slices and
//! a dynamic call; these read the rows where they are. Their state values are those of
//! DataFusion's accumulators (`CountAccumulator`, `PrimitiveDistinctCountAccumulator`,
//! `MaxAccumulator`/`MinAccumulator`), so that checkpoints and RocksDB hold the same rows
//! whichever kind wrote them, and their values are DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{as_int64_array, as_list_array, as_string_array};
use datafusion::common::hash_utils::RandomState;
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{HashSet, Result, ScalarValue};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

/// Which fast accumulator an aggregate has, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastKind {
    Count,
    DistinctCount,
    Min,
    Max,
}

impl FastKind {
    /// The fast accumulator of `aggregate` over `argument_types`, when there is one.
    pub fn of(aggregate: &AggregateFunctionExpr, argument_types: &[DataType]) -> Option<Self> {
        if !aggregate.order_bys().is_empty() {
            return None;
        }
        let [argument] = argument_types else {
            return None;
        };
        let output = aggregate.field();
        let kind = match (aggregate.fun().name(), aggregate.is_distinct()) {
            ("count", false) => Self::Count,
            ("count", true) if *argument == DataType::Int64 => Self::DistinctCount,
            ("min", false) | ("min", true) => Self::Min,
            ("max", false) | ("max", true) => Self::Max,
            _ => return None,
        };
        let typed = match kind {
            Self::Count | Self::DistinctCount => output.data_type() == &DataType::Int64,
            Self::Min | Self::Max => {
                matches!(argument, DataType::Int64 | DataType::Utf8)
                    && output.data_type() == argument
            }
        };
        typed.then_some(kind)
    }

    /// An empty accumulator of this kind over `argument`.
    pub fn accumulator(self, argument: &DataType) -> Fast {
        match (self, argument) {
            (Self::Count, _) => Fast::Count(0),
            (Self::DistinctCount, _) => {
                Fast::DistinctCount(HashSet::with_hasher(RandomState::default()))
            }
            (Self::Min, DataType::Utf8) => Fast::Text(None, Order::Min),
            (Self::Max, DataType::Utf8) => Fast::Text(None, Order::Max),
            (Self::Min, _) => Fast::Integer(None, Order::Min),
            (Self::Max, _) => Fast::Integer(None, Order::Max),
        }
    }
}

/// Which end a MIN or MAX keeps.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    Min,
    Max,
}

impl Order {
    /// Whether `new` replaces `kept`.
    fn replaces<T: PartialOrd + ?Sized>(self, new: &T, kept: &T) -> bool {
        match self {
            Self::Min => new < kept,
            Self::Max => new > kept,
        }
    }
}

/// A fast accumulator (see the module docs).
#[derive(Debug)]
pub enum Fast {
    /// Non-NULL rows.
    Count(i64),
    /// The distinct non-NULL values, hashed as DataFusion's own distinct count hashes them
    /// (its fixed-seed `RandomState`: sets seeded per group made Nexmark q15 about half as
    /// fast).
    DistinctCount(HashSet<i64, RandomState>),
    /// The least or greatest non-NULL value.
    Integer(Option<i64>, Order),
    Text(Option<String>, Order),
}

/// The rows an aggregate counts: those its FILTER `mask` keeps (a NULL in it drops its row)
/// whose argument is not NULL; `None` when that is every row.
pub fn kept_rows(argument: &ArrayRef, mask: Option<&BooleanArray>) -> Option<BooleanBuffer> {
    let mut kept: Option<BooleanBuffer> = None;
    let mut and = |bits: &BooleanBuffer| {
        kept = Some(match kept.take() {
            Some(k) => &k & bits,
            None => bits.clone(),
        });
    };
    if let Some(mask) = mask {
        and(mask.values());
        if let Some(nulls) = mask.nulls() {
            and(nulls.inner());
        }
    }
    if let Some(nulls) = argument.logical_nulls() {
        and(nulls.inner());
    }
    kept
}

/// Calls `f` with each of `rows` (input rows, ascending) that `kept` keeps.
fn for_each_kept(kept: Option<&BooleanBuffer>, rows: &[(u32, bool)], mut f: impl FnMut(usize)) {
    let Some(kept) = kept else {
        rows.iter().for_each(|&(row, _)| f(row as usize));
        return;
    };
    match contiguous(rows) {
        // A run of rows (a group holding most of a batch): its kept bits, word by word.
        Some((start, len)) if len > 8 => kept
            .slice(start, len)
            .set_indices()
            .for_each(|i| f(start + i)),
        _ => rows
            .iter()
            .map(|&(row, _)| row as usize)
            .filter(|&row| kept.value(row))
            .for_each(f),
    }
}

/// `rows` as the range `start..start + len`, if they are one.
fn contiguous(rows: &[(u32, bool)]) -> Option<(usize, usize)> {
    let (first, last) = (rows.first()?.0 as usize, rows.last()?.0 as usize);
    (last + 1 - first == rows.len()).then_some((first, rows.len()))
}

impl Fast {
    /// Adds the rows `rows` (input rows, ascending) of `argument` that `kept` keeps (see
    /// [`kept_rows`]).
    pub fn update_rows(
        &mut self,
        argument: &ArrayRef,
        kept: Option<&BooleanBuffer>,
        rows: &[(u32, bool)],
    ) -> Result<()> {
        match self {
            Self::Count(n) => {
                *n += match (kept, contiguous(rows)) {
                    (None, _) => rows.len(),
                    (Some(kept), Some((start, len))) => kept.slice(start, len).count_set_bits(),
                    (Some(kept), None) => rows
                        .iter()
                        .filter(|&&(row, _)| kept.value(row as usize))
                        .count(),
                } as i64;
            }
            Self::DistinctCount(values) => {
                let argument = as_int64_array(argument)?.values();
                for_each_kept(kept, rows, |row| {
                    values.insert(argument[row]);
                });
            }
            Self::Integer(held, order) => {
                let argument = as_int64_array(argument)?.values();
                for_each_kept(kept, rows, |row| {
                    let value = argument[row];
                    if held.is_none_or(|h| order.replaces(&value, &h)) {
                        *held = Some(value);
                    }
                });
            }
            Self::Text(held, order) => {
                let argument = as_string_array(argument)?;
                let mut best: Option<&str> = None;
                for_each_kept(kept, rows, |row| {
                    let value = argument.value(row);
                    if best.is_none_or(|b| order.replaces(value, b)) {
                        best = Some(value);
                    }
                });
                if let Some(best) = best
                    && held.as_deref().is_none_or(|h| order.replaces(best, h))
                {
                    *held = Some(best.to_string());
                }
            }
        }
        Ok(())
    }

    /// Its value into `value`, reusing the string `value` holds (a group's values are
    /// evaluated after every batch that touches it).
    pub fn evaluate_into(&self, value: &mut ScalarValue) {
        match (self, &mut *value) {
            (Self::Text(Some(text), _), ScalarValue::Utf8(Some(held))) => {
                held.clear();
                held.push_str(text);
            }
            (Self::Count(n), _) => *value = ScalarValue::Int64(Some(*n)),
            (Self::DistinctCount(values), _) => {
                *value = ScalarValue::Int64(Some(values.len() as i64))
            }
            (Self::Integer(held, _), _) => *value = ScalarValue::Int64(*held),
            (Self::Text(text, _), _) => *value = ScalarValue::Utf8(text.clone()),
        }
    }

    /// Adds every row of `argument`.
    fn update_all(&mut self, argument: &ArrayRef) -> Result<()> {
        let rows: Vec<(u32, bool)> = (0..argument.len() as u32).map(|r| (r, true)).collect();
        self.update_rows(argument, kept_rows(argument, None).as_ref(), &rows)
    }
}

/// DataFusion's interface, for states (`merge_batch`) and checkpoints; a batch of input rows
/// goes through [`Fast::update_rows`].
impl Accumulator for Fast {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(argument) = values.first() else {
            return Ok(());
        };
        self.update_all(argument)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(state) = states.first() else {
            return Ok(());
        };
        match self {
            Self::Count(n) => {
                let counts = as_int64_array(state)?;
                *n += counts.iter().flatten().sum::<i64>();
                Ok(())
            }
            Self::DistinctCount(values) => {
                for list in as_list_array(state)?.iter().flatten() {
                    values.extend(as_int64_array(&list)?.iter().flatten());
                }
                Ok(())
            }
            // A MIN's or MAX's state is its value.
            Self::Integer(..) | Self::Text(..) => self.update_all(state),
        }
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(match self {
            Self::DistinctCount(values) => {
                let values: ArrayRef =
                    Arc::new(Int64Array::from_iter_values(values.iter().copied()));
                vec![SingleRowListArrayBuilder::new(values).build_list_scalar()]
            }
            _ => vec![self.evaluate()?],
        })
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self {
            Self::Count(n) => ScalarValue::Int64(Some(*n)),
            Self::DistinctCount(values) => ScalarValue::Int64(Some(values.len() as i64)),
            Self::Integer(value, _) => ScalarValue::Int64(*value),
            Self::Text(value, _) => ScalarValue::Utf8(value.clone()),
        })
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + match self {
                Self::DistinctCount(values) => values.capacity() * (size_of::<i64>() + 1),
                Self::Text(value, _) => value.as_ref().map_or(0, String::capacity),
                _ => 0,
            }
    }
}
