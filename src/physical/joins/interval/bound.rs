//! The time bound of an interval join, read from the join filter.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{JoinSide, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_plan::joins::utils::JoinFilter;

use crate::physical::message::{END_OF_TIME, NO_WATERMARK};

/// The time bound of an interval join: `l.ts - r.ts` within `[lower, upper]` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// Time column of the left and of the right input.
    pub columns: [usize; 2],
    /// Smallest `l.ts - r.ts` that can match.
    pub lower: i64,
    /// Largest `l.ts - r.ts` that can match.
    pub upper: i64,
}

impl TimeBound {
    /// Reads the bound from a join filter, if its conjuncts bound `l.ts - r.ts` on both ends
    /// with timestamp columns and constant intervals.
    pub fn of_filter(filter: &JoinFilter) -> Option<Self> {
        let mut columns: Option<[usize; 2]> = None;
        let (mut lower, mut upper) = (None::<i64>, None::<i64>);
        for conjunct in split_conjunction(filter.expression()) {
            let Some(b) = conjunct.downcast_ref::<BinaryExpr>() else {
                continue;
            };
            let (Some(a), Some(c)) = (term(b.left()), term(b.right())) else {
                continue;
            };
            let side = |t: (usize, i64)| {
                let index = filter.column_indices().get(t.0)?;
                let is_time = matches!(
                    filter.schema().field(t.0).data_type(),
                    DataType::Timestamp(_, _)
                );
                is_time.then_some((index.side, index.index, t.1))
            };
            let (Some(a), Some(c)) = (side(a), side(c)) else {
                continue;
            };
            // Normalize to `l.ts + x <op> r.ts + y`, i.e. `l.ts - r.ts <op> y - x`.
            let (l, r, op) = match (a.0, c.0) {
                (JoinSide::Left, JoinSide::Right) => (a, c, *b.op()),
                (JoinSide::Right, JoinSide::Left) => match b.op().swap() {
                    Some(op) => (c, a, op),
                    None => continue,
                },
                _ => continue,
            };
            let pair = [l.1, r.1];
            if *columns.get_or_insert(pair) != pair {
                continue;
            }
            let bound = r.2.checked_sub(l.2)?;
            match op {
                Operator::Gt | Operator::GtEq => {
                    lower = Some(lower.map_or(bound, |v| v.max(bound)));
                }
                Operator::Lt | Operator::LtEq => {
                    upper = Some(upper.map_or(bound, |v| v.min(bound)));
                }
                _ => {}
            }
        }
        Some(Self {
            columns: columns?,
            lower: lower?,
            upper: upper?,
        })
    }

    /// Rows of the left buffer at or below this time can meet no future right row.
    pub(super) fn left_threshold(&self, right_watermark: i64) -> i64 {
        threshold(right_watermark, self.lower)
    }

    /// Rows of the right buffer at or below this time can meet no future left row.
    pub(super) fn right_threshold(&self, left_watermark: i64) -> i64 {
        threshold(left_watermark, self.upper.saturating_neg())
    }

    /// The output watermark for the sides' watermarks (see the module docs).
    pub(super) fn output_watermark(&self, [l, r]: [i64; 2]) -> i64 {
        if l == END_OF_TIME && r == END_OF_TIME {
            return END_OF_TIME;
        }
        if l == NO_WATERMARK || r == NO_WATERMARK {
            return NO_WATERMARK;
        }
        l.min(r)
            .min(l.saturating_sub(self.upper))
            .min(r.saturating_add(self.lower))
    }
}

fn threshold(watermark: i64, offset: i64) -> i64 {
    match watermark {
        NO_WATERMARK => i64::MIN,
        END_OF_TIME => i64::MAX,
        w => w.saturating_add(offset),
    }
}

/// `column +/- interval ...` as (column, offset in ms).
fn term(expr: &Arc<dyn PhysicalExpr>) -> Option<(usize, i64)> {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Some((c.index(), 0));
    }
    if let Some(c) = expr.downcast_ref::<CastExpr>()
        && matches!(c.cast_type(), DataType::Timestamp(_, _))
    {
        return term(c.expr());
    }
    let b = expr.downcast_ref::<BinaryExpr>()?;
    let literal = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .and_then(|l| interval_ms(l.value()))
    };
    match b.op() {
        Operator::Plus => match (term(b.left()), literal(b.right())) {
            (Some((c, x)), Some(ms)) => Some((c, x.checked_add(ms)?)),
            _ => {
                let (c, x) = term(b.right())?;
                Some((c, x.checked_add(literal(b.left())?)?))
            }
        },
        Operator::Minus => {
            let (c, x) = term(b.left())?;
            Some((c, x.checked_sub(literal(b.right())?)?))
        }
        _ => None,
    }
}

/// A constant interval or duration in milliseconds (months have no fixed length: `None`).
fn interval_ms(value: &ScalarValue) -> Option<i64> {
    const DAY: i64 = 86_400_000;
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * DAY + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => Some(v.days as i64 * DAY + v.milliseconds as i64),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v / 1000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v / 1_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physical::message::{END_OF_TIME, NO_WATERMARK};

    #[test]
    fn thresholds_and_output_watermark() {
        // l.ts BETWEEN r.ts - 10 AND r.ts + 2.
        let bound = TimeBound {
            columns: [0, 0],
            lower: -10,
            upper: 2,
        };
        // A left row at 100 can meet right rows in [98, 110]; with the right watermark at 110
        // none can come any more.
        assert_eq!(bound.left_threshold(110), 100);
        // A right row at 100 can meet left rows in [90, 102].
        assert_eq!(bound.right_threshold(102), 100);
        assert_eq!(bound.output_watermark([100, 100]), 90);
        assert_eq!(bound.output_watermark([50, 100]), 48);
        assert_eq!(bound.output_watermark([NO_WATERMARK, 100]), NO_WATERMARK);
        assert_eq!(
            bound.output_watermark([END_OF_TIME, END_OF_TIME]),
            END_OF_TIME
        );
        assert_eq!(bound.left_threshold(NO_WATERMARK), i64::MIN);
        assert_eq!(bound.left_threshold(END_OF_TIME), i64::MAX);
    }

    #[test]
    fn interval_literals() {
        use datafusion::arrow::datatypes::IntervalMonthDayNano;
        assert_eq!(
            interval_ms(&ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(0, 1, 5_000_000)
            ))),
            Some(86_400_005)
        );
        assert_eq!(
            interval_ms(&ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(1, 0, 0)
            ))),
            None
        );
        assert_eq!(
            interval_ms(&ScalarValue::DurationSecond(Some(3))),
            Some(3000)
        );
    }
}
