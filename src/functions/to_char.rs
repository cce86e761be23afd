//! `to_char(value, template)` with PostgreSQL's templates and `DATE_FORMAT(value, pattern)`
//! with Java's (Flink), replacing DataFusion's `to_char` (and its alias `date_format`), which
//! read chrono's `%` patterns only and printed any other template back as text.
//!
//! A template with a `%` is a chrono pattern and goes to DataFusion's implementation, as
//! before (over timestamps without a time zone, the same text comes from the pattern parsed
//! once: [`chrono_timestamps`]); any other is compiled by [`template`](super::template) (once
//! per distinct template) and every value written with it. Timestamps with a time zone print in UTC, the session time
//! zone.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, StringBuilder, temporal_conversions::as_datetime,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::template::{Template, Value};
use crate::error::{INVALID_DATETIME_FORMAT, with_sqlstate};

/// Which template language a function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dialect {
    /// PostgreSQL's `to_char`.
    Postgres,
    /// Java's `SimpleDateFormat` (Flink's `DATE_FORMAT`).
    Java,
}

/// `to_char` or `date_format` (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FormatDateTime {
    name: &'static str,
    dialect: Dialect,
    signature: Signature,
}

/// PostgreSQL's `to_char(value, template)`.
pub fn to_char() -> ScalarUDF {
    ScalarUDF::new_from_impl(FormatDateTime {
        name: "to_char",
        dialect: Dialect::Postgres,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

/// Flink's `DATE_FORMAT(value, pattern)`.
pub fn date_format() -> ScalarUDF {
    ScalarUDF::new_from_impl(FormatDateTime {
        name: "date_format",
        dialect: Dialect::Java,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

impl ScalarUDFImpl for FormatDateTime {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let [value, template] = args else {
            return plan_err!(
                "{} takes two arguments: a date, time or timestamp and a format template",
                self.name
            );
        };
        let value = match value {
            DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_) => value.clone(),
            // Flink's DATE_FORMAT also takes a timestamp written as text.
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            other => {
                return plan_err!(
                    "{} formats dates, times, timestamps and intervals, not {other}",
                    self.name
                );
            }
        };
        Ok(vec![value, template_type(template, self.name)?])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // chrono patterns keep DataFusion's meaning.
        if let Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(t)))) = args.args.get(1)
            && t.contains('%')
        {
            if let Some(ColumnarValue::Array(values)) = args.args.first()
                && let Some(text) = chrono_timestamps(values, t)
            {
                return Ok(ColumnarValue::Array(text));
            }
            return datafusion::functions::datetime::to_char().invoke_with_args(args);
        }
        let [value, template] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name);
        };
        let scalar = matches!(
            (value, template),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = args.number_rows;
        let values = value.to_array(rows)?;
        let templates = template.to_array(rows)?;
        let templates = templates.as_string::<i32>();
        let mut compiled: HashMap<&str, Template> = HashMap::new();
        let mut out = StringBuilder::with_capacity(rows, rows * 24);
        let mut text = String::new();
        for i in 0..rows {
            let (Some(v), false) = (value_at(&values, i)?, templates.is_null(i)) else {
                out.append_null();
                continue;
            };
            let source = templates.value(i);
            if source.contains('%') {
                return exec_err!(
                    "{}: a chrono pattern ('%...') must be a constant, not a column",
                    self.name
                );
            }
            if !compiled.contains_key(source) {
                let parsed = match self.dialect {
                    Dialect::Postgres => Template::postgres(source),
                    Dialect::Java => Template::java(source),
                };
                let parsed = parsed.map_err(|e| with_sqlstate(INVALID_DATETIME_FORMAT, e))?;
                compiled.insert(source, parsed);
            }
            let Some(t) = compiled.get(source) else {
                return exec_err!("{}: template {source:?} not compiled", self.name);
            };
            text.clear();
            t.format(v, &mut text).map_err(|e| {
                with_sqlstate(INVALID_DATETIME_FORMAT, format!("{}: {e}", self.name))
            })?;
            out.append_value(&text);
        }
        let result: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// `to_char(values, pattern)` with a chrono `pattern` over timestamps without a time zone,
/// the pattern parsed once: DataFusion's `to_char` writes each value through arrow's display,
/// which parses the pattern again for every value (Nexmark q16 spent a tenth of its time
/// there). The text is the same, `NaiveDateTime::format(pattern)`. `None` where DataFusion's
/// implementation answers instead: other types, a pattern chrono cannot parse or write, a
/// value out of range (it gives the error).
fn chrono_timestamps(values: &ArrayRef, pattern: &str) -> Option<ArrayRef> {
    use std::fmt::Write;
    let DataType::Timestamp(unit, None) = values.data_type() else {
        return None;
    };
    let items = chrono::format::StrftimeItems::new(pattern).parse().ok()?;
    let datetime = |i: usize| match unit {
        TimeUnit::Second => as_datetime::<TimestampSecondType>(
            values.as_primitive::<TimestampSecondType>().value(i),
        ),
        TimeUnit::Millisecond => as_datetime::<TimestampMillisecondType>(
            values.as_primitive::<TimestampMillisecondType>().value(i),
        ),
        TimeUnit::Microsecond => as_datetime::<TimestampMicrosecondType>(
            values.as_primitive::<TimestampMicrosecondType>().value(i),
        ),
        TimeUnit::Nanosecond => as_datetime::<TimestampNanosecondType>(
            values.as_primitive::<TimestampNanosecondType>().value(i),
        ),
    };
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * (pattern.len() + 10));
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
            continue;
        }
        write!(out, "{}", datetime(i)?.format_with_items(items.iter())).ok()?;
        out.append_value("");
    }
    Some(Arc::new(out.finish()))
}

