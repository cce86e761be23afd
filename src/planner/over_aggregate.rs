//! Aggregates `OVER (PARTITION BY ... ORDER BY ... ROWS|RANGE BETWEEN ...)` over a stream as an
//! [`OverAggregateExec`]. Over an appending stream, with Flink's rules: the `ORDER BY` is the
//! stream's event time (a column with a watermark), ascending; the frame ends at the current
//! row and starts a bounded number of rows or a bounded interval before it. Over a changelog:
//! any `ORDER BY`, and `ROWS` frames bounded on both sides, whose values must have Arrow's row
//! format (they are kept per row). A window of `ROW_NUMBER()` is left to the top-N rule; any
//! other window function over a stream is refused later.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{WindowFrame, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, SlidingAggregateWindowExpr};
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{ExecutionPlan, WindowExpr};

use super::exchanges::partition_by;
use super::top_n::{runs_as_stream, unsorted};
use crate::physical::over_aggregate::{
    ChangelogFrames, EventTimeFrames, OverAggregateExec, OverAggregation, OverOrder,
};
use crate::physical::streaming::{changelog_mode, time_attributes};

/// `node` as an OVER aggregation over a stream, if it is one (see the module docs);
/// `partitions` is the parallelism of keyed operators, `streaming` the `streaming` runtime
/// mode, `ttl` the state's time to live.
pub(super) fn over_aggregate(
    node: &Arc<dyn ExecutionPlan>,
    partitions: usize,
    streaming: bool,
    ttl: Option<Duration>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let exprs: &[Arc<dyn WindowExpr>] = if let Some(w) = node.downcast_ref::<BoundedWindowAggExec>()
    {
        w.window_expr()
    } else if let Some(w) = node.downcast_ref::<WindowAggExec>() {
        w.window_expr()
    } else {
        return Ok(None);
    };
    let aggregates = exprs.iter().all(|e| {
        e.as_any().is::<PlainAggregateWindowExpr>() || e.as_any().is::<SlidingAggregateWindowExpr>()
    });
    let Some(input) = node.children().first().map(|c| Arc::clone(c)) else {
        return Ok(None);
    };
    let input = unsorted(input)?;
    if exprs.is_empty() || !aggregates || !runs_as_stream(&input, streaming) {
        return Ok(None);
    }
    let first = &exprs[0];
    let same = |e: &Arc<dyn WindowExpr>| {
        let text = |w: &Arc<dyn WindowExpr>| {
            let parts: Vec<String> = w.partition_by().iter().map(|p| p.to_string()).collect();
            let order: Vec<String> = w.order_by().iter().map(|o| o.to_string()).collect();
            (parts, order)
        };
        text(e) == text(first)
    };
    if !exprs.iter().all(same) {
        return plan_err!(
            "OVER aggregates over a stream in one query must share PARTITION BY and ORDER BY"
        );
    }
    for expr in exprs {
        if !retracts(expr)? {
            return plan_err!(
                "{} cannot be an OVER aggregate over a stream: as rows leave the frame it \
                 would have to take them back, which it cannot",
                expr.name()
            );
        }
    }
    let order = if changelog_mode(&input).is_updating() {
        OverOrder::Changelog(changelog_frames(exprs)?)
    } else {
        OverOrder::EventTime(event_time_frames(exprs, &input)?)
    };
    let keys = first.partition_by().to_vec();
    let parallel = if keys.is_empty() { 1 } else { partitions };
    let input = partition_by(&input, keys.clone(), parallel)?;
    let def = OverAggregation {
        exprs: exprs.to_vec(),
        partition_by: keys,
        order,
        ttl,
    };
    Ok(Some(Arc::new(OverAggregateExec::try_new(
        input,
        def,
        node.schema(),
    )?)))
}

