//! Times and timestamps in text format as PostgreSQL prints them.
//!
//! arrow-pg writes every time and timestamp with six fractional digits
//! (`2024-01-02 03:04:05.000000`); PostgreSQL (DateStyle ISO) drops a zero fraction and the
//! trailing zeros of any other (`2024-01-02 03:04:05`, `03:04:05.5`) and prints a
//! `timestamptz` in the session's time zone with its offset (`2024-01-02 03:04:05+00`). The
//! session's time zone is always UTC. Before encoding, such text-format columns are replaced by
//! their PostgreSQL text; the row description keeps their PostgreSQL types.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::results::{FieldFormat, FieldInfo};

/// Whether a column of this type is rewritten in text format.
fn rewritten(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Time32(_) | DataType::Time64(_)
    )
}

/// `batch` with its text-format time and timestamp columns as PostgreSQL text; unchanged (and
/// not copied) when it has none.
pub fn postgres_text(batch: RecordBatch, fields: &[FieldInfo]) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let text = |i: usize| {
        fields
            .get(i)
            .is_some_and(|f| f.format() == FieldFormat::Text)
    };
    if !schema
        .fields()
        .iter()
        .enumerate()
        .any(|(i, f)| text(i) && rewritten(f.data_type()))
    {
        return Ok(batch);
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut new_fields = Vec::with_capacity(batch.num_columns());
    for (i, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if text(i) && rewritten(field.data_type()) {
            columns.push(render(column)?);
            new_fields.push(Arc::new(Field::new(
                field.name(),
                DataType::Utf8,
                field.is_nullable(),
            )));
        } else {
            columns.push(Arc::clone(column));
            new_fields.push(Arc::clone(field));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(new_fields)), columns)
}

/// Seconds and nanoseconds of a value in `unit`.
fn split(value: i64, unit: TimeUnit) -> (i64, u32) {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let seconds = value.div_euclid(per_second);
    let fraction = value.rem_euclid(per_second);
    (seconds, (fraction * (1_000_000_000 / per_second)) as u32)
}

/// `.5`, `.123456`: the fraction of a second without trailing zeros; nothing when zero.
fn push_fraction(out: &mut String, nanos: u32) {
    if nanos == 0 {
        return;
    }
    let digits = format!("{nanos:09}");
    out.push('.');
    out.push_str(digits.trim_end_matches('0'));
}

fn timestamp_text(value: i64, unit: TimeUnit, with_zone: bool) -> Option<String> {
    let (seconds, nanos) = split(value, unit);
    let t = chrono::DateTime::from_timestamp(seconds, nanos)?.naive_utc();
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    push_fraction(&mut out, nanos);
    if with_zone {
        out.push_str("+00");
    }
    Some(out)
}

fn time_text(value: i64, unit: TimeUnit) -> Option<String> {
    let (seconds, nanos) = split(value, unit);
    let seconds = u32::try_from(seconds).ok()?;
    let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)?;
    let mut out = t.format("%H:%M:%S").to_string();
    push_fraction(&mut out, nanos);
    Some(out)
}

