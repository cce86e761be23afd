//! `datagen`: a source of generated rows, after Flink's `datagen` connector.
//!
//! Every physical column of the table is generated, either as a *sequence* (`start`, `start + 1`,
//! ..., `end`) or as *random* values. Computed columns are evaluated by the source as usual;
//! metadata columns are rejected (datagen has no record metadata).
//!
//! ```sql
//! CREATE TABLE orders (
//!     id BIGINT, customer INT, note VARCHAR, price DOUBLE, ts TIMESTAMP(3),
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
//! ) WITH (
//!     'connector' = 'datagen',
//!     'rows-per-second' = '1000',
//!     'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000000',
//!     'fields.customer.min' = '1', 'fields.customer.max' = '100',
//!     'fields.note.length' = '12',
//!     'fields.ts.max-past' = '5 s'
//! );
//! ```
//!
//! # Options
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `rows-per-second` | `10000` | rate limit in real time, over all partitions together; `0` = unlimited |
//! | `number-of-rows` | unbounded | total rows over all partitions; makes the source bounded |
//! | `seed` | `0` | seed of the random values |
//! | `fields.<col>.kind` | `random` | `sequence` or `random` |
//! | `fields.<col>.start`, `.end` | required for sequences | inclusive bounds (integers) of a sequence |
//! | `fields.<col>.min`, `.max` | see below | inclusive bounds of random numbers |
//! | `fields.<col>.length` | `100` | length of random strings (at most 65536) |
//! | `fields.<col>.max-past` | `0` | random timestamps/dates lie in `[now - max-past, now]` (a duration, e.g. `'5 s'`) |
//! | `fields.<col>.null-rate` | `0` | fraction of NULLs, `0.0..=1.0` (the column must be nullable) |
//!
//! `<col>` is the column name (matched exactly, else case-insensitively); a column whose name
//! contains a `.` cannot be configured. Options that do not apply to a column (a `min` on a
//! string, `start` on a random column, `length` on a number, ...) are plan errors, as are options
//! naming an unknown or computed column.
//!
//! # Types
//!
//! * Integers (`TINYINT` .. `BIGINT`, unsigned too): sequence or random; random `min`/`max`
//!   default to the type's full range.
//! * `FLOAT`, `DOUBLE`: sequence (integer `start`/`end`) or random, uniform in `[min, max)`.
//!   Flink defaults to the type's whole range, which is useless in practice (nearly every value is
//!   astronomically large), so here `min` defaults to `0` and `max` to `1000`.
//! * `DECIMAL(p, s)` (Decimal128): sequence (integer `start`/`end`) or random with decimal
//!   `min`/`max` (default: the full range of the precision), uniform over the representable values.
//! * `BOOLEAN`: random only.
//! * `VARCHAR` / `STRING` (Utf8, LargeUtf8, Utf8View): random lowercase letters and digits of
//!   `length` characters, or a sequence of integers as text (`'1'`, `'2'`, ...).
//! * `TIMESTAMP` (any unit, any time zone) and `DATE`: random only, in `[now - max-past, now]`
//!   of the wall clock at generation time.
//!
//! Any other type is a plan error naming the column; declare such columns as computed columns.
//!
//! # Boundedness
//!
//! The source is bounded if `number-of-rows` is set or any column is a sequence. It then ends
//! after `min(number-of-rows, end - start + 1 of every sequence)` rows: the first exhausted
//! sequence ends the table.
//!
//! # Determinism
//!
//! Rows are numbered globally `0, 1, 2, ...`. A sequence column holds `start + r` in row `r`. A
//! random value (and the decision whether it is NULL) is a pure function of `(seed, column
//! index, r)`, computed by a counter-based SplitMix64 hash: no generator state is threaded from
//! row to row, so a row's values do not depend on parallelism, batch sizes or projection, and a
//! rerun with the same seed produces the same table. (Random timestamps and dates are the
//! exception: they are relative to the wall clock.) Random strings are slices, at hash-chosen
//! offsets, of a 64 KiB pseudo-random pool built once per process.
//!
//! # Partitions
//!
//! The scan has `parallelism` partitions (fewer if the table has fewer rows). Partition `p` of
//! `n` produces the rows `p, p + n, p + 2n, ...`, so the union of the partitions is exactly the
//! table a single partition produces. The rate is split among the partitions (each gets
//! `rows-per-second / n`, the remainder going to the first ones, at least 1 row per second).
//!
//! # Rate limiting
//!
//! Each reader schedules its `i`-th row at `start + i / rate`, where `start` is the instant of
//! its first read, and sleeps until the last row of a batch is due: output never runs ahead of
//! the rate. With a rate limit a batch holds at most ~100 ms worth of rows, so rows trickle out
//! smoothly. A reader that falls more than one second behind (a slow consumer) re-bases its
//! schedule instead of bursting to catch up.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::kernels::cast_utils::parse_decimal;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;

use crate::catalog::table_definition::{ColumnDefinition, ColumnKind, TableDefinition};
use crate::connectors::options::{OptionSpec, SOURCE_COMMON_OPTIONS, TableOptions};
use crate::connectors::{SourceBatch, SourceConnector, SourceReader};

/// Options of the `datagen` connector (see the module docs).
pub const DATAGEN_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "rows-per-second",
        "rows per second over all partitions, 0 = unlimited (default: 10000)",
    ),
    OptionSpec::optional(
        "number-of-rows",
        "total number of rows; makes the source bounded (default: unbounded)",
    ),
    OptionSpec::optional("seed", "seed of the random values (default: 0)"),
    OptionSpec::optional("fields.*.kind", "'sequence' or 'random' (default: random)"),
    OptionSpec::optional(
        "fields.*.start",
        "first value of a sequence (inclusive, required)",
    ),
    OptionSpec::optional(
        "fields.*.end",
        "last value of a sequence (inclusive, required)",
    ),
    OptionSpec::optional(
        "fields.*.min",
        "smallest random number (default: type minimum; 0 for floats)",
    ),
    OptionSpec::optional(
        "fields.*.max",
        "largest random number (default: type maximum; 1000 for floats)",
    ),
    OptionSpec::optional("fields.*.length", "length of random strings (default: 100)"),
    OptionSpec::optional(
        "fields.*.max-past",
        "random timestamps lie in [now - max-past, now] (default: 0)",
    ),
    OptionSpec::optional(
        "fields.*.null-rate",
        "fraction of NULL values, 0..1 (default: 0)",
    ),
];

