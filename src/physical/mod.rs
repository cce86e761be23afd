//! Streaming physical operators.
//!
//! Each operator is a DataFusion `ExecutionPlan` plus a [`StreamingExec`] face that speaks the
//! in-band protocol of [`message`]: data, watermarks, idleness and barriers in one ordered stream
//! per partition. The data face (`execute`) yields plain record batches.
//!
//! | operator | file | state |
//! |---|---|---|
//! | `StreamSourceExec` | [`source`] | per-split watermarks |
//! | `StreamFilterExec` | [`filter`] | none |
//! | `StreamProjectionExec` | [`projection`] | none |
//! | `StreamExchangeExec` | [`exchange`] | per-input watermarks, barrier alignment |
//! | `StreamUnionExec` | [`union`] | none |
//! | `WindowAssignExec` | [`window_assign`] | none |
//! | `WindowAggregateExec` | [`window_aggregate`] | slices / session rows per key |
//! | `BroadcastJoinExec` | [`broadcast_join`] | none (the table is reloaded) |
//! | `WindowJoinExec` | [`joins`] | rows of open windows, both sides |
//! | `IntervalJoinExec` | [`joins`] | rows within the time bound, both sides |
//! | `RegularJoinExec` | [`joins`] | every row not taken back, both sides |
//! | `UpdatingAggregateExec` | [`updating_aggregate`] | accumulators per group key |
//! | `TopNExec` | [`top_n`] | the first rows per partition key (every row over a changelog) |
//! | `StreamSinkExec` | [`sink`] | the sink writers' open files |
//!
//! The stateful operators (window aggregation, the joins) implement
//! [`operator::Operator`] and are run by one [`operator::Driver`]: the message loop, barrier
//! alignment, watermarks, late rows, metrics and state memory are written once, there.
//!
//! Rows of an updating query (a GROUP BY without a window) carry what they do to the result,
//! insert, update or delete ([`crate::changelog`]); every node says whether its output only appends.
//!
//! Shared pieces: [`window_spec`] (window arithmetic), [`watermark_tracker`] (min over inputs),
//! [`aggregation`] (DataFusion group tables), [`event_time`] (timestamps as milliseconds),
//! [`state_memory`] (state reserved in the session's memory pool), [`job_context`] (what the
//! operators of one job share: its checkpointing, metrics and operator ids).

pub mod aggregation;
pub mod broadcast_join;
pub mod dml;
pub mod event_time;
pub mod exchange;
pub mod filter;
pub mod job_context;
pub mod joins;
pub mod message;
pub mod operator;
pub mod over_aggregate;
pub mod projection;
pub mod sink;
pub mod source;
pub mod state_memory;
pub mod streaming;
pub mod top_n;
pub mod union;
pub mod updating_aggregate;
pub mod watermark_tracker;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_spec;

use datafusion::physical_plan::ExecutionPlan;

pub use streaming::StreamingExec;

/// The streaming face of a plan node, if it is one of ours.
pub(crate) fn downcast_streaming(plan: &dyn ExecutionPlan) -> Option<&dyn StreamingExec> {
    macro_rules! try_as {
        ($($t:ty),* $(,)?) => {
            $(
                if let Some(p) = plan.downcast_ref::<$t>() {
                    return Some(p);
                }
            )*
        };
    }
    try_as!(
        source::StreamSourceExec,
        filter::StreamFilterExec,
        projection::StreamProjectionExec,
        exchange::StreamExchangeExec,
        window_assign::WindowAssignExec,
        window_aggregate::WindowAggregateExec,
        broadcast_join::BroadcastJoinExec,
        joins::WindowJoinExec,
        joins::IntervalJoinExec,
        joins::RegularJoinExec,
        joins::TemporalJoinExec,
        union::StreamUnionExec,
        top_n::TopNExec,
        over_aggregate::OverAggregateExec,
        updating_aggregate::UpdatingAggregateExec,
    );
    None
}
