//! `upsert-kafka`: a topic whose records are the latest row of their key (Flink's connector of
//! that name).
//!
//! The table's `PRIMARY KEY (...) NOT ENFORCED` columns are the record key, written in
//! `key.format`; the value holds every physical column (`value.fields-include` = 'ALL') or
//! those outside the key ('EXCEPT_KEY'), in `value.format`. A record without a value (a
//! tombstone; for json and csv also a blank one) deletes its key.
//!
//! - **Reading** gives a changelog. Each reader keeps the last row of every key it read
//!   ([`Normalizer`], Flink's `ChangelogNormalize`): a key's first row is an insert (`+I`), a
//!   later different row an update (`-U` old, `+U` new), an identical row nothing, and a
//!   tombstone a delete (`-D` with the last row) or nothing for a key never seen. Reading always
//!   starts at the earliest offset. A checkpoint stores offsets only: a restored reader replays
//!   its partitions up to them silently to rebuild the last rows, then goes on emitting, so any
//!   parallelism resumes any other's (which needs a compacted topic, keeping every key's last
//!   record). A record without a key, or whose key lacks a key column, is an error naming it,
//!   or skipped and counted with `key.<format>.ignore-parse-errors`. The rows kept and compared
//!   are the columns the query reads. Keys must be partitioned by key (as every upsert-kafka
//!   writer, and Kafka's default partitioner, does): each reader knows only its partitions'.
//! - **Writing** takes a changelog (a NULL in a key column is an error): `+I` and `+U` write the row under its key, `-D` a tombstone,
//!   and `-U` nothing when the `+U` right after it has the same key (an update in place), a
//!   tombstone otherwise (the row moved to another key).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int8Array, RecordBatchOptions, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, plan_err};

use super::options::UpsertOptions;
use super::records::{RecordBuffer, metadata_column};
use super::source::is_blank;
use crate::catalog::table_definition::TableDefinition;
use crate::changelog::RowKind;
use crate::connectors::format::{Format, FormatOptions, LineChunk, LineDecoder, decoder};

/// How an upsert-kafka table's columns divide between record key and value.
#[derive(Debug, Clone)]
pub struct UpsertLayout {
    /// Physical column indices of the primary key, in key order (the record key's columns).
    pub key: Vec<usize>,
    /// The record key's schema: the key columns named without `key.fields-prefix`.
    pub key_schema: SchemaRef,
    /// `key.format` and its options.
    pub key_format: FormatOptions,
    /// Physical column indices the record value holds, in order.
    pub value: Vec<usize>,
}

impl UpsertLayout {
    /// The layout of `def`, whose physical columns are `physical`; `value_format` is
    /// `value.format`.
    pub fn try_new(
        def: &TableDefinition,
        physical: &SchemaRef,
        options: &UpsertOptions,
        value_format: Format,
    ) -> Result<Self> {
        if def.primary_key.is_empty() {
            return plan_err!(
                "upsert-kafka table {} needs a PRIMARY KEY: its columns are the record key, \
                 and a record updates or deletes the row of its key. Add \
                 'PRIMARY KEY (col, ...) NOT ENFORCED' to the column list",
                def.name
            );
        }
        let mut key: Vec<usize> = Vec::with_capacity(def.primary_key.len());
        let mut key_fields = Vec::with_capacity(def.primary_key.len());
        for name in &def.primary_key {
            let Some(i) = physical.fields().iter().position(|f| f.name() == name) else {
                return plan_err!(
                    "the PRIMARY KEY of upsert-kafka table {} names '{name}', which is not a \
                     physical column (metadata and computed columns are not in the record key)",
                    def.name
                );
            };
            if key.contains(&i) {
                return plan_err!(
                    "the PRIMARY KEY of upsert-kafka table {} names '{name}' twice",
                    def.name
                );
            }
            let field = physical.field(i);
            let Some(stripped) = field.name().strip_prefix(options.key_prefix.as_str()) else {
                return plan_err!(
                    "key column '{name}' of upsert-kafka table {} does not start with \
                     'key.fields-prefix' = '{}'",
                    def.name,
                    options.key_prefix
                );
            };
            key.push(i);
            key_fields.push(Field::new(stripped, field.data_type().clone(), true));
        }
        let key_schema = Arc::new(Schema::new(key_fields));
        let value: Vec<usize> = (0..physical.fields().len())
            .filter(|i| !(options.except_key && key.contains(i)))
            .collect();
        if options.key.format == Format::Raw {
            crate::connectors::format::raw::check_schema(&def.name, &key_schema)?;
        }
        if value_format == Format::Raw {
            crate::connectors::format::raw::check_schema(
                &def.name,
                &Arc::new(physical.project(&value)?),
            )?;
        }
        if value.is_empty() {
            return plan_err!(
                "upsert-kafka table {} has no column outside its key for the value; use \
                 'value.fields-include' = 'ALL'",
                def.name
            );
        }
        Ok(Self {
            key,
            key_schema,
            key_format: options.key.clone(),
            value,
        })
    }