/// The order and frames of OVER aggregates over an appending stream: its event time, and
/// frames ending at the current row.
fn event_time_frames(
    exprs: &[Arc<dyn WindowExpr>],
    input: &Arc<dyn ExecutionPlan>,
) -> Result<EventTimeFrames> {
    let [order] = exprs[0].order_by() else {
        return plan_err!(
            "an OVER aggregate over a stream needs ORDER BY its event-time column (the one with \
             the WATERMARK), and only that: OVER (PARTITION BY k ORDER BY ts ...)"
        );
    };
    let times = time_attributes(input);
    let is_time = order
        .expr
        .downcast_ref::<Column>()
        .is_some_and(|c| times.contains(&c.index()));
    if !is_time || order.options.descending {
        return plan_err!(
            "an OVER aggregate over a stream must be ordered by its event-time column (the one \
             with the WATERMARK), ascending; ORDER BY {order} is not"
        );
    }
    // Rows are ordered by their time in milliseconds, as Flink's TIMESTAMP(3).
    let schema = input.schema();
    match order.expr.data_type(&schema)? {
        DataType::Timestamp(TimeUnit::Millisecond | TimeUnit::Second, _) => {}
        other => {
            return plan_err!(
                "an OVER aggregate over a stream orders rows by milliseconds: its event-time \
                 column is {other}; declare it TIMESTAMP(3)"
            );
        }
    }
    let mut keep_rows = 0usize;
    let mut keep_ms = 0i64;
    for expr in exprs {
        match reach(expr.get_window_frame())? {
            Reach::Rows(n) => keep_rows = keep_rows.max(n),
            Reach::Millis(ms) => keep_ms = keep_ms.max(ms),
        }
    }
    Ok(EventTimeFrames {
        time: Arc::clone(&order.expr),
        keep_rows,
        keep_ms,
    })
}

/// The order and frames of OVER aggregates over a changelog: any `ORDER BY`, and `ROWS`
/// frames bounded on both sides (a change then updates a bounded number of rows).
fn changelog_frames(exprs: &[Arc<dyn WindowExpr>]) -> Result<ChangelogFrames> {
    let order_by = exprs[0].order_by().to_vec();
    if order_by.is_empty() {
        return plan_err!(
            "an OVER aggregate over a changelog (an updating query's result, a debezium or \
             upsert-kafka source) needs an ORDER BY: OVER (PARTITION BY k ORDER BY x ROWS \
             BETWEEN 10 PRECEDING AND CURRENT ROW)"
        );
    }
    let (mut back, mut ahead) = (0usize, 0usize);
    for expr in exprs {
        let field = expr.field()?;
        if !RowConverter::supports_fields(&[SortField::new(field.data_type().clone())]) {
            return plan_err!(
                "{} cannot be an OVER aggregate over a changelog: its values ({}) are kept per \
                 row, and values of that type cannot be",
                expr.name(),
                field.data_type()
            );
        }
        let frame = expr.get_window_frame();
        let help = "an OVER aggregate over a changelog (an updating query's result, a debezium \
                    or upsert-kafka source) needs a ROWS frame bounded on both sides, e.g. ROWS \
                    BETWEEN 10 PRECEDING AND CURRENT ROW: each change then updates the values of \
                    a bounded number of rows";
        if frame.units != WindowFrameUnits::Rows {
            return plan_err!(
                "{help}; this one is {} BETWEEN {} AND {}",
                frame.units,
                frame.start_bound,
                frame.end_bound
            );
        }
        let (Some(start), Some(end)) = (
            rows_offset(&frame.start_bound)?,
            rows_offset(&frame.end_bound)?,
        ) else {
            return plan_err!(
                "{help}; this one is ROWS BETWEEN {} AND {}",
                frame.start_bound,
                frame.end_bound
            );
        };
        back = back.max(usize::try_from(-start.min(0)).unwrap_or(usize::MAX));
        ahead = ahead.max(usize::try_from(end.max(0)).unwrap_or(usize::MAX));
    }
    Ok(ChangelogFrames {
        order_by,
        back,
        ahead,
    })
}

