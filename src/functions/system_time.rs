//! The marker of a temporal join: `JOIN versioned FOR SYSTEM_TIME AS OF o.ts AS r ON ...`.
//!
//! DataFusion's SQL planner has no temporal join, so the statement rewriter
//! ([`crate::planner::temporal_syntax`]) adds `__sabot_system_time_as_of(o.ts, r.c, ...)` to
//! the join's ON condition: the probe side's time column, and the timestamp columns of the
//! versioned table (so the marker refers to both sides and no optimizer rule pushes it into
//! one input). The
//! streaming planner finds it in the join's filter, takes it out, and plans a
//! [`TemporalJoinExec`](crate::physical::joins::TemporalJoinExec), or the broadcast (lookup) join
//! when the versioned side is a bounded table. Evaluated anywhere else (a join of two batch
//! tables), it fails with an error that says why.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;

/// The marker's name.
pub const SYSTEM_TIME_AS_OF: &str = "__sabot_system_time_as_of";

/// See the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SystemTimeAsOf {
    signature: Signature,
}

/// `__sabot_system_time_as_of(probe_time, versioned_column, ...)`.
pub fn system_time_as_of() -> ScalarUDF {
    ScalarUDF::new_from_impl(SystemTimeAsOf {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

/// True if `expr` is a call of the marker.
pub fn is_marker(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<ScalarFunctionExpr>()
        .is_some_and(|f| f.name() == SYSTEM_TIME_AS_OF)
}

impl ScalarUDFImpl for SystemTimeAsOf {
    fn name(&self) -> &str {
        SYSTEM_TIME_AS_OF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "FOR SYSTEM_TIME AS OF joins a stream with a versioned table (a changelog or a table \
             with a WATERMARK) as the stream's rows pass the watermark, or a stream with a \
             bounded table as a lookup join; a join of two bounded tables has no stream to \
             drive it. Read one side from a streaming source, or join without FOR SYSTEM_TIME \
             AS OF"
        )
    }
}