const DEFAULT_ROWS_PER_SECOND: u64 = 10_000;
const DEFAULT_STRING_LENGTH: usize = 100;
const DEFAULT_FLOAT_MIN: f64 = 0.0;
const DEFAULT_FLOAT_MAX: f64 = 1000.0;
/// Size of the random string pool, and the longest random string.
const POOL_LEN: usize = 1 << 16;
const POOL_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Batches never exceed this many rows.
const MAX_BATCH_ROWS: usize = 1 << 20;
/// Bytes of string data per column and batch (keeps `Utf8` offsets far from overflowing).
const MAX_BATCH_STRING_BYTES: usize = 1 << 28;
/// A rate-limited batch holds at most this much time worth of rows.
const MAX_BATCH_TIME: Duration = Duration::from_millis(100);
/// A reader further behind its schedule than this re-bases the schedule.
const MAX_LAG: Duration = Duration::from_secs(1);

// ---- Counter-based randomness (SplitMix64).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th output of the SplitMix64 stream seeded with `salt`.
#[inline(always)]
fn rnd(n: u64, salt: u64) -> u64 {
    mix64(salt.wrapping_add(n.wrapping_mul(GOLDEN)))
}

/// Uniform in `0..bound` (multiply-high).
#[inline(always)]
fn below(h: u64, bound: u64) -> u64 {
    ((u128::from(h) * u128::from(bound)) >> 64) as u64
}

/// Uniform in `0..=span`.
#[inline(always)]
fn up_to(h: u64, span: u64) -> u64 {
    if span == u64::MAX {
        h
    } else {
        below(h, span + 1)
    }
}

/// Uniform in `[0, 1)`.
#[inline(always)]
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in `min..=max` (requires `min <= max`).
fn uniform_i128(h: u64, min: i128, max: i128) -> i128 {
    let span = (max as u128).wrapping_sub(min as u128);
    let offset = if span <= u128::from(u64::MAX) {
        u128::from(up_to(h, span as u64))
    } else {
        // Wider than 64 bits (Decimal128 only): 128 random bits, modulo (bias < 2^-25).
        let wide = (u128::from(h) << 64) | u128::from(mix64(h.wrapping_add(GOLDEN)));
        if span == u128::MAX {
            wide
        } else {
            wide % (span + 1)
        }
    };
    (min as u128).wrapping_add(offset) as i128
}

const S_SEED: u64 = mix64(0x6461_7461_6765_6e01);
const S_POOL: u64 = mix64(0x6461_7461_6765_6e02);
const PURPOSE_VALUE: u64 = 0;
const PURPOSE_NULL: u64 = 1;

/// Salt of the values (or NULL decisions) of source column `column` under `seed`.
fn column_salt(seed: u64, column: usize, purpose: u64) -> u64 {
    let stream = (column as u64).wrapping_mul(2).wrapping_add(purpose);
    mix64(mix64(seed ^ S_SEED).wrapping_add(stream.wrapping_mul(GOLDEN)))
}

/// Pseudo-random lowercase letters and digits; random strings are slices of it.
static POOL: LazyLock<String> = LazyLock::new(|| {
    (0..POOL_LEN as u64)
        .map(|i| {
            let c = POOL_ALPHABET[below(rnd(i, S_POOL), POOL_ALPHABET.len() as u64) as usize];
            c as char
        })
        .collect()
});

// ---- Column generators.

/// What kind of values a column type takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Category {
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
    fn of(data_type: &DataType) -> Option<Self> {
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

    fn supports_sequence(self) -> bool {
        matches!(
            self,
            Category::Int { .. } | Category::Float | Category::Decimal { .. } | Category::Str
        )
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Category::Int { .. } | Category::Float | Category::Decimal { .. }
        )
    }
}

/// `10^exp` (exp ≤ 38).
fn pow10(exp: u32) -> i128 {
    10i128.pow(exp.min(38))
}

/// How a column's non-NULL values are drawn.
#[derive(Debug, Clone, PartialEq)]
enum Values {
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
struct FieldGen {
    name: String,
    data_type: DataType,
    values: Values,
    null_rate: f64,
    value_salt: u64,
    null_salt: u64,
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
    fn max_string_len(&self) -> usize {
        match (&self.values, Category::of(&self.data_type)) {
            (Values::Str { length }, _) => *length,
            (Values::Sequence { .. }, Some(Category::Str)) => 40,
            _ => 0,
        }
    }