/// A `ROWS` bound as an offset from the current row (negative before it); `None` if unbounded.
fn rows_offset(bound: &WindowFrameBound) -> Result<Option<i64>> {
    let (value, sign) = match bound {
        WindowFrameBound::CurrentRow => return Ok(Some(0)),
        WindowFrameBound::Preceding(v) => (v, -1),
        WindowFrameBound::Following(v) => (v, 1),
    };
    if value.is_null() {
        return Ok(None);
    }
    match value.cast_to(&DataType::Int64)? {
        ScalarValue::Int64(Some(n)) if n >= 0 => Ok(Some(sign * n)),
        _ => plan_err!("ROWS {bound} is not a number of rows"),
    }
}

/// True if the aggregate can take rows back as they leave its frame (its sliding accumulator
/// retracts).
fn retracts(expr: &Arc<dyn WindowExpr>) -> Result<bool> {
    let aggregate = if let Some(e) = expr.as_any().downcast_ref::<SlidingAggregateWindowExpr>() {
        e.get_aggregate_expr()
    } else if let Some(e) = expr.as_any().downcast_ref::<PlainAggregateWindowExpr>() {
        e.get_aggregate_expr()
    } else {
        return Ok(false);
    };
    // DataFusion refuses to make a sliding accumulator of one that cannot take rows back.
    Ok(aggregate
        .create_sliding_accumulator()
        .is_ok_and(|a| a.supports_retract_batch()))
}

/// How far back a frame reaches from its row.
enum Reach {
    Rows(usize),
    Millis(i64),
}

/// The reach of `frame`, refused unless it ends at the current row and starts a bounded
/// number of rows or a bounded interval before it.
fn reach(frame: &WindowFrame) -> Result<Reach> {
    let help = "an OVER aggregate over a stream needs a frame ending at the current row and \
                starting a bounded number of rows or time before it, e.g. ROWS BETWEEN 10 \
                PRECEDING AND CURRENT ROW or RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND \
                CURRENT ROW";
    if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
        return plan_err!("{help}; this one ends at {}", frame.end_bound);
    }
    let start = match &frame.start_bound {
        WindowFrameBound::CurrentRow => None,
        WindowFrameBound::Preceding(v) if v.is_null() => {
            return plan_err!(
                "{help}; UNBOUNDED PRECEDING would keep every row of a partition for ever (an \
                 updating GROUP BY gives running totals)"
            );
        }
        WindowFrameBound::Preceding(v) => Some(v),
        WindowFrameBound::Following(_) => {
            return plan_err!("{help}; this one starts at {}", frame.start_bound);
        }
    };
    match frame.units {
        WindowFrameUnits::Rows => {
            let n = match start {
                None => 0,
                Some(v) => match v.cast_to(&DataType::UInt64)? {
                    ScalarValue::UInt64(Some(n)) => usize::try_from(n).unwrap_or(usize::MAX),
                    _ => return plan_err!("{help}; ROWS {v} PRECEDING is not a number of rows"),
                },
            };
            Ok(Reach::Rows(n))
        }
        WindowFrameUnits::Range => match start {
            None => Ok(Reach::Millis(0)),
            Some(v) => match interval_ms(v) {
                Some(ms) => Ok(Reach::Millis(ms)),
                None => plan_err!(
                    "{help}; RANGE {v} PRECEDING is not an interval of days, hours, minutes, \
                     seconds or milliseconds"
                ),
            },
        },
        WindowFrameUnits::Groups => plan_err!("{help}; GROUPS frames are not supported"),
    }
}

/// A fixed interval in milliseconds (rounded up), if `value` is one (months have no fixed
/// length).
fn interval_ms(value: &ScalarValue) -> Option<i64> {
    let ms = match value {
        // A day is 25 hours at most (a time zone's daylight saving change).
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 90_000_000 + i64::from(v.milliseconds)
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 90_000_000 + ceil_div(v.nanoseconds, 1_000_000)
        }
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1000)?,
        ScalarValue::DurationMillisecond(Some(v)) => *v,
        ScalarValue::DurationMicrosecond(Some(v)) => ceil_div(*v, 1000),
        ScalarValue::DurationNanosecond(Some(v)) => ceil_div(*v, 1_000_000),
        _ => return None,
    };
    (ms >= 0).then_some(ms)
}

/// `a / b` rounded up, for `b > 0` (a frame kept a little longer loses nothing).
fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b > 0)
}
