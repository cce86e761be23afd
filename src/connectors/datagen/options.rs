//! Options: the option specs of `datagen` tables and the validation of each column's
//! `fields.<col>.*` options into the generator of that column.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::compute::kernels::cast_utils::parse_decimal;
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::common::plan_err;
use datafusion::error::Result;

use super::random::{POOL_LEN, PURPOSE_NULL, PURPOSE_VALUE, column_salt};
use super::values::{Category, FieldGen, Values, pow10};
use crate::catalog::options::{OptionSpec, TableOptions};
use crate::catalog::table_definition::{ColumnDefinition, TableDefinition};

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

pub(super) const DEFAULT_ROWS_PER_SECOND: u64 = 10_000;
const DEFAULT_STRING_LENGTH: usize = 100;
const DEFAULT_FLOAT_MIN: f64 = 0.0;
const DEFAULT_FLOAT_MAX: f64 = 1000.0;

/// The `fields.<col>.<attr>` keys given for one column: attribute -> full key.
type FieldKeys = BTreeMap<String, String>;

/// Groups the `fields.*.*` keys by source column index, rejecting unknown and computed columns.
pub(super) fn field_keys(def: &TableDefinition) -> Result<BTreeMap<usize, FieldKeys>> {
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
pub(super) fn field_gen(
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
