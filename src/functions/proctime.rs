//! Flink's `PROCTIME()`: a processing-time attribute, as a computed column
//! (`p AS PROCTIME()`) or in a query (`SELECT *, PROCTIME() AS p FROM t`).
//!
//! Its value is the machine's clock when the row is computed, a `TIMESTAMP_LTZ(3)`, and its
//! field carries the metadata [`PROCTIME_KEY`], which follows the column through projections,
//! aliases and views. A TUMBLE or HOP window over such a column is a processing-time window
//! (Flink's semantics): a row belongs to the window holding the clock when it reaches the
//! window operator, and a window fires when the clock passes its end, whatever the input's
//! watermark (see `WindowAggregateStream`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The field metadata key marking a processing-time attribute.
pub const PROCTIME_KEY: &str = "sabot.proctime";

/// See the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProcTime {
    signature: Signature,
}

/// `PROCTIME()`.
pub fn proctime() -> ScalarUDF {
    ScalarUDF::new_from_impl(ProcTime {
        signature: Signature::nullary(Volatility::Volatile),
    })
}

/// The machine's clock in milliseconds since the epoch (what `PROCTIME()` reads).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The type of `PROCTIME()`: Flink's `TIMESTAMP_LTZ(3)`.
fn data_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// `field` marked as a processing-time attribute.
pub fn mark(field: Field) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(PROCTIME_KEY.to_string(), "true".to_string());
    field.with_metadata(metadata)
}

/// True if `field` is a processing-time attribute.
pub fn is_proctime_field(field: &Field) -> bool {
    field.metadata().contains_key(PROCTIME_KEY)
}

/// True if `expr` is a call of `PROCTIME()` (a computed column declared as one).
pub fn is_proctime_call(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarFunction(f) => f.func.name().eq_ignore_ascii_case("proctime"),
        Expr::Alias(a) => is_proctime_call(&a.expr),
        _ => false,
    }
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(data_type())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(mark(Field::new(self.name(), data_type(), false))))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(
            Some(now_ms()),
            Some("UTC".into()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// The column is the clock, typed `TIMESTAMP_LTZ(3)`, and marked through an alias.
    #[tokio::test]
    async fn proctime_is_the_clock_and_marks_its_column() {
        let ctx = SessionContext::new();
        ctx.register_udf(proctime());
        let before = now_ms();
        let df = ctx
            .sql("SELECT p FROM (SELECT PROCTIME() AS p, 1 AS x)")
            .await
            .unwrap();
        let field = df.schema().field(0).clone();
        assert!(is_proctime_field(&field), "{field:?}");
        assert_eq!(field.data_type(), &data_type());
        let batches = df.collect().await.unwrap();
        let after = now_ms();
        let value = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::TimestampMillisecondArray>()
            .unwrap()
            .value(0);
        assert!(
            (before..=after).contains(&value),
            "{before} <= {value} <= {after}"
        );
    }
}
