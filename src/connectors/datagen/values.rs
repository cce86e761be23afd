//! Generated values: which kind of values a column type takes ([`Category`]), how a column's
//! non-NULL values are drawn ([`Values`]), and [`FieldGen`], which builds a column's array for a
//! set of global row numbers.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::exec_err;
use datafusion::error::Result;

use super::random::{POOL, POOL_LEN, rnd, uniform_i128, unit, up_to};

/// What kind of values a column type takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Category {
    /// Integers of the given inclusive range.
    Int {
        min: i128,
        max: i128,
    },
    Float,
    /// Decimal128: unscaled values of `precision` digits, `scale` ≥ 0.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Bool,
    Str,
    Timestamp,
    Date,
}

impl Category {
    pub(super) fn of(data_type: &DataType) -> Option<Self> {
        let int = |min: i128, max: i128| Some(Category::Int { min, max });
        match data_type {
            DataType::Int8 => int(i8::MIN.into(), i8::MAX.into()),
            DataType::Int16 => int(i16::MIN.into(), i16::MAX.into()),
            DataType::Int32 => int(i32::MIN.into(), i32::MAX.into()),
            DataType::Int64 => int(i64::MIN.into(), i64::MAX.into()),
            DataType::UInt8 => int(0, u8::MAX.into()),
            DataType::UInt16 => int(0, u16::MAX.into()),
            DataType::UInt32 => int(0, u32::MAX.into()),
            DataType::UInt64 => int(0, u64::MAX.into()),
            DataType::Float32 | DataType::Float64 => Some(Category::Float),
            DataType::Decimal128(precision, scale) if *scale >= 0 && *precision >= 1 => {
                Some(Category::Decimal {
                    precision: *precision,
                    scale: *scale,
                })
            }
            DataType::Boolean => Some(Category::Bool),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Category::Str),
            DataType::Timestamp(_, _) => Some(Category::Timestamp),
            DataType::Date32 => Some(Category::Date),
            _ => None,
        }
    }

    pub(super) fn supports_sequence(self) -> bool {
        matches!(
            self,
            Category::Int { .. } | Category::Float | Category::Decimal { .. } | Category::Str
        )
    }

    pub(super) fn is_numeric(self) -> bool {
        matches!(
            self,
            Category::Int { .. } | Category::Float | Category::Decimal { .. }
        )
    }
}

/// `10^exp` (exp ≤ 38).
pub(super) fn pow10(exp: u32) -> i128 {
    10i128.pow(exp.min(38))
}

/// How a column's non-NULL values are drawn.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Values {
    /// `start + r` for row `r` (decimals: scaled by `10^scale`).
    Sequence {
        start: i128,
        end: i128,
    },
    /// Uniform integers (decimals: unscaled) in `min..=max`.
    Int {
        min: i128,
        max: i128,
    },
    /// Uniform in `[min, max)`.
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// `length` characters of the pool.
    Str {
        length: usize,
    },
    /// Wall clock minus uniform `0..=max_past_ms` milliseconds.
    Time {
        max_past_ms: u64,
    },
}

/// One generated column.
#[derive(Debug, Clone)]
pub(super) struct FieldGen {
    pub(super) name: String,
    pub(super) data_type: DataType,
    pub(super) values: Values,
    pub(super) null_rate: f64,
    pub(super) value_salt: u64,
    pub(super) null_salt: u64,
}

impl FieldGen {
    #[inline]
    fn is_null(&self, row: u64) -> bool {
        self.null_rate > 0.0 && unit(rnd(row, self.null_salt)) < self.null_rate
    }

    #[inline]
    fn hash(&self, row: u64) -> u64 {
        rnd(row, self.value_salt)
    }

    /// Integer value of row `row` (sequence or random integer).
    #[inline]
    fn int_value(&self, row: u64) -> i128 {
        match &self.values {
            Values::Sequence { start, .. } => start.wrapping_add(i128::from(row)),
            Values::Int { min, max } => uniform_i128(self.hash(row), *min, *max),
            _ => 0,
        }
    }

    #[inline]
    fn float_value(&self, row: u64) -> f64 {
        match &self.values {
            Values::Sequence { start, .. } => start.wrapping_add(i128::from(row)) as f64,
            Values::Float { min, max } => {
                let v = min + unit(self.hash(row)) * (max - min);
                v.max(*min).min(*max)
            }
            _ => 0.0,
        }
    }

    /// Length in bytes of the longest string this column produces (0 for non-strings).
    pub(super) fn max_string_len(&self) -> usize {
        match (&self.values, Category::of(&self.data_type)) {
            (Values::Str { length }, _) => *length,
            (Values::Sequence { .. }, Some(Category::Str)) => 40,
            _ => 0,
        }
    }