    /// True if `format` gives no row for a blank record (so a blank value is a tombstone).
    fn blank_is_nothing(format: Format) -> bool {
        format != Format::Raw
    }
}

/// Where a column of a reader's full row comes from.
#[derive(Debug, Clone)]
pub enum RowOrigin {
    /// Column `i` of the decoded value.
    Value(usize),
    /// Column `i` of the decoded key.
    Key(usize),
    /// Record metadata (`topic`, `partition`, `offset`, `timestamp`, `key`).
    Metadata(String),
}

/// One reader's last row of every key, turning upserts and tombstones into a changelog (see
/// the module docs).
pub struct Normalizer {
    key_decoder: Box<dyn LineDecoder>,
    value_decoder: Box<dyn LineDecoder>,
    key_blank_is_nothing: bool,
    value_blank_is_nothing: bool,
    /// Skip (and count) a record whose key is missing or lacks a key column, instead of
    /// failing (`key.<format>.ignore-parse-errors`).
    skip_bad_keys: bool,
    /// Records skipped for their key (missing, blank, or with a NULL key column).
    bad_keys: u64,
    /// The table's physical and metadata columns, as records give them.
    schema: SchemaRef,
    origins: Vec<RowOrigin>,
    /// The columns of `schema` the reader produces: the rows kept and compared.
    projection: Vec<usize>,
    /// The schema of the rows produced.
    output: SchemaRef,
    rows: RowConverter,
    keys: RowConverter,
    /// The last row of every key, both in row format.
    last: HashMap<Box<[u8]>, Box<[u8]>>,
    topic: String,
}