    /// The column's values for global rows `rows`.
    fn generate(&self, rows: &[u64], now: Duration) -> Result<ArrayRef> {
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

// ---- Option parsing.

/// The `fields.<col>.<attr>` keys given for one column: attribute -> full key.
type FieldKeys = BTreeMap<String, String>;

/// Groups the `fields.*.*` keys by source column index, rejecting unknown and computed columns.
fn field_keys(def: &TableDefinition) -> Result<BTreeMap<usize, FieldKeys>> {
    let table = &def.name;
    let source = def.source_columns();
    let names = source
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out: BTreeMap<usize, FieldKeys> = BTreeMap::new();
    for key in def.options.values().keys() {
        let Some(rest) = key.strip_prefix("fields.") else {
            continue;
        };
        let Some((column, attr)) = rest.rsplit_once('.') else {
            return plan_err!(
                "datagen table {table}: option '{key}' must be fields.<column>.<option>"
            );
        };
        let found = def.columns.iter().find(|c| c.name == column).or_else(|| {
            def.columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(column))
        });
        let Some(found) = found else {
            return plan_err!(
                "datagen table {table}: option '{key}' names column '{column}', which the table \
                 does not have (columns: {names}). Fix the column name or remove the option."
            );
        };
        if found.is_computed() {
            return plan_err!(
                "datagen table {table}: option '{key}' names column '{}', which is computed and \
                 not generated. Remove the option.",
                found.name
            );
        }
        let Some(index) = source.iter().position(|c| c.name == found.name) else {
            return plan_err!(
                "datagen table {table}: column '{}' is not generated",
                found.name
            );
        };
        let keys = out.entry(index).or_default();
        if let Some(previous) = keys.insert(attr.to_string(), key.clone()) {
            return plan_err!(
                "datagen table {table}: options '{previous}' and '{key}' both set '{attr}' of \
                 column {}. Keep one.",
                found.name
            );
        }
    }
    Ok(out)
}

/// An integer-valued option (`start`, `end`, integer `min`/`max`).
fn get_i128(options: &TableOptions, key: &str) -> Result<Option<i128>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i128>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => plan_err!(
                "option '{key}' of table {} is '{v}', but it must be an integer",
                options.table()
            ),
        },
    }
}

/// A decimal option parsed to its unscaled value.
fn get_decimal(
    options: &TableOptions,
    key: &str,
    precision: u8,
    scale: i8,
) -> Result<Option<i128>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => match parse_decimal::<Decimal128Type>(v.trim(), precision, scale) {
            Ok(n) => Ok(Some(n)),
            Err(e) => plan_err!(
                "option '{key}' of table {} is '{v}', but it must be a DECIMAL({precision}, \
                 {scale}) number: {e}",
                options.table()
            ),
        },
    }
}