/// The column as PostgreSQL text. A value outside chrono's range is an error, not a guess.
fn render(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let values: Box<dyn Fn(usize) -> Option<String>> = match column.data_type() {
        DataType::Timestamp(unit, zone) => {
            let unit = *unit;
            let with_zone = zone.is_some();
            let raw: Box<dyn Fn(usize) -> i64> = match unit {
                TimeUnit::Second => {
                    let a = column.as_primitive::<TimestampSecondType>().clone();
                    Box::new(move |i| a.value(i))
                }
                TimeUnit::Millisecond => {
                    let a = column.as_primitive::<TimestampMillisecondType>().clone();
                    Box::new(move |i| a.value(i))
                }
                TimeUnit::Microsecond => {
                    let a = column.as_primitive::<TimestampMicrosecondType>().clone();
                    Box::new(move |i| a.value(i))
                }
                TimeUnit::Nanosecond => {
                    let a = column.as_primitive::<TimestampNanosecondType>().clone();
                    Box::new(move |i| a.value(i))
                }
            };
            Box::new(move |i| timestamp_text(raw(i), unit, with_zone))
        }
        DataType::Time32(TimeUnit::Second) => {
            let a = column.as_primitive::<Time32SecondType>().clone();
            Box::new(move |i| time_text(a.value(i) as i64, TimeUnit::Second))
        }
        DataType::Time32(_) => {
            let a = column.as_primitive::<Time32MillisecondType>().clone();
            Box::new(move |i| time_text(a.value(i) as i64, TimeUnit::Millisecond))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let a = column.as_primitive::<Time64MicrosecondType>().clone();
            Box::new(move |i| time_text(a.value(i), TimeUnit::Microsecond))
        }
        DataType::Time64(_) => {
            let a = column.as_primitive::<Time64NanosecondType>().clone();
            Box::new(move |i| time_text(a.value(i), TimeUnit::Nanosecond))
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "no PostgreSQL text form for {other}"
            )));
        }
    };
    let mut out = StringBuilder::with_capacity(column.len(), column.len() * 24);
    for i in 0..column.len() {
        if column.is_null(i) {
            out.append_null();
            continue;
        }
        match values(i) {
            Some(text) => out.append_value(text),
            None => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "a {} value is outside the range PostgreSQL can print",
                    column.data_type()
                )));
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Time64MicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use pgwire::api::Type;

    fn text_field(name: &str, t: Type) -> FieldInfo {
        FieldInfo::new(name.into(), None, None, t, FieldFormat::Text)
    }

    #[test]
    fn timestamps_and_times_print_as_postgres_does() {
        let ts = TimestampMillisecondArray::from(vec![
            Some(1_704_164_645_000),
            Some(1_704_164_645_500),
            None,
        ]);
        let tz = TimestampNanosecondArray::from(vec![Some(-1_500_000_000), Some(0), Some(1)])
            .with_timezone("+05:00");
        let time =
            Time64MicrosecondArray::from(vec![Some(3_723_000_000), Some(3_723_000_010), Some(0)]);
        let batch = RecordBatch::try_from_iter(vec![
            ("ts", Arc::new(ts) as ArrayRef),
            ("tz", Arc::new(tz) as ArrayRef),
            ("time", Arc::new(time) as ArrayRef),
        ])
        .unwrap();
        let fields = vec![
            text_field("ts", Type::TIMESTAMP),
            text_field("tz", Type::TIMESTAMPTZ),
            text_field("time", Type::TIME),
        ];
        let out = postgres_text(batch, &fields).unwrap();
        let col = |i: usize| -> Vec<Option<String>> {
            out.column(i)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        };
        assert_eq!(
            col(0),
            vec![
                Some("2024-01-02 03:04:05".into()),
                Some("2024-01-02 03:04:05.5".into()),
                None
            ]
        );
        // An instant prints in UTC whatever zone the column carries; before 1970 too.
        assert_eq!(
            col(1),
            vec![
                Some("1969-12-31 23:59:58.5+00".into()),
                Some("1970-01-01 00:00:00+00".into()),
                Some("1970-01-01 00:00:00.000000001+00".into()),
            ]
        );
        assert_eq!(
            col(2),
            vec![
                Some("01:02:03".into()),
                Some("01:02:03.00001".into()),
                Some("00:00:00".into())
            ]
        );
    }

    #[test]
    fn binary_columns_are_left_alone() {
        let ts = TimestampMillisecondArray::from(vec![1_000]);
        let batch = RecordBatch::try_from_iter(vec![("ts", Arc::new(ts) as ArrayRef)]).unwrap();
        let fields = vec![FieldInfo::new(
            "ts".into(),
            None,
            None,
            Type::TIMESTAMP,
            FieldFormat::Binary,
        )];
        let out = postgres_text(batch.clone(), &fields).unwrap();
        assert_eq!(out, batch);
    }
}