impl Normalizer {
    /// A normalizer of rows of `schema` (columns from `origins`) producing the columns
    /// `projection`; the value holds the columns `value_schema` in `value_format`.
    pub fn try_new(
        layout: &UpsertLayout,
        (value_format, value_schema): (&FormatOptions, SchemaRef),
        (schema, origins): (SchemaRef, Vec<RowOrigin>),
        projection: Vec<usize>,
        topic: String,
    ) -> Result<Self> {
        let all_key: Vec<usize> = (0..layout.key_schema.fields().len()).collect();
        let all_value: Vec<usize> = (0..value_schema.fields().len()).collect();
        let sort_fields = |schema: &SchemaRef| {
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        let keys = RowConverter::new(sort_fields(&layout.key_schema))?;
        let output = Arc::new(schema.project(&projection)?);
        Ok(Self {
            key_decoder: decoder(
                &layout.key_format,
                Arc::clone(&layout.key_schema),
                Arc::clone(&layout.key_schema),
                &all_key,
            )?,
            value_decoder: decoder(
                value_format,
                Arc::clone(&value_schema),
                value_schema,
                &all_value,
            )?,
            key_blank_is_nothing: UpsertLayout::blank_is_nothing(layout.key_format.format),
            value_blank_is_nothing: UpsertLayout::blank_is_nothing(value_format.format),
            skip_bad_keys: layout.key_format.ignore_parse_errors,
            bad_keys: 0,
            rows: RowConverter::new(sort_fields(&output))?,
            keys,
            last: HashMap::new(),
            schema,
            origins,
            projection,
            output,
            topic,
        })
    }

    /// Records skipped as malformed so far (their key or value did not decode).
    pub fn skipped(&self) -> u64 {
        self.key_decoder.skipped() + self.value_decoder.skipped() + self.bad_keys
    }

    /// Keys whose last row is known.
    pub fn keys_held(&self) -> usize {
        self.last.len()
    }

    /// Applies and empties `buffer`, the records of `partition`, in offset order: the changes
    /// they make, or `None` if they make none or `emit` is false (a restored reader replaying
    /// what it already emitted before the checkpoint).
    pub fn apply(
        &mut self,
        partition: i32,
        buffer: &mut RecordBuffer,
        emit: bool,
    ) -> Result<Option<(RecordBatch, Int8Array)>> {
        let result = self.apply_inner(partition, buffer, emit);
        buffer.clear();
        result
    }

    fn apply_inner(
        &mut self,
        partition: i32,
        buffer: &RecordBuffer,
        emit: bool,
    ) -> Result<Option<(RecordBatch, Int8Array)>> {
        let origin = format!("topic {} partition {partition}", self.topic);
        let n = buffer.len();
        // The record keys: a record's key row, `None` for a key that did not decode (skipped
        // as malformed). A record without a key cannot be an upsert of any row.
        let mut key_lines: Vec<usize> = Vec::with_capacity(n);
        for i in 0..n {
            let present = buffer.keys[i]
                .as_deref()
                .is_some_and(|k| !(self.key_blank_is_nothing && is_blank(k)));
            if present {
                key_lines.push(i);
            } else {
                self.bad_key(&origin, buffer.offsets[i], "has no key")?;
            }
        }
        let key_batch = decode_subset(
            self.key_decoder.as_mut(),
            &origin,
            &key_lines,
            |i| buffer.keys[i].clone().unwrap_or_default(),
            &buffer.offsets,
        )?;
        let mut key_row: Vec<Option<u32>> = vec![None; n];
        if let Some((batch, rows)) = &key_batch {
            for (row, &i) in rows.iter().enumerate() {
                if batch.columns().iter().any(|c| c.is_null(row)) {
                    self.bad_key(&origin, buffer.offsets[i], "lacks a key column (NULL)")?;
                    continue;
                }
                key_row[i] = Some(row as u32);
            }
        }
        let key_rows = match &key_batch {
            Some((batch, _)) => Some(self.keys.convert_columns(batch.columns())?),
            None => None,
        };
        // The values of the records that are not tombstones.
        let value_blank_is_nothing = self.value_blank_is_nothing;
        let tombstone = |i: usize| {
            !buffer.present[i] || (value_blank_is_nothing && is_blank(&buffer.values[i]))
        };
        let value_lines: Vec<usize> = (0..n)
            .filter(|&i| key_row[i].is_some() && !tombstone(i))
            .collect();
        let value_batch = decode_subset(
            self.value_decoder.as_mut(),
            &origin,
            &value_lines,
            |i| buffer.values[i].clone(),
            &buffer.offsets,
        )?;
        // The full rows of the records with a value, and per record its row there.
        let mut new_row: Vec<Option<usize>> = vec![None; n];
        let new_rows = match &value_batch {
            Some((values, records)) => {
                for (row, &i) in records.iter().enumerate() {
                    new_row[i] = Some(row);
                }
                let key_take =
                    UInt32Array::from(records.iter().map(|&i| key_row[i]).collect::<Vec<_>>());
                let mut columns = Vec::with_capacity(self.origins.len());
                for (origin_of, field) in self.origins.iter().zip(self.schema.fields()) {
                    let column: ArrayRef = match origin_of {
                        RowOrigin::Value(c) => Arc::clone(values.column(*c)),
                        RowOrigin::Key(c) => match &key_batch {
                            Some((keys, _)) => take(keys.column(*c), &key_take, None)?,
                            None => datafusion::arrow::array::new_null_array(
                                field.data_type(),
                                records.len(),
                            ),
                        },
                        RowOrigin::Metadata(key) => metadata_column(
                            key,
                            field,
                            (&self.topic, partition),
                            buffer,
                            records,
                            &origin,
                        )?,
                    };
                    columns.push(column);
                }
                let batch = RecordBatch::try_new_with_options(
                    Arc::clone(&self.schema),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(records.len())),
                )?
                .project(&self.projection)?;
                Some(self.rows.convert_columns(batch.columns())?)
            }
            None => None,
        };
        // Each record in turn against the last row of its key.
        let mut out: Vec<Box<[u8]>> = Vec::new();
        let mut kinds: Vec<i8> = Vec::new();
        for i in 0..n {
            let Some(key) = key_row[i] else {
                continue;
            };
            let Some(rows) = &key_rows else {
                continue;
            };
            let key: Box<[u8]> = rows.row(key as usize).as_ref().into();
            if tombstone(i) {
                if let Some(old) = self.last.remove(&key)
                    && emit
                {
                    out.push(old);
                    kinds.push(RowKind::Delete as i8);
                }
                continue;
            }
            let (Some(row), Some(rows)) = (new_row[i], &new_rows) else {
                continue; // its value was skipped as malformed
            };
            let new: Box<[u8]> = rows.row(row).as_ref().into();
            match self.last.insert(key, new.clone()) {
                Some(old) if old == new => {}
                Some(old) => {
                    if emit {
                        out.push(old);
                        kinds.push(RowKind::UpdateBefore as i8);
                        out.push(new);
                        kinds.push(RowKind::UpdateAfter as i8);
                    }
                }
                None => {
                    if emit {
                        out.push(new);
                        kinds.push(RowKind::Insert as i8);
                    }
                }
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        let parser = self.rows.parser();
        let columns = self
            .rows
            .convert_rows(out.iter().map(|b| parser.parse(b)))?;
        let batch = RecordBatch::try_new(Arc::clone(&self.output), columns)?;
        Ok(Some((batch, Int8Array::from(kinds))))
    }

    /// A record whose key is missing or incomplete: skipped and counted with
    /// `key.<format>.ignore-parse-errors`, an error naming it otherwise.
    fn bad_key(&mut self, origin: &str, offset: i64, what: &str) -> Result<()> {
        if self.skip_bad_keys {
            self.bad_keys += 1;
            return Ok(());
        }
        datafusion::common::exec_err!(
            "the record in {origin} at offset {offset} {what}: an upsert-kafka record is the \
             row of its PRIMARY KEY, which its key holds. Fix the producer, or skip such \
             records with 'key.<format>.ignore-parse-errors' = 'true'"
        )
    }
}

/// Decodes the lines `line(i)` of the records `records` with `decoder`: the batch and, per
/// row, the record it came from (a record whose line was skipped as malformed has none).
fn decode_subset(
    decoder: &mut dyn LineDecoder,
    origin: &str,
    records: &[usize],
    line: impl Fn(usize) -> Vec<u8>,
    offsets: &[i64],
) -> Result<Option<(RecordBatch, Vec<usize>)>> {
    if records.is_empty() {
        return Ok(None);
    }
    let lines: Vec<Vec<u8>> = records.iter().map(|&i| line(i)).collect();
    let offsets: Vec<i64> = records.iter().map(|&i| offsets[i]).collect();
    // Each record gives its own row or none (see `LineChunk::lines_are_records`).
    let Some(batch) = decoder.decode(LineChunk {
        origin,
        first_line: 1,
        lines: &lines,
        offsets: Some(&offsets),
    })?
    else {
        return Ok(None);
    };
    let from: Vec<usize> = match decoder.kept() {
        Some(kept) => kept.iter().map(|&k| records[k]).collect(),
        None => records.to_vec(),
    };
    if from.len() != batch.num_rows() {
        return datafusion::common::internal_err!(
            "an upsert-kafka decoder gave {} rows for {} records of {origin}",
            batch.num_rows(),
            from.len()
        );
    }
    Ok(Some((batch, from)))
}

/// The records of an upsert-kafka sink's changelog rows of kinds `kinds` whose record keys are
/// `keys` (see the module docs): per row, `Some(true)` for a record with its value,
/// `Some(false)` for a tombstone, `None` for no record. A `-U` writes nothing when the next row
/// of its key in the batch is a `+U` (an update in place, however many rows of other keys lie
/// between, as an UPDATE of many rows gives them).
pub fn upsert_records(kinds: &Int8Array, keys: &[Option<Vec<u8>>]) -> Vec<Option<bool>> {
    let kind = |i: usize| RowKind::of(kinds.value(i)).unwrap_or(RowKind::Insert);
    // The next row of each row's key.
    let mut next_of_key: Vec<Option<usize>> = vec![None; kinds.len()];
    let mut seen: HashMap<Option<&[u8]>, usize> = HashMap::new();
    for i in (0..kinds.len()).rev() {
        let key = keys.get(i).and_then(|k| k.as_deref());
        next_of_key[i] = seen.insert(key, i);
    }
    (0..kinds.len())
        .map(|i| match kind(i) {
            RowKind::Insert | RowKind::UpdateAfter => Some(true),
            RowKind::Delete => Some(false),
            RowKind::UpdateBefore => {
                let in_place = next_of_key[i].is_some_and(|j| kind(j) == RowKind::UpdateAfter);
                (!in_place).then_some(false)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_before_in_place_writes_nothing_else_a_tombstone() {
        let kinds = Int8Array::from(vec![0, 1, 2, 1, 2, 3, 1]);
        let key = |k: &str| Some(k.as_bytes().to_vec());
        let keys = vec![
            key("a"),
            key("a"),
            key("a"),
            key("b"),
            key("c"),
            key("d"),
            key("e"),
        ];
        assert_eq!(
            upsert_records(&kinds, &keys),
            vec![
                Some(true),
                None,
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(false)
            ]
        );
    }
}