/// The generator of source column `index`.
fn field_gen(
    def: &TableDefinition,
    column: &ColumnDefinition,
    index: usize,
    keys: &FieldKeys,
    seed: u64,
) -> Result<FieldGen> {
    let table = &def.name;
    let name = &column.name;
    let options = &def.options;
    let data_type = &column.data_type;
    let Some(category) = Category::of(data_type) else {
        return plan_err!(
            "datagen table {table}: column {name} has type {data_type}, which datagen cannot \
             generate (supported: integers, FLOAT, DOUBLE, DECIMAL, BOOLEAN, strings, TIMESTAMP, \
             DATE). Change the type or declare the column as a computed column."
        );
    };
    let key = |attr: &str| keys.get(attr).map(|k| k.as_str());
    let full = |attr: &str| {
        key(attr)
            .map(str::to_string)
            .unwrap_or_else(|| format!("fields.{name}.{attr}"))
    };
    let is_sequence = match key("kind") {
        Some(k) => options.get_choice(k, &["sequence", "random"])? == Some("sequence"),
        None => false,
    };
    let not_applicable = |attr: &str, why: &str| -> Result<()> {
        if key(attr).is_some() {
            return plan_err!(
                "datagen table {table}: option '{}' does not apply to column {name} ({data_type}, \
                 {}): {why}. Remove the option.",
                full(attr),
                if is_sequence { "sequence" } else { "random" }
            );
        }
        Ok(())
    };

    let null_rate = match key("null-rate") {
        Some(k) => options.get_f64(k)?.unwrap_or(0.0),
        None => 0.0,
    };
    if !(0.0..=1.0).contains(&null_rate) {
        return plan_err!(
            "datagen table {table}: option '{}' is {null_rate}, but it must be between 0 and 1",
            full("null-rate")
        );
    }
    if null_rate > 0.0 && !column.nullable {
        return plan_err!(
            "datagen table {table}: column {name} is NOT NULL, so '{}' must be 0. Remove the \
             option or make the column nullable.",
            full("null-rate")
        );
    }

    let values = if is_sequence {
        if !category.supports_sequence() {
            return plan_err!(
                "datagen table {table}: column {name} ({data_type}) cannot be a sequence \
                 (sequences are numbers or strings). Remove '{}' or set it to 'random'.",
                full("kind")
            );
        }
        for attr in ["min", "max"] {
            not_applicable(attr, "a sequence runs from 'start' to 'end'")?;
        }
        not_applicable("length", "sequence strings are numbers as text")?;
        not_applicable(
            "max-past",
            "'max-past' applies to random timestamps and dates",
        )?;
        let (Some(start), Some(end)) = (
            key("start")
                .map(|k| get_i128(options, k))
                .transpose()?
                .flatten(),
            key("end")
                .map(|k| get_i128(options, k))
                .transpose()?
                .flatten(),
        ) else {
            let missing = if key("start").is_none() {
                "start"
            } else {
                "end"
            };
            return plan_err!(
                "datagen table {table}: sequence column {name} needs the option '{}' \
                 (sequences need 'fields.{name}.start' and 'fields.{name}.end', inclusive)",
                full(missing)
            );
        };
        if start > end {
            return plan_err!(
                "datagen table {table}: sequence column {name} has start {start} > end {end}. \
                 Swap '{}' and '{}'.",
                full("start"),
                full("end")
            );
        }
        let in_range = match category {
            Category::Int { min, max } => start >= min && end <= max,
            Category::Decimal { precision, scale } => {
                let limit = pow10(u32::from(precision)) - 1;
                let factor = pow10(u32::try_from(scale).unwrap_or(0));
                start.checked_mul(factor).is_some_and(|s| s >= -limit)
                    && end.checked_mul(factor).is_some_and(|e| e <= limit)
            }
            _ => true,
        };
        if !in_range {
            return plan_err!(
                "datagen table {table}: sequence {start}..={end} of column {name} does not fit \
                 its type {data_type}. Change '{}' / '{}' or widen the type.",
                full("start"),
                full("end")
            );
        }
        Values::Sequence { start, end }
    } else {
        for attr in ["start", "end"] {
            not_applicable(
                attr,
                &format!("'start'/'end' apply to sequences; set 'fields.{name}.kind' = 'sequence'"),
            )?;
        }
        if !category.is_numeric() {
            for attr in ["min", "max"] {
                not_applicable(attr, "'min'/'max' apply to numeric columns")?;
            }
        }
        if category != Category::Str {
            not_applicable("length", "'length' applies to random string columns")?;
        }
        if !matches!(category, Category::Timestamp | Category::Date) {
            not_applicable(
                "max-past",
                "'max-past' applies to random timestamps and dates",
            )?;
        }
        let bad_range = |min: &dyn std::fmt::Display, max: &dyn std::fmt::Display| {
            plan_err!(
                "datagen table {table}: column {name} has min {min} > max {max}. Fix '{}' or '{}'.",
                full("min"),
                full("max")
            )
        };
        match category {
            Category::Int { min: lo, max: hi } => {
                let min = key("min")
                    .map(|k| get_i128(options, k))
                    .transpose()?
                    .flatten();
                let max = key("max")
                    .map(|k| get_i128(options, k))
                    .transpose()?
                    .flatten();
                for (attr, v) in [("min", min), ("max", max)] {
                    if let Some(v) = v
                        && !(lo..=hi).contains(&v)
                    {
                        return plan_err!(
                            "datagen table {table}: option '{}' is {v}, outside the range \
                             {lo}..={hi} of column {name} ({data_type})",
                            full(attr)
                        );
                    }
                }
                let (min, max) = (min.unwrap_or(lo), max.unwrap_or(hi));
                if min > max {
                    return bad_range(&min, &max);
                }
                Values::Int { min, max }
            }
            Category::Float => {
                let min = key("min")
                    .map(|k| options.get_f64(k))
                    .transpose()?
                    .flatten();
                let max = key("max")
                    .map(|k| options.get_f64(k))
                    .transpose()?
                    .flatten();
                let (min, max) = (
                    min.unwrap_or(DEFAULT_FLOAT_MIN),
                    max.unwrap_or(DEFAULT_FLOAT_MAX),
                );
                if min > max {
                    return bad_range(&min, &max);
                }
                if *data_type == DataType::Float32
                    && (min < f64::from(f32::MIN) || max > f64::from(f32::MAX))
                {
                    return plan_err!(
                        "datagen table {table}: min/max of FLOAT column {name} must lie within \
                         the FLOAT range. Fix '{}' or '{}'.",
                        full("min"),
                        full("max")
                    );
                }
                Values::Float { min, max }
            }
            Category::Decimal { precision, scale } => {
                let limit = pow10(u32::from(precision)) - 1;
                let min = key("min")
                    .map(|k| get_decimal(options, k, precision, scale))
                    .transpose()?;
                let max = key("max")
                    .map(|k| get_decimal(options, k, precision, scale))
                    .transpose()?;
                let (min, max) = (
                    min.flatten().unwrap_or(-limit),
                    max.flatten().unwrap_or(limit),
                );
                if min > max {
                    return bad_range(
                        &options.get(&full("min")).unwrap_or_default(),
                        &options.get(&full("max")).unwrap_or_default(),
                    );
                }
                Values::Int { min, max }
            }
            Category::Bool => Values::Bool,
            Category::Str => {
                let length = match key("length") {
                    Some(k) => options.get_u64(k)?.unwrap_or(DEFAULT_STRING_LENGTH as u64),
                    None => DEFAULT_STRING_LENGTH as u64,
                };
                if length > POOL_LEN as u64 {
                    return plan_err!(
                        "datagen table {table}: option '{}' is {length}, but random strings are \
                         at most {POOL_LEN} characters long",
                        full("length")
                    );
                }
                Values::Str {
                    length: length as usize,
                }
            }
            Category::Timestamp | Category::Date => {
                let max_past = match key("max-past") {
                    Some(k) => options.get_duration(k)?.unwrap_or_default(),
                    None => Duration::ZERO,
                };
                Values::Time {
                    max_past_ms: u64::try_from(max_past.as_millis()).unwrap_or(u64::MAX),
                }
            }
        }
    };
    Ok(FieldGen {
        name: name.clone(),
        data_type: data_type.clone(),
        values,
        null_rate,
        value_salt: column_salt(seed, index, PURPOSE_VALUE),
        null_salt: column_salt(seed, index, PURPOSE_NULL),
    })
}

// ---- Connector.

/// Validates the options of a `datagen` table and returns its source (see the module docs).
pub fn build(def: &TableDefinition) -> Result<Arc<dyn SourceConnector>> {
    Ok(Arc::new(DatagenConnector::try_new(def)?))
}

/// The `datagen` source of one table (see the module docs).
#[derive(Debug, Clone)]
pub struct DatagenConnector {
    schema: SchemaRef,
    fields: Arc<Vec<FieldGen>>,
    rows_per_second: u64,
    /// Total rows if bounded: `number-of-rows` and every sequence length, whichever is least.
    total_rows: Option<u64>,
    seed: u64,
}