fn template_type(t: &DataType, name: &str) -> Result<DataType> {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
            Ok(DataType::Utf8)
        }
        other => plan_err!("the template of {name} is text, not {other}"),
    }
}

/// Row `i` of `values` as a [`Value`]; `None` for NULL.
fn value_at(values: &ArrayRef, i: usize) -> Result<Option<Value>> {
    if values.is_null(i) {
        return Ok(None);
    }
    let out_of_range = || {
        datafusion::error::DataFusionError::Execution(format!(
            "a {} value is outside the range of dates that can be formatted",
            values.data_type()
        ))
    };
    let at = |v: Option<chrono::NaiveDateTime>, zoned: bool| {
        v.map(|at| Value::DateTime { at, zoned })
            .ok_or_else(out_of_range)
    };
    let time = |v: Option<chrono::NaiveTime>| {
        v.map(|t| Value::Time(chrono::NaiveDateTime::new(chrono::NaiveDate::MIN, t)))
            .ok_or_else(out_of_range)
    };
    let duration = |nanos: Option<i128>| {
        nanos
            .map(|nanos| Value::Duration { nanos })
            .ok_or_else(out_of_range)
    };
    let value = match values.data_type() {
        DataType::Date32 => {
            let v = values.as_primitive::<Date32Type>().value(i);
            at(as_datetime::<Date32Type>(i64::from(v)), false)?
        }
        DataType::Date64 => {
            let v = values.as_primitive::<Date64Type>().value(i);
            at(as_datetime::<Date64Type>(v), false)?
        }
        DataType::Timestamp(unit, zone) => {
            let zoned = zone.is_some();
            match unit {
                TimeUnit::Second => at(
                    as_datetime::<TimestampSecondType>(
                        values.as_primitive::<TimestampSecondType>().value(i),
                    ),
                    zoned,
                )?,
                TimeUnit::Millisecond => at(
                    as_datetime::<TimestampMillisecondType>(
                        values.as_primitive::<TimestampMillisecondType>().value(i),
                    ),
                    zoned,
                )?,
                TimeUnit::Microsecond => at(
                    as_datetime::<TimestampMicrosecondType>(
                        values.as_primitive::<TimestampMicrosecondType>().value(i),
                    ),
                    zoned,
                )?,
                TimeUnit::Nanosecond => at(
                    as_datetime::<TimestampNanosecondType>(
                        values.as_primitive::<TimestampNanosecondType>().value(i),
                    ),
                    zoned,
                )?,
            }
        }
        DataType::Time32(TimeUnit::Second) => {
            time(datafusion::arrow::array::temporal_conversions::as_time::<
                Time32SecondType,
            >(i64::from(
                values.as_primitive::<Time32SecondType>().value(i),
            )))?
        }
        DataType::Time32(_) => time(datafusion::arrow::array::temporal_conversions::as_time::<
            Time32MillisecondType,
        >(i64::from(
            values.as_primitive::<Time32MillisecondType>().value(i),
        )))?,
        DataType::Time64(TimeUnit::Microsecond) => {
            time(datafusion::arrow::array::temporal_conversions::as_time::<
                Time64MicrosecondType,
            >(
                values.as_primitive::<Time64MicrosecondType>().value(i)
            ))?
        }
        DataType::Time64(_) => time(datafusion::arrow::array::temporal_conversions::as_time::<
            Time64NanosecondType,
        >(
            values.as_primitive::<Time64NanosecondType>().value(i)
        ))?,
        DataType::Duration(unit) => {
            let (v, per) = match unit {
                TimeUnit::Second => (
                    values.as_primitive::<DurationSecondType>().value(i),
                    1_000_000_000,
                ),
                TimeUnit::Millisecond => (
                    values.as_primitive::<DurationMillisecondType>().value(i),
                    1_000_000,
                ),
                TimeUnit::Microsecond => (
                    values.as_primitive::<DurationMicrosecondType>().value(i),
                    1_000,
                ),
                TimeUnit::Nanosecond => {
                    (values.as_primitive::<DurationNanosecondType>().value(i), 1)
                }
            };
            duration(i128::from(v).checked_mul(per))?
        }
        other => return exec_err!("cannot format a {other} value"),
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
        TimestampNanosecondArray, TimestampSecondArray,
    };
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    /// DataFusion's `to_char(values, pattern)`.
    fn datafusions(values: &ArrayRef, pattern: &str) -> Result<ArrayRef> {
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::clone(values)),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(pattern.to_string()))),
            ],
            arg_fields: vec![
                Arc::new(Field::new("v", values.data_type().clone(), true)),
                Arc::new(Field::new("p", DataType::Utf8, true)),
            ],
            number_rows: values.len(),
            return_field: Arc::new(Field::new("t", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        datafusion::functions::datetime::to_char()
            .invoke_with_args(args)?
            .into_array(values.len())
    }

    /// Over timestamps of every unit (NULLs, before 1970, far dates), chrono patterns give
    /// DataFusion's text; where DataFusion fails (a pattern chrono cannot parse or a naive
    /// timestamp cannot give, a value out of range), DataFusion answers.
    #[test]
    fn chrono_patterns_give_datafusions_text() {
        let mut state = 0x5eed_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ms: Vec<Option<i64>> = (0..200)
            .map(|i| match i % 10 {
                0 => None,
                1 => Some(-((next() % 4_000_000_000_000) as i64)),
                _ => Some((next() % 4_000_000_000_000) as i64),
            })
            .collect();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampSecondArray::from(
                ms.iter().map(|v| v.map(|v| v / 1000)).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(ms.clone())),
            Arc::new(TimestampMicrosecondArray::from(
                ms.iter()
                    .map(|v| v.map(|v| v * 1000 + 7))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(TimestampNanosecondArray::from(
                ms.iter()
                    .map(|v| v.map(|v| v * 1_000_000 + 123))
                    .collect::<Vec<_>>(),
            )),
        ];
        let patterns = [
            "%Y-%m-%d",
            "%H:%M",
            "%Y-%m-%dT%H:%M:%S%.3f",
            "%a %b %e %j %U %y %I %p %%",
            "%s %f",
            "day %d of %B",
        ];
        for values in &arrays {
            for pattern in patterns {
                let fast = chrono_timestamps(values, pattern).expect("formatted");
                let expected = datafusions(values, pattern).unwrap();
                assert_eq!(
                    fast.as_string::<i32>(),
                    expected.as_string::<i32>(),
                    "{pattern} over {}",
                    values.data_type()
                );
            }
            // DataFusion refuses these; so the fast path leaves them to it.
            for pattern in ["%Q", "%z"] {
                assert!(datafusions(values, pattern).is_err(), "{pattern}");
                assert!(chrono_timestamps(values, pattern).is_none(), "{pattern}");
            }
        }
        // Out of chrono's range: DataFusion answers (with its error).
        let far: ArrayRef = Arc::new(TimestampSecondArray::from(vec![i64::MAX]));
        assert!(chrono_timestamps(&far, "%Y").is_none());
        // With a time zone, and for other types: DataFusion.
        let zoned: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("+02:00"));
        assert!(chrono_timestamps(&zoned, "%H").is_none());
        let text: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert!(chrono_timestamps(&text, "%H").is_none());
    }
}
