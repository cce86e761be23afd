//! SQL functions Sabot adds to DataFusion's, or replaces where PostgreSQL and Flink users
//! expect other behaviour.
//!
//! - [`to_char`]: `to_char` with PostgreSQL's templates, `DATE_FORMAT` with Java's (Flink);
//!   chrono `%` patterns still work as in DataFusion.
//! - [`proctime`]: Flink's `PROCTIME()`, a processing-time attribute.
//! - [`system_time`]: the marker of a temporal join (`FOR SYSTEM_TIME AS OF`).
//! - [`template`]: the two template languages, compiled into one formatter.

pub mod proctime;
pub mod system_time;
pub mod template;
pub mod to_char;

use datafusion::prelude::SessionContext;

/// Registers Sabot's functions in `ctx`, replacing DataFusion's of the same name.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(to_char::to_char());
    ctx.register_udf(to_char::date_format());
    ctx.register_udf(proctime::proctime());
    ctx.register_udf(system_time::system_time_as_of());
}