impl DatagenConnector {
    /// Validates the table's options and columns.
    pub fn try_new(def: &TableDefinition) -> Result<Self> {
        let table = &def.name;
        def.options
            .validate("datagen", &[DATAGEN_OPTIONS, SOURCE_COMMON_OPTIONS])?;
        for column in &def.columns {
            if let ColumnKind::Metadata { key, .. } = &column.kind {
                return plan_err!(
                    "datagen table {table}: column {} is a metadata column (METADATA FROM \
                     '{key}'), but datagen has no metadata. Make it a physical or computed column.",
                    column.name
                );
            }
        }
        let options = &def.options;
        let rows_per_second = options
            .get_u64("rows-per-second")?
            .unwrap_or(DEFAULT_ROWS_PER_SECOND);
        let number_of_rows = options.get_u64("number-of-rows")?;
        let seed = options.get_u64("seed")?.unwrap_or(0);
        let mut keys = field_keys(def)?;
        let mut fields = Vec::new();
        for (index, column) in def.source_columns().into_iter().enumerate() {
            let column_keys = keys.remove(&index).unwrap_or_default();
            fields.push(field_gen(def, column, index, &column_keys, seed)?);
        }
        let mut total_rows = number_of_rows;
        for field in &fields {
            if let Values::Sequence { start, end } = field.values {
                let len = (end as u128).wrapping_sub(start as u128).saturating_add(1);
                let len = u64::try_from(len).unwrap_or(u64::MAX);
                total_rows = Some(total_rows.map_or(len, |t| t.min(len)));
            }
        }
        Ok(Self {
            schema: def.source_schema(),
            fields: Arc::new(fields),
            rows_per_second,
            total_rows,
            seed,
        })
    }

    /// Total number of rows, if bounded.
    pub fn total_rows(&self) -> Option<u64> {
        self.total_rows
    }
}

impl SourceConnector for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.total_rows.is_some()
    }

    fn num_partitions(&self, parallelism: usize) -> usize {
        let n = parallelism.max(1);
        match self.total_rows {
            Some(total) => n.min(usize::try_from(total).unwrap_or(usize::MAX)).max(1),
            None => n,
        }
    }

    fn open(
        &self,
        partition: usize,
        num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        if num_partitions == 0 || partition >= num_partitions {
            return exec_err!("datagen: partition {partition} of {num_partitions} does not exist");
        }
        let mut fields = Vec::with_capacity(projection.len());
        for &i in projection {
            match self.fields.get(i) {
                Some(f) => fields.push(f.clone()),
                None => {
                    return exec_err!(
                        "datagen: projection index {i} out of range ({} columns)",
                        self.fields.len()
                    );
                }
            }
        }
        let schema = Arc::new(self.schema.project(projection)?);
        let n = num_partitions as u64;
        let p = partition as u64;
        let rate = partition_rate(self.rows_per_second, p, n);
        let mut max_rows = batch_size.clamp(1, MAX_BATCH_ROWS);
        if let Some(rate) = rate {
            let per_window = rate.saturating_mul(MAX_BATCH_TIME.as_millis() as u64) / 1000;
            max_rows = max_rows.min(usize::try_from(per_window).unwrap_or(usize::MAX).max(1));
        }
        for field in &fields {
            if let Some(rows) = MAX_BATCH_STRING_BYTES.checked_div(field.max_string_len()) {
                max_rows = max_rows.min(rows.max(1));
            }
        }
        Ok(Box::new(DatagenReader {
            fields,
            schema,
            next_row: p,
            step: n,
            total_rows: self.total_rows,
            max_rows,
            rate,
            start: None,
            emitted: 0,
        }))
    }

    fn explain(&self) -> String {
        let mut out = format!("rows-per-second={}", self.rows_per_second);
        if let Some(rows) = self.total_rows {
            out.push_str(&format!(", number-of-rows={rows}"));
        }
        if self.seed != 0 {
            out.push_str(&format!(", seed={}", self.seed));
        }
        let sequences: Vec<String> = self
            .fields
            .iter()
            .filter_map(|f| match f.values {
                Values::Sequence { start, end } => Some(format!("{}={start}..={end}", f.name)),
                _ => None,
            })
            .collect();
        if !sequences.is_empty() {
            out.push_str(&format!(", sequences=[{}]", sequences.join(", ")));
        }
        out
    }
}

/// Reads one partition: global rows `partition, partition + n, ...`.
struct DatagenReader {
    /// Generators of the projected columns.
    fields: Vec<FieldGen>,
    schema: SchemaRef,
    /// Global number of the next row.
    next_row: u64,
    /// Number of partitions.
    step: u64,
    total_rows: Option<u64>,
    max_rows: usize,
    /// This partition's rows per second, if limited.
    rate: Option<u64>,
    /// Schedule origin: row `i` is due at `start + i / rate`.
    start: Option<tokio::time::Instant>,
    /// Rows emitted so far.
    emitted: u64,
}

/// Rows per second of partition `p` of `n` under a total of `rows_per_second` (0 = unlimited):
/// an equal share, the remainder going to the first partitions, at least 1.
fn partition_rate(rows_per_second: u64, p: u64, n: u64) -> Option<u64> {
    let n = n.max(1);
    (rows_per_second > 0).then(|| (rows_per_second / n + u64::from(p < rows_per_second % n)).max(1))
}

