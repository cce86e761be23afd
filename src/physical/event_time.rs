//! Event time as milliseconds: the one representation windows and watermarks compute with.
//!
//! Time columns may be timestamps of any unit and time zone; they are floored to milliseconds
//! since the epoch (the precision of Flink's `TIMESTAMP(3)`), keeping nulls.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{
    DataType, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::exec_err;
use datafusion::error::Result;

/// Converts a timestamp (or Int64 milliseconds) array to milliseconds since the epoch.
pub fn to_millis(array: &ArrayRef) -> Result<Int64Array> {
    Ok(match array.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .reinterpret_cast::<Int64Type>(),
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .unary(|v| v.saturating_mul(1000)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .unary(|v| v.div_euclid(1000)),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|v| v.div_euclid(1_000_000)),
        DataType::Int64 => array.as_primitive::<Int64Type>().clone(),
        other => {
            return exec_err!("event time must be a TIMESTAMP, got {other}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{TimestampMicrosecondArray, TimestampSecondArray};
    use std::sync::Arc;

    #[test]
    fn units_are_floored_to_millis() {
        let micros: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_500),
            Some(-1),
            None,
        ]));
        let ms = to_millis(&micros).unwrap();
        assert_eq!(ms.value(0), 1);
        assert_eq!(ms.value(1), -1, "floored, not truncated toward zero");
        assert!(ms.is_null(2));
        let secs: ArrayRef = Arc::new(TimestampSecondArray::from(vec![2]));
        assert_eq!(to_millis(&secs).unwrap().value(0), 2000);
    }
}