    /// The column's values for global rows `rows`.
    pub(super) fn generate(&self, rows: &[u64], now: Duration) -> Result<ArrayRef> {
        macro_rules! ints {
            ($array:ty, $native:ty) => {{
                let mut values: Vec<Option<$native>> = Vec::with_capacity(rows.len());
                for &row in rows {
                    if self.is_null(row) {
                        values.push(None);
                        continue;
                    }
                    let v = self.int_value(row);
                    match <$native>::try_from(v) {
                        Ok(v) => values.push(Some(v)),
                        Err(_) => {
                            return exec_err!(
                                "datagen: value {v} of column {} does not fit {}",
                                self.name,
                                self.data_type
                            );
                        }
                    }
                }
                Arc::new(<$array>::from(values)) as ArrayRef
            }};
        }
        macro_rules! timestamps {
            ($array:ty, $now:expr, $per_ms:expr, $tz:expr) => {{
                let Values::Time { max_past_ms } = self.values else {
                    return exec_err!("datagen: column {} is not a random timestamp", self.name);
                };
                let now: i64 = i64::try_from($now).unwrap_or(i64::MAX);
                let span = max_past_ms.saturating_mul($per_ms) / 1000;
                let values: Vec<Option<i64>> = rows
                    .iter()
                    .map(|&row| {
                        (!self.is_null(row)).then(|| {
                            let back =
                                i64::try_from(up_to(self.hash(row), span)).unwrap_or(i64::MAX);
                            now.saturating_sub(back)
                        })
                    })
                    .collect();
                Arc::new(<$array>::from(values).with_timezone_opt($tz.clone())) as ArrayRef
            }};
        }
        let array = match &self.data_type {
            DataType::Int8 => ints!(Int8Array, i8),
            DataType::Int16 => ints!(Int16Array, i16),
            DataType::Int32 => ints!(Int32Array, i32),
            DataType::Int64 => ints!(Int64Array, i64),
            DataType::UInt8 => ints!(UInt8Array, u8),
            DataType::UInt16 => ints!(UInt16Array, u16),
            DataType::UInt32 => ints!(UInt32Array, u32),
            DataType::UInt64 => ints!(UInt64Array, u64),
            DataType::Float64 => {
                let values: Vec<Option<f64>> = rows
                    .iter()
                    .map(|&row| (!self.is_null(row)).then(|| self.float_value(row)))
                    .collect();
                Arc::new(Float64Array::from(values)) as ArrayRef
            }
            DataType::Float32 => {
                let (lo, hi) = match self.values {
                    Values::Float { min, max } => (min as f32, max as f32),
                    _ => (f32::MIN, f32::MAX),
                };
                let values: Vec<Option<f32>> = rows
                    .iter()
                    .map(|&row| {
                        (!self.is_null(row)).then(|| (self.float_value(row) as f32).max(lo).min(hi))
                    })
                    .collect();
                Arc::new(Float32Array::from(values)) as ArrayRef
            }
            DataType::Decimal128(precision, scale) => {
                let factor = match self.values {
                    Values::Sequence { .. } => pow10(u32::try_from(*scale).unwrap_or(0)),
                    _ => 1,
                };
                let values: Vec<Option<i128>> = rows
                    .iter()
                    .map(|&row| {
                        (!self.is_null(row)).then(|| self.int_value(row).wrapping_mul(factor))
                    })
                    .collect();
                Arc::new(
                    Decimal128Array::from(values).with_precision_and_scale(*precision, *scale)?,
                ) as ArrayRef
            }
            DataType::Boolean => {
                let values: Vec<Option<bool>> = rows
                    .iter()
                    .map(|&row| (!self.is_null(row)).then(|| self.hash(row) >> 63 == 1))
                    .collect();
                Arc::new(BooleanArray::from(values)) as ArrayRef
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match self.values {
                Values::Str { length } => {
                    let pool = POOL.as_str();
                    let last_offset = (POOL_LEN.saturating_sub(length)) as u64;
                    let values: Vec<Option<&str>> = rows
                        .iter()
                        .map(|&row| {
                            (!self.is_null(row)).then(|| {
                                let offset = up_to(self.hash(row), last_offset) as usize;
                                pool.get(offset..offset + length).unwrap_or("")
                            })
                        })
                        .collect();
                    strings(&self.data_type, values)
                }
                _ => {
                    let values: Vec<Option<String>> = rows
                        .iter()
                        .map(|&row| (!self.is_null(row)).then(|| self.int_value(row).to_string()))
                        .collect();
                    strings(&self.data_type, values)
                }
            },
            DataType::Timestamp(unit, tz) => match unit {
                TimeUnit::Second => timestamps!(TimestampSecondArray, now.as_secs(), 1, tz),
                TimeUnit::Millisecond => {
                    timestamps!(TimestampMillisecondArray, now.as_millis(), 1_000, tz)
                }
                TimeUnit::Microsecond => {
                    timestamps!(TimestampMicrosecondArray, now.as_micros(), 1_000_000, tz)
                }
                TimeUnit::Nanosecond => {
                    timestamps!(TimestampNanosecondArray, now.as_nanos(), 1_000_000_000, tz)
                }
            },
            DataType::Date32 => {
                let Values::Time { max_past_ms } = self.values else {
                    return exec_err!("datagen: column {} is not a random date", self.name);
                };
                let now_ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
                let values: Vec<Option<i32>> = rows
                    .iter()
                    .map(|&row| {
                        (!self.is_null(row)).then(|| {
                            let back = i64::try_from(up_to(self.hash(row), max_past_ms))
                                .unwrap_or(i64::MAX);
                            let days = now_ms.saturating_sub(back).div_euclid(86_400_000);
                            i32::try_from(days).unwrap_or(i32::MIN)
                        })
                    })
                    .collect();
                Arc::new(Date32Array::from(values)) as ArrayRef
            }
            other => {
                return exec_err!(
                    "datagen cannot generate column {} of type {other}",
                    self.name
                );
            }
        };
        Ok(array)
    }
}

/// A string array of type `data_type` (Utf8, LargeUtf8 or Utf8View).
fn strings<P: AsRef<str>>(data_type: &DataType, values: Vec<Option<P>>) -> ArrayRef {
    match data_type {
        DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter(values)),
        DataType::Utf8View => Arc::new(StringViewArray::from_iter(values)),
        _ => Arc::new(StringArray::from_iter(values)),
    }
}