/// Time of the `index`-th row at `rate` rows per second after the schedule origin.
fn offset_of(index: u64, rate: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl DatagenReader {
    /// Sleeps until the last of the next `rows` rows is due.
    async fn wait_for(&mut self, rows: u64) {
        let Some(rate) = self.rate else {
            return;
        };
        let now = tokio::time::Instant::now();
        let start = *self.start.get_or_insert(now);
        let offset = offset_of(self.emitted + rows - 1, rate);
        let Some(due) = start.checked_add(offset) else {
            return;
        };
        if due > now {
            tokio::time::sleep_until(due).await;
        } else if now.duration_since(due) > MAX_LAG {
            // Far behind (slow consumer): move the schedule rather than burst to catch up.
            if let Some(rebased) = now.checked_sub(offset) {
                self.start = Some(rebased);
            }
        }
    }
}

#[async_trait]
impl SourceReader for DatagenReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let remaining = match self.total_rows {
            Some(total) if self.next_row >= total => return Ok(None),
            Some(total) => (total - self.next_row - 1) / self.step + 1,
            None => u64::MAX,
        };
        let rows = remaining.min(self.max_rows as u64);
        self.wait_for(rows).await;
        let numbers: Vec<u64> = (0..rows)
            .map(|i| self.next_row.wrapping_add(i.wrapping_mul(self.step)))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let columns = self
            .fields
            .iter()
            .map(|f| f.generate(&numbers, now))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(numbers.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        self.next_row = self.next_row.saturating_add(rows.saturating_mul(self.step));
        self.emitted += rows;
        Ok(Some(SourceBatch::new(batch)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int8Type, Int32Type, Int64Type, UInt64Type};
    use datafusion::logical_expr::lit;

    use super::*;

    fn column(name: &str, data_type: DataType) -> ColumnDefinition {
        ColumnDefinition {
            name: name.to_string(),
            data_type,
            nullable: true,
            kind: ColumnKind::Physical,
        }
    }

    fn table(columns: Vec<ColumnDefinition>, options: &[(&str, &str)]) -> TableDefinition {
        let mut values: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        values.insert("connector".into(), "datagen".into());
        TableDefinition {
            name: "t".into(),
            columns,
            watermark: None,
            primary_key: vec![],
            options: TableOptions::new("t", values),
            sql: String::new(),
        }
    }

    fn connector(columns: Vec<ColumnDefinition>, options: &[(&str, &str)]) -> DatagenConnector {
        DatagenConnector::try_new(&table(columns, options)).unwrap()
    }

    fn error(columns: Vec<ColumnDefinition>, options: &[(&str, &str)]) -> String {
        build(&table(columns, options)).unwrap_err().to_string()
    }

    async fn read(
        c: &DatagenConnector,
        partition: usize,
        partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Vec<RecordBatch> {
        let mut reader = c
            .open(partition, partitions, projection, batch_size)
            .unwrap();
        let mut out = vec![];
        while let Some(b) = reader.next_batch().await.unwrap() {
            assert!(b.batch.num_rows() <= batch_size);
            out.push(b.batch);
        }
        out
    }

    fn i64s(batches: &[RecordBatch], col: usize) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[tokio::test]
    async fn sequence_partitions_union_to_the_sequence() {
        let c = connector(
            vec![column("id", DataType::Int64)],
            &[
                ("rows-per-second", "0"),
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "1"),
                ("fields.id.end", "10"),
            ],
        );
        assert!(c.is_bounded());
        assert_eq!(c.num_partitions(2), 2);
        assert_eq!(c.num_partitions(64), 10);
        let p0 = i64s(&read(&c, 0, 2, &[0], 3).await, 0);
        let p1 = i64s(&read(&c, 1, 2, &[0], 3).await, 0);
        assert_eq!(p0, vec![1, 3, 5, 7, 9]);
        assert_eq!(p1, vec![2, 4, 6, 8, 10]);
        let mut all: Vec<i64> = p0.into_iter().chain(p1).collect();
        all.sort();
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
        // One partition: the same rows, in order.
        assert_eq!(
            i64s(&read(&c, 0, 1, &[0], 4).await, 0),
            (1..=10).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn number_of_rows_bounds_the_table() {
        let c = connector(
            vec![column("x", DataType::Int32)],
            &[("rows-per-second", "0"), ("number-of-rows", "25")],
        );
        assert!(c.is_bounded());
        assert_eq!(c.num_partitions(100), 25);
        let counts: Vec<usize> = futures::future::join_all((0..3).map(|p| {
            let c = c.clone();
            async move {
                read(&c, p, 3, &[0], 4)
                    .await
                    .iter()
                    .map(|b| b.num_rows())
                    .sum()
            }
        }))
        .await;
        assert_eq!(counts, vec![9, 8, 8]);
        // The shorter of number-of-rows and a sequence wins.
        let c = connector(
            vec![column("id", DataType::Int64)],
            &[
                ("number-of-rows", "5"),
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "0"),
                ("fields.id.end", "99"),
            ],
        );
        assert_eq!(c.total_rows(), Some(5));
        assert_eq!(
            c.explain(),
            "rows-per-second=10000, number-of-rows=5, sequences=[id=0..=99]"
        );
    }

    #[tokio::test]
    async fn unbounded_without_rows_or_sequence() {
        let c = connector(
            vec![column("x", DataType::Int64)],
            &[("rows-per-second", "0")],
        );
        assert!(!c.is_bounded());
        assert_eq!(c.num_partitions(4), 4);
        assert_eq!(c.explain(), "rows-per-second=0");
        let mut reader = c.open(0, 1, &[0], 7).unwrap();
        for _ in 0..3 {
            assert_eq!(
                reader.next_batch().await.unwrap().unwrap().batch.num_rows(),
                7
            );
        }
    }

    #[tokio::test]
    async fn projection_order_and_values_independent_of_projection() {
        let c = connector(
            vec![
                column("a", DataType::Int64),
                column("b", DataType::Utf8),
                column("c", DataType::Int64),
            ],
            &[
                ("rows-per-second", "0"),
                ("fields.a.kind", "sequence"),
                ("fields.a.start", "0"),
                ("fields.a.end", "4"),
                ("fields.b.length", "5"),
                ("fields.c.kind", "sequence"),
                ("fields.c.start", "100"),
                ("fields.c.end", "200"),
            ],
        );
        let projected = read(&c, 0, 1, &[2, 1, 0], 100).await;
        let schema = projected[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["c", "b", "a"]);
        assert_eq!(i64s(&projected, 0), vec![100, 101, 102, 103, 104]);
        assert_eq!(i64s(&projected, 2), vec![0, 1, 2, 3, 4]);
        let full = read(&c, 0, 1, &[0, 1, 2], 2).await;
        let strings = |batches: &[RecordBatch], col: usize| -> Vec<String> {
            batches
                .iter()
                .flat_map(|b| {
                    b.column(col)
                        .as_string::<i32>()
                        .iter()
                        .map(|s| s.unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(strings(&projected, 1), strings(&full, 1));
        // No columns at all: only row counts.
        let empty = read(&c, 0, 1, &[], 3).await;
        assert_eq!(empty.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
        assert_eq!(empty[0].num_columns(), 0);
    }

    #[tokio::test]
    async fn random_ints_respect_min_max() {
        let c = connector(
            vec![column("x", DataType::Int8), column("u", DataType::UInt64)],
            &[
                ("rows-per-second", "0"),
                ("number-of-rows", "1000"),
                ("fields.x.min", "-3"),
                ("fields.x.max", "3"),
            ],
        );
        let batches = read(&c, 0, 1, &[0, 1], 256).await;
        let mut seen = std::collections::BTreeSet::new();
        for b in &batches {
            for v in b.column(0).as_primitive::<Int8Type>().values() {
                assert!((-3..=3).contains(v), "{v}");
                seen.insert(*v);
            }
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
        // The full UInt64 range reaches values above i64::MAX.
        let big = batches
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<UInt64Type>().values().to_vec())
            .filter(|v| *v > i64::MAX as u64)
            .count();
        assert!(big > 300, "{big}");
    }

    #[tokio::test]
    async fn floats_default_to_0_1000() {
        let c = connector(
            vec![column("f", DataType::Float64)],
            &[("rows-per-second", "0"), ("number-of-rows", "500")],
        );
        for b in read(&c, 0, 1, &[0], 100).await {
            for v in b.column(0).as_primitive::<Float64Type>().values() {
                assert!((0.0..=1000.0).contains(v), "{v}");
            }
        }
    }

    #[tokio::test]
    async fn string_lengths_and_alphabet() {
        let c = connector(
            vec![
                column("s", DataType::Utf8),
                column("d", DataType::Utf8View),
                column("l", DataType::LargeUtf8),
            ],
            &[
                ("rows-per-second", "0"),
                ("number-of-rows", "50"),
                ("fields.s.length", "7"),
            ],
        );
        let batches = read(&c, 0, 1, &[0, 1, 2], 64).await;
        for b in &batches {
            for s in b.column(0).as_string::<i32>().iter() {
                let s = s.unwrap();
                assert_eq!(s.len(), 7);
                assert!(
                    s.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                    "{s}"
                );
            }
            for s in b.column(1).as_string_view().iter() {
                assert_eq!(s.unwrap().len(), 100);
            }
            for s in b.column(2).as_string::<i64>().iter() {
                assert_eq!(s.unwrap().len(), 100);
            }
        }
    }

    #[tokio::test]
    async fn null_rate_zero_and_one() {
        let c = connector(
            vec![column("a", DataType::Int32), column("b", DataType::Int32)],
            &[
                ("rows-per-second", "0"),
                ("number-of-rows", "200"),
                ("fields.a.null-rate", "0"),
                ("fields.b.null-rate", "1.0"),
            ],
        );
        for b in read(&c, 0, 1, &[0, 1], 64).await {
            assert_eq!(b.column(0).null_count(), 0);
            assert_eq!(b.column(1).null_count(), b.num_rows());
        }
        let c = connector(
            vec![column("a", DataType::Int32)],
            &[
                ("rows-per-second", "0"),
                ("number-of-rows", "1000"),
                ("fields.a.null-rate", "0.5"),
            ],
        );
        let nulls: usize = read(&c, 0, 1, &[0], 1000)
            .await
            .iter()
            .map(|b| b.column(0).null_count())
            .sum();
        assert!((350..650).contains(&nulls), "{nulls}");
    }

    #[tokio::test]
    async fn seed_makes_runs_reproducible() {
        let values = |seed: &'static str| async move {
            let c = connector(
                vec![column("x", DataType::Int32)],
                &[
                    ("rows-per-second", "0"),
                    ("number-of-rows", "20"),
                    ("seed", seed),
                ],
            );
            read(&c, 0, 1, &[0], 20).await[0]
                .column(0)
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        };
        assert_eq!(values("1").await, values("1").await);
        assert_ne!(values("1").await, values("2").await);
    }

    #[tokio::test]
    async fn timestamps_dates_decimals_bools() {
        let c = connector(
            vec![
                column(
                    "ts",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                ),
                column("d", DataType::Date32),
                column("m", DataType::Decimal128(10, 2)),
                column("b", DataType::Boolean),
                column("q", DataType::Decimal128(5, 1)),
            ],
            &[
                ("rows-per-second", "0"),
                ("number-of-rows", "100"),
                ("fields.ts.max-past", "5 s"),
                ("fields.m.min", "1.50"),
                ("fields.m.max", "2"),
                ("fields.q.kind", "sequence"),
                ("fields.q.start", "7"),
                ("fields.q.end", "1000"),
            ],
        );
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let batches = read(&c, 0, 1, &[0, 1, 2, 3, 4], 100).await;
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let b = &batches[0];
        assert_eq!(
            b.schema().field(0).data_type(),
            c.schema().field(0).data_type()
        );
        let ts = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        for v in ts.values() {
            assert!(*v >= before - 5000 && *v <= after, "{v}");
        }
        let dates = b
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        assert!(
            dates.values().iter().all(
                |d| i64::from(*d) == after / 86_400_000 || i64::from(*d) == before / 86_400_000
            )
        );
        let m = b.column(2).as_primitive::<Decimal128Type>();
        assert!(m.values().iter().all(|v| (150..=200).contains(v)));
        let bools = b.column(3).as_boolean();
        assert!(bools.true_count() > 20 && bools.false_count() > 20);
        let q = b.column(4).as_primitive::<Decimal128Type>();
        assert_eq!(q.value(0), 70);
        assert_eq!(q.value(3), 100);
    }

    #[tokio::test]
    async fn string_sequence() {
        let c = connector(
            vec![column("k", DataType::Utf8)],
            &[
                ("fields.k.kind", "sequence"),
                ("fields.k.start", "-1"),
                ("fields.k.end", "1"),
            ],
        );
        let b = read(&c, 0, 1, &[0], 10).await;
        let v: Vec<&str> = b[0]
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(v, vec!["-1", "0", "1"]);
    }

    #[tokio::test]
    async fn rate_limit_paces_and_splits_batches() {
        let c = connector(
            vec![column("x", DataType::Int64)],
            &[("rows-per-second", "100"), ("number-of-rows", "20")],
        );
        let started = Instant::now();
        let batches = read(&c, 0, 1, &[0], 1000).await;
        let elapsed = started.elapsed();
        // Row i is due 10 ms * i after the start; at most 100 ms (10 rows) per batch.
        assert!(batches.iter().all(|b| b.num_rows() <= 10));
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20);
        assert!(elapsed >= Duration::from_millis(185), "{elapsed:?}");
        // Partitions share the rate, remainder first, at least 1 row per second each.
        assert_eq!(partition_rate(3, 0, 2), Some(2));
        assert_eq!(partition_rate(3, 1, 2), Some(1));
        assert_eq!(partition_rate(1, 3, 4), Some(1));
        assert_eq!(partition_rate(0, 0, 4), None);
        assert_eq!(offset_of(2, 2), Duration::from_secs(1));
    }

    #[test]
    fn option_errors_name_key_and_column() {
        let int = || vec![column("id", DataType::Int64)];
        let e = error(int(), &[("fields.nope.kind", "sequence")]);
        assert!(
            e.contains("'fields.nope.kind'") && e.contains("'nope'") && e.contains("table t"),
            "{e}"
        );
        assert!(e.contains("columns: id"), "{e}");
        let e = error(
            int(),
            &[("fields.id.kind", "sequence"), ("fields.id.start", "1")],
        );
        assert!(
            e.contains("fields.id.end") && e.contains("column id"),
            "{e}"
        );
        let e = error(int(), &[("fields.id.kind", "seq")]);
        assert!(
            e.contains("'fields.id.kind'") && e.contains("sequence, random"),
            "{e}"
        );
        let e = error(
            int(),
            &[
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "5"),
                ("fields.id.end", "1"),
            ],
        );
        assert!(e.contains("start 5 > end 1"), "{e}");
        let e = error(int(), &[("fields.id.min", "5"), ("fields.id.max", "1")]);
        assert!(
            e.contains("min 5 > max 1") && e.contains("fields.id.min"),
            "{e}"
        );
        let e = error(int(), &[("fields.id.start", "5")]);
        assert!(
            e.contains("'fields.id.start'") && e.contains("'sequence'"),
            "{e}"
        );
        let e = error(int(), &[("rows-per-sec", "5")]);
        assert!(
            e.contains("unknown option 'rows-per-sec'") && e.contains("rows-per-second"),
            "{e}"
        );
        let e = error(int(), &[("fields.id.lenght", "5")]);
        assert!(e.contains("unknown option 'fields.id.lenght'"), "{e}");
        let e = error(int(), &[("fields.id.length", "5")]);
        assert!(
            e.contains("'fields.id.length'") && e.contains("column id"),
            "{e}"
        );
        let e = error(
            vec![column("id", DataType::Int8)],
            &[("fields.id.min", "-129")],
        );
        assert!(e.contains("-129") && e.contains("fields.id.min"), "{e}");
        let e = error(vec![column("s", DataType::Utf8)], &[("fields.s.min", "1")]);
        assert!(e.contains("'fields.s.min'") && e.contains("numeric"), "{e}");
        let e = error(
            vec![column("b", DataType::Boolean)],
            &[
                ("fields.b.kind", "sequence"),
                ("fields.b.start", "1"),
                ("fields.b.end", "2"),
            ],
        );
        assert!(
            e.contains("column b") && e.contains("cannot be a sequence"),
            "{e}"
        );
        let e = error(
            vec![column(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
            )],
            &[
                ("fields.ts.kind", "sequence"),
                ("fields.ts.start", "1"),
                ("fields.ts.end", "2"),
            ],
        );
        assert!(
            e.contains("column ts") && e.contains("cannot be a sequence"),
            "{e}"
        );
        let e = error(
            vec![column("l", DataType::new_list(DataType::Int32, true))],
            &[],
        );
        assert!(
            e.contains("column l") && e.contains("cannot generate"),
            "{e}"
        );
        let e = error(int(), &[("fields.id.null-rate", "1.5")]);
        assert!(e.contains("fields.id.null-rate"), "{e}");
        let mut not_null = column("id", DataType::Int64);
        not_null.nullable = false;
        let e = error(vec![not_null], &[("fields.id.null-rate", "0.5")]);
        assert!(
            e.contains("NOT NULL") && e.contains("fields.id.null-rate"),
            "{e}"
        );
    }

    #[test]
    fn metadata_and_computed_columns() {
        let mut meta = column("off", DataType::Int64);
        meta.kind = ColumnKind::Metadata {
            key: "offset".into(),
            is_virtual: true,
        };
        let e = error(vec![column("id", DataType::Int64), meta], &[]);
        assert!(e.contains("column off") && e.contains("metadata"), "{e}");

        let mut computed = column("c", DataType::Int64);
        computed.kind = ColumnKind::Computed {
            sql: "1".into(),
            expr: lit(1i64),
        };
        let columns = vec![column("id", DataType::Int64), computed];
        let c = connector(columns.clone(), &[]);
        assert_eq!(c.schema().fields().len(), 1);
        let e = error(columns, &[("fields.c.kind", "random")]);
        assert!(e.contains("'c'") && e.contains("computed"), "{e}");
    }

    #[test]
    fn case_insensitive_column_names() {
        let c = connector(
            vec![column("id", DataType::Int64)],
            &[
                ("fields.ID.kind", "sequence"),
                ("fields.ID.start", "1"),
                ("fields.ID.end", "3"),
            ],
        );
        assert_eq!(c.total_rows(), Some(3));
    }
}
